import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import autocannon from 'autocannon'
import t from 'tap'
import { Agent, request } from 'undici'
import { admin } from '../helpers/admin.js'
import { sample, startTestFicus, testYaml } from '../helpers/ficus.js'
import { CLI, listening, run } from '../helpers/spawn.js'
import { held, startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * What release managers and SREs do while traffic flows — change percentages, reload
 * routes.yaml, roll back, stop a replica — must not fail a single client request.
 */

t.test('100 flips, 10 reloads and a rollback during one load run: no failed request', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const next2 = await startUpstream(t, 'new-2')
  const file = join(t.testdir(), 'routes.yaml')
  const doc = (newUrl: string, i: number): Record<string, unknown> => ({
    exposeBackend: true,
    upstreams: { legacy: { url: legacy.url }, new: { url: newUrl } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 10 + i, shadow: 10 }, { name: 'rest', match: { path: '/*' }, new: 0 }]
  })
  const f = await startTestFicus(t, doc(next.url, 0), { file })
  const total = 12_000
  let finished = false
  const load = autocannon({
    url: `${f.url}/orders/1`, connections: 50, amount: total,
    setupClient: (c) => { c.setHeaders({ 'x-user-id': `u${Math.random()}` }) }
  })
  void load.then(() => { finished = true })
  let reloads = 0
  for (let i = 0; i < 100; i++) {
    await legacy.arrived(40 * (i + 1), { message: `step ${i}: the load stopped reaching legacy` }) // each step happens while requests flow
    t.equal((await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: i % 2 === 0 ? 50 : 5 } })).status, 200)
    if (i % 10 === 9) {
      // Every tenth step, routes.yaml changes new's address (a new pool; the old one drains).
      await writeFile(file, testYaml(doc(reloads % 2 === 0 ? next2.url : next.url, reloads)))
      t.equal(await f.running.reload('test'), 'success')
      reloads++
    }
  }
  await legacy.arrived(4200, { message: 'the load stopped reaching legacy before the rollback' })
  t.equal((await admin(f, 'POST', '/admin/rollback', { json: { route: 'orders', reason: 'load test' } })).status, 200)
  t.notOk(finished, 'all of it happened while the load was still running')
  const primaryAtNew = (): number => [...next.requests, ...next2.requests].filter((r) => r.headers['x-ficus-shadow'] === undefined).length
  const servedByNew = primaryAtNew()
  const result = await waitFor(load, { timeoutMs: 30_000, message: `the load run of ${total} requests did not end` })
  t.equal(result.errors + result.timeouts + result.non2xx, 0, 'no failed request')
  t.equal(result.requests.total, total, 'every request answered')
  // After the rollback answered, new gets shadow copies only, besides the requests already in flight.
  const after = primaryAtNew() - servedByNew
  t.ok(after <= 50, `${after} requests served by new after the rollback: at most those in flight on 50 connections`)
  for (let i = 0; i < 10; i++) t.equal((await f.fetch('/orders/1', { headers: { 'x-user-id': `after-${i}` } })).headers['x-ficus-backend'], 'legacy')
  const text = await f.scrape()
  t.equal(sample(text, 'ficus_config_reloads_total', { outcome: 'success' }), 10)
  t.equal(sample(text, 'ficus_rollbacks_total', { route: 'orders', trigger: 'manual' }), 1)
  t.comment(`${result.requests.total} requests, ${Math.round(result.requests.average)} req/s, p99 ${result.latency.p99} ms, 100 flips, 10 reloads, 1 rollback`)
})

t.test('SIGTERM under load: the load balancer sees readiness fail and moves away; no request fails; in-flight ones finish', async (t) => {
  // Requests for /api/reports/slow* are held by the backend until the listener has closed: in flight across the whole stop.
  const slow = held((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(`done ${req.url ?? ''}`) }, (req) => req.url?.startsWith('/api/reports/slow') === true)
  const legacy = await startUpstream(t, 'legacy', slow.handler)
  const next = await startUpstream(t, 'new') // shadow copies of reports go here, answered at once
  const p = run(t, CLI, ['start', '--config', 'routes.yaml'], {
    FICUS_PORT: '0', FICUS_ADMIN_PORT: '0', LEGACY_URL: legacy.url, NEW_URL: next.url, FICUS_LOG_LEVEL: 'info', FICUS_DRAIN_DELAY: '3s'
  })
  const { traffic, admin: adminUrl } = await listening(p)
  // The load balancer: 20 clients on keep-alive connections, sending while the replica is in rotation.
  const agent = new Agent({ connections: 40, keepAliveTimeout: 30_000 })
  t.teardown(() => agent.close())
  let inRotation = true
  let sigtermSent = false
  const outcomes = { ok: 0, failed: [] as string[], afterSigterm: 0, toldToClose: 0 }
  const client = async (id: number): Promise<void> => {
    let n = 0
    while (inRotation) {
      try {
        const r = await request(`${traffic}/api/orders/${id}-${n++}`, { dispatcher: agent, headers: { 'x-user-id': `u${id}` } })
        await r.body.dump()
        if (r.statusCode === 200) outcomes.ok++
        else outcomes.failed.push(String(r.statusCode))
        if (sigtermSent) outcomes.afterSigterm++
        if (sigtermSent && r.headers.connection === 'close') outcomes.toldToClose++
      } catch (err) {
        outcomes.failed.push((err as Error).message)
      }
    }
  }
  const clients = Array.from({ length: 20 }, async (_, i) => client(i))
  await legacy.arrived(1000, { timeoutMs: 30_000, message: 'the 20 clients did not get 1000 requests to legacy' })
  const inFlight = Array.from({ length: 5 }, async (_, i) => {
    const r = await request(`${traffic}/api/reports/slow-${i}`, { dispatcher: agent })
    return `${r.statusCode} ${await r.body.text()}`
  })
  await next.arrived(5, { message: 'the copies of the five held requests did not all reach new' }) // all five are in flight
  p.child.kill('SIGTERM')
  sigtermSent = true
  await p.waitFor(/"msg":"stopping"/, { message: 'ficus did not log "stopping" after SIGTERM' })
  t.equal((await admin(adminUrl, 'GET', '/readyz')).status, 503, 'the probe fails')
  inRotation = false // the load balancer takes the replica out
  await waitFor(Promise.all(clients), { message: 'the clients\' last requests were not answered after the replica left the rotation' })
  await p.waitFor(/"msg":"drain delay over/, { message: 'the 3 s drain delay did not end' })
  const { port } = new URL(traffic)
  // Each try is a real connect: polled until the listener has closed.
  await waitFor(async () => !await connects(Number(port)), { message: 'the traffic listener still accepts connections after the drain delay' })
  slow.release()
  t.same(await waitFor(Promise.all(inFlight), { message: 'the held requests did not finish once released' }), [0, 1, 2, 3, 4].map((i) => `200 done /api/reports/slow-${i}`), 'the requests in flight finished after listening stopped')
  t.equal(await p.exitCode(), 0, 'exit 0')
  t.same(outcomes.failed, [], 'no request failed')
  t.ok(outcomes.afterSigterm > 0, `${outcomes.afterSigterm} requests were answered after SIGTERM`)
  t.ok(outcomes.toldToClose > 0, `${outcomes.toldToClose} of them told the client to reconnect elsewhere (Connection: close)`)
  t.comment(`${outcomes.ok} requests answered, ${outcomes.afterSigterm} of them after SIGTERM, 5 held across the stop`)
})

/** Whether a TCP connection to 127.0.0.1:port is accepted. */
function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

/** Peak resident set of a process (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1]) / 1024
}

t.test('a shadow backend hung for the whole run: RSS bounded, no failed request, clients never wait for the copy', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const hung = await startUpstream(t, 'new', () => { /* accepts, reads, never answers */ })
  const dir = t.testdir()
  const yaml = testYaml({
    listen: { host: '127.0.0.1', port: 0 },
    upstreams: { legacy: { url: legacy.url }, new: { url: hung.url } },
    routes: [{ name: 'plain', match: { path: '/plain/*' }, new: 0 }, { name: 'orders', match: { path: '/*' }, new: 0, shadow: 100 }],
    shadow: { timeout: '5s' },
    log: { level: 'warn' }
  })
  await writeFile(join(dir, 'routes.yaml'), yaml)
  const p = run(t, CLI, ['start', '--config', join(dir, 'routes.yaml')], { FICUS_LOG_LEVEL: 'info' })
  const { traffic, admin: adminUrl } = await listening(p)
  const pid = p.child.pid as number
  const load = { connections: 50, amount: 10_000, setupClient: (c: autocannon.Client) => { c.setHeaders({ 'x-user-id': `u${Math.random()}` }) } }
  const baseline = await autocannon({ url: `${traffic}/plain/1`, ...load })
  t.equal(baseline.errors + baseline.timeouts + baseline.non2xx, 0)
  const before = peakRssMb(pid)
  const result = await autocannon({ url: `${traffic}/orders/1`, ...load })
  const peak = peakRssMb(pid)
  t.equal(result.errors + result.timeouts + result.non2xx, 0, 'no failed request')
  t.ok(hung.started() > 0, 'the copies did go out, and hang')
  // The copies hang for shadow.timeout (5 s): a client tied to its copy would wait that long.
  t.ok(result.latency.max < 5000, `the slowest client answer (${result.latency.max} ms) did not wait for a copy`)
  // The hung copies are bounded (shadow.maxInFlight, each buffering at most shadow.maxBodySize): memory must not grow with the requests.
  t.ok(peak - before < 50, `peak RSS ${peak.toFixed(0)} MB, ${(peak - before).toFixed(0)} MB over the no-shadow run's peak (${before.toFixed(0)} MB)`)
  const text = (await admin(adminUrl, 'GET', '/metrics')).text
  const dropped = sample(text, 'ficus_shadow_dropped_total', { route: 'orders', reason: 'concurrency' }) ?? 0
  t.ok(dropped > 0, `${dropped} copies dropped at the concurrency bound rather than queued`)
  t.comment(`no shadow: p50 ${baseline.latency.p50} ms, p99 ${baseline.latency.p99} ms, ${Math.round(baseline.requests.average)} req/s`)
  t.comment(`hung shadow: ${result.requests.total} requests, ${Math.round(result.requests.average)} req/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, max ${result.latency.max} ms; RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MB; ${hung.started()} copies hung, ${dropped} dropped`)
  p.child.kill('SIGTERM')
  t.equal(await p.exitCode(), 0, 'and it still stops cleanly with the copies hanging')
})
