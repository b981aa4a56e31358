import { Readable } from 'node:stream'
import t from 'tap'
import { startTestFicus } from '../helpers/ficus.js'
import { rawRequest } from '../helpers/raw.js'
import { startUpstream } from '../helpers/upstream.js'

interface Echo { served: string; method: string; url: string; headers: Record<string, string>; body: string }

t.test('routes by path and method to the side the route names; unmatched goes to legacy', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [
      { name: 'customers', match: { path: '/api/customers/*', methods: ['GET', 'HEAD'] }, new: 100 },
      { name: 'order', match: { path: '/api/orders/:id' }, new: 100 },
      { name: 'orders', match: { path: '/api/orders/*' }, new: 0 }
    ]
  })
  const served = async (method: string, path: string): Promise<string> => ((await f.fetch(path, { method })).json() as Echo).served
  t.equal(await served('GET', '/api/customers/7'), 'new')
  t.equal(await served('GET', '/api/customers'), 'new', 'a prefix route also matches its root')
  t.equal(await served('POST', '/api/customers/7'), 'legacy', 'POST is not in the route\'s methods')
  t.equal(await served('GET', '/api/orders/1'), 'new')
  t.equal(await served('GET', '/api/orders/1/items'), 'legacy', 'the param route takes one segment; the prefix route takes the rest')
  t.equal(await served('GET', '/elsewhere'), 'legacy', 'no route: the default side')
  t.equal(await served('GET', '/api/%63ustomers/7'), 'new', 'matched on the decoded form the backend will see')
  const head = await f.fetch('/api/customers/7', { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers['x-served-by'], 'new')
  t.equal(head.text, '', 'HEAD has no body')
})

t.test('default: new sends unmatched requests to new', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: next.url } }, default: 'new' })
  t.equal(((await f.fetch('/x')).json() as Echo).served, 'new')
})

t.test('path and query reach the backend byte-for-byte', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  for (const target of ['/a/../b/./c?x=%2F&y=a+b&z', '/files/a%2Fb%20c', '/caf%C3%A9?q=%E2%9C%93', '/double//slash', '/trailing/']) {
    const r = await rawRequest(f.url, `GET ${target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`)
    t.equal(r.status, 200, target)
    t.equal(legacy.requests.at(-1)?.url, target, `${target} forwarded unchanged`)
  }
})

t.test('a path whose percent-encoding does not decode is refused (400, FICUS_ERR_BAD_TARGET); the same bytes in the query are forwarded', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  // The path goes through the router, which decodes it; a query is never decoded by Ficus.
  const bad = await rawRequest(f.url, 'GET /files/%zz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n')
  t.equal(bad.status, 400)
  t.match(bad.text, /FICUS_ERR_BAD_TARGET/)
  t.equal(legacy.requests.length, 0, 'nothing forwarded')
  const ok = await rawRequest(f.url, 'GET /files/a?q=%zz&r=%E2%9C HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n')
  t.equal(ok.status, 200)
  t.equal(legacy.requests.at(-1)?.url, '/files/a?q=%zz&r=%E2%9C', 'forwarded unchanged')
})

t.test('absolute-form targets are accepted; their authority replaces Host (RFC 9112 §3.2.2)', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const r = await rawRequest(f.url, 'GET http://shop.example:8080/p/q?x=1 HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n')
  t.equal(r.status, 200)
  t.equal(legacy.requests[0]?.url, '/p/q?x=1')
  t.equal(legacy.requests[0]?.headers.host, 'shop.example:8080')
  t.equal(legacy.requests[0]?.headers['x-forwarded-host'], 'shop.example:8080')
})

t.test('every method Node parses is proxied, bodies included, without judging their content type', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND', 'PURGE', 'QUERY']) {
    const r = await f.fetch('/m', { method, body: 'payload', headers: { 'content-type': 'this is not a media type' } })
    t.equal(r.status, 200, method)
    const echo = r.json() as Echo
    t.equal(echo.method, method)
    t.equal(echo.body, 'payload', `${method} body forwarded`)
  }
  t.equal(legacy.requests.length, 9, 'one upstream request per client request')
})

t.test('request and response bodies stream both ways, chunked or not', async (t) => {
  const size = 3 * 1024 * 1024
  const legacy = await startUpstream(t, 'legacy', (req, res, body) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.end(Buffer.concat([body, body])) // answers twice what it got
  })
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const payload = Buffer.alloc(size, 7)
  const fixed = await f.fetch('/upload', { method: 'POST', body: payload })
  t.equal(fixed.status, 200)
  t.equal(Buffer.byteLength(fixed.text, 'latin1'), size * 2)
  async function * chunks (): AsyncGenerator<Buffer> {
    for (let i = 0; i < 3; i++) yield Buffer.alloc(size / 3, i)
  }
  const chunked = await f.fetch('/upload', { method: 'POST', body: Readable.from(chunks()) })
  t.equal(chunked.status, 200)
  t.equal(legacy.requests[1]?.body.length, size)
  t.equal(legacy.requests[1]?.headers['transfer-encoding'], 'chunked')
})
