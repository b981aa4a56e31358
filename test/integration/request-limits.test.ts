import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { rawRequest } from '../helpers/raw.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

async function setup (t: Parameters<typeof startUpstream>[0], limits: Record<string, string> = {}) {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, limits })
  return { legacy, f }
}

function bodyOf(text: string): unknown {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
}

t.test('a Content-Length over the limit is refused with 413 before anything is forwarded', async (t) => {
  const { legacy, f } = await setup(t, { bodySize: '1KiB' })
  const r = await rawRequest(f.url, `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n${'x'.repeat(100)}`)
  t.equal(r.status, 413)
  t.match(r.text, /\r\nconnection: close\r\n/i)
  t.match(bodyOf(r.text), { code: 'FICUS_ERR_BODY_TOO_LARGE', error: 'The request body is larger than the limit' })
  t.ok(r.closed, 'the connection is closed: the body was not read')
  t.equal(legacy.started(), 0, 'the upstream never saw it')
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'body_too_large' }), 1)
})

t.test('a chunked body is counted while it streams and stopped at the limit', async (t) => {
  const { legacy, f } = await setup(t, { bodySize: '1KiB' })
  const chunk = (s: string): string => `${s.length.toString(16)}\r\n${s}\r\n`
  const r = await rawRequest(f.url, `POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(800))}${chunk('b'.repeat(800))}0\r\n\r\n`)
  t.equal(r.status, 413)
  t.match(bodyOf(r.text), { code: 'FICUS_ERR_BODY_TOO_LARGE' })
  t.match(r.text, /\r\nconnection: close\r\n/i)
  t.ok(r.closed, 'the rest of the body is not read: the connection ends')
  t.equal(legacy.requests.length, 0, 'the upstream never got a complete request')
  t.ok(legacy.started() <= 1, 'at most the start of one, aborted')
  const ok = await rawRequest(f.url, `POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk('a'.repeat(500))}${chunk('b'.repeat(500))}0\r\n\r\n`)
  t.equal(ok.status, 200, 'under the limit passes')
  t.equal(legacy.requests[0]?.body.length, 1000)
})

t.test('Expect: 100-continue: 100 then the answer under the limit; 413 without 100 over it', async (t) => {
  const { legacy, f } = await setup(t, { bodySize: '1KiB' })
  const { port } = new URL(f.url)
  const under = await waitFor(new Promise<string>((resolve, reject) => {
    const s = connect(Number(port), '127.0.0.1')
    let text = ''
    s.on('connect', () => s.write('PUT /doc HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n'))
    s.on('data', (d: Buffer) => {
      text += d.toString()
      if (text === 'HTTP/1.1 100 Continue\r\n\r\n') s.write('hello')
    })
    s.on('close', () => resolve(text))
    s.on('error', reject)
  }), { message: 'the 100-continue exchange did not end with Ficus closing the connection' })
  t.match(under, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
  t.equal(legacy.requests[0]?.body.toString(), 'hello')
  t.notOk('expect' in (legacy.requests[0]?.headers ?? {}), 'Expect is answered by Ficus, not forwarded')
  const over = await rawRequest(f.url, 'PUT /doc HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2048\r\n\r\n')
  t.equal(over.status, 413)
  t.notMatch(over.text, /100 Continue/)
  t.equal(legacy.started(), 1)
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.status === 413)
  t.match(line, { method: 'PUT', path: '/doc', outcome: 'body_too_large' })
})

t.test('request headers over the limit: 431', async (t) => {
  const { legacy, f } = await setup(t, { headerSize: '4KiB' })
  const r = await rawRequest(f.url, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(5000)}\r\n\r\n`)
  t.equal(r.status, 431)
  t.match(bodyOf(r.text), { code: 'FICUS_ERR_HEADERS_TOO_LARGE' })
  t.equal(legacy.started(), 0)
})

t.test('a request head that does not arrive in time: 408 and closed; a silent socket is closed too', async (t) => {
  const { legacy, f } = await setup(t, { headTimeout: '300ms' })
  const started = Date.now()
  const slow = await rawRequest(f.url, 'GET / HTTP/1.1\r\nHost: a\r\n')
  t.equal(slow.status, 408)
  t.match(bodyOf(slow.text), { code: 'FICUS_ERR_REQUEST_TIMEOUT' })
  t.ok(slow.closed)
  t.ok(Date.now() - started < 5000, 'well before Node\'s own defaults')
  const silent = await rawRequest(f.url, '')
  t.ok(silent.closed, 'a connection that never sends a byte is closed')
  t.equal(silent.text, '', '…without an answer, as nginx does')
  t.equal(legacy.started(), 0)
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'request_timeout' }), 1, 'only the real request is counted')
})

t.test('an idle keep-alive connection is closed after keepAliveTimeout', async (t) => {
  const { f } = await setup(t, { keepAliveTimeout: '300ms' })
  const started = Date.now()
  // One complete request on a keep-alive connection; rawRequest returns when the server closes it.
  const r = await rawRequest(f.url, 'GET /ka HTTP/1.1\r\nHost: a\r\n\r\n')
  t.equal(r.status, 200)
  t.match(r.text, /\r\nKeep-Alive: timeout=/i, 'the connection was offered as keep-alive')
  t.ok(r.closed, 'closed by Ficus')
  // Node's own default is 5 s: closing well before it shows the configured value is used.
  const elapsed = Date.now() - started
  t.ok(elapsed >= 250 && elapsed < 2500, `closed after ${elapsed} ms`)
})

t.test('a request not received within requestTimeout: 408, recorded as such, upstream request cancelled', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } },
    limits: { headTimeout: '200ms', requestTimeout: '600ms', bodyIdleTimeout: '30s' }
  })
  const { port } = new URL(f.url)
  // A body that trickles in (never idle long enough for bodyIdleTimeout) but never ends.
  const s = connect(Number(port), '127.0.0.1')
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString() })
  s.write('POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n')
  const drip = setInterval(() => s.write('x'), 50)
  await waitFor(once(s, 'close'), { message: 'Ficus did not close the trickling request\'s connection at requestTimeout' }).finally(() => { clearInterval(drip) })
  t.match(text, /^HTTP\/1\.1 408 /)
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.path === '/trickle')
  t.match(line, { status: 408, outcome: 'request_timeout', error: { code: 'FICUS_ERR_REQUEST_TIMEOUT' } })
  t.equal(legacy.requests.length, 0, 'the upstream never got the whole request')
})
