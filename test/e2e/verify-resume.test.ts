import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { VerifyReport } from '../../src/control/verify.js'
import { startCatalog, type Rec } from '../helpers/catalog.js'
import { CLI, run } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

/**
 * `ficus verify` stopped halfway, as a real process: killed with SIGKILL, or stopped with
 * Ctrl-C (SIGINT); `--resume` continues from the last page it saved, and counts every record
 * exactly once.
 */

/** A routes.yaml with one route and a verify job `items` over the two catalogs, in pages of `page`. */
function routesYaml (dir: string, legacyUrl: string, nextUrl: string, page: number, extra = ''): string {
  const file = join(dir, 'routes.yaml')
  writeFileSync(file, `version: 1
sticky: header:x-user-id
upstreams:
  legacy: { url: ${legacyUrl} }
  new: { url: ${nextUrl} }
routes:
  - { name: items, match: { path: /api/items/:id }, new: 0 }
verify:
  items:
    route: items
    list: { path: /api/items, items: body.items, id: id, next: body.next_cursor, cursorParam: cursor, total: body.total, query: { limit: '${page}' } }
${extra}    rate: 100000/s
`)
  return file
}

const N = 3000
const PAGE = 100

async function setup (t: Test): Promise<{ file: string; dir: string; lists: () => number }> {
  const records: Rec[] = Array.from({ length: N }, (_, i) => ({ id: String(1000 + i), title: `item ${i}` }))
  const legacy = await startCatalog(t, records, { paging: 'cursor', pageSize: PAGE, pageDelayMs: 20 })
  const next = await startCatalog(t, records, { paging: 'cursor', pageSize: PAGE, order: 'desc', pageDelayMs: 20 })
  const dir = t.testdir()
  mkdirSync(dir, { recursive: true })
  const file = routesYaml(dir, legacy.url, next.url, PAGE, '    get: /api/items/:id\n')
  return { file, dir, lists: () => legacy.seen.lists + next.seen.lists }
}

const PAGES = (2 * N) / PAGE

for (const signal of ['SIGKILL', 'SIGINT'] as const) {
  t.test(`${signal} halfway, then --resume: every record counted once, and the pages already read are not read again`, async (t) => {
    const { file, dir, lists } = await setup(t)
    const first = run(t, CLI, ['verify', 'items', '--config', file])
    await waitFor(() => lists() >= PAGES / 3, { timeoutMs: 30_000, message: () => `the run read ${lists()} pages of ${PAGES} (stderr: ${first.stderr})` })
    first.child.kill(signal)
    const code = await first.exitCode()
    if (signal === 'SIGKILL') t.equal(code, null, 'killed')
    else {
      t.equal(code, 2, 'stopped: incomplete')
      t.match(first.stdout, /incomplete: stopped before the end; its progress is saved: --resume continues it/)
    }
    const before = lists()
    t.ok(before < PAGES, `it was stopped halfway (${before} of ${PAGES} pages)`)
    const report = join(dir, 'report.json')
    const second = run(t, CLI, ['verify', 'items', '--config', file, '--resume', '--json', report])
    t.equal(await second.exitCode({ timeoutMs: 60_000 }), 0, second.stdout + second.stderr)
    const r = JSON.parse(readFileSync(report, 'utf8')) as VerifyReport
    t.same(r.counts, { matched: N, mismatched: 0, missing_in_legacy: 0, missing_in_new: 0, unmapped: 0, in_flight: 0 }, 'each record once')
    t.same(r.listed, { legacy: N, new: N })
    // The two runs together read each page once, but for the one each side had in flight when it was stopped.
    t.ok(lists() <= PAGES + 2, `${lists()} pages read in all, for ${PAGES}`)
  })
}

t.test('100,000 records a side, listed in opposite orders, with the heap capped at 48 MiB: the records wait on disk, not in memory', async (t) => {
  const n = 100_000
  const records: Rec[] = Array.from({ length: n }, (_, i) => ({ id: String(100000 + i), title: `item ${i}`, tags: ['a', 'b'] }))
  const legacy = await startCatalog(t, records, { paging: 'cursor', pageSize: 1000 })
  const next = await startCatalog(t, records, { paging: 'cursor', pageSize: 1000, order: 'desc' })
  const dir = t.testdir()
  mkdirSync(dir, { recursive: true })
  const file = routesYaml(dir, legacy.url, next.url, 1000)
  const report = join(dir, 'report.json')
  // Held in memory, 100,000 records of one side would need far more than 48 MiB: the run would end out of memory.
  const p = run(t, CLI, ['verify', 'items', '--config', file, '--json', report], { NODE_OPTIONS: '--max-old-space-size=48' })
  t.equal(await p.exitCode({ timeoutMs: 180_000 }), 0, p.stdout + p.stderr)
  const r = JSON.parse(readFileSync(report, 'utf8')) as VerifyReport
  t.equal(r.counts.matched, n)
  t.same(r.totals, { legacy: n, new: n })
})
