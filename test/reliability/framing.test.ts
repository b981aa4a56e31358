import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { curl } from '../helpers/curl.js'
import { rawRequest } from '../helpers/raw.js'
import { startUpstream } from '../helpers/upstream.js'
import { reasonOf, type ErrorCode } from '../../src/errors.js'

/**
 * Request framing and smuggling (docs/reliability.md "Framing and smuggling", RFC 9112 §2–§7), sent with a
 * raw socket because no HTTP client produces these bytes. For each: the statuses on the
 * connection, whether Ficus closed it, and how many requests reached the upstream, counted
 * by the upstream's own parser. A smuggled request would show up there as one more.
 */

interface Case {
  readonly what: string
  readonly send: string
  /** Statuses of the responses on the connection, in order (100 Continue excluded). */
  readonly statuses: number[]
  /** Ficus code of the last answer, when Ficus answered it. */
  readonly code?: string
  /** Ficus ends the connection itself (no case sends Connection: close unless it expects it kept). */
  readonly closed: boolean
  /** Request targets the upstream received whole (pipelined requests may be forwarded at once: any order), and answered in this order. */
  readonly upstream: string[]
}

const H = 'Host: shop.example\r\n'
const chunk = (s: string): string => `${s.length.toString(16)}\r\n${s}\r\n`
const SMUGGLED = `GET /smuggled HTTP/1.1\r\n${H}\r\n`

const CASES: Case[] = [
  // ---- Content-Length and Transfer-Encoding together or malformed (CL.TE / TE.CL desync) ----
  { what: 'CL then TE', send: `POST /a HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'TE then CL', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'duplicate identical Content-Length', send: `POST /a HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'conflicting Content-Length', send: `POST /a HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'listed Content-Length', send: `POST /a HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'signed Content-Length (+)', send: `POST /a HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'signed Content-Length (-)', send: `POST /a HTTP/1.1\r\n${H}Content-Length: -3\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'non-final chunked', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'unknown Transfer-Encoding', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'Transfer-Encoding: identity with Content-Length', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'chunked twice', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'Transfer-Encoding in HTTP/1.0', send: `POST /a HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunk('abc')}0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'Transfer-Encoding with Content-Length in HTTP/1.0', send: `POST /a HTTP/1.0\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  // ---- bad chunks: found once the head was read ----
  { what: 'chunk size not hex', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'chunk size overflowing 64 bits', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'negative chunk size', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'chunk longer than its size', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n${SMUGGLED}`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  // ---- header syntax ----
  { what: 'obs-fold', send: `GET /a HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'bare LF line endings', send: 'GET /a HTTP/1.1\nHost: shop.example\n\n', statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'bare LF after one header', send: `GET /a HTTP/1.1\r\nHost: shop.example\nX-A: b\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'space before the colon', send: 'GET /a HTTP/1.1\r\nHost : shop.example\r\n\r\n', statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'space before the colon of Transfer-Encoding', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'NUL in a value', send: `GET /a HTTP/1.1\r\n${H}X-A: b\x00c\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'CR alone in a value', send: `GET /a HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'invalid character in a header name', send: `GET /a HTTP/1.1\r\n${H}X(A): b\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  // ---- Host ----
  { what: 'missing Host', send: 'GET /a HTTP/1.1\r\n\r\n', statuses: [400], code: 'FICUS_ERR_MISSING_HOST', closed: true, upstream: [] },
  { what: 'duplicate Host', send: `GET /a HTTP/1.1\r\n${H}Host: evil.example\r\n\r\n`, statuses: [400], code: 'FICUS_ERR_DUPLICATE_HOST', closed: true, upstream: [] },
  { what: 'Host with a space', send: 'GET /a HTTP/1.1\r\nHost: shop.example evil.example\r\n\r\n', statuses: [400], code: 'FICUS_ERR_INVALID_HOST', closed: true, upstream: [] },
  { what: 'Host with userinfo', send: 'GET /a HTTP/1.1\r\nHost: alice@shop.example\r\n\r\n', statuses: [400], code: 'FICUS_ERR_INVALID_HOST', closed: true, upstream: [] },
  { what: 'Host with a path', send: 'GET /a HTTP/1.1\r\nHost: shop.example/x\r\n\r\n', statuses: [400], code: 'FICUS_ERR_INVALID_HOST', closed: true, upstream: [] },
  { what: 'Host with a non-numeric port', send: 'GET /a HTTP/1.1\r\nHost: shop.example:80a\r\n\r\n', statuses: [400], code: 'FICUS_ERR_INVALID_HOST', closed: true, upstream: [] },
  { what: 'HTTP/1.0 without Host (allowed)', send: 'GET /a HTTP/1.0\r\n\r\n', statuses: [200], closed: true, upstream: ['/a'] },
  { what: 'empty Host (allowed)', send: 'GET /a HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n', statuses: [200], closed: true, upstream: ['/a'] },
  { what: 'IPv6 literal Host with port (allowed)', send: 'GET /a HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n', statuses: [200], closed: true, upstream: ['/a'] },
  // ---- request line ----
  { what: 'invalid method token', send: `G@T /a HTTP/1.1\r\n${H}\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'lower-case method', send: `get /a HTTP/1.1\r\n${H}\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'HTTP/2.0 in an HTTP/1 request line', send: `GET /a HTTP/2.0\r\n${H}\r\n`, statuses: [505], code: 'FICUS_ERR_HTTP_VERSION', closed: true, upstream: [] },
  { what: 'HTTP/1.2', send: `GET /a HTTP/1.2\r\n${H}\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: [] },
  { what: 'CONNECT', send: 'CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\n\r\n', statuses: [501], code: 'FICUS_ERR_CONNECT', closed: true, upstream: [] },
  { what: 'asterisk target on GET', send: `GET * HTTP/1.1\r\n${H}\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_TARGET', closed: true, upstream: [] },
  { what: 'bad percent-encoding', send: `GET /a%zz HTTP/1.1\r\n${H}\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_TARGET', closed: true, upstream: [] },
  { what: 'credentials in an absolute-form target', send: `GET http://alice:s3cret@shop.example/p HTTP/1.1\r\n${H}\r\n`, statuses: [400], code: 'FICUS_ERR_BAD_TARGET', closed: true, upstream: [] },
  { what: 'absolute-form target (accepted)', send: 'GET http://shop.example:8080/p?x=1 HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n', statuses: [200], closed: true, upstream: ['/p?x=1'] },
  // ---- several requests on one connection ----
  { what: 'pipelined requests, answered in order', send: `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\nGET /3 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, statuses: [200, 200, 200], closed: true, upstream: ['/1', '/2', '/3'] },
  { what: 'pipelined: a request, then CONNECT (answered after it)', send: `GET /1 HTTP/1.1\r\n${H}\r\nCONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\n\r\n`, statuses: [200, 501], code: 'FICUS_ERR_CONNECT', closed: true, upstream: ['/1'] },
  { what: 'pipelined: a good request, then a malformed one', send: `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, statuses: [200, 400], code: 'FICUS_ERR_BAD_REQUEST', closed: true, upstream: ['/1'] },
  { what: 'GET with a body that looks like a request', send: `GET /a HTTP/1.1\r\n${H}Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}GET /b HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, statuses: [200, 200], closed: true, upstream: ['/a', '/b'] },
  { what: 'POST with a chunked body, then a request', send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunk(SMUGGLED)}0\r\n\r\nGET /b HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, statuses: [200, 200], closed: true, upstream: ['/a', '/b'] }
]

function statusesOf(text: string): number[] {
  return [...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])).filter((s) => s !== 100)
}

function lastBody(text: string): string {
  return text.slice(text.lastIndexOf('\r\n\r\n') + 4)
}

t.test('framing and smuggling: each malformed request is refused, closed, and never reaches the upstream', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  // A keep-alive timeout longer than the test's: a connection that should close but is kept open fails by timing out.
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, limits: { keepAliveTimeout: '120s' } })
  let started = 0
  const answered: { what: string; requestId: string; code: string }[] = []
  for (const c of CASES) {
    const done = legacy.requests.length
    const r = await rawRequest(f.url, c.send)
    t.same(statusesOf(r.text), c.statuses, `${c.what}: statuses`)
    if (c.code !== undefined) {
      const body = JSON.parse(lastBody(r.text)) as { code: string; requestId?: string }
      t.equal(body.code, c.code, `${c.what}: code`)
      if (body.requestId !== undefined) answered.push({ what: c.what, requestId: body.requestId, code: body.code })
    }
    // rawRequest returns once Ficus closes (a connection kept open would time the test out): what
    // the client is told is the promise checked here.
    t.equal(r.closed, c.closed, `${c.what}: closed`)
    if (c.closed) t.match(r.text.slice([...r.text.matchAll(/(?:^|\r\n)HTTP\/1\.1 \d{3} /g)].at(-1)?.index ?? 0), /\r\nconnection: close\r\n/i, `${c.what}: the last answer says Connection: close`)
    t.same(legacy.requests.slice(done).map((x) => x.url).sort(), [...c.upstream].sort(), `${c.what}: what reached the upstream`)
    t.same([...r.text.matchAll(/"url":"([^"]*)"/g)].map((m) => m[1]), c.upstream, `${c.what}: answers in request order`)
    const heads = legacy.started() - started
    started = legacy.started()
    // Bodies under limits.bodyBuffer are read whole before a backend is asked: a bad chunk never costs one.
    t.equal(heads, c.upstream.length, `${c.what}: no other request began upstream`)
  }
  const smuggled = legacy.requests.filter((x) => x.url === '/smuggled')
  t.same(smuggled, [], 'no smuggled request ever reached the upstream')
  t.equal(legacy.requests.find((x) => x.url === '/a' && x.method === 'GET' && x.body.length > 0)?.body.toString(), SMUGGLED, 'a GET body is forwarded as a body')
  t.equal(legacy.requests.find((x) => x.url === '/a' && x.method === 'POST')?.body.toString(), SMUGGLED, 'a chunked body is forwarded whole')

  const refused = CASES.filter((c) => c.code !== undefined).length
  const text = await f.scrape()
  const counted = ['bad_request', 'bad_target', 'duplicate_host', 'missing_host', 'invalid_host', 'http_version', 'connect']
    .reduce((n, reason) => n + (sample(text, 'ficus_client_errors_total', { reason }) ?? 0), 0)
  t.equal(counted, refused, 'every refusal is counted in ficus_client_errors_total')
  // Parser failures before Node made a request of them too: the id is the one of their access-log line.
  t.equal(answered.length, refused, 'every refusal carries a request id')
  await f.logs.waitFor(() => answered.every((a) => f.logs.requests().some((l) => l.reqId === a.requestId)), { message: 'not every refusal got its access-log line' })
  for (const a of answered) {
    const line = f.logs.requests().find((l) => l.reqId === a.requestId)
    t.equal(line?.outcome, reasonOf(a.code as ErrorCode), `${a.what}: logged with its outcome`)
  }
  t.notOk(f.logs.lines.some((l) => JSON.stringify(l).includes('s3cret')), 'credentials in a target are never logged')
  t.equal((await f.fetch('/after')).status, 200, 'Ficus still serves')
})

t.test('curl --data-binary @2MB.bin: Expect: 100-continue works under the body limit, and over it 413 before the body is sent', async (t) => {
  const dir = t.testdir()
  const file = join(dir, '2MB.bin')
  const payload = Buffer.alloc(2 * 1024 * 1024, 'ficus')
  await writeFile(file, payload)
  const digest = createHash('sha256').update(payload).digest('hex')
  const legacy = await startUpstream(t, 'legacy', (_req, res, body) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(createHash('sha256').update(body).digest('hex'))
  })
  const roomy = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, limits: { bodySize: '4MiB' } })
  const under = await curl(['-v', '--data-binary', `@${file}`, `${roomy.url}/upload`])
  t.equal(under.status, 200)
  t.equal(under.body, digest, 'the upstream got the 2 MB body byte for byte')
  t.equal(under.info.size_upload, payload.length)
  t.equal(legacy.requests.length, 1)
  t.notOk('expect' in (legacy.requests[0]?.headers ?? {}), 'Expect is Ficus\'s business, not the upstream\'s')

  const tight = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, limits: { bodySize: '1MiB' } })
  const over = await curl(['--data-binary', `@${file}`, `${tight.url}/upload`])
  t.equal(over.status, 413)
  t.match(JSON.parse(over.body), { code: 'FICUS_ERR_BODY_TOO_LARGE' })
  t.equal(over.info.size_upload, 0, 'curl was told not to send the body')
  const chunked = await curl(['-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, `${tight.url}/upload`])
  t.equal(chunked.status, 413, 'a chunked upload over the limit: 413 as well')
  t.equal(legacy.requests.length, 1, 'neither reached the upstream whole')
})
