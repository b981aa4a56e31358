import t from 'tap'
import { run } from '../helpers/spawn.js'

interface PhaseResult { requests: number; readsFailed: number; writesFailedNeverReachedNew: number; writesFailedCutInFlight: number; writesFailedReachedNew: number }
interface OutageResult { phases: Record<'before' | 'outage' | 'after', PhaseResult>; ejectSeconds: number | null; recoverSeconds: number | null }

// bench/outage.ts keeps working, and what it shows holds on a short run (CI times nothing):
// new's process goes away under load, Ficus (a real process) ejects it, and comes back to it.
t.test('bench/outage.ts: new refuses connections for 3 s under load: no read and no write that never reached new fails; new is ejected, then back', async (t) => {
  t.setTimeout(120_000)
  const bench = run(t, 'dist/bench/outage.js', ['--mode', 'refused', '--ejected-writes', 'legacy', '--warmup', '1', '--before', '1', '--outage', '3', '--after', '8', '--concurrency', '4', '--json'])
  t.equal(await bench.exitCode({ timeoutMs: 110_000 }), 0, bench.stderr)
  const r = JSON.parse(bench.stdout.trim().split('\n').pop() ?? '{}') as OutageResult
  for (const phase of ['before', 'outage', 'after'] as const) {
    const p = r.phases[phase]
    t.ok(p.requests > 0, `${phase}: requests were sent (${p.requests})`)
    t.same([p.readsFailed, p.writesFailedNeverReachedNew], [0, 0], `${phase}: no read failed, no write that never reached new failed`)
    t.ok(p.writesFailedCutInFlight <= 4, `${phase}: at most the 4 clients' writes in flight when new's connections were cut failed (${p.writesFailedCutInFlight})`)
  }
  t.not(r.ejectSeconds, null, 'new was ejected during the outage')
  t.not(r.recoverSeconds, null, 'and its breaker closed once new was back')
})
