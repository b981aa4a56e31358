import t from 'tap'
import { request } from 'undici'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startRawUpstream } from '../helpers/raw-upstream.js'
import { closedPort, held, startUpstream, unresponsiveAddress } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/** Legacy-only route table (new: 0) so that no fallback is involved. */
const only = (legacy: Record<string, unknown>): Record<string, unknown> => ({ upstreams: { legacy, new: legacy } })

t.test('refused → 502 with a Ficus code, no address in the body, counted and logged', async (t) => {
  const port = await closedPort()
  const f = await startTestFicus(t, only({ url: `http://127.0.0.1:${port}` }))
  const r = await f.fetch('/x', { headers: { 'x-request-id': 'rid-refused' } })
  t.equal(r.status, 502)
  t.same(r.json(), { error: 'The backend refused the connection', code: 'FICUS_ERR_UPSTREAM_REFUSED', requestId: 'rid-refused' })
  t.notMatch(r.text, String(port))
  t.equal(r.headers['content-type'], 'application/json; charset=utf-8')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_upstream_errors_total', { route: 'default', backend: 'legacy', reason: 'refused' }), 1)
  t.equal(sample(m, 'ficus_requests_total', { route: 'default', backend: 'legacy', role: 'primary', code: '502' }), 1)
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { level: 'warn', outcome: 'refused', status: 502, error: { code: 'FICUS_ERR_UPSTREAM_REFUSED', cause: /ECONNREFUSED/ } })
})

t.test('closed before answering → 502 reset', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (req) => req.socket.destroy())
  const f = await startTestFicus(t, only({ url: legacy.url }))
  const r = await f.fetch('/x')
  t.equal(r.status, 502)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_RESET' })
  t.equal(legacy.started(), 1, 'no retry')
})

t.test('no response head in time → 504', async (t) => {
  const legacy = await startUpstream(t, 'legacy', () => { /* never answers */ })
  const f = await startTestFicus(t, only({ url: legacy.url, timeout: '200ms' }))
  const r = await f.fetch('/x')
  t.equal(r.status, 504)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_TIMEOUT', error: 'The backend did not answer in time' })
  t.equal(sample(await f.scrape(), 'ficus_upstream_errors_total', { route: 'default', backend: 'legacy', reason: 'timeout' }), 1)
})

t.test('no connection in time → 504 connect timeout', async (t) => {
  const f = await startTestFicus(t, only({ url: await unresponsiveAddress(t), connectTimeout: '300ms' }))
  const r = await f.fetch('/x')
  t.equal(r.status, 504)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_CONNECT_TIMEOUT', error: 'The backend did not accept a connection in time' })
  t.equal(sample(await f.scrape(), 'ficus_upstream_errors_total', { route: 'default', backend: 'legacy', reason: 'connect_timeout' }), 1)
})

t.test('a 503 from the upstream is passed through once: no hidden retries', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(503, { 'retry-after': '1' })
    res.end('busy')
  })
  const f = await startTestFicus(t, only({ url: legacy.url }))
  for (const method of ['GET', 'PUT', 'POST']) {
    const before = legacy.started()
    const r = await f.fetch('/x', { method, body: method === 'GET' ? undefined : 'b' })
    t.equal(r.status, 503, method)
    t.equal(r.text, 'busy')
    t.equal(r.headers['retry-after'], '1')
    t.equal(legacy.started() - before, 1, `${method}: one client request = one upstream request`)
  }
})

t.test('pool saturation → fast 503, counted; the held request still completes', async (t) => {
  const slow = held((_req, res) => { res.end('done') })
  const legacy = await startUpstream(t, 'legacy', slow.handler)
  const f = await startTestFicus(t, only({ url: legacy.url, connections: 1, maxQueue: 0 }))
  const first = f.fetch('/slow')
  await legacy.arrived(1)
  const second = await f.fetch('/second')
  t.equal(second.status, 503)
  t.match(second.json(), { code: 'FICUS_ERR_UPSTREAM_SATURATED' })
  t.equal(legacy.started(), 1, 'the refused request never reached the upstream')
  slow.release()
  t.equal((await waitFor(first, { message: 'the held request did not complete once released' })).text, 'done')
  t.equal(sample(await f.scrape(), 'ficus_upstream_errors_total', { route: 'default', backend: 'legacy', reason: 'saturated' }), 1)
  t.equal((await f.fetch('/third')).status, 200, 'capacity is given back')
})

t.test('invalid framing from the upstream → 502, and that upstream connection is closed', async (t) => {
  const raw = await startRawUpstream(t, (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello'))
  const f = await startTestFicus(t, only({ url: raw.url }))
  const r = await f.fetch('/x')
  t.equal(r.status, 502)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_BAD_RESPONSE' })
  await raw.closed(1, { message: 'the upstream connection with invalid framing was not closed' })
  t.pass('upstream connection closed')
})

t.test('a response header Node cannot send (control characters, a bad name) → 502, nothing of the head relayed', async (t) => {
  for (const bad of ['X-Bad: a\x7fb', 'X-Bad: a\x01b', 'X-B@d: a']) {
    for (const body of ['Content-Length: 2\r\n\r\nok', 'Content-Length: 0\r\n\r\n']) {
      const raw = await startRawUpstream(t, (s) => s.write(Buffer.from(`HTTP/1.1 200 OK\r\n${bad}\r\n${body}`, 'latin1')))
      const f = await startTestFicus(t, only({ url: raw.url }))
      const r = await f.fetch('/x')
      t.equal(r.status, 502, JSON.stringify(bad))
      t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_BAD_RESPONSE' })
      t.notOk('x-bad' in r.headers, 'no part of the bad head reached the client')
    }
  }
})

t.test('a response that stalls mid-body aborts the client connection after bodyTimeout', async (t) => {
  const raw = await startRawUpstream(t, (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'))
  const f = await startTestFicus(t, only({ url: raw.url, bodyTimeout: '200ms' }))
  const res = await request(f.url + '/x')
  t.equal(res.statusCode, 200, 'the status was already sent')
  await t.rejects(res.body.text(), 'the client sees a broken body, not a short one')
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { outcome: 'body_timeout', status: 200, error: { code: 'FICUS_ERR_UPSTREAM_BODY_TIMEOUT' } })
  t.equal(sample(await f.scrape(), 'ficus_upstream_errors_total', { route: 'default', backend: 'legacy', reason: 'body_timeout' }), 1)
})

t.test('a head and then nothing: nothing reached the client yet, so it gets a clean 502 or 504; a GET on new falls back', async (t) => {
  const reset = await startRawUpstream(t, (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'))
  const silent = await startRawUpstream(t, (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'))
  const a = await startTestFicus(t, only({ url: reset.url }))
  const r = await a.fetch('/x')
  t.equal(r.status, 502)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_RESET' })
  const b = await startTestFicus(t, only({ url: silent.url, bodyTimeout: '200ms' }))
  const s = await b.fetch('/x')
  t.equal(s.status, 504)
  t.match(s.json(), { code: 'FICUS_ERR_UPSTREAM_BODY_TIMEOUT' })
  const legacy = await startUpstream(t, 'legacy')
  const c = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: reset.url } }, routes: [{ name: 'r', match: { path: '/*' }, new: 100 }] })
  const g = await c.fetch('/x')
  t.equal(g.headers['x-served-by'], 'legacy', 'new sent only a head: legacy answers the GET')
  t.equal(sample(await c.scrape(), 'ficus_fallbacks_total', { route: 'r', reason: 'reset' }), 1)
})

t.test('an upstream that breaks off mid-body aborts the client connection', async (t) => {
  const raw = await startRawUpstream(t, (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'))
  const f = await startTestFicus(t, only({ url: raw.url }))
  const res = await request(f.url + '/x')
  await t.rejects(res.body.text())
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { outcome: 'aborted', error: { code: 'FICUS_ERR_UPSTREAM_ABORTED' } })
})

t.test('a client that leaves cancels its upstream request; counted as 499', async (t) => {
  let upstreamClosed: () => void = () => {}
  const closed = new Promise<void>((resolve) => { upstreamClosed = resolve })
  const legacy = await startUpstream(t, 'legacy', (req) => { req.socket.on('close', upstreamClosed) })
  const f = await startTestFicus(t, only({ url: legacy.url }))
  const ac = new AbortController()
  const pending = request(f.url + '/wait', { signal: ac.signal })
  await legacy.arrived(1)
  ac.abort()
  await t.rejects(pending)
  await waitFor(closed, { message: 'the upstream request of the client that left was not aborted' })
  t.pass('the upstream request was aborted')
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.match(line, { outcome: 'client_aborted', status: 499 })
  t.equal(sample(await f.scrape(), 'ficus_requests_total', { route: 'default', backend: 'legacy', role: 'primary', code: '499' }), 1)
})
