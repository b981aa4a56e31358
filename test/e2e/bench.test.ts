import t from 'tap'
import { tableRows } from '../helpers/bench-table.js'
import { run } from '../helpers/spawn.js'

// CI does not time anything, but `npm run bench` must keep working: one short round of every
// default configuration, end to end (real upstream, real proxies, wrk or autocannon), then
// the other parts (compare, dual writes, memory, upgrade) as short as they go, and the targets' table.
const CONFIGS = ['direct', 'fastify', 'undici', 'undici-shadow100', 'undici-required', 'ficus', 'ficus-split50', 'ficus-shadow100', 'ficus-stages', 'ficus-new100', 'ficus-ramp']

// The whole smoke run takes about a minute alone, more on a loaded machine: the file's own limit (the root's, which the runner reads).
t.setTimeout(180_000)

t.test('npm run bench: every configuration serves its load without errors, and the ratio table is printed', async (t) => {
  // --smoke: one round of 1 s, 10 connections, 1 KB; writes at 50/s for 2 s, 300 pending; 300 requests to a hung backend.
  const bench = run(t, 'dist/bench/run.js', ['--smoke', '--pin', 'none'])
  t.equal(await bench.exitCode({ timeoutMs: 160_000 }), 0, bench.stderr)
  const [throughput = '', against = ''] = bench.stdout.split('### Against the targets')
  const rows = tableRows(throughput)
  const rps = (name: string): number => Number((rows.get(name)?.[2] ?? '').split(' ')[0])
  t.same([...rows.keys()], CONFIGS, 'one row per configuration, in order')
  for (const [name, cells] of rows) {
    t.ok(rps(name) > 0, `${name} served requests`)
    t.equal(cells[12], '0', `${name}: no errors, no non-2xx`)
  }
  t.match(rows.get('ficus')?.[10], /^1\.00 /, 'Ficus configurations are compared with ficus of the same round')
  t.equal(rows.get('fastify')?.[10], '–', 'fastify is no one\'s pass-through')
  // One round: each "vs pass-through" is the two rows' req/s divided (the table rounds both,
  // so they agree to a rounding step).
  const vs = (name: string): number => Number((rows.get(name)?.[10] ?? '').split(' ')[0])
  const toLimit = (name: string): number => Number((rows.get(name)?.[6] ?? '').split(' ')[0])
  t.ok(Math.abs(toLimit('ficus') - rps('ficus') / rps('undici')) <= 0.011, 'ficus is set beside its limit, undici')
  t.ok(Math.abs(toLimit('ficus-shadow100') - rps('ficus-shadow100') / rps('undici-shadow100')) <= 0.011, 'ficus-shadow100 beside the shadowing limit')
  t.equal(rows.get('undici')?.[6], '–', 'a limit has no limit')
  t.ok(Math.abs(vs('undici-shadow100') - rps('undici-shadow100') / rps('undici')) <= 0.011, 'undici-shadow100 is compared with undici')
  t.ok(Math.abs(vs('ficus-shadow100') - rps('ficus-shadow100') / rps('ficus')) <= 0.011, 'ficus-shadow100 is compared with ficus')
  t.notMatch(bench.stdout, /FAILED/)

  // The targets' table: every measure of issue #24, each with Ficus's number and a verdict.
  const targets = new Map([...tableRows(against)].filter(([k]) => k !== 'measure'))
  const measures = [...targets.keys()]
  for (const m of [
    /^pass-through req\/s \(ficus ÷ undici\), 1k$/, /^pass-through CPU per request/, /^pass-through req\/s beside the limit doing the required work/, /^100 % shadow req\/s/, /^every later stage on, on other routes/,
    /^in use: a route on new/, /^in use: a ramp under way/, /^compare two equal 64k JSON bodies: same bytes$/, /^compare two equal 64k JSON bodies: other whitespace$/,
    /^compare two equal 64k JSON bodies: other key order$/, /^dual writes, ack: durable, 50 PUT\/s: added p50$/, /^dual writes, ack: durable, 50 PUT\/s: added p99$/,
    /^in use: reads on a dual route/, /^delivery of 300 pending writes/, /^RSS, dual-write target down/, /^RSS peak, 100 % shadow to a hung backend/,
    /^in use: Upgrade tunnels opened per second/, /^in use: round trips of 1024 bytes in open tunnels/
  ]) t.ok(measures.some((x) => m.test(x)), `the targets' table has ${String(m)}`)
  for (const [m, cells] of targets) {
    t.match(cells[2], /\d/, `${m}: Ficus's number`)
    t.match(cells[6], /^(met|NOT MET|–)$/, `${m}: a verdict`)
    if (cells[5] !== '–') t.not(cells[6], '–', `${m}: a target has a verdict`)
  }
  // The ratio in the targets' table is the throughput table's.
  t.equal(targets.get('pass-through req/s (ficus ÷ undici), 1k')?.[4], rows.get('ficus')?.[6], 'the same ratio in both tables')

  // The shadowing limit really shadowed: every request it served was copied and compared
  // once (the upstream's new port answers a different document: every pair diverges).
  // test/e2e/bench-baselines.test.ts checks equal answers and closed connections.
  const counts = /undici-shadow (\{.*\})/.exec(bench.stderr)
  t.ok(counts, 'undici-shadow100 printed its counts when stopped')
  const c = JSON.parse(counts?.[1] ?? '{}') as { shadowed: number; equal: number; diverged: number; failed: number; lost: number }
  t.ok(c.shadowed > 0, 'it copied requests')
  t.equal(c.equal, 0, 'no pair was equal: the documents differ')
  // When the load stops, the requests in flight on its 10 connections are cut (failed) or
  // still running when it is stopped (lost): at most one per connection.
  t.ok(c.failed + c.lost <= 10, 'only requests cut when the load stopped went uncompared')
  t.ok(c.lost >= 0, 'no pair was counted twice')

  // Ficus's shadow run says what it did with its copies (read from its /metrics): a copy
  // dropped at a bound would make shadowing look cheaper than it is.
  const ficus = /ficus-shadow100 .* copies of (\d+) requests: (.*); dropped (\d+)/.exec(bench.stderr)
  t.ok(ficus, 'ficus-shadow100 reported its copies')
  const counted = new Map((ficus?.[2] ?? '').split(', ').map((kv) => kv.split(' ')).map(([k, v]) => [k, Number(v)] as const))
  const n = (outcome: string): number => counted.get(outcome) ?? 0
  t.equal(Number(ficus?.[3]), 0, 'no copy was dropped')
  t.equal(n('match'), 0, 'no comparison matched: the documents differ')
  // Read as the load stops: a request then in flight may be cut (skipped; at most one per
  // connection), and a copy may still be running, its comparison not counted yet (at most
  // shadow.maxInFlight, 64).
  const uncounted = Number(ficus?.[1]) - (n('diverged') + n('skipped') + n('error'))
  t.ok(n('diverged') > 0, 'comparisons were made')
  t.ok(n('skipped') + n('error') <= 10, 'only requests cut when the load stopped went uncompared')
  t.ok(uncounted >= 0 && uncounted <= 64, 'every other request was copied and its comparison counted, or still running')
})
