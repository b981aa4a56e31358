import t from 'tap'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { closedPort, startUpstream, unresponsiveAddress, type Handler } from '../helpers/upstream.js'

const status = (code: number): Handler => (_req, res) => {
  res.writeHead(code)
  res.end(`new says ${code}`)
}

async function withNew (t: Parameters<typeof startUpstream>[0], next: { url: string; timeout?: string; connectTimeout?: string }) {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: next },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100 }]
  })
  return { legacy, f }
}

t.test('new refuses: legacy answers a GET, and it is counted and logged', async (t) => {
  const { legacy, f } = await withNew(t, { url: `http://127.0.0.1:${await closedPort()}` })
  const r = await f.fetch('/orders/1', { headers: { 'x-user-id': 'u1' } })
  t.equal(r.status, 200)
  t.equal(r.headers['x-served-by'], 'legacy')
  t.equal(legacy.requests.length, 1)
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_fallbacks_total', { route: 'orders', reason: 'refused' }), 1)
  t.equal(sample(m, 'ficus_upstream_errors_total', { route: 'orders', backend: 'new', reason: 'refused' }), 1)
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'legacy', role: 'primary', code: '200' }), 1)
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { route: 'orders', backend: 'legacy', status: 200, outcome: 'fallback', fallback: 'refused' })
})

t.test('new answers 502, 503 or 504: legacy answers instead; new was asked exactly once', async (t) => {
  for (const code of [502, 503, 504]) {
    const next = await startUpstream(t, 'new', status(code))
    const { legacy, f } = await withNew(t, { url: next.url })
    const r = await f.fetch('/orders/1', { method: 'HEAD' })
    t.equal(r.status, 200, `${code} → legacy`)
    t.equal(next.started(), 1)
    t.equal(legacy.started(), 1)
    t.equal(sample(await f.scrape(), 'ficus_fallbacks_total', { route: 'orders', reason: `status_${code}` }), 1)
  }
})

t.test('new times out: legacy answers', async (t) => {
  const next = await startUpstream(t, 'new', () => { /* silent */ })
  const { f } = await withNew(t, { url: next.url, timeout: '150ms' })
  const r = await f.fetch('/orders/1')
  t.equal(r.headers['x-served-by'], 'legacy')
  t.equal(sample(await f.scrape(), 'ficus_fallbacks_total', { route: 'orders', reason: 'timeout' }), 1)
})

t.test('new cannot be connected to in time: legacy answers', async (t) => {
  const { legacy, f } = await withNew(t, { url: await unresponsiveAddress(t), connectTimeout: '300ms' })
  const r = await f.fetch('/orders/1')
  t.equal(r.headers['x-served-by'], 'legacy')
  t.equal(legacy.started(), 1)
  t.equal(sample(await f.scrape(), 'ficus_fallbacks_total', { route: 'orders', reason: 'connect_timeout' }), 1)
})

t.test('no fallback for a 500 (an answer, not an outage), nor for a write that may have reached new', async (t) => {
  const five = await startUpstream(t, 'new', status(500))
  const a = await withNew(t, { url: five.url })
  t.equal((await a.f.fetch('/x')).status, 500)
  t.equal(a.legacy.started(), 0)

  // new reads the request, then drops the connection: it may have acted on it.
  const dropping = await startUpstream(t, 'new', (req) => { req.socket.destroy() })
  const b = await withNew(t, { url: dropping.url })
  const post = await b.f.fetch('/orders', { method: 'POST', body: '{"n":1}' })
  t.equal(post.status, 502, 'a write is never sent twice')
  t.match(post.json(), { code: 'FICUS_ERR_UPSTREAM_RESET' })
  const put = await b.f.fetch('/orders/1', { method: 'PUT', body: '{}' })
  t.equal(put.status, 502, 'nor an idempotent request whose body was streamed')
  t.equal(b.legacy.started(), 0)
  t.equal(dropping.started(), 2)
  t.equal(sample(await b.f.scrape(), 'ficus_fallbacks_total', { route: 'orders', reason: 'reset' }), 0)
})

t.test('a write that never reached new (connection refused) is served by legacy, body intact, whatever its method', async (t) => {
  const down = await withNew(t, { url: `http://127.0.0.1:${await closedPort()}` })
  const body = JSON.stringify({ item: 'x'.repeat(100_000) }) // over limits.bodyBuffer: part of it still streams from the client
  for (const method of ['POST', 'PATCH', 'PUT', 'DELETE']) {
    const r = await down.f.fetch('/orders/1', { method, body, headers: { 'content-type': 'application/json' } })
    t.equal(r.status, 200, `${method} → legacy`)
    t.equal(r.headers['x-served-by'], 'legacy')
  }
  t.same(down.legacy.requests.map((q) => [q.method, q.body.toString()]), ['POST', 'PATCH', 'PUT', 'DELETE'].map((m) => [m, body]), 'legacy got each body, byte for byte')
  t.equal(sample(await down.f.scrape(), 'ficus_fallbacks_total', { route: 'orders', reason: 'refused' }), 4)
})

t.test('legacy failing is not covered by new', async (t) => {
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: `http://127.0.0.1:${await closedPort()}` }, new: { url: next.url } } })
  t.equal((await f.fetch('/x')).status, 502)
  t.equal(next.started(), 0)
})

t.test('both down: the client gets legacy\'s error; both failures are counted', async (t) => {
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: `http://127.0.0.1:${await closedPort()}` }, new: { url: `http://127.0.0.1:${await closedPort()}` } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100 }]
  })
  const r = await f.fetch('/x')
  t.equal(r.status, 502)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_REFUSED' })
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_upstream_errors_total', { route: 'orders', backend: 'new', reason: 'refused' }), 1)
  t.equal(sample(m, 'ficus_upstream_errors_total', { route: 'orders', backend: 'legacy', reason: 'refused' }), 1)
  t.equal(sample(m, 'ficus_fallbacks_total', { route: 'orders', reason: 'refused' }), 0, 'a fallback is counted once legacy answered, and it did not')
  t.match(await f.logs.waitFor((l) => l.msg === 'request'), { fallback: 'refused', outcome: 'refused' }, 'the log line says it was tried')
})
