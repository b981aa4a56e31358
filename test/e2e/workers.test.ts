import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { Client } from 'undici'
import { bucket } from '../../src/core/bucket.js'
import { backends, many, scrape, startCluster, workerOf, workers, type Served } from '../helpers/cluster.js'
import { admin, samples, summary } from '../helpers/admin.js'
import { sample, testYaml } from '../helpers/ficus.js'
import type { LogLine } from '../helpers/log-sink.js'
import { closedPort, startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * One cluster for every subtest (two worker processes cost seconds to start), shared on
 * these terms so that no subtest depends on another having run, or not:
 * - each subtest has a route of its own, so a change one makes (a set, a rollback) is seen
 *   by no other, and its counters are its own;
 * - before each subtest the cluster has two workers serving again (a subtest that kills
 *   or freezes a worker leaves it to be replaced), and subtests find the live workers and
 *   their replacements from the log, not from what an earlier one did.
 */
const ROUTES = [
  { name: 'served', match: { path: '/served/*' }, new: 0 },
  { name: 'flip', match: { path: '/flip/*' }, new: 0 },
  { name: 'orders', match: { path: '/orders/*' }, new: 50, shadow: 100 },
  { name: 'counted', match: { path: '/counted/*' }, new: 0 },
  { name: 'compared', match: { path: '/compared/*' }, new: 50, shadow: 100 },
  { name: 'respawn', match: { path: '/respawn/*' }, new: 100 },
  { name: 'frozen', match: { path: '/frozen/*' }, new: 0 },
  { name: 'ejecting', match: { path: '/ejecting/*' }, new: 100, backends: { legacy: 'legacy', new: 'dead' }, fallback: { breaker: { consecutiveFailures: 2, ejection: '5m' } } },
  { name: 'epochs', match: { path: '/epochs/*' }, new: 50, shadow: 100 }
]

t.test('two workers: both serve, a change reaches every worker before it is acknowledged, metrics and divergences cover both', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const dead = `http://127.0.0.1:${await closedPort()}`
  const doc = (routes: readonly Record<string, unknown>[]): Record<string, unknown> => ({ upstreams: { legacy: { url: legacy.url }, new: { url: next.url }, dead: { url: dead } }, routes })
  const c = await startCluster(t, doc(ROUTES), { FICUS_LOG_LEVEL: 'debug' }) // debug: shadow.ts logs each divergence once it is recorded
  t.equal(c.logs.lines.filter((l) => l.msg === 'worker listening').length, 2, 'two workers listened before "ficus listening"')
  t.match(c.logs.lines.find((l) => l.msg === 'ficus listening'), { workers: 2 })
  t.same((await admin(c.admin, 'GET', '/readyz')).body, { status: 'ready', workers: { ready: 2, of: 2 } })

  /** The workers serving now: listened, and neither exited nor was replaced since. */
  const live = (): LogLine[] => c.logs.lines.filter((l) => l.msg === 'worker listening' && !c.logs.lines.some((x) => x.msg === 'worker exited; starting a new one' && x.worker === l.worker))
  const counter = async (route: string): Promise<number> => sample(await scrape(c), 'ficus_requests_total', { route, backend: 'legacy', role: 'primary', code: '200' }) ?? 0

  t.beforeEach(async () => {
    await waitFor(async () => live().length === 2 && (await admin(c.admin, 'GET', '/readyz')).status === 200,
      { timeoutMs: 15_000, message: () => `the cluster did not get back to two workers serving (${live().length} listening)` })
  })

  t.test('requests are served by both workers', async (t) => {
    const served = await many(c, 8, '/served/a')
    t.equal(workers(served).size, 2)
    t.same(backends(served), new Set(['legacy']))
  })

  t.test('set and rollback: in effect on every worker for the very next request, also on open connections', async (t) => {
    // One keep-alive connection on each worker, opened before the change.
    const clients: Client[] = []
    t.teardown(async () => { await Promise.all(clients.map(async (k) => k.close())) })
    const onWorker = new Map<number, Client>()
    while (onWorker.size < 2 && clients.length < 8) {
      const k = new Client(c.traffic)
      clients.push(k)
      const r = await k.request({ path: '/flip/warm', method: 'GET' })
      const body = await r.body.json() as { headers: Record<string, string> }
      onWorker.set(await workerOf(c, body.headers['x-request-id'] as string), k)
    }
    t.equal(onWorker.size, 2, 'a kept-alive connection on each worker')
    const onOpen = async (): Promise<string[]> => Promise.all([...onWorker.values()].map(async (k) => {
      const r = await k.request({ path: '/flip/b', method: 'GET' })
      return (await r.body.json() as { served: string }).served
    }))

    const set = await admin(c.admin, 'PATCH', '/admin/routes/flip', { json: { new: 100, reason: 'workers test' } })
    t.equal(set.status, 200)
    t.same(await onOpen(), ['new', 'new'], 'open connections on both workers see it at once')
    const after = await many(c, 10, '/flip/b')
    t.same(backends(after), new Set(['new']), 'every request after the answer went to new')
    t.equal(workers(after).size, 2, 'through both workers')

    const back = await admin(c.admin, 'POST', '/admin/rollback', { json: { route: 'flip', reason: 'workers test' } })
    t.equal(back.status, 200)
    t.same(await onOpen(), ['legacy', 'legacy'])
    const rolled = await many(c, 10, '/flip/c')
    t.same(backends(rolled), new Set(['legacy']), 'every request after the rollback went to legacy')
    t.equal(workers(rolled).size, 2)
  })

  t.test('sticky: a user gets the same backend through any worker, the one the bucket formula gives', async (t) => {
    const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']
    const all: Served[] = []
    for (const user of users) {
      const served = await many(c, 4, '/orders/1', { 'x-user-id': user })
      all.push(...served)
      t.equal(workers(served).size, 2, `${user} went through both workers`)
      t.same(backends(served), new Set([bucket('orders', user) <= 50 ? 'new' : 'legacy']), `${user} always on the same side`)
    }
    t.same(backends(all), new Set(['legacy', 'new']), 'the split holds users on both sides')
  })

  t.test('/metrics sums the workers\' counters; config gauges are not multiplied', async (t) => {
    const labels = { route: 'counted', backend: 'legacy', role: 'primary', code: '200' }
    const before = sample(await scrape(c), 'ficus_requests_total', labels) ?? 0
    const served = await many(c, 12, '/counted/m')
    t.equal(workers(served).size, 2)
    t.equal((await admin(c.admin, 'POST', '/admin/rollback', { json: { route: 'counted', reason: 'workers test' } })).status, 200)
    const text = await scrape(c)
    t.equal(sample(text, 'ficus_requests_total', labels), before + 12, 'every request counted once, whichever worker served it')
    t.equal(sample(text, 'ficus_route_new_percent', { route: 'orders' }), 50, 'the primary\'s gauge, once')
    t.equal(sample(text, 'ficus_route_shadow_percent', { route: 'orders' }), 100)
    t.match(text, /^ficus_build_info\{version="[^"]+"\} 1$/m)
    t.equal(sample(text, 'ficus_rollbacks_total', { route: 'counted', trigger: 'manual' }), 1, 'the primary\'s counter')
  })

  t.test('/admin/divergences merges the samples of both workers, newest first, limit kept', async (t) => {
    const compared: Served[] = []
    for (const user of ['alice', 'bob', 'carol', 'grace']) compared.push(...await many(c, 3, '/compared/1', { 'x-user-id': user }))
    // Comparisons end after the responses: wait for each one's log line (written once it is recorded).
    for (const o of compared) await c.logs.waitFor((l) => l.msg === 'divergence' && l.reqId === o.reqId, { message: `no divergence recorded for request ${o.reqId}` })
    const listed = await samples(c.admin, '?route=compared&limit=1000')
    t.equal(listed.length, compared.length, 'every diverged comparison of both workers')
    t.same(new Set(listed.map((s) => s.requestId)), new Set(compared.map((o) => o.reqId)))
    const from = new Set(await Promise.all(listed.map(async (s) => workerOf(c, s.requestId))))
    t.equal(from.size, 2, 'samples from both workers')
    const times = listed.map((s) => s.time)
    t.same(times, [...times].sort().reverse(), 'newest first')
    const three = await samples(c.admin, '?route=compared&limit=3')
    t.same(three.map((s) => s.requestId), listed.slice(0, 3).map((s) => s.requestId), 'the limit cuts the merged list')
    t.equal((await summary(c.admin, 'compared')).comparisons.diverged, compared.length, 'summary counts summed over the workers')
  })

  t.test('new\'s breaker: each worker ejects a refusing new on its own; /admin/routes and /metrics show both', async (t) => {
    const served = await many(c, 8, '/ejecting/x')
    t.equal(workers(served).size, 2)
    t.same(backends(served), new Set(['legacy']), 'legacy answered every request')
    const view = await admin(c.admin, 'GET', '/admin/routes')
    const route = (view.body.routes as { name: string; breaker: Record<string, unknown> | null }[]).find((r) => r.name === 'ejecting')
    t.match(route?.breaker, { state: 'open', ejectedIn: 2, processes: 2, lastFailure: 'refused' }, 'merged over both workers')
    t.equal(sample(await scrape(c), 'ficus_breaker_state', { route: 'ejecting', state: 'open' }), 2, 'the gauge counts the workers in each state')
  })

  t.test('a divergence reset starts a new epoch on every worker before it is acknowledged; windows are summed', async (t) => {
    const diverged = async (n: number): Promise<void> => {
      const served: Served[] = []
      for (const user of ['alice', 'bob', 'carol', 'grace'].slice(0, n)) served.push(...await many(c, 2, '/epochs/1', { 'x-user-id': user }))
      for (const o of served) await c.logs.waitFor((l) => l.msg === 'divergence' && l.reqId === o.reqId, { message: `no divergence recorded for request ${o.reqId}` })
    }
    await diverged(4)
    t.match(await summary(c.admin, 'epochs'), { epoch: { n: 1 }, comparisons: { diverged: 8 }, windows: { '5m': { comparisons: { diverged: 8 } } } })
    const reset = await admin(c.admin, 'POST', '/admin/divergences/reset', { json: { route: 'epochs', reason: 'workers test' } })
    t.match(reset, { status: 200, body: { routes: [{ route: 'epochs', epoch: { n: 2, why: 'reset', reason: 'workers test' } }] } })
    t.match(await summary(c.admin, 'epochs'), { epoch: { n: 2 }, comparisons: { diverged: 0 }, windows: { '5m': { comparisons: { diverged: 0 } } } }, 'every worker started over')
    await diverged(2)
    t.match(await summary(c.admin, 'epochs'), { epoch: { n: 2 }, comparisons: { diverged: 4 } }, 'and counts on in the new epoch')
  })

  t.test('a reload reaches every worker before it is logged', async (t) => {
    const reloads = c.logs.lines.filter((l) => l.msg === 'config reloaded').length
    await writeFile(c.file, testYaml(doc([...ROUTES, { name: 'added', match: { path: '/added/*' }, new: 100 }])))
    c.p.child.kill('SIGHUP')
    await waitFor(() => c.logs.lines.filter((l) => l.msg === 'config reloaded').length > reloads, { message: 'SIGHUP: no "config reloaded" logged' })
    const served = await many(c, 6, '/added/x')
    t.same(backends(served), new Set(['new']))
    t.equal(workers(served).size, 2)
  })

  t.test('a killed worker is replaced, served again, and the summed counters do not go down', async (t) => {
    // The table in effect differs from the file (respawn: new 100 there): a replacement must start from it.
    t.equal((await admin(c.admin, 'POST', '/admin/rollback', { json: { route: 'respawn', reason: 'workers test' } })).status, 200)
    const before = await counter('respawn')
    const victim = live()[0] as LogLine
    const known = new Set(c.logs.lines.filter((l) => l.msg === 'worker listening').map((l) => l.worker))
    process.kill(victim.pid as number, 'SIGKILL')
    const exited = await c.logs.waitFor((l) => l.msg === 'worker exited; starting a new one' && l.worker === victim.worker, { message: `the primary did not report worker ${String(victim.worker)} exiting` })
    t.equal(exited.worker, victim.worker)
    t.equal(exited.signal, 'SIGKILL')
    const replacement = await c.logs.waitFor((l) => l.msg === 'worker listening' && l.worker !== victim.worker && l.pid !== victim.pid && (l.worker as number) > 2 && !known.has(l.worker), { message: 'no replacement worker listened' })
    await c.logs.waitFor((l) => l.msg === 'worker replaced and serving' && l.worker === replacement.worker, { message: `the replacement worker ${String(replacement.worker)} was not reported serving` })
    t.same((await admin(c.admin, 'GET', '/readyz')).body, { status: 'ready', workers: { ready: 2, of: 2 } })
    const served = await many(c, 6, '/respawn/z')
    t.ok(workers(served).has(replacement.worker as number), 'the new worker serves')
    t.same(backends(served), new Set(['legacy']), 'it started from the current table (the rollback)')
    const after = await counter('respawn')
    t.equal(after, before + 6, `the sum kept the dead worker's count and counted the new one's (${before} → ${after})`)
  })

  t.test('a worker that does not apply a change is replaced before the change is acknowledged', async (t) => {
    const current = live()
    t.equal(current.length, 2)
    const frozen = current[0] as LogLine
    process.kill(frozen.pid as number, 'SIGSTOP') // alive, but applies nothing
    t.teardown(() => { try { process.kill(frozen.pid as number, 'SIGKILL') } catch { /* already gone */ } })
    const set = await admin(c.admin, 'PATCH', '/admin/routes/frozen', { json: { new: 100 } })
    t.equal(set.status, 200, 'answered once the frozen worker was replaced')
    const replaced = await c.logs.waitFor((l) => l.msg === 'a worker did not apply a route change in time: replacing it', { message: 'the primary did not replace the frozen worker' })
    t.equal(replaced.worker, frozen.worker)
    const served = await many(c, 6, '/frozen/after-freeze')
    t.same(backends(served), new Set(['new']), 'no request after the answer saw the old table')
    t.notOk(workers(served).has(frozen.worker as number))
  })
})
