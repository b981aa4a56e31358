import t from 'tap'
import { join } from 'node:path'
import { request } from 'undici'
import { admin } from '../helpers/admin.js'
import { backends, many, scrape, startCluster, workers } from '../helpers/cluster.js'
import { rolloutFlag, startFeaturesServer } from '../helpers/features-server.js'
import { sample } from '../helpers/ficus.js'
import { CLI, run } from '../helpers/spawn.js'
import { held, startUpstream, type Upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

t.test('one cluster, its whole life: a flag change relayed to every worker, then SIGTERM', async (t) => {
  // A cluster takes seconds to start (a primary and two workers): the SIGTERM subtest stops the
  // one the flag subtest used, rather than starting its own. Legacy holds /slow (the request in
  // flight across the stop) and answers everything else at once, as an upstream of the tests does.
  const hold = held((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ served: 'legacy', headers: req.headers }))
  }, (req) => req.url === '/slow')
  const legacy: Upstream = await startUpstream(t, 'legacy', hold.handler)
  const next = await startUpstream(t, 'new')
  const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', 100)] })
  const c = await startCluster(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    state: join(t.testdirName, 'state.json'),
    unleash: { url: features.url, appName: 'ficus-test', token: features.token, refreshInterval: '100ms' },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, flag: 'orders-new' }]
  })

  t.test('a flag change in Unleash is relayed to every worker before the primary reports it', async (t) => {
    await c.logs.waitFor((l) => l.msg === 'flags synchronized with Unleash', { message: 'the cluster did not synchronize with the Unleash API' })
    const on = await many(c, 6, '/orders/1', { 'x-user-id': 'alice' })
    t.same(backends(on), new Set(['new']))
    t.equal(workers(on).size, 2)
    features.set({ features: [rolloutFlag('orders-new', 0)] })
    // Logged by the ControlPlane once every worker acknowledged the relayed definitions.
    await c.logs.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('flag went to 0 % or off'), { message: 'the primary did not report the flag going to 0 %' })
    const off = await many(c, 6, '/orders/1', { 'x-user-id': 'alice' })
    t.same(backends(off), new Set(['legacy']), 'every worker follows the flag')
    t.equal(workers(off).size, 2)
    const text = await scrape(c)
    t.equal(sample(text, 'ficus_flag_source_ready'), 1, 'the primary\'s Unleash client, once')
    t.equal(sample(text, 'ficus_rollbacks_total', { route: 'orders', trigger: 'flag' }), 1)
  })

  t.test('SIGTERM: readiness off, in-flight requests finish on the workers, exit 0', async (t) => {
    const inFlight = request(c.traffic + '/slow')
    await waitFor(() => legacy.requests.some((r) => r.url === '/slow'), { message: 'the request to hold did not reach legacy' })
    c.p.child.kill('SIGTERM')
    await c.logs.waitFor((l) => l.msg === 'stopping', { message: 'the cluster did not log "stopping" after SIGTERM' })
    const ready = await admin(c.admin, 'GET', '/readyz')
    t.equal(ready.status, 503, 'not ready once stopping')
    t.equal(ready.body.status, 'draining')
    hold.release()
    const r = await waitFor(inFlight, { message: 'the request in flight was not answered once released' })
    t.equal(r.statusCode, 200, 'the request in flight finished')
    t.equal(r.headers.connection, 'close', 'answered with Connection: close while draining')
    await r.body.dump()
    t.equal(await c.p.exitCode(), 0)
    t.equal(c.logs.lines.filter((l) => l.msg === 'worker stopped' && l.code === 0).length, 2, 'both workers drained and exited 0')
    t.ok(c.logs.lines.some((l) => l.msg === 'stopped'))
  })
})

t.test('--workers and FICUS_WORKERS: anything but 1..64 or auto is a usage error (exit 2)', async (t) => {
  for (const [args, env] of [[['--workers', '0'], {}], [['--workers', 'abc'], {}], [['-w', '65'], {}], [[], { FICUS_WORKERS: '1.5' }], [[], { FICUS_WORKERS: '' }]] as const) {
    const p = run(t, CLI, ['start', '--config', 'routes.yaml', ...args], env)
    t.equal(await p.exitCode(), 2, `${args.join(' ')}${JSON.stringify(env)}`)
    t.match(p.stderr, /(--workers|FICUS_WORKERS) must be an integer from 1 to 64, or auto/)
  }
})
