import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { Upstream } from '../../src/adapters/upstreams.js'
import { nextQueued, sample, startTestFicus, testYaml } from '../helpers/ficus.js'
import { held, startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

type Teardown = Parameters<typeof startUpstream>[0] & { testdir(): string }

/** Ficus started from a real file, which the test rewrites and reloads. */
async function fromFile(t: Teardown, doc: Record<string, unknown>) {
  const file = join(t.testdir(), 'routes.yaml')
  const f = await startTestFicus(t, { exposeBackend: true, ...doc }, { file })
  const get = async (path: string, user = 'u1'): Promise<{ status: number; by: string | undefined }> => {
    const r = await f.fetch(path, { headers: { 'x-user-id': user } })
    return { status: r.status, by: r.headers['x-served-by'] as string | undefined }
  }
  const reload = async (d: Record<string, unknown> | string): Promise<'success' | 'failure' | 'skipped'> => {
    await writeFile(file, typeof d === 'string' ? d : testYaml({ exposeBackend: true, ...d }))
    return f.running.reload('test')
  }
  return { file, running: f.running, logs: f.logs, get, reload, scrape: async () => f.scrape() }
}

t.test('a valid reload takes effect on the next request; unchanged pools and their connections are kept', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const upstreams = { legacy: { url: legacy.url }, new: { url: next.url } }
  const f = await fromFile(t, { upstreams, routes: [{ name: 'orders', match: { path: '/*' }, new: 0 }] })
  t.equal((await f.get('/o')).by, 'legacy')
  const pool = f.running.ficus.upstreams.get('legacy')
  t.equal(await f.reload({ upstreams, routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 100 }, { name: 'rest', match: { path: '/*' }, new: 0 }] }), 'success')
  t.equal((await f.get('/orders/1')).by, 'new')
  t.equal((await f.get('/x')).by, 'legacy')
  t.equal(f.running.ficus.upstreams.get('legacy'), pool, 'the same pool')
  t.equal(legacy.connections(), 1, 'and the same connection')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_config_reloads_total', { outcome: 'success' }), 1)
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'orders' }), 100)
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'rest' }), 0)
  t.equal(sample(m, 'ficus_rollbacks_total', { route: 'rest', trigger: 'manual' }), 0, 'a route added by a reload has its event series at 0')
  t.match(await f.logs.waitFor((l) => l.msg === 'config reloaded'), { why: 'test', routes: 2 })
})

t.test('an invalid file is rejected with every problem; the running config stays', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const upstreams = { legacy: { url: legacy.url }, new: { url: next.url } }
  const f = await fromFile(t, { upstreams, routes: [{ name: 'orders', match: { path: '/*' }, new: 100 }] })
  t.equal(await f.reload({ upstreams, routes: [{ name: 'orders', match: { path: '/*' }, new: 150, shadow: -1 }] }), 'failure')
  t.equal(await f.reload('version: 1\nroutes: [\n'), 'failure', 'broken YAML too')
  t.equal((await f.get('/o')).by, 'new', 'still the old config')
  t.equal(sample(await f.scrape(), 'ficus_config_reloads_total', { outcome: 'failure' }), 2)
  const line = await f.logs.waitFor((l) => l.msg === 'config reload rejected; the running config stays')
  t.equal(line.level, 'error')
  t.match(line.problems, [/routes\[0\]\.new: must be <= 100/, /routes\[0\]\.shadow: must be >= 0/])
})

t.test('a changed upstream gets a new pool; a request in flight on the old one finishes', async (t) => {
  const slow = held((_req, res) => { res.writeHead(200); res.end('old') })
  const old = await startUpstream(t, 'legacy', slow.handler)
  const moved = await startUpstream(t, 'legacy-2')
  const next = await startUpstream(t, 'new')
  const f = await fromFile(t, { upstreams: { legacy: { url: old.url }, new: { url: next.url } }, routes: [] })
  const inFlight = f.get('/held')
  await old.arrived(1, { message: 'the request to hold did not reach the old upstream' })
  const pool = f.running.ficus.upstreams.get('legacy')
  t.equal(await f.reload({ upstreams: { legacy: { url: moved.url }, new: { url: next.url } }, routes: [] }), 'success')
  t.not(f.running.ficus.upstreams.get('legacy'), pool, 'a new pool')
  t.equal((await f.get('/now')).by, 'legacy-2', 'new requests go to the new address')
  slow.release()
  t.same(await waitFor(inFlight, { message: 'the request in flight on the old pool did not finish once released' }), { status: 200, by: undefined }, 'the old request finished on the old pool')
  t.equal(pool?.pool.closed, true, 'which then closed')
})

t.test('runtime overrides stay on top of a reloaded file; a removed route leaves no gauge', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const upstreams = { legacy: { url: legacy.url }, new: { url: next.url } }
  const f = await fromFile(t, { upstreams, routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0 }, { name: 'old', match: { path: '/old/*' }, new: 0 }] })
  await f.running.ficus.control.rollback('orders', 'held', 'test')
  await f.running.ficus.control.patch('orders', { new: 30 }, 'test')
  t.equal(await f.reload({ upstreams, routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 100 }] }), 'success')
  t.match(f.running.ficus.control.routes()[0], { name: 'orders', new: { value: 30, source: 'override', file: 100 } })
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'orders' }), 30)
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'old' }), undefined)
})

t.test('settings read only at start: the reload applies the rest and says what waits for a restart', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const upstreams = { legacy: { url: legacy.url }, new: { url: next.url } }
  const f = await fromFile(t, { upstreams, routes: [] })
  t.equal(await f.reload({ upstreams, routes: [], limits: { bodySize: '1MiB' }, trustedHops: 2 }), 'success')
  t.match(await f.logs.waitFor((l) => l.msg === 'these settings changed and take effect at the next start'), { keys: ['limits'] })
  t.equal(f.running.ficus.live.current.trustedHops, 2, 'trustedHops is live')
})

t.test('a replaced upstream lets its queued requests through before it closes', async (t) => {
  const held: (() => void)[] = []
  const old = await startUpstream(t, 'legacy', (_req, res) => { held.push(() => { res.writeHead(200); res.end('old') }) })
  const next = await startUpstream(t, 'new')
  const f = await fromFile(t, { upstreams: { legacy: { url: old.url, connections: 1, maxQueue: 5 }, new: { url: next.url } }, routes: [] })
  const first = f.get('/1')
  await old.arrived(1, { message: 'the first request did not reach the old upstream' })
  const isQueued = nextQueued(f.running.ficus.upstreams.get('legacy') as Upstream)
  const queued = f.get('/2') // waits for the single connection
  await isQueued // nextQueued fails past its deadline
  t.equal(await f.reload({ upstreams: { legacy: { url: old.url, connections: 2, maxQueue: 5 }, new: { url: next.url } }, routes: [] }), 'success')
  held.shift()?.()
  t.equal((await waitFor(first, { message: 'the first request did not finish once released' })).status, 200)
  await old.arrived(2, { message: 'the queued request did not reach the retired pool\'s upstream' })
  held.shift()?.()
  t.equal((await waitFor(queued, { message: 'the queued request was not answered' })).status, 200, 'the queued request was served by the retired pool, not failed')
})

t.test('a reload may not leave an admin port on a non-loopback address without a token', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const upstreams = { legacy: { url: legacy.url }, new: { url: next.url } }
  const f = await fromFile(t, { upstreams, routes: [], admin: { host: '0.0.0.0', port: 0, token: 'secret' } })
  t.equal(await f.reload({ upstreams, routes: [], admin: { host: '127.0.0.1', port: 0 } }), 'failure')
  t.match(await f.logs.waitFor((l) => l.msg === 'config reload failed; the running config stays'), { err: { message: /listens on 0\.0\.0\.0.*no admin token: refused/ } })
  t.equal(f.running.ficus.live.current.admin.tokens.length, 1, 'the token stays')
})
