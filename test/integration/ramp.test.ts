import t from 'tap'
import { admin, audit } from '../helpers/admin.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { waitFor } from '../helpers/wait.js'
import { load, rampDoc, rampOf, rampUntil, rampUpstreams, startRamp, testPlan } from '../helpers/ramp-rig.js'

/**
 * The ramp (docs/ramp.md) on real upstreams whose behaviour changes mid-ramp: it advances
 * only on evidence, fails with the gate that failed, holds without data, pauses for a
 * person's change, and explains itself.
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
  const traffic = load(f.url, 16)
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
  const traffic = load(f.url, 16)
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

t.test('too little traffic holds, and the status says what is missing', async (t) => {
  const rig = await rampUpstreams(t)
  const f = await startTestFicus(t, rampDoc(rig, t.testdir()))
  await startRamp(t, f)
  // A handful of requests: far from what the gates need.
  for (let i = 0; i < 20; i++) await f.fetch(`/api/items/${i}`, { headers: { 'x-user-id': `few${i}` } })
  const v = await rampUntil(f, (x) => x.evaluation !== null && x.heldSeconds !== null && x.evaluation.gates.some((g) => g.n > 0), 'see the few requests')
  t.equal(v.phase, 'running')
  t.equal(v.step, 1, 'still at the first step')
  t.equal(v.evaluation!.action, 'hold')
  t.match(v.text, /verdict: hold: needs/)
  t.match(v.text, /divergence +hold .*about [\d,]+ more would show it is under/)
  t.match(v.text, /errors +hold/)
  // The driver's next round publishes the same in the metrics.
  const metrics = await waitFor(async () => {
    const text = await f.scrape()
    return sample(text, 'ficus_ramp_gate_observed', { route: 'items', gate: 'divergence' }) === 0 ? text : null
  }, { timeoutMs: 10_000, message: 'the divergence gate\'s observed value did not reach /metrics' })
  t.equal(sample(metrics, 'ficus_ramp_step_percent', { route: 'items' }), 1)
  t.equal(sample(metrics, 'ficus_ramp_gate_verdict', { route: 'items', gate: 'divergence' }), 0, 'hold')
  t.equal(sample(metrics, 'ficus_ramp_gate_threshold', { route: 'items', gate: 'divergence' }), 0.05)
})

t.test('a person changing the route pauses the ramp, which then leaves their change alone', async (t) => {
  const rig = await rampUpstreams(t)
  const f = await startTestFicus(t, rampDoc(rig, t.testdir(), testPlan({ steps: [{ new: 10, hold: '1h' }, { new: 100 }] })))
  await startRamp(t, f)
  const set = await admin(f, 'PATCH', '/admin/routes/items', { json: { new: 3, reason: 'too hot' } })
  t.equal(set.status, 200)
  const paused = await rampUntil(f, (v) => v.phase === 'paused', 'pause')
  t.equal(paused.by, 'local')
  t.match(paused.reason, /local set new to 3 % by hand/)
  // Rounds later (the step's clock goes on), the person's 3 % stands.
  await rampUntil(f, (v) => v.heldSeconds !== null && v.heldSeconds >= 1, 'go on for a second')
  t.equal(sample(await f.scrape(), 'ficus_route_new_percent', { route: 'items' }), 3, 'not overwritten')
  // Resumed: the step is applied again, and judged afresh.
  const resumed = await admin(f, 'POST', '/admin/ramp/items/resume', { json: { reason: 'cooled down' } })
  t.equal(resumed.status, 200, resumed.text)
  t.match(resumed.body, { phase: 'running', percent: 10, stepRequests: 0 })
  t.equal(sample(await f.scrape(), 'ficus_route_new_percent', { route: 'items' }), 10)
  // A rollback by hand pauses it too.
  await admin(f, 'POST', '/admin/rollback', { json: { route: 'items', reason: 'incident' } })
  const again = await rampUntil(f, (v) => v.phase === 'paused', 'pause after a rollback')
  t.match(again.reason, /rolled it back by hand/)
})

t.test('the admin API: commands checked against the ramp\'s phase, each audited with its caller', async (t) => {
  const rig = await rampUpstreams(t)
  const doc = rampDoc(rig, t.testdir(), testPlan({ steps: [{ new: 10, hold: '1h' }, { new: 50, hold: '1h' }, { new: 100 }] }))
  const f = await startTestFicus(t, { ...doc, routes: [...(doc.routes as object[]), { name: 'other', match: { path: '/other/*' }, new: 0 }] })
  const post = async (path: string, json: Record<string, unknown> = {}) => admin(f, 'POST', `/admin/ramp/${path}`, { json })
  t.match(await post('other/start'), { status: 409, body: { code: 'FICUS_ERR_RAMP_NO_PLAN' } })
  t.match(await post('nope/start'), { status: 404, body: { code: 'FICUS_ERR_UNKNOWN_ROUTE' } })
  t.match(await post('items/pause'), { status: 409, body: { code: 'FICUS_ERR_RAMP_STATE', detail: /no ramp in progress/ } })
  t.match(await post('items/jump'), { status: 400, body: { code: 'FICUS_ERR_BAD_ADMIN_REQUEST', detail: /unknown ramp command "jump"/ } })
  t.match(await post('items/start', { reason: 7 }), { status: 400, body: { detail: /reason/ } })
  t.match(await post('items/start', { force: true }), { status: 400, body: { detail: /unknown field "force"/ } })
  t.match(await post('items/start', { reason: 'go' }), { status: 200, body: { phase: 'running', step: 1, percent: 10 } })
  t.match(await post('items/start'), { status: 409, body: { code: 'FICUS_ERR_RAMP_STATE', detail: /already ramping/ } })
  t.match(await post('items/advance'), { status: 400, body: { detail: /advance needs "force": true/ } })
  t.match(await post('items/hold', { reason: 'watch it' }), { status: 200, body: { phase: 'holding' } })
  t.match(await post('items/hold'), { status: 409, body: { detail: /already holds/ } })
  t.match(await post('items/advance', { force: true, reason: 'customer asked' }), { status: 200, body: { phase: 'running', step: 2, percent: 50 } })
  t.equal(sample(await f.scrape(), 'ficus_route_new_percent', { route: 'items' }), 50)
  t.match(await post('items/pause'), { status: 200, body: { phase: 'paused' } })
  t.match(await post('items/resume'), { status: 200, body: { phase: 'running', step: 2 } })
  t.match(await post('items/abort', { reason: 'changed our minds' }), { status: 200, body: { phase: 'aborted', percent: 0 } })
  t.equal(sample(await f.scrape(), 'ficus_route_new_percent', { route: 'items' }), 0)
  t.match(await post('items/resume'), { status: 409 })
  t.match(await post('items/start'), { status: 200, body: { phase: 'running', step: 1 } }, 'an aborted ramp starts again from its first step')
  const all = await admin(f, 'GET', '/admin/ramp')
  t.same((all.body.ramps as { route: string }[]).map((r) => r.route), ['items'])
  const entries = (await audit(f, '?limit=100')).filter((e) => e.action.startsWith('ramp-'))
  t.same(entries.map((e) => e.action).reverse(), ['ramp-start', 'ramp-hold', 'ramp-advance', 'ramp-pause', 'ramp-resume', 'ramp-abort', 'ramp-start'])
  t.match(entries.find((e) => e.action === 'ramp-advance'), { who: 'local', reason: 'customer asked', detail: /holding, step 1 of 3, new 10 % → running, step 2 of 3, new 50 %/ })
})

t.test('a restart mid-step resumes the ramp where it was: same step, same clock, the route as it was', async (t) => {
  const rig = await rampUpstreams(t)
  const dir = t.testdir()
  const doc = rampDoc(rig, dir, testPlan({ steps: [{ new: 5, hold: '200ms' }, { new: 25, hold: '1h' }, { new: 100 }] }))
  const first = await startTestFicus(t, doc)
  const traffic = load(first.url)
  t.teardown(async () => { await traffic.stop() })
  await startRamp(t, first)
  const before = await rampUntil(first, (v) => v.percent === 25, 'reach step 2')
  await traffic.stop()
  await first.running.stop()
  const second = await startTestFicus(t, doc)
  const after = await rampOf(second)
  t.match(after, { phase: 'running', step: 2, percent: 25, stepStartedAt: before.stepStartedAt }, 'the record survived, the step\'s clock with it')
  t.equal(sample(await second.scrape(), 'ficus_route_new_percent', { route: 'items' }), 25, 'the route as the ramp left it (the state file)')
  t.equal(sample(await second.scrape(), 'ficus_ramp_step_percent', { route: 'items' }) ?? 25, 25)
  // It goes on from there: a forced advance completes it on the restarted Ficus.
  t.match(await admin(second, 'POST', '/admin/ramp/items/advance', { json: { force: true } }), { status: 200, body: { step: 3, percent: 100 } })
  t.same(after.history.map((h) => h.action), ['start', 'advance'])
})
