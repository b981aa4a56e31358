import t from 'tap'
import { Breaker } from '../../src/core/breaker.js'
import type { BreakerPolicy } from '../../src/core/types.js'

const policy = (over: Partial<BreakerPolicy> = {}): BreakerPolicy => ({
  consecutiveFailures: 3, failureRate: 0, minRequests: 10, windowMs: 10_000, ejectionMs: 1_000, maxEjectionMs: 8_000, probes: 1, ...over
})

t.test('failures in a row eject new; a success in between starts the count again', async (t) => {
  const b = new Breaker(policy())
  b.failed(0, false, 'refused')
  b.failed(1, false, 'refused')
  b.succeeded(2, false)
  b.failed(3, false, 'refused')
  b.failed(4, false, 'refused')
  t.equal(b.state, 'closed', 'two in a row after a success')
  const tr = b.failed(5, false, 'timeout')
  t.same(tr, { from: 'closed', to: 'open', why: 'consecutive', coolDownMs: 1_000 })
  t.same(b.admit(6), ['ejected', null])
  t.equal(b.snapshot(6).lastFailure, 'timeout')
  t.equal(b.snapshot(6).openForMs, 999)
})

t.test('a failure rate over the window ejects once enough requests were seen; older slots fall out', async (t) => {
  const b = new Breaker(policy({ consecutiveFailures: 0, failureRate: 0.5, minRequests: 10 }))
  for (let i = 0; i < 8; i++) {
    b.succeeded(i, false)
    if (i % 2 === 0) b.failed(i, false, 'status_503')
  }
  t.equal(b.state, 'closed', '4 of 12 failed')
  const late = new Breaker(policy({ consecutiveFailures: 0, failureRate: 0.5, minRequests: 4 }))
  late.failed(0, false, 'reset')
  late.failed(0, false, 'reset')
  late.succeeded(20_000, false)
  late.succeeded(20_000, false)
  t.equal(late.failed(20_001, false, 'reset'), null, 'the failures of 20 s ago are out of the window: 1 of 3')
  const tr = late.failed(20_002, false, 'reset')
  t.same(tr, { from: 'closed', to: 'open', why: 'rate', coolDownMs: 1_000 }, '2 of 4: 50 %')
})

t.test('half-open lets `probes` requests through; success closes, failure doubles the cool-down up to the max', async (t) => {
  const b = new Breaker(policy({ consecutiveFailures: 1, probes: 1 }))
  b.failed(0, false, 'refused')
  t.same(b.admit(999), ['ejected', null])
  const [first, tr] = b.admit(1_000)
  t.equal(first, 'probe')
  t.same(tr, { from: 'open', to: 'half_open', why: 'cooled' })
  t.same(b.admit(1_001), ['ejected', null], 'one probe at a time')
  t.same(b.failed(1_100, b.probeCycle, 'refused'), { from: 'half_open', to: 'open', why: 'probe_failed', coolDownMs: 2_000 })
  t.equal(b.tick(3_099), null)
  t.same(b.tick(3_100), { from: 'open', to: 'half_open', why: 'cooled' }, 'a timer moves it on with no traffic')
  b.admit(3_100)
  b.failed(3_200, b.probeCycle, 'refused') // 4 s
  b.admit(7_200)
  b.failed(7_300, b.probeCycle, 'refused') // 8 s (max)
  b.admit(15_300)
  t.same(b.failed(15_400, b.probeCycle, 'refused')?.coolDownMs, 8_000, 'never longer than maxEjection')
  b.admit(23_400)
  t.same(b.succeeded(23_500, b.probeCycle), { from: 'half_open', to: 'closed', why: 'probe_ok' })
  t.equal(b.snapshot(23_500).ejections, 5, 'the streak is remembered for a while')
  t.same(b.failed(23_600, false, 'refused')?.coolDownMs, 8_000, 'so a relapse soon after gets the long cool-down')
})

t.test('the ejection streak is forgotten once new stayed healthy for maxEjection', async (t) => {
  const b = new Breaker(policy({ consecutiveFailures: 1 }))
  b.failed(0, false, 'refused')
  b.admit(1_000)
  b.succeeded(1_000, b.probeCycle)
  t.same(b.failed(9_000, false, 'refused')?.coolDownMs, 1_000)
})

t.test('an abandoned probe frees its slot; answers to requests sent before the ejection change nothing', async (t) => {
  const b = new Breaker(policy({ consecutiveFailures: 1 }))
  b.failed(0, false, 'refused')
  t.equal(b.succeeded(10, false), null, 'a late success while open')
  t.equal(b.state, 'open')
  b.admit(1_000)
  b.abandoned(b.probeCycle)
  t.equal(b.admit(1_001)[0], 'probe', 'the slot is free again')
})

t.test('with several probes, a verdict from an earlier half-open period changes nothing', async (t) => {
  const b = new Breaker(policy({ consecutiveFailures: 1, probes: 2 }))
  b.failed(0, false, 'refused')
  b.admit(1_000)
  const slow = b.probeCycle // a probe that will answer late
  b.admit(1_000)
  b.failed(1_100, b.probeCycle, 'refused') // the other probe fails: ejected again (2 s)
  t.equal(b.state, 'open')
  b.admit(3_100) // half-open again
  t.equal(b.succeeded(3_200, slow), null, 'the late success of the first period does not close the breaker')
  t.equal(b.state, 'half_open')
  t.equal(b.admit(3_300)[0], 'probe', 'nor does it take or free a slot of this period')
  t.equal(b.admit(3_300)[0], 'ejected', 'two probes at once, as configured')
})
