import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { RouteView } from '../../src/control/route-view.js'
import { admin, audit, routes } from '../helpers/admin.js'
import { rolloutFlag, startFeaturesServer, type FeaturesServer } from '../helpers/features-server.js'
import { sample, startTestFicus, type TestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'

/**
 * Ficus with Unleash as its flag source, against a loopback /api/client/features endpoint:
 * readiness, outages, bootstrap and backup, what the admin API shows and refuses.
 * (The same against a real Unleash server: test/unleash/, `npm run test:unleash`.)
 */

async function rig(t: Test, features: FeaturesServer, unleash: Record<string, unknown> = {}, route: Record<string, unknown> = {}): Promise<TestFicus> {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  return startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    exposeBackend: true,
    unleash: { url: features.url, appName: 'ficus-test', token: features.token, refreshInterval: '100ms', backupPath: join(t.testdirName, 'backup.json'), ...unleash },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, flag: 'orders-new', ...route }]
  })
}

const readyz = async (ficus: TestFicus): Promise<number> => (await admin(ficus, 'GET', '/readyz')).status

const backend = async (ficus: TestFicus, user = 'alice'): Promise<unknown> => (await ficus.fetch('/orders/1', { headers: { 'x-user-id': user } })).headers['x-ficus-backend']

t.test('/readyz waits for the first synchronization; errors before it are counted', async (t) => {
  const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 100)] })
  features.failWith(503)
  const ficus = await rig(t, features)
  await ficus.logs.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('cannot be reached yet'))
  t.equal(await readyz(ficus), 503, 'not ready while Unleash fails')
  const m = await ficus.scrape()
  t.equal(sample(m, 'ficus_flag_source_ready'), 0)
  t.ok((sample(m, 'ficus_flag_errors_total', { kind: 'fetch' }) ?? 0) >= 1, 'fetch errors counted')
  t.equal(await backend(ficus), 'legacy', 'no definitions yet: the flagged route serves legacy')
  features.failWith(null)
  t.ok(await ficus.running.ficus.flags?.whenSynchronized(5_000), 'synchronized once Unleash answers')
  t.equal(await readyz(ficus), 200)
  t.equal(sample(await ficus.scrape(), 'ficus_flag_source_ready'), 1)
  t.equal(await backend(ficus), 'new')
})

t.test('past unleash.syncTimeout with no backup or bootstrap: ready, flagged routes on legacy, said in the log', async (t) => {
  const features = await startFeaturesServer(t, { features: [] })
  await features.close()
  const ficus = await rig(t, features, { syncTimeout: '200ms' })
  await ficus.logs.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('syncTimeout'))
  t.equal(await readyz(ficus), 200, 'ready after the wait')
  t.equal(await backend(ficus), 'legacy')
  t.equal(sample(await ficus.scrape(), 'ficus_flag_source_ready'), 0, 'the gauge lets an alert fire')
})

t.test('a bootstrap file serves until Unleash answers; the backup, newer, wins over it', async (t) => {
  const dir = t.testdir({})
  const bootstrap = join(dir, 'flags.json')
  const backupPath = join(dir, 'backup.json')
  await writeFile(bootstrap, JSON.stringify({ version: 2, features: [rolloutFlag('orders-new', 100)] }))
  const down = await startFeaturesServer(t, { features: [] })
  await down.close()

  const first = await rig(t, down, { syncTimeout: '100ms', bootstrap, backupPath })
  await first.logs.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('bootstrap file'))
  t.equal(await backend(first), 'new', 'the bootstrap file says 100 %')
  t.match((await admin(first, 'GET', '/admin/routes')).body.flags, { loadedFrom: 'bootstrap', synchronized: false })
  await first.running.stop()

  // A replica that once saw the flag off (a fleet-wide rollback) keeps it off after a restart during an outage.
  const up = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 0, { enabled: false })] })
  const second = await rig(t, up, { bootstrap, backupPath })
  t.ok(await second.running.ficus.flags?.whenSynchronized(5_000))
  await second.logs.waitFor((l) => l.msg === 'Unleash backup written')
  t.equal(await backend(second), 'legacy')
  await second.running.stop()
  await up.close()

  const third = await rig(t, up, { syncTimeout: '100ms', bootstrap, backupPath })
  await third.logs.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('backup file'))
  t.equal(await backend(third), 'legacy', 'the backup (flag off) is used, not the bootstrap (100 %)')
})

t.test('a bootstrap file that cannot be used stops the start with a clear error', async (t) => {
  const features = await startFeaturesServer(t, { features: [] })
  const bad = join(t.testdir({ 'flags.json': '{"features": "nope"}' }), 'flags.json')
  await t.rejects(rig(t, features, { bootstrap: bad }), { code: 'FICUS_ERR_FLAG_BOOTSTRAP', message: /not an Unleash features document/ })
  await t.rejects(rig(t, features, { bootstrap: join(t.testdirName, 'missing.json') }), { code: 'FICUS_ERR_FLAG_BOOTSTRAP', message: /file not found/ })
})

t.test('an outage keeps the last state, is counted, and a stop during it is clean', async (t) => {
  const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 100)] })
  const ficus = await rig(t, features)
  t.ok(await ficus.running.ficus.flags?.whenSynchronized(5_000))
  t.equal(await backend(ficus), 'new')
  await features.close()
  await ficus.logs.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('serving the last flags'))
  t.equal(await backend(ficus), 'new', 'still the last state Unleash sent')
  const m = await ficus.scrape()
  t.equal(sample(m, 'ficus_flag_source_ready'), 0)
  t.ok((sample(m, 'ficus_flag_errors_total', { kind: 'fetch' }) ?? 0) >= 1)
  t.equal(await readyz(ficus), 200, 'an outage after start does not take the replica out of the load balancer')
  await ficus.running.stop()
  t.pass('stopped while Unleash is unreachable')
})

t.test('/admin/routes shows the flag; gauges and rollbacks follow it', async (t) => {
  const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 25)] })
  const ficus = await rig(t, features)
  const flags = ficus.running.ficus.flags
  t.ok(await flags?.whenSynchronized(5_000))
  const { body: view } = await admin(ficus, 'GET', '/admin/routes')
  const orders = (view.routes as RouteView[]).find((r) => r.name === 'orders')
  t.match(orders, { new: { value: 25, source: 'flag', file: null }, flag: { name: 'orders-new', known: true, enabled: true, share: 25, groupId: 'orders-new', strategies: ['flexibleRollout'], bypassed: false } })
  t.match(view.flags, { source: 'unleash', synchronized: true, healthy: true, loadedFrom: 'unleash', lastError: null })
  t.equal(sample(await ficus.scrape(), 'ficus_route_new_percent', { route: 'orders' }), 25)

  // Strategies that decide per user have no single share: no gauge series, value null.
  features.set({ features: [{ name: 'orders-new', enabled: true, strategies: [{ name: 'userWithId', parameters: { userIds: 'alice' } }] }] })
  t.ok(await flags?.until(() => flags.state('orders-new').share === null, 5_000))
  const scraped = await ficus.scrape()
  t.equal(sample(scraped, 'ficus_route_new_percent', { route: 'orders' }), undefined, scraped.split('\n').filter((l) => l.startsWith('ficus_route_new')).join(' '))
  t.equal(await backend(ficus, 'alice'), 'new')
  t.equal(await backend(ficus, 'bob'), 'legacy')

  features.set({ features: [rolloutFlag('orders-new', 25, { enabled: false })] })
  t.ok(await flags?.until(() => flags.state('orders-new').share === 0, 5_000))
  const m = await ficus.scrape()
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'orders' }), 0)
  t.equal(sample(m, 'ficus_rollbacks_total', { route: 'orders', trigger: 'flag' }), 1, 'the flag going off counts as a rollback')
})

t.test('ficus set on a flagged route without unleash.admin is refused and names the flag; shadow stays local', async (t) => {
  const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 10)] })
  const ficus = await rig(t, features)
  t.ok(await ficus.running.ficus.flags?.whenSynchronized(5_000))
  const r = await admin(ficus, 'PATCH', '/admin/routes/orders', { json: { new: 50, shadow: 5 } })
  t.equal(r.status, 409)
  t.match(r.body, { code: 'FICUS_ERR_FLAG_MANAGED', detail: /Unleash flag "orders-new".*ficus rollback orders/s })
  t.match((await routes(ficus)).find((x) => x.name === 'orders'), { new: { value: 10, source: 'flag' }, shadow: { value: 0 } }, 'nothing changed, not even shadow')
  const shadow = await admin(ficus, 'PATCH', '/admin/routes/orders', { json: { shadow: 5 } })
  t.equal(shadow.status, 200)
  t.match(shadow.body.route, { new: { value: 10, source: 'flag' }, shadow: { value: 5, source: 'override' } })
})

t.test('ficus set on a flagged route with unleash.admin changes the rollout in Unleash and waits to see it', async (t) => {
  // The admin side of Unleash, as Ficus uses it, on loopback (the real server: test/unleash/).
  const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 10)] })
  const calls: string[] = []
  const { createServer } = await import('node:http')
  const adminApi = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      calls.push(`${req.method} ${req.url} ${req.headers.authorization} ${body}`)
      if (req.method === 'GET' && req.url?.endsWith('/strategies') === true) {
        res.end(JSON.stringify([{ id: 's1', name: 'flexibleRollout', parameters: { rollout: '10', stickiness: 'default', groupId: 'orders-new' }, constraints: [] }]))
      } else if (req.method === 'PATCH') {
        features.set({ features: [rolloutFlag('orders-new', 40)] })
        res.end('{}')
      } else if (req.method === 'GET') {
        res.end(JSON.stringify({ name: 'orders-new', environments: [{ name: 'production', enabled: true }] }))
      } else {
        res.statusCode = 404
        res.end('{}')
      }
    })
  })
  await new Promise<void>((resolve) => adminApi.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { adminApi.close() })
  const port = (adminApi.address() as { port: number }).port
  const ficus = await rig(t, features, { admin: { token: 'admin-secret', url: `http://127.0.0.1:${port}/api`, environment: 'production' } })
  t.ok(await ficus.running.ficus.flags?.whenSynchronized(5_000))
  const r = await admin(ficus, 'PATCH', '/admin/routes/orders', { json: { new: 40, reason: 'step 2' } })
  t.equal(r.status, 200)
  t.match(r.body.route, { new: { value: 40, source: 'flag' } }, 'answered once this replica sees the new rollout')
  t.equal((await admin(ficus, 'POST', '/admin/rollback', { json: { route: 'orders' } })).status, 200)
  const bypassed = await admin(ficus, 'PATCH', '/admin/routes/orders', { json: { new: 60 } })
  t.equal(bypassed.status, 409, 'a rolled-back replica would ignore the flag: clear the rollback first')
  t.match(bypassed.body, { code: 'FICUS_ERR_FLAG_MANAGED', detail: /ficus set orders --clear/ })
  t.equal(calls.length, 3, 'Unleash was not called')
  t.same(calls.map((c) => c.split(' ').slice(0, 3).join(' ')), [
    'GET /api/admin/projects/default/features/orders-new/environments/production/strategies admin-secret',
    'PATCH /api/admin/projects/default/features/orders-new/environments/production/strategies/s1 admin-secret',
    'GET /api/admin/projects/default/features/orders-new admin-secret'
  ])
  t.match(calls[1], /\[\{"op":"replace","path":"\/parameters\/rollout","value":"40"\}\]$/)
  t.match((await audit(ficus)).find((e) => e.action === 'set'), { action: 'set', route: 'orders', before: { new: 10 }, after: { new: 40 }, reason: 'step 2', detail: /flag orders-new: flexibleRollout 10 % → 40 % in Unleash \(project default, environment production\)/ })
})
