import t from 'tap'
import { statusCommand } from '../../src/commands/control.js'
import { routes } from '../helpers/admin.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startUpstream, type Handler } from '../helpers/upstream.js'

/**
 * A broken new must not cost users (docs/reliability.md "When new breaks"): a hung new gets
 * only part of legacy's timeout, and a new that keeps failing is ejected from the route by
 * its circuit breaker until a probe finds it well again. Real upstreams, real sockets.
 */

t.test('a hung new, with the same timeout as legacy: legacy still answers, within legacy\'s own timeout', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const hung = await startUpstream(t, 'new', () => { /* never answers */ })
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url, timeout: '2s' }, new: { url: hung.url, timeout: '2s' } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100 }]
  })
  const r = await f.fetch('/orders/1')
  t.equal(r.status, 200, 'not the 504 of a new that used up the whole timeout')
  t.equal(r.headers['x-served-by'], 'legacy')
  t.equal(hung.started(), 1, 'new was tried')
  t.equal(sample(await f.scrape(), 'ficus_fallbacks_total', { route: 'orders', reason: 'timeout' }), 1)
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { status: 200, backend: 'legacy', outcome: 'fallback', fallback: 'timeout', error: { code: 'FICUS_ERR_UPSTREAM_TIMEOUT' } })
  // fallback.newTimeout is 50 % of legacy's 2 s: new had 1 s, and legacy the rest of its own
  // 2 s counted from the request's arrival (a 200 says legacy made it within that).
})

t.test('a slow but working new is not given up on: its answer within the budget is the client\'s', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const slow = await startUpstream(t, 'new', (_req, res) => { setTimeout(() => res.end('from new'), 150) })
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: slow.url } },
    fallback: { newTimeout: '5s' },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100 }]
  })
  const r = await f.fetch('/orders/1')
  t.equal(r.text, 'from new')
  t.equal(legacy.started(), 0)
})

t.test('a flapping new: ejected after failures in a row, reads served by legacy without trying new, writes refused with Retry-After, back after a probe', async (t) => {
  let broken = true
  const answer: Handler = (_req, res) => {
    res.writeHead(broken ? 503 : 200, { 'x-served-by': 'new' })
    res.end(broken ? 'down' : 'from new')
  }
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', answer)
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    fallback: { breaker: { consecutiveFailures: 3, ejection: '1s' } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100 }]
  })
  for (let i = 0; i < 3; i++) t.equal((await f.fetch(`/orders/${i}`)).headers['x-served-by'], 'legacy', `503 #${i + 1}: legacy answers`)
  const ejected = await f.logs.waitFor((l) => l.breaker === 'open')
  t.match(ejected, { level: 'warn', route: 'orders', why: 'consecutive', coolDownMs: 1000, lastFailure: 'status_503' })

  const read = await f.fetch('/orders/9')
  t.equal(read.headers['x-served-by'], 'legacy')
  t.equal(next.started(), 3, 'an ejected new is not tried: the read cost nothing')
  const write = await f.fetch('/orders', { method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } })
  t.equal(write.status, 503)
  t.match(write.json(), { code: 'FICUS_ERR_NEW_EJECTED' })
  t.equal(write.headers['retry-after'], '1', 'Retry-After: the cool-down left, in seconds')
  t.equal(legacy.requests.filter((q) => q.method === 'POST').length + next.requests.filter((q) => q.method === 'POST').length, 0, 'the write went nowhere')

  const m = await f.scrape()
  t.equal(sample(m, 'ficus_breaker_state', { route: 'orders', state: 'open' }), 1)
  t.equal(sample(m, 'ficus_breaker_state', { route: 'orders', state: 'closed' }), 0)
  t.equal(sample(m, 'ficus_breaker_ejections_total', { route: 'orders' }), 1)
  t.equal(sample(m, 'ficus_fallbacks_total', { route: 'orders', reason: 'ejected' }), 1)
  t.equal(sample(m, 'ficus_fallbacks_total', { route: 'orders', reason: 'status_503' }), 3)
  t.equal(sample(m, 'ficus_writes_refused_total', { route: 'orders', reason: 'new_ejected' }), 1)
  const view = (await routes(f)).find((r) => r.name === 'orders') as unknown as { breaker: Record<string, unknown> }
  t.match(view.breaker, { state: 'open', ejections: 1, lastFailure: 'status_503', ejectedIn: 1, processes: 1 }, 'GET /admin/routes shows the breaker')
  const status = JSON.parse(await statusCommand({ url: f.adminUrl, token: undefined }, true, 50, async (ms) => { await new Promise((resolve) => setTimeout(resolve, ms)) })) as { routes: { name: string; breaker: { state: string } }[] }
  t.equal(status.routes.find((r) => r.name === 'orders')?.breaker.state, 'open', 'ficus status shows it')

  broken = false
  await f.logs.waitFor((l) => l.breaker === 'half_open', { timeoutMs: 5_000 })
  t.equal(sample(await f.scrape(), 'ficus_breaker_state', { route: 'orders', state: 'half_open' }), 1, 'half-open once the cool-down is over, with no request needed')
  const probe = await f.fetch('/orders/10')
  t.equal(probe.text, 'from new', 'the probe goes to new')
  t.match(await f.logs.waitFor((l) => l.breaker === 'closed'), { route: 'orders', why: 'probe_ok' })
  t.equal((await f.fetch('/orders/11')).text, 'from new', 'and new serves the route again')
  t.equal(sample(await f.scrape(), 'ficus_breaker_state', { route: 'orders', state: 'closed' }), 1)
})

t.test('ejectedWrites: legacy sends a write to legacy while new is ejected; a route with breaker: false keeps trying new', async (t) => {
  const down: Handler = (_req, res) => { res.writeHead(502).end() }
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', down)
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    fallback: { ejectedWrites: 'legacy', breaker: { consecutiveFailures: 2, ejection: '1m' } },
    routes: [
      { name: 'orders', match: { path: '/orders/*' }, new: 100 },
      { name: 'stock', match: { path: '/stock/*' }, new: 100, fallback: { breaker: false } }
    ]
  })
  await f.fetch('/orders/1')
  await f.fetch('/orders/2')
  await f.logs.waitFor((l) => l.breaker === 'open' && l.route === 'orders')
  const write = await f.fetch('/orders', { method: 'POST', body: 'x' })
  t.equal(write.status, 200)
  t.equal(write.headers['x-served-by'], 'legacy')
  t.same(legacy.requests.filter((q) => q.method === 'POST').map((q) => q.body.toString()), ['x'])
  for (let i = 0; i < 4; i++) await f.fetch(`/stock/${i}`)
  t.equal(next.requests.filter((q) => q.url.startsWith('/stock/')).length, 4, 'no breaker: every read still tries new')
  t.equal(sample(await f.scrape(), 'ficus_breaker_ejections_total', { route: 'stock' }), 0)
})
