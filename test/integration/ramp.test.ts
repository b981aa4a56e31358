import { join } from 'node:path'
import t from 'tap'
import { admin, audit } from '../helpers/admin.js'
import { startCatalog } from '../helpers/catalog.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { waitFor } from '../helpers/wait.js'
import { load, nextRound, rampDoc, rampOf, rampUntil, rampUpstreams, startRamp, testPlan } from '../helpers/ramp-rig.js'

/**
 * The ramp's control (docs/ramp.md "Operating a ramp"): it holds without data and says what
 * is missing, pauses for a person's change, takes commands checked against its phase, and
 * survives a restart. The gates deciding on real traffic are in ramp-gates.test.ts.
 */

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
  // Two rounds later, the person's 3 % stands.
  await nextRound(f)
  await nextRound(f)
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
  await waitFor(async () => sample(await second.scrape(), 'ficus_ramp_step_percent', { route: 'items' }) === 25, { message: 'the restarted Ficus did not publish the ramp\'s step' })
  // It goes on from there: a forced advance completes it on the restarted Ficus.
  t.match(await admin(second, 'POST', '/admin/ramp/items/advance', { json: { force: true } }), { status: 200, body: { step: 3, percent: 100 } })
  t.same(after.history.map((h) => h.action), ['start', 'advance'])
})

t.test('a person\'s change after a ramp ended stands across a restart; the ended ramp does not undo it', async (t) => {
  const rig = await rampUpstreams(t)
  const dir = t.testdir()
  const doc = rampDoc(rig, dir, testPlan({ steps: [{ new: 10, hold: '1h' }, { new: 100 }] }))
  const first = await startTestFicus(t, doc)
  await startRamp(t, first)
  t.match(await admin(first, 'POST', '/admin/ramp/items/abort', { json: { reason: 'not now' } }), { status: 200, body: { phase: 'aborted', percent: 0 } })
  t.equal((await admin(first, 'PATCH', '/admin/routes/items', { json: { new: 40, reason: 'by hand' } })).status, 200)
  await first.running.stop()
  const second = await startTestFicus(t, doc)
  // Two rounds go by (following the records among them): the aborted ramp's 0 % is not applied over the person's 40 %.
  await nextRound(second)
  await nextRound(second)
  t.equal(sample(await second.scrape(), 'ficus_route_new_percent', { route: 'items' }), 40)
  t.match(await rampOf(second), { phase: 'aborted' })
})

t.test('a step longer than its window counts every request on new, once: it advances at its minRequests, not before', async (t) => {
  const rig = await rampUpstreams(t)
  // shadow: 0, so every request new receives is one a user sent to new; the window is 300 ms, the step takes longer.
  const doc = rampDoc(rig, t.testdir(), testPlan({ window: '300ms', steps: [{ new: 50, hold: '0s', minRequests: 600 }, { new: 100, hold: '1h' }], gates: {} }))
  const f = await startTestFicus(t, { ...doc, routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 0, ramp: 'canary' }] })
  await startRamp(t, f)
  let atAdvance = -1
  const traffic = load(f.url, 2)
  t.teardown(async () => { await traffic.stop() })
  const done = await rampUntil(f, (v) => {
    if (v.step === 2 && atAdvance < 0) atAdvance = rig.next.requests.length
    return v.step === 2
  }, 'advance', 60_000)
  await traffic.stop()
  t.equal(done.percent, 100)
  t.ok(atAdvance >= 600, `advanced after ${atAdvance} requests on new (minRequests 600)`)
  const startedAt = Date.parse(done.history[0]!.at)
  const advancedAt = Date.parse(done.history[1]!.at)
  t.ok(advancedAt - startedAt > 600, `the step lasted ${advancedAt - startedAt} ms, more than two 300 ms windows`)
})

t.test('a step that requires a clean verify waits for one: none holds, a run with differences holds, a clean run lets it advance', async (t) => {
  const records = Array.from({ length: 50 }, (_, i) => ({ id: String(1000 + i), title: `item ${i}` }))
  const legacy = await startCatalog(t, records, { paging: 'cursor', pageSize: 20 })
  const next = await startCatalog(t, records.map((r, i) => (i === 7 ? { ...r, title: 'changed' } : r)), { paging: 'cursor', pageSize: 20 })
  const dir = t.testdir()
  const f = await startTestFicus(t, {
    state: join(dir, 'state.json'),
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 0, ramp: 'canary' }],
    verify: { items: { route: 'items', list: { path: '/api/items', items: 'body.items', id: 'id', next: 'body.next_cursor', cursorParam: 'cursor', query: { limit: '20' } }, get: '/api/items/:id', rate: '10000/s' } },
    ramp: { evaluateEvery: '100ms', plans: { canary: { steps: [{ new: 50, hold: '0s' }, { new: 100, require: ['verify'] }], gates: { verify: { job: 'items' } } } } }
  })
  await startRamp(t, f)
  const waiting = await rampUntil(f, (v) => v.driver !== null && (v.evaluation?.gates.length ?? 0) > 0, 'be judged')
  t.match(waiting, { step: 1, phase: 'running' })
  t.match(waiting.evaluation!.gates.find((g) => g.gate === 'verify'), { verdict: 'hold', why: /no run of job items by this Ficus yet/ })
  const run = async (): Promise<void> => {
    t.equal((await admin(f, 'POST', '/admin/verify/items/run', { json: {} })).status, 202)
    await waitFor(async () => (await admin(f, 'GET', '/admin/verify/items')).body.running === null, { message: 'the verify run did not end' })
  }
  await run()
  const differs = await rampUntil(f, (v) => v.evaluation?.gates.find((g) => g.gate === 'verify')?.why.includes('differed') === true, 'see the run with a difference')
  t.equal(differs.step, 1, 'still at step 1')
  next.records.set('1007', records[7]!) // fixed on new
  await run()
  const done = await rampUntil(f, (v) => v.step === 2, 'advance after a clean verify')
  t.equal(done.percent, 100)
  t.match(done.history.at(-1)!.gates.find((g) => g.gate === 'verify'), { verdict: 'pass', n: 50 })
})

t.test('the requests on new right after a start count for the step (the trip-wire and the gates see them), before the controller\'s next round', async (t) => {
  const rig = await rampUpstreams(t)
  const plan = testPlan({ steps: [{ new: 50, hold: '1h', minRequests: 10_000 }, { new: 100 }] })
  const doc = rampDoc(rig, t.testdir(), plan)
  const f = await startTestFicus(t, { ...doc, ramp: { evaluateEvery: '1s', plans: { canary: plan } } })
  // Two rounds with no ramp under way: the controller reads no counters for the route any more.
  await nextRound(f)
  await nextRound(f)
  await startRamp(t, f)
  let onNew = 0
  for (let i = 0; i < 40; i++) {
    const r = await f.fetch(`/api/items/${i}`, { headers: { 'x-user-id': `early${i}` } })
    if (r.headers['x-served-by'] === 'new') onNew++
  }
  t.ok(onNew > 0, `some went to new (${onNew} of 40)`)
  await nextRound(f)
  const v = await nextRound(f)
  t.equal(v.stepRequests, onNew, 'every request on new since the start is the step\'s')
})
