import { performance } from 'node:perf_hooks'
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { bucket } from '../../src/core/bucket.js'
import { reasonOf, type ErrorCode } from '../../src/errors.js'
import { REFUSAL_LINES_PER_SECOND } from '../../src/pipeline/record.js'
import { sample, startTestFicus, type TestFicus } from '../helpers/ficus.js'
import type { LogLine } from '../helpers/log-sink.js'
import { rawRequest } from '../helpers/raw.js'
import { startUpstream, type Recorded, type Upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Strictness at least nginx's (docs/reliability.md "Strictness"): request shapes nginx
 * refuses or cleans that Node lets through. Each case is sent as raw bytes; each checks the
 * answer (status, code, the connection closed), what the backend received (nothing, or the
 * cleaned request, read by the backend's own parser), and the request's access-log line.
 */

type Assert = Pick<Test, 'same' | 'equal' | 'notMatch'>

interface Case {
  readonly what: string
  readonly send: string
  /** Statuses of the responses on the connection, in order (100 Continue excluded). */
  readonly status: number
  /** The Ficus code of a refusal. */
  readonly code?: ErrorCode
  /** What the backend received: nothing for a refusal; for a request let through, a check of it. */
  readonly upstream?: (t: Assert, r: Recorded) => void
}

const H = 'Host: shop.example\r\n'
const C = 'Connection: close\r\n'
const refused = (what: string, send: string, code: ErrorCode, status = 400): Case => ({ what, send, status, code })
const passed = (what: string, send: string, upstream: (t: Assert, r: Recorded) => void = () => {}): Case => ({ what, send, status: 200, upstream })

/** Raw header values of `name` the backend received, in order. */
function raw(r: Recorded, name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]?.toLowerCase() === name) out.push(r.rawHeaders[i + 1] as string)
  return out
}

/** Fields that may appear once, each sent twice (the list is the contract: docs/reliability.md). */
const SINGLE: [string, string, string][] = [
  ['Authorization', 'Bearer alice', 'Bearer mallory'],
  ['Proxy-Authorization', 'Basic YTpi', 'Basic Yzpk'],
  ['Content-Type', 'application/json', 'text/plain'],
  ['Content-Range', 'bytes 0-1/2', 'bytes 1-1/2'],
  ['Range', 'bytes=0-1', 'bytes=5-9'],
  ['If-Match', '"v1"', '"v2"'],
  ['If-None-Match', '"v1"', '*'],
  ['If-Modified-Since', 'Sat, 01 Nov 2025 00:00:00 GMT', 'Sun, 02 Nov 2025 00:00:00 GMT'],
  ['If-Unmodified-Since', 'Sat, 01 Nov 2025 00:00:00 GMT', 'Sun, 02 Nov 2025 00:00:00 GMT'],
  ['If-Range', '"v1"', '"v2"']
]

const CASES: Case[] = [
  // ---- Host (RFC 9112 §3.2, RFC 3986 §3.2.2) ----
  refused('Host with an empty label', 'GET /a HTTP/1.1\r\nHost: shop..example\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host starting with a dot', 'GET /a HTTP/1.1\r\nHost: .shop.example\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host with a port over 65535', 'GET /a HTTP/1.1\r\nHost: shop.example:65536\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host with two ports', 'GET /a HTTP/1.1\r\nHost: shop.example:80:81\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host with a comma (splits X-Forwarded-Host)', 'GET /a HTTP/1.1\r\nHost: evil.example,shop.example\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host percent-encoded', 'GET /a HTTP/1.1\r\nHost: shop%2eexample\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host as a short-hand IPv4 (inet_aton reads 127.0.0.1)', 'GET /a HTTP/1.1\r\nHost: 127.1\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host as an IPv4 out of range', 'GET /a HTTP/1.1\r\nHost: 256.0.0.1\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host as an unclosed IPv6 literal', 'GET /a HTTP/1.1\r\nHost: [::1\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host as an IPv6 literal with a zone', 'GET /a HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('Host as an invalid IPv6 literal', 'GET /a HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('absolute-form target with an empty label', 'GET http://shop..example/p HTTP/1.1\r\nHost: shop.example\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  refused('absolute-form target with a bad port', 'GET http://shop.example:99999/p HTTP/1.1\r\nHost: shop.example\r\n\r\n', 'FICUS_ERR_INVALID_HOST'),
  passed('Host with a colon and an empty port (the default one, RFC 3986 §3.2.3; nginx takes it)', `GET /a HTTP/1.1\r\nHost: shop.example:\r\n${C}\r\n`, (t, r) => { t.same(raw(r, 'host'), ['shop.example:']) }),
  passed('Host as an absolute name (trailing dot)', `GET /a HTTP/1.1\r\nHost: shop.example.\r\n${C}\r\n`, (t, r) => { t.same(raw(r, 'host'), ['shop.example.']) }),
  passed('Host as IPv4 with a port', `GET /a HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n${C}\r\n`, (t, r) => { t.same(raw(r, 'host'), ['10.0.0.1:8080']) }),
  passed('Host as an IPv6 literal', `GET /a HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n${C}\r\n`, (t, r) => { t.same(raw(r, 'host'), ['[2001:db8::1]:443']) }),
  passed('Host naming a service with "_"', `GET /a HTTP/1.1\r\nHost: legacy_api.internal\r\n${C}\r\n`, (t, r) => { t.same(raw(r, 'host'), ['legacy_api.internal']) }),

  // ---- TRACE (RFC 9110 §9.3.8) ----
  refused('TRACE where no route lists it', `TRACE /a HTTP/1.1\r\n${H}\r\n`, 'FICUS_ERR_METHOD_NOT_ALLOWED', 405),
  refused('TRACE on a route of every method', `TRACE /api/x HTTP/1.1\r\n${H}Cookie: sid=secret\r\n\r\n`, 'FICUS_ERR_METHOD_NOT_ALLOWED', 405),
  passed('TRACE on a route that lists it', `TRACE /debug/x HTTP/1.1\r\n${H}${C}\r\n`, (t, r) => { t.equal(r.method, 'TRACE') }),

  // ---- fields that may appear once (RFC 9110 §5.3) ----
  ...SINGLE.map(([name, a, b]) => refused(`${name} twice`, `GET /a HTTP/1.1\r\n${H}${name}: ${a}\r\n${name}: ${b}\r\n\r\n`, 'FICUS_ERR_DUPLICATE_HEADER')),
  refused('Expect twice', `POST /a HTTP/1.1\r\n${H}Expect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc`, 'FICUS_ERR_DUPLICATE_HEADER'),
  refused('Authorization twice, in different case', `GET /a HTTP/1.1\r\n${H}Authorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n`, 'FICUS_ERR_DUPLICATE_HEADER'),
  passed('list fields repeated (Accept, Cookie, X-Forwarded-For, Cache-Control)', `GET /a HTTP/1.1\r\n${H}Accept: text/html\r\nAccept: */*\r\nCookie: a=1\r\nCookie: b=2\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nCache-Control: no-cache\r\nCache-Control: no-store\r\n${C}\r\n`, (t, r) => {
    t.same([raw(r, 'accept'), raw(r, 'cookie'), raw(r, 'cache-control')], [['text/html', '*/*'], ['a=1', 'b=2'], ['no-cache', 'no-store']])
    t.same(raw(r, 'x-forwarded-for'), ['127.0.0.1'], 'no trusted hop: the client\'s own X-Forwarded-For is replaced')
  }),

  // ---- Transfer-Encoding (RFC 9112 §6.1, §6.3) ----
  refused('Transfer-Encoding starting with an empty element', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: , chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'FICUS_ERR_BAD_REQUEST'),
  refused('Transfer-Encoding with an empty element inside', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: gzip, , chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'FICUS_ERR_BAD_REQUEST'),
  refused('Transfer-Encoding with an empty element inside (Node\'s parser)', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked, , chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'FICUS_ERR_BAD_REQUEST'),
  refused('Transfer-Encoding ending in an empty element (Node\'s parser)', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked,\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'FICUS_ERR_BAD_REQUEST'),
  refused('Transfer-Encoding empty, with Content-Length', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc`, 'FICUS_ERR_BAD_REQUEST'),
  refused('Transfer-Encoding empty, then chunked on a second line', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'FICUS_ERR_BAD_REQUEST'),
  refused('gzip before chunked (would reach the backend still gzip-coded)', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'FICUS_ERR_TRANSFER_CODING', 501),
  passed('Transfer-Encoding: chunked, any case', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n${C}\r\n3\r\nabc\r\n0\r\n\r\n`, (t, r) => { t.equal(r.body.toString(), 'abc') }),

  // ---- header names with "_" or "." (nginx: underscores_in_headers off, ignore_invalid_headers on) ----
  passed('X_Forwarded_For and X.Real.IP are left out; X-Forwarded-For is still Ficus\'s', `GET /a HTTP/1.1\r\n${H}X_Forwarded_For: 6.6.6.6\r\nX.Real.IP: 6.6.6.6\r\nX~Role: admin\r\nX-Forwarded-For: 7.7.7.7\r\nX-Kept: yes\r\n${C}\r\n`, (t, r) => {
    t.same(r.rawHeaders.filter((_, i) => i % 2 === 0).filter((n) => /[^A-Za-z0-9-]/.test(n)), [], 'no odd header name reached the backend')
    t.notMatch(JSON.stringify(r.rawHeaders), /6\.6\.6\.6|admin/, 'nor their values')
    t.same(raw(r, 'x-forwarded-for'), ['127.0.0.1'])
    t.same(raw(r, 'x-kept'), ['yes'])
  }),

  // ---- expectations (RFC 9110 §10.1.1) ----
  refused('Expect other than 100-continue', `POST /a HTTP/1.1\r\n${H}Expect: 103-checkpoint\r\nContent-Length: 3\r\n\r\nabc`, 'FICUS_ERR_EXPECTATION', 417)
]

function statusesOf(text: string): number[] {
  return [...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])).filter((s) => s !== 100)
}

function lastBody(text: string): string {
  return text.slice(text.lastIndexOf('\r\n\r\n') + 4)
}

const ROUTES = [
  { name: 'debug', match: { path: '/debug/*', methods: ['GET', 'TRACE'] }, new: 0 },
  { name: 'api', match: { path: '/api/*' }, new: 0 },
  { name: 'split', match: { path: '/split/*' }, new: 50 }
]

async function ficus(t: Parameters<typeof startTestFicus>[0], legacy: Upstream, extra: Record<string, unknown> = {}): Promise<TestFicus> {
  return startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, routes: ROUTES, ...extra })
}

/** The access-log line of the request with this id (every request and every refusal has one). */
async function lineOf(f: TestFicus, requestId: string, what: string): Promise<LogLine> {
  return f.logs.waitFor((l) => l.msg === 'request' && l.reqId === requestId, { message: `${what}: no access-log line for ${requestId}` })
}

t.test('each strictness case: the answer, what the backend received, and the access-log line', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await ficus(t, legacy)
  let refusals = 0
  for (const c of CASES) {
    const before = legacy.requests.length
    const started = legacy.started()
    const r = await rawRequest(f.url, c.send)
    t.same(statusesOf(r.text), [c.status], `${c.what}: status`)
    t.ok(r.closed, `${c.what}: the connection is closed`)
    const got = legacy.requests.slice(before)
    if (c.code !== undefined) {
      refusals++
      const body = JSON.parse(lastBody(r.text)) as { code: string; requestId: string }
      t.equal(body.code, c.code, `${c.what}: code`)
      t.match(r.text, /\r\nconnection: close\r\n/i, `${c.what}: says Connection: close`)
      t.equal(legacy.started() - started, 0, `${c.what}: nothing reached the backend, not even the head`)
      const line = await lineOf(f, body.requestId, c.what)
      t.match(line, { level: 'warn', status: c.status, outcome: reasonOf(c.code), error: { code: c.code } }, `${c.what}: logged`)
    } else {
      t.equal(got.length, 1, `${c.what}: the backend received it once`)
      if (got[0] !== undefined) c.upstream?.(t, got[0])
    }
  }
  const text = await f.scrape()
  const reasons = [...new Set(CASES.flatMap((c) => c.code === undefined ? [] : [reasonOf(c.code)]))]
  t.equal(reasons.reduce((n, reason) => n + (sample(text, 'ficus_client_errors_total', { reason }) ?? 0), 0), refusals, 'every refusal is counted in ficus_client_errors_total')
  t.notOk(f.logs.lines.some((l) => JSON.stringify(l).includes('secret')), 'a refused TRACE\'s cookie is not logged')
  t.equal((await f.fetch('/after')).status, 200, 'Ficus still serves')
})

t.test('a dropped header name is named in the access-log line; the sticky header is still read', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await ficus(t, legacy)
  const r = await rawRequest(f.url, `GET /split/x HTTP/1.1\r\n${H}X-User-Id: u-1\r\nX_User_Id: u-2\r\nX-Request-Id: dropped-1\r\n${C}\r\n`)
  t.equal(r.status, 200)
  t.same(raw(legacy.requests[0] as Recorded, 'x-user-id'), ['u-1'], 'the backend got the sticky header, not its "_" twin')
  t.same(raw(legacy.requests[0] as Recorded, 'x_user_id'), [])
  const line = await lineOf(f, 'dropped-1', 'dropped header')
  t.match(line, { route: 'split', bucket: bucket('split', 'u-1'), droppedHeaders: ['X_User_Id'] }, 'bucketed by X-User-Id; X_User_Id named as dropped')
})

t.test('limits.headerNames: refuse answers 400; pass forwards them', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const strict = await ficus(t, legacy, { limits: { headerNames: 'refuse' } })
  const r = await rawRequest(strict.url, `GET /a HTTP/1.1\r\n${H}X_Forwarded_For: 6.6.6.6\r\n\r\n`)
  t.equal(r.status, 400)
  const body = JSON.parse(lastBody(r.text)) as { code: string; requestId: string }
  t.equal(body.code, 'FICUS_ERR_HEADER_NAME')
  t.match(await lineOf(strict, body.requestId, 'refused header name'), { outcome: 'header_name', status: 400 })
  t.equal(legacy.requests.length, 0, 'nothing reached the backend')
  t.equal((await rawRequest(strict.url, `GET /a HTTP/1.1\r\n${H}X-Forwarded-For: 6.6.6.6\r\n${C}\r\n`)).status, 200, 'plain names pass')

  const lax = await ficus(t, legacy, { limits: { headerNames: 'pass' } })
  t.equal((await rawRequest(lax.url, `GET /a HTTP/1.1\r\n${H}X_Tenant: acme\r\n${C}\r\n`)).status, 200)
  t.same(raw(legacy.requests.at(-1) as Recorded, 'x_tenant'), ['acme'], 'pass: forwarded as sent')
})

t.test('refusals before a request exists (parser errors, 431, 408) get an id and an access-log line', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await ficus(t, legacy, { limits: { headerSize: '1KiB', headTimeout: '300ms' } })
  const bad = await rawRequest(f.url, `GET /a HTTP/1.1\r\n${H}X(A): b\r\n\r\n`)
  t.equal(bad.status, 400)
  const badBody = JSON.parse(lastBody(bad.text)) as { code: string; requestId: string }
  t.match(await lineOf(f, badBody.requestId, 'parser error'), { level: 'warn', status: 400, outcome: 'bad_request', error: { code: 'FICUS_ERR_BAD_REQUEST', cause: /^HPE_/ }, ip: '127.0.0.1' })

  const big = await rawRequest(f.url, `GET /a HTTP/1.1\r\n${H}X-Big: ${'x'.repeat(2048)}\r\n\r\n`)
  t.equal(big.status, 431)
  const bigBody = JSON.parse(lastBody(big.text)) as { code: string; requestId: string }
  t.match(await lineOf(f, bigBody.requestId, '431'), { status: 431, outcome: 'headers_too_large', error: { code: 'FICUS_ERR_HEADERS_TOO_LARGE' } })

  // A head that never ends: 408 after headTimeout.
  const { port } = new URL(f.url)
  const s = connect(Number(port), '127.0.0.1')
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString() })
  s.write(`GET /slow HTTP/1.1\r\n${H}X-A: 1\r\n`)
  await waitFor(new Promise((resolve) => s.on('close', resolve)), { message: 'the slow head was not answered and closed' })
  t.match(text, /^HTTP\/1\.1 408 /)
  const slowBody = JSON.parse(lastBody(text)) as { code: string; requestId: string }
  t.match(await lineOf(f, slowBody.requestId, '408'), { status: 408, outcome: 'request_timeout' })
  t.equal(legacy.started(), 0, 'none reached the backend')
})

t.test('a flood of refusals: access-log lines are capped per second, and the rest counted in a summary line', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await ficus(t, legacy)
  const n = REFUSAL_LINES_PER_SECOND * 2 + 50
  const start = performance.now()
  const answers = await Promise.all(Array.from({ length: n }, () => rawRequest(f.url, `GET /a HTTP/1.1\r\n${H}X(A): b\r\n\r\n`)))
  t.same([...new Set(answers.map((a) => a.status))], [400])
  const refusalLines = (): LogLine[] => f.logs.requests().filter((l) => l.outcome === 'bad_request')
  const notLogged = (): number => f.logs.lines.filter((l) => l.msg === 'refused requests over the access-log budget').reduce((s, l) => s + (l.notLogged as number), 0)
  await waitFor(() => refusalLines().length + notLogged() === n, { message: () => `${refusalLines().length} lines + ${notLogged()} counted as not logged != ${n} refusals` })
  const elapsed = performance.now() - start
  // Windows of 1 s start at a refusal: in `elapsed` ms at most floor(elapsed / 1000) + 1 of them.
  t.ok(refusalLines().length <= REFUSAL_LINES_PER_SECOND * (Math.floor(elapsed / 1000) + 1), `${refusalLines().length} lines in ${Math.round(elapsed)} ms`)
  const summary = f.logs.lines.find((l) => l.msg === 'refused requests over the access-log budget')
  if (summary !== undefined) t.match(summary, { level: 'warn', outcomes: { bad_request: Number } }, 'the summary says which refusals')
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'bad_request' }), n, 'every refusal is counted, logged or not')
})
