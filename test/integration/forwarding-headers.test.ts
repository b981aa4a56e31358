import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { startTestFicus } from '../helpers/ficus.js'
import { rawRequest } from '../helpers/raw.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

t.test('the upstream sees Via, X-Forwarded-*, Forwarded, a request id, and no hop-by-hop header', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const r = await rawRequest(f.url, [
    'GET /h HTTP/1.1', 'Host: shop.example', 'Connection: keep-alive, X-Hop', 'X-Hop: secret', 'Keep-Alive: timeout=9',
    'TE: trailers, deflate', 'Proxy-Authorization: Basic Zm9vOmJhcg==', 'X-Forwarded-For: 6.6.6.6', 'Forwarded: for=6.6.6.6',
    'X-Ficus-Shadow: 1', 'X-Tag: one', 'X-Tag: two', 'Cookie: a=1', '', ''
  ].join('\r\n'), (text) => text.includes('\r\n\r\n') && text.includes('}'))
  t.equal(r.status, 200)
  const seen = legacy.requests[0]!
  const h = seen.headers
  t.equal(h.via, '1.1 ficus')
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'the spoofed address is not passed on')
  t.equal(h['x-forwarded-proto'], 'http')
  t.equal(h['x-forwarded-host'], 'shop.example')
  t.equal(h.forwarded, 'for=127.0.0.1;host="shop.example";proto=http')
  t.equal(h.host, 'shop.example', 'Host is preserved by default')
  t.match(h['x-request-id'], /^[0-9a-f-]{36}$/, 'a request id is made')
  for (const name of ['x-hop', 'keep-alive', 'proxy-authorization', 'x-ficus-shadow']) t.notOk(name in h, `${name} not forwarded`)
  t.equal(h.te, 'trailers', 'TE passes only as trailers')
  const tags = seen.rawHeaders.flatMap((v, i) => (i % 2 === 1 && seen.rawHeaders[i - 1] === 'X-Tag' ? [v] : []))
  t.same(tags, ['one', 'two'], 'repeated headers arrive separately, in order')
})

t.test('a client request id is kept and reaches the log line and the backend', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  await f.fetch('/x', { headers: { 'x-request-id': 'abc-123' } })
  t.equal(legacy.requests[0]?.headers['x-request-id'], 'abc-123')
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.equal(line.reqId, 'abc-123')
  await f.fetch('/x', { headers: { 'x-request-id': 'has spaces in it' } })
  t.match(legacy.requests[1]?.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'an unusable id is replaced by a new one')
})

t.test('trusted hops: the address before the trusted proxy is the client', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } },
    trustedHops: 1,
    routes: [{ name: 'r', match: { path: '/*' }, new: 0 }]
  })
  await f.fetch('/x', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9', 'x-forwarded-proto': 'https' } })
  t.equal(legacy.requests[0]?.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1')
  t.equal(legacy.requests[0]?.headers['x-forwarded-proto'], 'https')
  const line = await f.logs.waitFor((l) => l.msg === 'request')
  t.equal(line.ip, '203.0.113.9')
})

t.test('hostHeader: upstream sends the upstream\'s host', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url, hostHeader: 'upstream' }, new: { url: legacy.url } } })
  await f.fetch('/x', { headers: { host: 'shop.example' } })
  t.equal(legacy.requests[0]?.headers.host, `127.0.0.1:${legacy.port}`)
  t.equal(legacy.requests[0]?.headers['x-forwarded-host'], 'shop.example')
})

t.test('the client sees no hop-by-hop header from the backend, and x-ficus-backend only when exposed', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(200, [
      'Content-Type', 'text/plain', 'Connection', 'keep-alive, X-Internal', 'X-Internal', 'db=10.0.0.3', 'Keep-Alive', 'timeout=99',
      'Proxy-Authenticate', 'Basic realm="x"', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Length', '2'
    ])
    res.end('ok')
  })
  const hidden = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const r = await rawRequest(hidden.url, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  t.equal(r.status, 200)
  t.notMatch(r.text, /x-internal|proxy-authenticate|timeout=99|x-ficus-backend/i)
  t.match(r.text, /set-cookie: a=1\r\nset-cookie: b=2\r\n/i, 'repeated response headers keep their order')
  t.match(r.text, /\r\n\r\nok$/)
  const shown = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, exposeBackend: true })
  t.equal((await shown.fetch('/')).headers['x-ficus-backend'], 'legacy')
})

t.test('response trailers are relayed to a client that accepts them', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
    res.write('part one, ')
    res.addTrailers({ 'x-checksum': 'abc123' })
    res.end('part two')
  })
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const r = await rawRequest(f.url, 'GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n')
  t.equal(r.status, 200)
  t.match(r.text, /\r\ntrailer: x-checksum\r\n/i)
  t.match(r.text, /\r\n0\r\nx-checksum: abc123\r\n\r\n$/i, 'the trailer follows the last chunk')
  t.equal(legacy.requests[0]?.headers.te, 'trailers')
})

t.test('curl --path-as-is: dot segments, %2F and the query reach the backend byte for byte; Via is appended to', async (t) => {
  const { curl } = await import('../helpers/curl.js')
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const target = '/a/./b/../c/%2F..%2Fd/?q=%2F..%2F&x=a+b&empty='
  const r = await curl(['--path-as-is', '-H', 'Via: 1.1 cdn-edge', `${f.url}${target}`])
  t.equal(r.status, 200)
  t.equal(legacy.requests[0]?.url, target, 'not normalised, not re-encoded')
  t.equal(legacy.requests[0]?.headers.via, '1.1 cdn-edge, 1.1 ficus', 'the proxies before Ficus stay listed')
})

t.test('the shadow copy carries x-ficus-shadow: 1 once, whatever the client sent, and no hop-by-hop header', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  let copied: (req: IncomingMessage) => void = () => {}
  const copyArrived = new Promise<IncomingMessage>((resolve) => { copied = resolve })
  const next = await startUpstream(t, 'new', (req, res) => {
    copied(req)
    res.end('{}')
  })
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [{ name: 'r', match: { path: '/*' }, new: 0, shadow: 100 }]
  })
  // Raw: HTTP clients do not let a caller list its own names in Connection.
  const r = await rawRequest(f.url, 'GET /s HTTP/1.1\r\nHost: a\r\nX-Ficus-Shadow: 0\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nProxy-Authorization: Basic eDp5\r\n\r\n')
  t.equal(r.status, 200)
  t.notOk('x-ficus-shadow' in (legacy.requests[0]?.headers ?? {}), 'the primary does not get the client\'s marker')
  t.notOk('x-hop' in (legacy.requests[0]?.headers ?? {}), 'nor the hop-by-hop header')
  const copy = await waitFor(copyArrived, { message: 'the shadow copy did not reach new' })
  const marks = copy?.rawHeaders.filter((v, i) => i % 2 === 0 && v.toLowerCase() === 'x-ficus-shadow') ?? []
  t.equal(marks.length, 1, 'one marker')
  t.equal(copy?.headers['x-ficus-shadow'], '1')
  for (const name of ['x-hop', 'proxy-authorization']) t.notOk(name in (copy?.headers ?? {}), `${name} not on the copy`)
})
