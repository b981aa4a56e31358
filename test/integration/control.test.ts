import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AuditLog, type AuditEntry } from '../../src/adapters/audit-log.js'
import type { RouteView } from '../../src/control/route-view.js'
import { parseConfig } from '../../src/config/load-config.js'
import { statusCommand } from '../../src/commands/control.js'
import { admin, audit, routes, type Json } from '../helpers/admin.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'

/** legacy and new upstreams, and a routes.yaml for them: `orders` (legacy), `rest` (new). */
async function upstreamsDoc(t: Parameters<typeof startUpstream>[0], extra: Record<string, unknown> = {}) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const doc = {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0, shadow: 0 }, { name: 'rest', match: { path: '/*' }, new: 100 }],
    ...extra
  }
  return { legacy, next, doc }
}

async function setup(t: Parameters<typeof startUpstream>[0], extra: Record<string, unknown> = {}) {
  const { legacy, next, doc } = await upstreamsDoc(t, extra)
  const f = await startTestFicus(t, doc)
  const servedBy = async (path: string, user = 'u1'): Promise<string> => (await f.fetch(path, { headers: { 'x-user-id': user } })).headers['x-served-by'] as string
  return { legacy, next, f, doc, servedBy }
}

type Rig = Awaited<ReturnType<typeof setup>>

/** The canary of the PATCH tests: orders to new 100 %, shadow 25 %. */
const canary = async (f: Rig['f']) => admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 100, shadow: 25, reason: 'canary' } })

t.test('PATCH changes a route for the very next request, and its gauges', async (t) => {
  const { f, servedBy } = await setup(t)
  t.equal(await servedBy('/orders/1'), 'legacy')
  const r = await canary(f)
  t.equal(r.status, 200)
  t.match(r.body.route, { name: 'orders', new: { value: 100, source: 'override', file: 0 }, shadow: { value: 25, source: 'override', file: 0 } })
  t.equal(await servedBy('/orders/1'), 'new', 'the next request')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'orders' }), 100)
  t.equal(sample(m, 'ficus_route_shadow_percent', { route: 'orders' }), 25)
})

t.test('GET /admin/routes lists every route in order, with who last changed it, how and why', async (t) => {
  const { f } = await setup(t)
  await canary(f)
  const list = await routes(f)
  t.match(list.find((x) => x.name === 'orders')?.lastChange, { who: 'local', action: 'set', before: { new: 0, shadow: 0 }, after: { new: 100, shadow: 25 }, reason: 'canary' })
  t.same(list.map((x) => x.name), ['orders', 'rest', 'default'])
})

t.test('PATCH with null clears a share back to routes.yaml, for the very next request', async (t) => {
  const { f, servedBy } = await setup(t)
  await canary(f)
  t.match((await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: null } })).body.route, { new: { value: 0, source: 'file' }, shadow: { value: 25, source: 'override' } })
  t.equal(await servedBy('/orders/1'), 'legacy')
})

t.test('bad changes are refused whole, with every problem', async (t) => {
  const { f } = await setup(t)
  t.match(await admin(f, 'PATCH', '/admin/routes/nope', { json: { new: 5 } }), { status: 404, body: { code: 'FICUS_ERR_UNKNOWN_ROUTE', detail: /no route named "nope"/ } })
  const bad = await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 5.5, shadow: 101, color: 'red' } })
  t.equal(bad.status, 400)
  t.equal(bad.body.code, 'FICUS_ERR_BAD_ADMIN_REQUEST')
  t.match(bad.body.detail, /unknown field "color".*new must be an integer from 0 to 100.*shadow must be a number from 0 to 100/)
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { json: {} }), { status: 400, body: { detail: /nothing to change/ } })
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { body: '{"new": 5', headers: { 'content-type': 'application/json' } }), { status: 400, body: { code: 'FICUS_ERR_BAD_ADMIN_REQUEST' } })
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { body: 'new=5', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), { status: 415, body: { code: 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE' } })
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { body: '{"new": 5}', headers: { 'content-type': 'text/plain' } }), { status: 415 })
  t.match(await admin(f, 'POST', '/admin/rollback', { json: { route: 'orders', everything: true } }), { status: 400, body: { detail: /unknown field "everything"/ } })
  t.ok((await routes(f)).every((r) => r.new.source === 'file' && r.shadow.source === 'file'), 'nothing changed')
  t.same(await audit(f), [], 'and nothing audited')
})

/** The rollbacks of the rollback tests: rest, then every route, then every route again. */
async function rollbacks(f: Rig['f']) {
  const one = await admin(f, 'POST', '/admin/rollback', { json: { route: 'rest', reason: 'errors up' } })
  const all = await admin(f, 'POST', '/admin/rollback')
  const again = await admin(f, 'POST', '/admin/rollback', { json: {} })
  return { one, all, again }
}

t.test('a rollback of one route sends its very next request to legacy', async (t) => {
  const { f, servedBy } = await setup(t)
  t.equal(await servedBy('/x'), 'new')
  t.match(await admin(f, 'POST', '/admin/rollback', { json: { route: 'rest', reason: 'errors up' } }), { status: 200, body: { routes: [{ name: 'rest', new: { value: 0, source: 'override' } }] } })
  t.equal(await servedBy('/x'), 'legacy')
})

t.test('a rollback with no route takes every route to 0 %, and is idempotent', async (t) => {
  const { f } = await setup(t)
  const { all, again } = await rollbacks(f)
  t.same((all.body.routes as RouteView[]).map((r) => [r.name, r.new.value]), [['orders', 0], ['rest', 0], ['default', 0]])
  t.equal(again.status, 200, 'again: still fine')
})

t.test('every rollback of a route is counted in ficus_rollbacks_total, as manual', async (t) => {
  const { f } = await setup(t)
  await rollbacks(f)
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_rollbacks_total', { route: 'rest', trigger: 'manual' }), 3)
})

t.test('rollbacks are audited per route, newest first', async (t) => {
  const { f } = await setup(t)
  await rollbacks(f)
  const latest = await audit(f, '?limit=2')
  t.equal(latest.length, 2)
  t.match(latest[0], { action: 'rollback', who: 'local', route: 'default' })
})

/** Ficus with a state file, after a set (orders 42 %, "ramp") and a rollback (rest). */
async function changed(t: Test) {
  const dir = t.testdir()
  const state = join(dir, 'state.json')
  const rig = await setup(t, { state })
  await admin(rig.f, 'PATCH', '/admin/routes/orders', { json: { new: 42, reason: 'ramp' } })
  await admin(rig.f, 'POST', '/admin/rollback', { json: { route: 'rest' } })
  return { ...rig, dir, state }
}

t.test('changes are written to the state file and its audit log as they are made', async (t) => {
  const { dir, state } = await changed(t)
  const saved = JSON.parse(await readFile(state, 'utf8')) as Json
  t.match(saved, { version: 1, routes: { orders: { new: 42 }, rest: { new: 0 } } })
  const auditLines = (await readFile(join(dir, 'state.audit.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditEntry)
  t.same(auditLines.map((e) => [e.action, e.route]), [['set', 'orders'], ['rollback', 'rest']])
})

t.test('changes survive a restart through the state file', async (t) => {
  const { f, doc } = await changed(t)
  await f.running.stop()
  const again = await startTestFicus(t, doc)
  const restored = await routes(again)
  t.match(restored.find((r) => r.name === 'orders'), { new: { value: 42, source: 'override' }, lastChange: { reason: 'ramp' } })
  t.match(restored.find((r) => r.name === 'rest'), { new: { value: 0, source: 'override' } })
  t.equal((await again.fetch('/x')).headers['x-served-by'], 'legacy', 'the rollback held')
})

t.test('a corrupt state file stops start-up and says how to reset it', async (t) => {
  const state = join(t.testdir(), 'state.json')
  const { doc } = await upstreamsDoc(t, { state })
  await writeFile(state, '{"version": 1, "routes": {"orders": {"new": 4')
  await t.rejects(startTestFicus(t, doc), { code: 'FICUS_ERR_STATE_INVALID', message: /not valid JSON.*--reset-state/ })
  await writeFile(state, '{"version": 1, "routes": {"orders": {"new": 400}}}')
  await t.rejects(startTestFicus(t, doc), { message: /routes\.orders\.new is 400, not a percentage/ })
})

t.test('a state file that cannot be written: 503, and nothing changes', async (t) => {
  const dir = t.testdir()
  const state = join(dir, 'gone', 'state.json')
  await mkdir(join(dir, 'gone'))
  const { f, servedBy } = await setup(t, { state })
  await rm(join(dir, 'gone'), { recursive: true })
  const r = await admin(f, 'POST', '/admin/rollback', { json: { route: 'rest' } })
  t.match(r, { status: 503, body: { code: 'FICUS_ERR_STATE_WRITE', detail: /ENOENT.*nothing was changed/ } })
  t.equal(await servedBy('/x'), 'new', 'still on new')
})

/** Ficus with named tokens alice and bob; the calls of the token tests: two refused changes, a refused read, a change by bob. */
async function namedTokens(t: Parameters<typeof setup>[0]) {
  const { f } = await setup(t, { admin: { host: '127.0.0.1', port: 0, tokens: { alice: 'tok-alice', bob: 'tok-bob' } } })
  const calls = {
    noToken: await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 5 } }),
    wrongToken: await admin(f, 'POST', '/admin/rollback', { json: {}, token: 'nope' }),
    read: await admin(f, 'GET', '/admin/routes'),
    bob: await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 5 }, token: 'tok-bob' })
  }
  return { f, calls }
}

t.test('named tokens: a change or a read without a valid token is refused with 401', async (t) => {
  const { calls } = await namedTokens(t)
  t.match(calls.noToken, { status: 401, body: { code: 'FICUS_ERR_UNAUTHORIZED' } })
  t.match(calls.wrongToken, { status: 401 })
  t.equal(calls.read.status, 401, 'reads need the token too')
  t.equal(calls.bob.status, 200)
})

t.test('named tokens: the audit names who made each change, and records refused changes', async (t) => {
  const { f } = await namedTokens(t)
  t.match(await audit(f, '', { token: 'tok-alice' }), [
    { who: 'bob', action: 'set', route: 'orders', after: { new: 5 } },
    { who: 'unauthenticated', action: 'refused', detail: /^POST \/admin\/rollback from 127\.0\.0\.1$/ },
    { who: 'unauthenticated', action: 'refused', detail: /^PATCH \/admin\/routes\/orders/ }
  ])
})

t.test('Ficus refuses to start with the admin API on a non-loopback address and no token', async (t) => {
  const yaml = 'version: 1\nadmin: { host: 0.0.0.0 }\nupstreams: { legacy: { url: "http://127.0.0.1:1" }, new: { url: "http://127.0.0.1:2" } }\nsticky: ip\nroutes: []\n'
  t.throws(() => parseConfig(yaml, 'x.yaml', {}), { message: /admin\.host: 0\.0\.0\.0 is not a loopback address: set admin\.token/ })
  t.doesNotThrow(() => parseConfig(yaml.replace('host: 0.0.0.0', 'host: 0.0.0.0, token: s3cret'), 'x.yaml', {}))
  t.throws(() => parseConfig(yaml.replace('host: 0.0.0.0', 'host: 0.0.0.0, token: "${T:-}"'), 'x.yaml', {}), 'an empty token is no token')
})

t.test('the audit log file rotates by size and reads its latest entries back', async (t) => {
  const file = join(t.testdir(), 'a.audit.jsonl')
  const log = await AuditLog.open(file, 400)
  for (let i = 0; i < 10; i++) await log.append({ time: `t${i}`, who: 'x', action: 'set', route: 'r', reason: `n${i}` })
  await log.close()
  t.ok((await readdir(t.testdirName)).includes('a.audit.jsonl.1'), 'rotated')
  const reopened = await AuditLog.open(file, 400)
  t.equal(reopened.latest(1)[0]?.reason, 'n9', 'the newest entry is read back')
  await reopened.close()
})

t.test('audit appends from concurrent callers are serialized, across rotations', async (t) => {
  const file = join(t.testdir(), 'c.audit.jsonl')
  const log = await AuditLog.open(file, 300)
  await Promise.all(Array.from({ length: 40 }, async (_, i) => log.append({ time: `t${i}`, who: 'x', action: 'refused', route: null, reason: null, detail: `n${i}` })))
  await log.close()
  const names = (await readdir(t.testdirName)).filter((n) => n.startsWith('c.audit.jsonl'))
  t.ok(names.length > 1, 'rotated')
  const reopened = await AuditLog.open(file, 300)
  t.equal(reopened.latest(1)[0]?.detail, 'n39', 'in order, the last one last')
  await reopened.close()
})

t.test('ficus status: requests/s per backend over the sampling window, from two reads of /metrics', async (t) => {
  const { f } = await setup(t)
  await f.fetch('/orders/0') // before the window: not counted
  // The window is the `wait` between the two reads: 4 requests to legacy (orders) and 2 to new (rest) inside it, over 0.5 s.
  const out = await statusCommand({ url: f.adminUrl, token: undefined }, true, 500, async () => {
    for (let i = 0; i < 4; i++) await f.fetch(`/orders/${i}`)
    for (let i = 0; i < 2; i++) await f.fetch(`/page/${i}`)
  })
  const routes = (JSON.parse(out) as { routes: { name: string; requestsPerSecond: { legacy: number; new: number } }[] }).routes
  t.same(routes.find((r) => r.name === 'orders')?.requestsPerSecond, { legacy: 8, new: 0 })
  t.same(routes.find((r) => r.name === 'rest')?.requestsPerSecond, { legacy: 0, new: 4 })
})
