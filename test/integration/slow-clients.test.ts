import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { nextQueued, sample, startTestFicus } from '../helpers/ficus.js'
import { rawRequest } from '../helpers/raw.js'
import { closedPort, held, startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/** One upstream slot and no queue: anything that keeps the slot shows as a 503 for the next request. */
const oneSlot = (url: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  upstreams: { legacy: { url, connections: 1, maxQueue: 0, ...extra }, new: { url } }
})

function chunk(s: string): string {
  return `${s.length.toString(16)}\r\n${s}\r\n`
}

t.test('a chunked upload answered early closes its connection, and more bytes cannot crash Ficus', async (t) => {
  // Streaming (bodyBuffer 0, as for any body past limits.bodyBuffer). The upstream is down: Ficus answers 502 before reading the body. The client then keeps
  // sending, past limits.bodySize. Before the fix this was an uncaught exception (exit 1)
  // and the connection hung with the rest of the body unread.
  const f = await startTestFicus(t, { upstreams: { legacy: { url: `http://127.0.0.1:${await closedPort()}` }, new: { url: 'http://127.0.0.1:1' } }, limits: { bodySize: '1KiB', bodyBuffer: 0 } })
  const { port } = new URL(f.url)
  const s = connect(Number(port), '127.0.0.1')
  const closed = once(s, 'close')
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString() })
  s.write(`POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(100))}`)
  await waitFor(new Promise<void>((resolve) => { const onData = (): void => { if (text.includes('\r\n\r\n{')) { s.off('data', onData); resolve() } }; s.on('data', onData) }),
    { message: 'Ficus did not answer the upload before reading its body' })
  t.match(text, /^HTTP\/1\.1 502 /)
  t.match(text, /\r\nconnection: close\r\n/i, 'the unread body means the connection is not reused')
  s.write(chunk('b'.repeat(4000)) + chunk('c'.repeat(4000)))
  await waitFor(closed, { message: 'Ficus did not close the connection with the unread body' })
  t.pass('Ficus closed the connection')
  const after = await f.fetch('/still-alive')
  t.equal(after.status, 502, 'and is still serving')
})

t.test('a streamed upload that stalls gets 408 after bodyIdleTimeout, and its upstream request is cancelled', async (t) => {
  let upstreamSawClose: () => void = () => {}
  const closed = new Promise<void>((resolve) => { upstreamSawClose = resolve })
  const legacy = await startUpstream(t, 'legacy')
  // The stalled body never ends, so the helper's handler never runs for it: watch its socket.
  legacy.server.on('request', (req: import('node:http').IncomingMessage) => {
    if (req.url === '/doc') req.socket.on('close', () => upstreamSawClose())
  })
  const f = await startTestFicus(t, { ...oneSlot(legacy.url), limits: { bodyIdleTimeout: '300ms', bodyBuffer: 0 } })
  const r = await rawRequest(f.url, `PUT /doc HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n${'x'.repeat(10)}`)
  t.equal(r.status, 408)
  t.match(JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)), { code: 'FICUS_ERR_REQUEST_TIMEOUT' })
  t.ok(r.closed)
  await waitFor(closed, { message: 'the upstream connection of the stalled request was not closed' })
  t.pass('the upstream connection of the stalled request was closed')
  t.equal((await f.fetch('/next')).status, 200, 'its slot is free again')
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'request_timeout' }), 1)
})

t.test('limits.bodyBuffer: a body is read before a backend connection is taken; past it, streamed', async (t) => {
  const heads: string[] = []
  const legacy = await startUpstream(t, 'legacy')
  legacy.server.on('request', (req: import('node:http').IncomingMessage) => { heads.push(req.url ?? '') })
  const f = await startTestFicus(t, { ...oneSlot(legacy.url), limits: { bodyIdleTimeout: '300ms', bodyBuffer: '1KiB' } })
  const stalled = await rawRequest(f.url, `PUT /small HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(999)}`)
  t.equal(stalled.status, 408, 'a stalled upload under bodyBuffer: 408')
  t.ok(stalled.closed)
  t.same(heads, [], '…and the backend never saw it: the only connection stayed free')
  const whole = await f.fetch('/small', { method: 'PUT', body: 'x'.repeat(1000) })
  t.equal(whole.status, 200)
  t.equal(legacy.requests[0]?.body.length, 1000, 'a whole body under bodyBuffer is forwarded whole')
  const bigger = await rawRequest(f.url, `PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n${'y'.repeat(2048)}`)
  t.equal(bigger.status, 408, 'past bodyBuffer the body streams, and a stall is still cut')
  t.same(heads, ['/small', '/big'], 'the streamed one had reached the backend')
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'request_timeout' }), 2)
})

t.test('a client that stops reading is cut off after sendTimeout, freeing the upstream connection', async (t) => {
  const big = Buffer.alloc(32 * 1024 * 1024, 120)
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(200, { 'content-length': big.length })
    res.end(big)
  })
  const f = await startTestFicus(t, { ...oneSlot(legacy.url), limits: { sendTimeout: '300ms' } })
  const { port } = new URL(f.url)
  const reader = connect(Number(port), '127.0.0.1')
  reader.write('GET /big HTTP/1.1\r\nHost: a\r\n\r\n')
  await waitFor(new Promise<void>((resolve) => reader.once('data', () => { reader.pause(); resolve() })), { message: 'no byte of /big reached the client' })
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.path === '/big', { message: 'the client that stopped reading was not cut off (no access line for /big)' })
  t.match(line, { outcome: 'send_timeout', status: 200, error: { code: 'FICUS_ERR_SEND_TIMEOUT' } })
  reader.destroy()
  const next = await f.fetch('/after')
  t.equal(next.status, 200, 'the only upstream slot was given back')
})

t.test('clients that leave while queued give their places back and cost no upstream connection', async (t) => {
  const hold = held((req, res) => { res.end(req.url === '/hold' ? 'held' : 'ok') }, (req) => req.url === '/hold')
  const legacy = await startUpstream(t, 'legacy', hold.handler)
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url, connections: 1, maxQueue: 2 }, new: { url: legacy.url } } })
  const upstream = f.running.ficus.upstreams.get('legacy')!
  const first = f.fetch('/hold')
  await legacy.arrived(1, { message: 'the request to hold did not reach legacy' })
  for (let i = 0; i < 3; i++) {
    const ac = new AbortController()
    const isQueued = nextQueued(upstream)
    const queued = request(`${f.url}/queued-${i}`, { signal: ac.signal })
    await isQueued // the held request runs, this one waits in Ficus's queue (nextQueued fails past its deadline)
    ac.abort()
    await t.rejects(queued)
    await f.logs.waitFor((l) => l.msg === 'request' && l.path === `/queued-${i}`, { message: `client ${i} left the queue: no access line for /queued-${i}` })
    t.equal(upstream.load, 1, `client ${i} left: its place in the queue is free`)
  }
  // Three clients came and went: with maxQueue 2 the queue must be empty again.
  const a = f.fetch('/a')
  const b = f.fetch('/b')
  hold.release()
  t.equal((await waitFor(first, { message: 'the held request did not complete once released' })).text, 'held')
  t.same(await waitFor(Promise.all([a, b]).then((rs) => rs.map((r) => r.status)), { message: 'the two queued requests were not answered' }), [200, 200], 'both fit in the queue again')
  t.equal(legacy.started(), 3, 'the clients that left never reached the upstream')
  t.equal(legacy.connections(), 1, 'and cost no extra connection')
})

t.test('a failed answer from new is read to its end, so the connection to new is reused', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', (_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 4 })
    res.end('down')
  })
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    fallback: { breaker: false }, // ten 503s in a row would eject new after five
    routes: [{ name: 'r', match: { path: '/*' }, new: 100 }]
  })
  for (let i = 0; i < 10; i++) t.equal((await f.fetch('/x')).headers['x-served-by'], 'legacy')
  t.equal(next.started(), 10)
  t.equal(next.connections(), 1, '10 fallbacks, one connection to new')
})

t.test('a fallback stays within legacy\'s timeout counted from the request\'s arrival', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', () => { /* silent */ })
  // new may take longer than legacy's whole timeout (fallback.newTimeout set so): once new
  // has timed out, legacy's budget is spent. (By default new gets half of legacy's timeout.)
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url, timeout: '200ms' }, new: { url: next.url, timeout: '400ms' } },
    fallback: { newTimeout: '400ms' },
    routes: [{ name: 'r', match: { path: '/*' }, new: 100 }]
  })
  const r = await f.fetch('/x')
  t.equal(r.status, 504)
  t.match(r.json(), { code: 'FICUS_ERR_UPSTREAM_TIMEOUT' })
  t.equal(legacy.started(), 0, 'legacy was not asked: no time was left')
})

t.test('pipelined requests whose client leaves are each recorded as 499 and their upstream requests cancelled', async (t) => {
  // The upstream never answers: both requests are in flight upstream when the client goes.
  const legacy = await startUpstream(t, 'legacy', held(() => {}).handler)
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const { port } = new URL(f.url)
  const s = connect(Number(port), '127.0.0.1')
  s.write('GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n')
  await legacy.arrived(2, { message: 'both pipelined requests did not reach the upstream' })
  s.destroy()
  // The second response was queued behind the first: Node gives it no `close` of its own.
  const lines = await waitFor(() => f.logs.requests().length >= 2 ? f.logs.requests() : null,
    { message: 'the two pipelined requests were not both written to the access log' })
  t.same(lines.map((l) => [l.path, l.status, l.outcome]).sort(), [['/first', 499, 'client_aborted'], ['/second', 499, 'client_aborted']])
  await legacy.allClosed({ timeoutMs: 5_000, message: 'an upstream request of the departed client was not cancelled' })
  t.pass('both upstream requests were cancelled')
  t.equal(sample(await f.scrape(), 'ficus_requests_total', { route: 'default', backend: 'legacy', role: 'primary', code: '499' }), 2)
})
