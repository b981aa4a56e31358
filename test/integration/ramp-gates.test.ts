import t from 'tap'
import { audit } from '../helpers/admin.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { load, rampDoc, rampOf, rampUntil, rampUpstreams, startRamp, testPlan } from '../helpers/ramp-rig.js'

/**
 * The ramp's gates (docs/ramp.md) on real upstreams whose behaviour changes mid-ramp: it
 * advances only on evidence, and fails with the gate that failed. The ramp's control (holds,
 * commands, people's changes, restarts) is in ramp.test.ts.
 */

t.test('a clean new advances through every step to 100 %, each transition audited with its gates', async (t) => {
  const rig = await rampUpstreams(t)
  const f = await startTestFicus(t, rampDoc(rig, t.testdir()))
  t.match(await rampOf(f), { phase: 'none', plan: 'canary', step: null }, 'configured, not started')
  const traffic = load(f.url)
  t.teardown(async () => { await traffic.stop() })
  await startRamp(t, f)
  const done = await rampUntil(f, (v) => v.phase === 'completed', 'complete', 90_000)
  await traffic.stop()
  t.equal(done.percent, 100)
  const advances = done.history.filter((h) => h.action === 'advance')
  t.equal(advances.length, 6, 'five advances and the completion')
  for (const a of advances) t.ok(a.gates.length >= 3 && a.gates.every((g) => g.verdict === 'pass'), `every gate passed: ${JSON.stringify(a.gates.map((g) => [g.gate, g.verdict]))}`)
  const entries = (await audit(f, '?limit=200')).filter((e) => e.route === 'items')
  t.equal(entries.filter((e) => e.action === 'ramp-advance').length, 6, 'each advance is in the audit log')
  t.ok(entries.filter((e) => e.action === 'ramp-advance').every((e) => (e.gates ?? []).length >= 3), 'with its gates')
  t.same(entries.filter((e) => e.action === 'set' && e.who === 'ramp').map((e) => e.after?.new).reverse(), [1, 5, 10, 25, 50, 100], 'each step applied like ficus set, in order')
  const metrics = await f.scrape()
  t.equal(sample(metrics, 'ficus_ramp_step_percent', { route: 'items' }), 100)
  t.equal(sample(metrics, 'ficus_ramp_state', { route: 'items', state: 'completed' }), 1)
  t.equal(sample(metrics, 'ficus_route_new_percent', { route: 'items' }), 100)
  t.equal(sample(metrics, 'ficus_ramp_transitions_total', { route: 'items', to: 'completed', reason: 'advance' }), 1)
  t.equal((await f.fetch('/api/items/1', { headers: { 'x-user-id': 'anyone' } })).headers['x-served-by'], 'new', 'new answers everyone')
  t.same([...traffic.statuses.keys()], [200], 'no user saw an error')
})

t.test('a new whose error rate degrades at 25 % is rolled back, with the errors gate named, and counted as a ramp rollback', async (t) => {
  const rig = await rampUpstreams(t)
  // No divergence gate: new's 500s would diverge from legacy's 200s first.
  const f = await startTestFicus(t, rampDoc(rig, t.testdir(), testPlan({ gates: { errors: { maxIncrease: '10pp' } } })))
  const traffic = load(f.url)
  t.teardown(async () => { await traffic.stop() })
  await startRamp(t, f)
  await rampUntil(f, (v) => v.percent === 25, 'reach 25 %')
  rig.behave.fail = 0.35 // under the trip-wire's 50 %: the errors gate decides
  const failed = await rampUntil(f, (v) => v.phase === 'rolled_back', 'roll back')
  t.equal(failed.percent, 0)
  const fail = failed.history.at(-1)!
  t.equal(fail.action, 'fail')
  t.match(fail.reason, /errors: new [\d.]+ % of [\d,]+, legacy 0\.0 % of/, `the reason names the errors gate: ${fail.reason}`)
  t.match(fail.gates.find((g) => g.gate === 'errors'), { verdict: 'fail' })
  t.equal((await f.fetch('/api/items/1', { headers: { 'x-user-id': 'anyone' } })).headers['x-served-by'], 'legacy', 'legacy answers again')
  const metrics = await f.scrape()
  t.equal(sample(metrics, 'ficus_rollbacks_total', { route: 'items', trigger: 'ramp' }), 1)
  t.equal(sample(metrics, 'ficus_ramp_state', { route: 'items', state: 'rolled_back' }), 1)
  t.match(failed.text, /ROLLED BACK/)
})

t.test('a new whose answers diverge at 25 % is paused (onFail: pause), with the divergence gate named', async (t) => {
  const rig = await rampUpstreams(t)
  const f = await startTestFicus(t, rampDoc(rig, t.testdir(), testPlan({ onFail: 'pause' })))
  const traffic = load(f.url)
  t.teardown(async () => { await traffic.stop() })
  await startRamp(t, f)
  await rampUntil(f, (v) => v.percent === 25, 'reach 25 %')
  rig.behave.diverge = 0.3
  const paused = await rampUntil(f, (v) => v.phase === 'paused', 'pause')
  t.equal(paused.percent, 25, 'pausing keeps the step: a person decides')
  t.match(paused.history.at(-1), { action: 'fail', by: 'ramp' })
  t.match(paused.reason, /diverged/)
  t.match(paused.history.at(-1)!.gates.find((g) => g.gate === 'divergence'), { verdict: 'fail' })
  await traffic.stop()
  t.equal(sample(await f.scrape(), 'ficus_route_new_percent', { route: 'items' }), 25)
})

t.test('a new that turns slow at 25 % fails the paired latency gate', async (t) => {
  const rig = await rampUpstreams(t)
  const f = await startTestFicus(t, rampDoc(rig, t.testdir()))
  const traffic = load(f.url, 8)
  t.teardown(async () => { await traffic.stop() })
  await startRamp(t, f)
  await rampUntil(f, (v) => v.percent === 25, 'reach 25 %')
  rig.behave.delayMs = 120
  const failed = await rampUntil(f, (v) => v.phase === 'rolled_back', 'roll back')
  const slower = failed.history.at(-1)!.gates.find((g) => g.gate === 'latency_slower')
  t.match(slower, { verdict: 'fail' }, JSON.stringify(failed.history.at(-1)))
  t.match(failed.history.at(-1)!.reason, /paired requests had new slower by more than 50 ms/)
})

t.test('a zero-error baseline with a failing new fails at the first step; it does not pass for want of legacy errors', async (t) => {
  const rig = await rampUpstreams(t)
  rig.behave.fail = 0.25
  const f = await startTestFicus(t, rampDoc(rig, t.testdir(), testPlan({ gates: { errors: { maxIncrease: '5pp' } }, tripwire: { failureShare: '90%', minRequests: 20 } })))
  const traffic = load(f.url, 8)
  t.teardown(async () => { await traffic.stop() })
  await startRamp(t, f)
  const failed = await rampUntil(f, (v) => v.phase === 'rolled_back', 'fail', 60_000)
  const last = failed.history.at(-1)!
  t.equal(last.action, 'fail')
  t.equal(failed.step, 1, 'at the first step')
  const errors = last.gates.find((g) => g.gate === 'errors')!
  t.equal(errors.verdict, 'fail')
  t.ok(errors.n > 0 && errors.observed! > 0.05, `observed ${errors.observed} over ${errors.n}`)
  t.notOk(failed.history.some((h) => h.action === 'advance'), 'never advanced')
})

t.test('a new failing most of a few requests trips the wire: rolled back at once, without waiting for statistics', async (t) => {
  const rig = await rampUpstreams(t)
  // A plan whose gates cannot decide for a long while: only the trip-wire can act.
  const f = await startTestFicus(t, rampDoc(rig, t.testdir(), testPlan({ steps: [{ new: 50, hold: '1h' }, { new: 100 }], gates: {} })))
  await startRamp(t, f)
  rig.behave.fail = 1
  const traffic = load(f.url, 4)
  t.teardown(async () => { await traffic.stop() })
  const tripped = await rampUntil(f, (v) => v.phase === 'rolled_back', 'trip')
  await traffic.stop()
  t.match(tripped.history.at(-1), { action: 'trip', by: 'ramp' })
  t.match(tripped.history.at(-1)!.reason, /trip-wire: new failed \d+ of \d+ requests/)
  t.equal(sample(await f.scrape(), 'ficus_rollbacks_total', { route: 'items', trigger: 'ramp' }), 1)
  t.equal((await f.fetch('/api/items/1', { headers: { 'x-user-id': 'anyone' } })).headers['x-served-by'], 'legacy')
})
