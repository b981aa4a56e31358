import t from 'tap'
import {
  countsOf, evaluate, gatesOf, quantile, sampleOf, transition, tripwire, windowAt,
  type MetricJson, type RampPlan, type RampRecord, type RampSample
} from '../../src/core/ramp.js'

/** The ramp's pure decisions (core/ramp.ts): what the counters say, each gate, the step's verdict, every transition. */

const plan = (over: Partial<RampPlan> = {}): RampPlan => ({
  name: 'p',
  steps: [{ new: 1, holdMs: 60_000, minRequests: 100, requireVerify: false }, { new: 50, holdMs: 0, minRequests: 0, requireVerify: false }, { new: 100, holdMs: 0, minRequests: 0, requireVerify: true }],
  windowMs: 300_000,
  confidence: { advance: 0.95, rollback: 0.99 },
  gates: { divergence: { max: 0.02 }, errors: { maxIncrease: 0.005 }, latency: { p99DeltaMs: 20, slowerByMs: 20, maxShare: 0.05 }, sync: null, verify: { job: 'orders', maxAgeMs: 86_400_000, maxMismatchRate: 0 } },
  tripwire: { failureShare: 0.5, minRequests: 20 },
  onFail: 'rollback',
  ...over
})

const empty: RampSample = { coveredMs: 0, newTotal: 0, newFailed: 0, legacyTotal: 0, legacyFailed: 0, compared: 0, diverged: 0, paired: 0, slower: 0, latency: { new: [], legacy: [] }, syncLagS: null, deadLetters: null }

t.test('countsOf and sampleOf: requests per side (fallbacks are new\'s failures, not legacy\'s users), comparisons, pairs, buckets, sync gauges', async (t) => {
  const json: MetricJson[] = [
    { name: 'ficus_requests_total', values: [
      { value: 90, labels: { route: 'orders', backend: 'new', role: 'primary', code: 200 } },
      { value: 10, labels: { route: 'orders', backend: 'new', role: 'primary', code: 503 } },
      { value: 900, labels: { route: 'orders', backend: 'legacy', role: 'primary', code: 200 } },
      { value: 5, labels: { route: 'orders', backend: 'legacy', role: 'primary', code: 500 } },
      { value: 400, labels: { route: 'orders', backend: 'new', role: 'shadow', code: 500 } },
      { value: 7, labels: { route: 'other', backend: 'new', role: 'primary', code: 500 } }
    ] },
    { name: 'ficus_fallbacks_total', values: [{ value: 3, labels: { route: 'orders', reason: 'timeout' } }] },
    { name: 'ficus_comparisons_total', values: [{ value: 50, labels: { route: 'orders', outcome: 'match' } }, { value: 2, labels: { route: 'orders', outcome: 'diverged' } }, { value: 9, labels: { route: 'orders', outcome: 'error' } }] },
    { name: 'ficus_shadow_pairs_total', values: [{ value: 48, labels: { route: 'orders', new: 'not_slower' } }, { value: 4, labels: { route: 'orders', new: 'slower' } }] },
    { name: 'ficus_request_duration_seconds', values: [
      { value: 60, labels: { route: 'orders', backend: 'new', role: 'primary', le: 0.01 }, metricName: 'ficus_request_duration_seconds_bucket' },
      { value: 100, labels: { route: 'orders', backend: 'new', role: 'primary', le: '+Inf' }, metricName: 'ficus_request_duration_seconds_bucket' },
      { value: 100, labels: { route: 'orders', backend: 'new', role: 'primary' }, metricName: 'ficus_request_duration_seconds_count' }
    ] },
    { name: 'ficus_sync_lag_seconds', values: [{ value: 4, labels: { route: 'orders', target: 'new' } }, { value: 9, labels: { route: 'orders', target: 'legacy' } }] },
    { name: 'ficus_sync_dead_letters', values: [{ value: 1, labels: { route: 'orders', target: 'new' } }, { value: 2, labels: { route: 'orders', target: 'legacy' } }] }
  ]
  const { counts, gauges } = countsOf(json, new Set(['orders', 'quiet']))
  t.same([...counts.keys()].sort(), ['orders', 'quiet'], 'every route asked for, and only those')
  t.same(counts.get('quiet'), new Map())
  const s = sampleOf(60_000, counts.get('orders')!, gauges.get('orders'))
  t.match(s, { newTotal: 103, newFailed: 13, legacyTotal: 902, legacyFailed: 5, compared: 52, diverged: 2, paired: 52, slower: 4, syncLagS: 9, deadLetters: 3 })
  t.same(s.latency.new, [{ le: 0.01, count: 60 }, { le: Infinity, count: 100 }])
  t.same(sampleOf(0, new Map(), undefined).syncLagS, null, 'not a dual route: no lag known')
})

t.test('quantile interpolates inside its bucket as histogram_quantile does', async (t) => {
  const b = [{ le: 0.01, count: 50 }, { le: 0.05, count: 90 }, { le: 0.1, count: 100 }, { le: Infinity, count: 100 }]
  t.equal(quantile(0.5, b), 0.01)
  t.ok(Math.abs((quantile(0.7, b) as number) - 0.03) < 1e-12, 'halfway through the second bucket')
  t.ok(Math.abs((quantile(0.99, b) as number) - 0.095) < 1e-12)
  t.equal(quantile(0.99, [{ le: 0.1, count: 1 }, { le: Infinity, count: 100 }]), 0.1, 'in the +Inf bucket: its lower bound')
  t.equal(quantile(0.99, []), null)
})

t.test('gatesOf: each configured gate, and the verify gate only before a step that requires it', async (t) => {
  const s: RampSample = { ...empty, compared: 1000, diverged: 0, newTotal: 400, legacyTotal: 4000, paired: 1000, slower: 200 }
  const gates = gatesOf(plan(), s, false, null, 0, 1)
  t.same(gates.map((g) => [g.gate, g.verdict]), [['divergence', 'pass'], ['errors', 'hold'], ['latency_p99', 'hold'], ['latency_slower', 'fail']])
  t.match(gates[2]?.why, /a p99 needs 100 on each side/)
  const verify = gatesOf(plan(), s, true, { result: 0, completedAt: 0, mismatchRate: 0, checked: 3000 }, 3_600_000, 50).find((g) => g.gate === 'verify')
  t.match(verify, { verdict: 'pass', n: 3000 })
  t.match(gatesOf(plan(), s, true, null, 0, 50).find((g) => g.gate === 'verify'), { verdict: 'hold', why: /no run of job orders by this Ficus yet/ })
  t.match(gatesOf(plan(), s, true, { result: 0, completedAt: 0, mismatchRate: 0, checked: 10 }, 2 * 86_400_000, 50).find((g) => g.gate === 'verify'), { verdict: 'hold', why: /older than/ })
  t.match(gatesOf(plan(), s, true, { result: 1, completedAt: 0, mismatchRate: 0.01, checked: 100 }, 0, 50).find((g) => g.gate === 'verify'), { verdict: 'hold', why: /differed/ }, 'a verify with differences holds: it never rolls traffic back')
})

t.test('gatesOf at new 100 %: no legacy users, so errors and latency_p99 are not judged; divergence and pairs still are', async (t) => {
  const s: RampSample = { ...empty, compared: 500, newTotal: 5000, newFailed: 40, paired: 500 }
  const gates = gatesOf(plan(), s, false, null, 0, 100)
  t.match(gates.find((g) => g.gate === 'errors'), { verdict: 'pass', n: 0, observed: null, why: /not judged at new 100 %/ })
  t.match(gates.find((g) => g.gate === 'latency_p99'), { verdict: 'pass', n: 0 })
  t.match(gates.find((g) => g.gate === 'divergence'), { verdict: 'pass', n: 500 })
})

t.test('latency_p99: new\'s p99 minus legacy\'s, against p99Delta', async (t) => {
  const side = (p99: number): { le: number; count: number }[] => [{ le: p99 / 2, count: 50 }, { le: p99, count: 1000 }, { le: Infinity, count: 1000 }]
  const g = (n: number, l: number) => gatesOf(plan({ gates: { ...plan().gates, divergence: null, errors: null, latency: { p99DeltaMs: 20, slowerByMs: 20, maxShare: null } } }), { ...empty, latency: { new: side(n), legacy: side(l) } }, false, null, 0, 25)[0]
  t.match(g(0.05, 0.04), { gate: 'latency_p99', verdict: 'pass', why: /new is .* slower, within 20 ms/ })
  t.match(g(0.1, 0.04), { verdict: 'fail' })
})

t.test('evaluate: the hold and minRequests of the step, the gates, and the explanation', async (t) => {
  const r = transition(plan(), null, { action: 'start', by: 'alice', reason: 'go' }, 'orders', 1_000) as RampRecord
  const good: RampSample = { ...empty, compared: 2000, newTotal: 5000, legacyTotal: 50_000, paired: 2000, latency: { new: [{ le: 0.01, count: 5000 }, { le: Infinity, count: 5000 }], legacy: [{ le: 0.01, count: 50_000 }, { le: Infinity, count: 50_000 }] } }
  const early = evaluate(plan(), r, good, 31_000, 100)
  t.equal(early.action, 'hold', 'the hold is not over')
  t.match(early.text, /verdict: hold: needs ~100 more requests on new \(~1 min at the current 100\/min\); 30 s more of the hold$/)
  const later = evaluate(plan(), { ...r, stepRequests: 150 }, good, 61_000, 100)
  t.equal(later.action, 'advance', later.text)
  const bad = evaluate(plan(), { ...r, stepRequests: 150 }, { ...good, diverged: 400 }, 61_000, 100)
  t.equal(bad.action, 'fail')
  t.match(bad.missing[0], /diverged/)
  t.equal(windowAt(plan(), r, 61_000), 60_000, 'a step is judged on its own traffic')
  t.equal(windowAt(plan(), r, 1_000_000), 300_000, 'then on the window')
})

t.test('tripwire: most of a few requests failing, without statistics', async (t) => {
  t.ok(tripwire(plan().tripwire, { ...empty, newTotal: 20, newFailed: 10 }))
  t.notOk(tripwire(plan().tripwire, { ...empty, newTotal: 19, newFailed: 19 }), 'fewer than minRequests')
  t.notOk(tripwire(plan().tripwire, { ...empty, newTotal: 100, newFailed: 49 }))
})

t.test('transition: every command and decision, in the phases that allow it', async (t) => {
  const p = plan()
  const at = (r: RampRecord | null, action: Parameters<typeof transition>[2]['action'], extra: Record<string, unknown> = {}) => transition(p, r, { action, by: 'bob', reason: null, ...extra }, 'orders', 5_000)
  t.match(at(null, 'pause'), { refused: /no ramp in progress: ficus ramp start orders/ })
  const started = at(null, 'start') as RampRecord
  t.match(started, { phase: 'running', step: 0, percent: 1, revision: 1, percentAt: 5_000, stepStartedAt: 5_000, stepRequests: 0, by: 'bob' })
  t.match(at(started, 'start'), { refused: /already ramping/ })
  t.match(at(started, 'resume'), { refused: /is running/ })
  t.match(at(started, 'advance'), { phase: 'running', step: 1, percent: 50, revision: 2 })
  const holding = at(started, 'hold') as RampRecord
  t.match(holding, { phase: 'holding', revision: 1 }, 'holding changes no traffic')
  t.match(at(holding, 'advance'), { refused: /only a forced advance/ })
  t.match(at(holding, 'advance', { force: true }), { phase: 'running', step: 1 })
  t.match(at(holding, 'resume'), { phase: 'running', revision: 1 })
  const paused = at({ ...started, stepRequests: 40 }, 'manual') as RampRecord
  t.match(paused, { phase: 'paused', percent: 1, revision: 1 })
  t.match(at(paused, 'pause'), { refused: /already paused/ })
  t.match(at(paused, 'resume'), { phase: 'running', percent: 1, revision: 2, stepRequests: 0 }, 'a resumed step is applied again and judged afresh')
  t.match(at(started, 'fail'), { phase: 'rolled_back', percent: 0, revision: 2 })
  t.match(transition(plan({ onFail: 'pause' }), started, { action: 'fail', by: 'ramp', reason: 'x' }, 'orders', 5_000), { phase: 'paused', percent: 1 })
  t.match(at(paused, 'trip'), { phase: 'rolled_back', percent: 0 }, 'the trip-wire acts while paused too')
  const aborted = at(started, 'abort') as RampRecord
  t.match(aborted, { phase: 'aborted', percent: 0 })
  t.match(at(aborted, 'resume'), { refused: /no ramp in progress \(it is aborted\)/ })
  t.match(at(aborted, 'start'), { phase: 'running', step: 0, revision: 3 }, 'an ended ramp starts again from step 1')
  const last = { ...started, step: 2, percent: 100 }
  const done = at(last, 'advance') as RampRecord
  t.match(done, { phase: 'completed', percent: 100, revision: 1 })
  t.match(at(done, 'start'), { phase: 'running', step: 0, percent: 1 }, 'a completed ramp may ramp again from its first step')
  t.match(at({ ...paused, step: 7 }, 'resume'), { refused: /now has 3 steps/ })
  t.same((at(started, 'abort') as RampRecord).history.map((h) => h.action), ['start', 'abort'], 'the history keeps each transition')
})
