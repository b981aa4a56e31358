import t from 'tap'
import { request } from 'undici'
import { bucket } from '../../src/core/bucket.js'
import { admin } from '../helpers/admin.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { held, startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

t.test('/metrics lists every family with its route gauges; labels are route names, never paths', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } },
    routes: [{ name: 'orders', match: { path: '/api/orders/*' }, new: 25, shadow: 50 }]
  })
  // Markers that no number, metric name or help text can contain: a numeric id would
  // match a process metric's value by chance (a CI run failed on '12345' that way).
  await f.fetch('/api/orders/ord-qzx?token=s3cr3t-qzx', { headers: { 'x-user-id': 'a', authorization: 'Bearer hunter2-qzx' } })
  const r = await admin(f, 'GET', '/metrics')
  t.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const m = r.text
  for (const family of ['ficus_requests_total', 'ficus_request_duration_seconds', 'ficus_upstream_errors_total', 'ficus_fallbacks_total',
    'ficus_route_new_percent', 'ficus_route_shadow_percent', 'ficus_sticky_key_missing_total', 'ficus_client_errors_total',
    'ficus_build_info', 'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']) {
    t.match(m, new RegExp(`^# TYPE ${family} `, 'm'), family)
  }
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'orders' }), 25)
  t.equal(sample(m, 'ficus_route_shadow_percent', { route: 'orders' }), 50)
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'default' }), 0)
  const side = bucket('orders', 'a') <= 25 ? 'new' : 'legacy'
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: side, role: 'primary', code: '200' }), 1)
  t.equal(sample(m, 'ficus_request_duration_seconds_count', { route: 'orders', backend: side, role: 'primary' }), 1)
  t.notMatch(m, /ord-qzx|token|s3cr3t|hunter2|\/api\/orders/, 'no path, query or credential in metrics')

  // Event series exist at 0 before the first event, so rate()/increase() and alerts see it.
  for (const [name, labels] of [
    ['ficus_rollbacks_total', { route: 'orders', trigger: 'manual' }],
    ['ficus_comparisons_total', { route: 'default', outcome: 'diverged' }],
    ['ficus_divergences_total', { route: 'default', kind: 'body' }],
    ['ficus_shadow_dropped_total', { route: 'orders', reason: 'timeout' }],
    ['ficus_fallbacks_total', { route: 'orders', reason: 'ejected' }],
    ['ficus_upstream_errors_total', { route: 'orders', backend: 'new', reason: 'refused' }],
    ['ficus_breaker_ejections_total', { route: 'orders' }],
    ['ficus_breaker_state', { route: 'orders', state: 'open' }],
    ['ficus_writes_refused_total', { route: 'orders', reason: 'new_ejected' }],
    ['ficus_sticky_key_missing_total', { route: 'orders' }],
    ['ficus_client_errors_total', { reason: 'duplicate_header' }],
    ['ficus_config_reloads_total', { outcome: 'failure' }]
  ] as const) t.equal(sample(m, name, labels), 0, `${name} ${JSON.stringify(labels)} at 0`)
  t.equal(sample(m, 'ficus_rollbacks_total', { route: 'orders', trigger: 'flag' }), undefined, 'no flag trigger on a route without a flag')
  t.notMatch(m, /ficus_flag_source_ready/, 'no flag source configured: no readiness to alert on')
})

t.test('the access log line has what an SRE needs and no credential', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  await f.fetch('/orders/1?token=secret', { headers: { authorization: 'Bearer hunter2', cookie: 'sid=abc' } })
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { level: 'info', method: 'GET', route: 'default', backend: 'legacy', status: 200, outcome: 'ok', path: '/orders/1', ip: '127.0.0.1' })
  t.type(line.ms, 'number')
  t.type(line.reqId, 'string')
  t.notMatch(JSON.stringify(f.logs.lines), /secret|hunter2|sid=abc/)
})

t.test('/healthz is live; /readyz is 200 when serving and 503 once stopping, while in-flight requests finish', async (t) => {
  const slow = held((req, res) => { res.end(req.url === '/slow' ? 'finished' : 'ok') }, (req) => req.url === '/slow')
  const legacy = await startUpstream(t, 'legacy', slow.handler)
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const health = await admin(f, 'GET', '/healthz')
  t.equal(health.status, 200)
  t.same(health.body, { status: 'ok' })
  const ready = await admin(f, 'GET', '/readyz')
  t.equal(ready.status, 200)
  t.same(ready.body, { status: 'ready' })
  const inFlight = request(f.url + '/slow')
  await legacy.arrived(1, { message: 'the request to hold did not reach legacy' })
  const stopped = f.running.stop()
  const draining = await admin(f, 'GET', '/readyz')
  t.equal(draining.status, 503)
  t.same(draining.body, { status: 'draining' })
  slow.release()
  const r = await waitFor(inFlight, { message: 'the in-flight request was not answered once released' })
  t.equal(await r.body.text(), 'finished', 'the in-flight request completed')
  await waitFor(stopped, { message: 'Ficus did not stop once its in-flight request finished' })
})

t.test('the admin port is separate: the traffic port proxies /metrics like any path', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const r = await f.fetch('/metrics')
  t.equal(r.headers['x-served-by'], 'legacy')
  t.not(f.adminUrl, f.url)
})
