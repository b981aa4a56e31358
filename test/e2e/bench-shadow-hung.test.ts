import t from 'tap'
import { tableRows } from '../helpers/bench-table.js'
import { run } from '../helpers/spawn.js'

// bench/shadow-hung.ts keeps working (CI times nothing): a short run, checked for what it shows.
t.test('npm run bench:shadow-hung: with a shadow backend that never answers, no client request fails and every copy is accounted for', async (t) => {
  t.setTimeout(120_000)
  const bench = run(t, 'dist/bench/shadow-hung.js', ['--requests', '300', '--connections', '10', '--timeout', '1s'], { NODE_OPTIONS: '--expose-gc' })
  t.equal(await bench.exitCode({ timeoutMs: 110_000 }), 0, bench.stderr)
  const rows = tableRows(bench.stdout)
  t.same([rows.get('noshadow')?.[2], rows.get('noshadow')?.[3]], ['300', '0'], 'without shadow: 300 requests, none failed')
  t.same([rows.get('shadow-hung')?.[2], rows.get('shadow-hung')?.[3]], ['300', '0'], 'with a hung shadow: the same')
  const copies = /(\d+) timed out, (\d+) dropped/.exec(rows.get('shadow-hung')?.[9] ?? '')
  t.equal(Number(copies?.[1]) + Number(copies?.[2]), 300, 'each copy either timed out or was dropped at the bound')
})
