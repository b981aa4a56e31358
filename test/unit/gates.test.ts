import t from 'tap'
import {
  differenceInterval, errorsGate, explain, limitGate, normalQuantile, samplesFor, shareGate, stepVerdict, tripped, wilson, zOf
} from '../../src/core/gates.js'

/** The ramp's gate statistics (core/gates.ts), against published values. */

const C = { advance: 0.95, rollback: 0.99 }
const near = (a: number, b: number, eps = 1e-4): boolean => Math.abs(a - b) < eps

t.test('normalQuantile and zOf', async (t) => {
  t.ok(near(zOf(0.95), 1.959964, 1e-6), `z(95 %) = ${zOf(0.95)}`)
  t.ok(near(zOf(0.99), 2.575829, 1e-6))
  t.ok(near(normalQuantile(0.001), -3.090232, 1e-6), 'the lower tail')
  t.ok(near(normalQuantile(0.999), 3.090232, 1e-6), 'the upper tail')
  t.equal(normalQuantile(0.5), 0)
  t.throws(() => normalQuantile(1), RangeError)
})

t.test('wilson and differenceInterval: the values Newcombe (1998) publishes', async (t) => {
  const z = zOf(0.95)
  t.ok(near(wilson(0, 10, z).upper, 0.2775), '0 of 10')
  t.ok(near(wilson(5, 10, z).lower, 0.2366) && near(wilson(5, 10, z).upper, 0.7634), '5 of 10')
  t.same(wilson(0, 0, z), { lower: 0, upper: 1 }, 'no data: anything')
  const d = differenceInterval(56, 70, 48, 80, z)
  t.ok(near(d.lower, 0.0524) && near(d.upper, 0.3339), `56/70 − 48/80: ${d.lower}, ${d.upper}`)
  const e = differenceInterval(9, 10, 3, 10, z)
  t.ok(near(e.lower, 0.1705) && near(e.upper, 0.8090), '9/10 − 3/10')
  const zero = differenceInterval(0, 100, 0, 100, z)
  t.ok(zero.upper > 0.03, 'two zero rates: still uncertain (the normal approximation would say exactly 0)')
})

t.test('samplesFor: with no divergence, a 95 % Wilson bound is under 2 % from n = 189 (DESIGN.md: "n ≈ 190")', async (t) => {
  t.equal(samplesFor(0, 0.02, zOf(0.95)), 189)
  t.equal(samplesFor(0.02, 0.02, zOf(0.95)), null, 'a rate at the threshold never passes')
  const n = samplesFor(0.01, 0.02, zOf(0.95)) as number
  t.ok(wilson(0.01 * n, n, zOf(0.95)).upper <= 0.02 && wilson(0.01 * (n - 1), n - 1, zOf(0.95)).upper > 0.02, `1 % needs ${n}`)
})

t.test('shareGate: pass when the data shows it, fail when it shows the opposite, otherwise hold with how much more it needs', async (t) => {
  t.match(shareGate('divergence', 'comparisons', 0, 0, 0.02, C), { verdict: 'hold', observed: null, why: /no data is never a pass/ })
  t.match(shareGate('divergence', 'comparisons', 0, 150, 0.02, C), { verdict: 'hold', observed: 0, n: 150, needs: 39, why: /about 39 more/ })
  t.match(shareGate('divergence', 'comparisons', 0, 200, 0.02, C), { verdict: 'pass', observed: 0, threshold: 0.02 })
  t.match(shareGate('divergence', 'comparisons', 30, 200, 0.02, C), { verdict: 'fail', observed: 0.15 })
  t.match(shareGate('divergence', 'comparisons', 1, 20, 0.02, C), { verdict: 'hold', needs: null, why: /never passes/ }, '5 % seen: over the threshold, not yet shown to be')
})

t.test('errorsGate: relative to legacy over the same window; a zero-error baseline with a failing new fails', async (t) => {
  t.match(errorsGate(5, 20, 0, 1000, 0.005, C), { verdict: 'fail', why: /worse by at least/ })
  t.match(errorsGate(10, 1000, 9, 1000, 0.005, C), { verdict: 'hold' }, '1.0 % against 0.9 %: not yet shown within 0.5 pp')
  t.match(errorsGate(100, 10000, 95, 10000, 0.005, C), { verdict: 'pass' }, 'the same over 10,000: within 0.5 pp')
  t.match(errorsGate(50, 1000, 50, 1000, 0.005, C), { verdict: 'hold' }, 'equal but too few to show it')
  t.match(errorsGate(3, 100, 0, 0, 0.005, C), { verdict: 'hold', why: /no baseline/ })
  t.match(errorsGate(0, 0, 3, 100, 0.005, C), { verdict: 'hold', observed: null })
})

t.test('limitGate, tripped, stepVerdict', async (t) => {
  t.match(limitGate('sync_lag', null, 30, 's', 'sync lag'), { verdict: 'hold' })
  t.match(limitGate('sync_lag', 12, 30, 's', 'sync lag'), { verdict: 'pass' })
  t.match(limitGate('dead_letters', 1, 0, '', 'dead letters'), { verdict: 'fail' })
  t.ok(tripped(11, 20, 0.5, 20))
  t.notOk(tripped(11, 19, 0.5, 20), 'too few requests for the trip-wire')
  t.notOk(tripped(9, 20, 0.5, 20))
  const pass = shareGate('divergence', 'comparisons', 0, 500, 0.02, C)
  const hold = shareGate('divergence', 'comparisons', 0, 10, 0.02, C)
  const fail = shareGate('divergence', 'comparisons', 100, 500, 0.02, C)
  const step = { heldMs: 600_000, holdMs: 600_000, requests: 300, minRequests: 300 }
  t.same(stepVerdict(step, [pass]), { action: 'advance', missing: [] })
  t.match(stepVerdict({ ...step, heldMs: 60_000 }, [pass]), { action: 'hold', missing: ['held 60 s of 600 s'] })
  t.match(stepVerdict({ ...step, requests: 10 }, [pass]), { action: 'hold', missing: ['10 requests on new of the 300 the step needs'] })
  t.match(stepVerdict(step, [pass, hold]), { action: 'hold', missing: [/about \d+ more/] })
  t.match(stepVerdict({ ...step, heldMs: 0 }, [pass, fail]), { action: 'fail' }, 'a failing gate does not wait for the hold')
})

t.test('explain: reads like a person explaining the step, each gate with its numbers, and what is missing', async (t) => {
  const gates = [shareGate('divergence', 'comparisons', 2, 812, 0.02, C), errorsGate(12, 1240, 99, 11000, 0.005, C)]
  const text = explain({ route: 'orders', step: 2, steps: 6, percent: 10, perMinute: 80, state: { heldMs: 12 * 60_000, holdMs: 30 * 60_000, requests: 1240, minRequests: 2500 }, gates })
  t.equal(text.split('\n')[0], 'orders: step 3 of 6 (new 10 %), held 12 min of 30 min, 1,240 of 2,500 requests on new')
  t.match(text, /^ {2}divergence +pass {2}0\.25 % of 812 comparisons: its upper bound \(\d\.\d+ %, 95 %\) is under 2\.0 %$/m)
  t.match(text, /^ {2}errors +hold {2}errors: new 0\.97 % of 1,240, legacy 0\.90 % of 11,000/m)
  t.match(text, /verdict: hold: needs ~1,260 more requests on new \(~16 min at the current 80\/min\); 18 min more of the hold; errors to show it holds$/)
  const done = explain({ route: 'orders', step: 5, steps: 6, percent: 100, perMinute: null, state: { heldMs: 1, holdMs: 0, requests: 0, minRequests: 0 }, gates: [shareGate('divergence', 'comparisons', 0, 500, 0.02, C)] })
  t.match(done, /verdict: advance: the ramp is complete$/)
  t.match(explain({ route: 'o', step: 0, steps: 2, percent: 1, perMinute: null, state: { heldMs: 0, holdMs: 0, requests: 0, minRequests: 0 }, gates: [shareGate('divergence', 'comparisons', 50, 200, 0.02, C)] }), /verdict: fail: divergence$/)
})
