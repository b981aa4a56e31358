import t from 'tap'
import { forwardHeaders, responseHeaders, acceptableRequestId, type ForwardContext, switchingProtocolsHead } from '../../src/core/forward-headers.js'

const ctx: ForwardContext = { peer: '10.1.1.1', proto: 'http', httpVersion: '1.1', trustedHops: 0, requestId: 'rid-1', authority: undefined, headerNames: 'drop' }

/** The flat list as name → values, in order. */
function byName(flat: string[]): Map<string, string[]> {
  const m = new Map<string, string[]>()
  for (let i = 0; i < flat.length; i += 2) {
    const k = (flat[i] as string).toLowerCase()
    m.set(k, [...(m.get(k) ?? []), flat[i + 1] as string])
  }
  return m
}

t.test('hop-by-hop headers, and those Connection names, are not forwarded', async (t) => {
  const { headers } = forwardHeaders([
    'Host', 'shop.example', 'Connection', 'keep-alive, X-Trace-Hop', 'Keep-Alive', 'timeout=5', 'Proxy-Connection', 'keep-alive',
    'TE', 'deflate', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'Trailer', 'x', 'Proxy-Authorization', 'Basic x',
    'Expect', '100-continue', 'X-Trace-Hop', 'secret', 'X-Ficus-Shadow', '1', 'X-Ficus-Sync', '1', 'Accept', 'application/json'
  ], ctx)
  const h = byName(headers)
  for (const name of ['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer',
    'proxy-authorization', 'expect', 'x-trace-hop', 'x-ficus-shadow', 'x-ficus-sync']) {
    t.notOk(h.has(name), `${name} dropped`)
  }
  t.same(h.get('accept'), ['application/json'])
  t.same(h.get('host'), ['shop.example'])
})

t.test('TE passes only as "trailers" (RFC 9110 §7.6.1)', async (t) => {
  t.same(byName(forwardHeaders(['Host', 'a', 'TE', 'trailers, deflate;q=0.5'], ctx).headers).get('te'), ['trailers'])
  t.same(byName(forwardHeaders(['Host', 'a', 'TE', 'gzip'], ctx).headers).get('te'), undefined)
})

t.test('repeated headers keep their order and original case', async (t) => {
  const { headers } = forwardHeaders(['Host', 'a', 'X-Tag', 'one', 'Cookie', 'c=1', 'X-Tag', 'two', 'x-tag', 'three'], ctx)
  t.same(headers.slice(0, 8), ['X-Tag', 'one', 'Cookie', 'c=1', 'X-Tag', 'two', 'x-tag', 'three'])
})

t.test('Via, X-Forwarded-*, Forwarded and X-Request-Id are set', async (t) => {
  const h = byName(forwardHeaders(['Host', 'shop.example:8080', 'Via', '1.0 cdn'], ctx).headers)
  t.same(h.get('via'), ['1.0 cdn, 1.1 ficus'])
  t.same(h.get('x-forwarded-for'), ['10.1.1.1'])
  t.same(h.get('x-forwarded-proto'), ['http'])
  t.same(h.get('x-forwarded-host'), ['shop.example:8080'])
  t.same(h.get('forwarded'), ['for=10.1.1.1;host="shop.example:8080";proto=http'])
  t.same(h.get('x-request-id'), ['rid-1'])
  t.same(byName(forwardHeaders(['Host', 'a'], { ...ctx, httpVersion: '1.0' }).headers).get('via'), ['1.0 ficus'])
})

t.test('with no trusted hop, client-supplied forwarding headers are replaced', async (t) => {
  const r = forwardHeaders(['Host', 'a', 'X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil',
    'Forwarded', 'for=6.6.6.6'], ctx)
  const h = byName(r.headers)
  t.equal(r.clientIp, '10.1.1.1')
  t.same(h.get('x-forwarded-for'), ['10.1.1.1'])
  t.same(h.get('x-forwarded-proto'), ['http'])
  t.same(h.get('x-forwarded-host'), ['a'])
  t.same(h.get('forwarded'), ['for=10.1.1.1;host="a";proto=http'])
})

t.test('trusted hops: the client is the first untrusted address; spoofed entries left of it are dropped', async (t) => {
  // client 203.0.113.9 → (spoofs 6.6.6.6) → LB 10.0.0.2 → Ficus (peer 10.0.0.2)
  const raw = ['Host', 'a', 'X-Forwarded-For', '6.6.6.6, 203.0.113.9', 'X-Forwarded-Proto', 'https']
  const one = forwardHeaders(raw, { ...ctx, peer: '10.0.0.2', trustedHops: 1 })
  t.equal(one.clientIp, '203.0.113.9')
  t.same(byName(one.headers).get('x-forwarded-for'), ['203.0.113.9, 10.0.0.2'])
  t.same(byName(one.headers).get('x-forwarded-proto'), ['https'], 'a trusted hop\'s proto is kept')
  // The client wrote "http, evil"; the trusted proxy appended its own values last.
  const spoof = forwardHeaders(['Host', 'a', 'X-Forwarded-Proto', 'http, evil', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.example, shop.example',
    'Forwarded', 'for=6.6.6.6;proto="x,y", for=203.0.113.9;proto=https'], { ...ctx, peer: '10.0.0.2', trustedHops: 1 })
  const s = byName(spoof.headers)
  t.same(s.get('x-forwarded-proto'), ['https'], 'the nearest (trusted) value wins')
  t.same(s.get('x-forwarded-host'), ['shop.example'])
  t.same(s.get('forwarded'), ['for=203.0.113.9;proto=https, for=10.0.0.2;host="a";proto=http'], 'one element per trusted hop is kept')
  const two = forwardHeaders(['Host', 'a', 'X-Forwarded-For', '6.6.6.6, 203.0.113.9, 10.0.0.1'], { ...ctx, peer: '10.0.0.2', trustedHops: 2 })
  t.equal(two.clientIp, '203.0.113.9')
  t.same(byName(two.headers).get('x-forwarded-for'), ['203.0.113.9, 10.0.0.1, 10.0.0.2'])
  const short = forwardHeaders(['Host', 'a'], { ...ctx, peer: '10.0.0.2', trustedHops: 3 })
  t.equal(short.clientIp, '10.0.0.2', 'fewer hops than trusted: the earliest known address')
})

t.test('IPv4-mapped peers are unmapped, IPv6 is bracketed in Forwarded', async (t) => {
  t.equal(forwardHeaders(['Host', 'a'], { ...ctx, peer: '::ffff:127.0.0.1' }).clientIp, '127.0.0.1')
  t.same(byName(forwardHeaders(['Host', 'a'], { ...ctx, peer: '::1' }).headers).get('forwarded'), ['for="[::1]";host="a";proto=http'])
})

t.test('Host: kept, replaced by an absolute-form authority, and counted', async (t) => {
  const abs = byName(forwardHeaders(['Host', 'a'], { ...ctx, authority: 'b:81' }).headers)
  t.same([abs.get('host'), abs.get('x-forwarded-host')], [['b:81'], ['b:81']])
  t.equal(forwardHeaders(['Host', 'a', 'host', 'b'], ctx).hostCount, 2)
})

t.test('response headers lose hop-by-hop fields', async (t) => {
  const out = responseHeaders({
    'content-type': 'application/json', connection: 'keep-alive, x-internal', 'x-internal': '1', 'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked', 'proxy-authenticate': 'Basic', upgrade: 'h2c', trailer: 'x-checksum', 'set-cookie': ['a=1', 'b=2']
  })
  t.same(out, { 'content-type': 'application/json', trailer: 'x-checksum', 'set-cookie': ['a=1', 'b=2'] })
})

t.test('request ids: short printable ASCII is kept', async (t) => {
  t.ok(acceptableRequestId('abc-123_:/+='))
  t.notOk(acceptableRequestId(''))
  t.notOk(acceptableRequestId('has space'))
  t.notOk(acceptableRequestId('x'.repeat(129)))
  t.notOk(acceptableRequestId(['a', 'b']))
  t.notOk(acceptableRequestId(undefined))
})

t.test('header names with characters other than letters, digits and "-": dropped by default, kept with pass, always reported', async (t) => {
  const raw = ['Host', 'a', 'X_Forwarded_For', '6.6.6.6', 'X.Real.IP', '6.6.6.6', 'X-Forwarded-For', '10.0.0.1', 'X~A', '1', 'Accept', '*/*']
  const dropped = forwardHeaders(raw, ctx)
  const h = byName(dropped.headers)
  for (const name of ['x_forwarded_for', 'x.real.ip', 'x~a']) t.notOk(h.has(name), `${name} dropped`)
  t.same(h.get('x-forwarded-for'), ['10.1.1.1'], 'X-Forwarded-For is still Ficus\'s own')
  t.same(h.get('accept'), ['*/*'])
  t.same(dropped.oddNames, ['X_Forwarded_For', 'X.Real.IP', 'X~A'], 'as sent, in order')
  const passed = forwardHeaders(raw, { ...ctx, headerNames: 'pass' })
  t.same(byName(passed.headers).get('x_forwarded_for'), ['6.6.6.6'])
  t.same(passed.oddNames, dropped.oddNames)
  t.same(forwardHeaders(['Host', 'a', 'X-Plain-9', 'v'], ctx).oddNames, [])
})

t.test('the first field that may appear once and appears twice is reported, lists are not', async (t) => {
  t.equal(forwardHeaders(['Host', 'a', 'Authorization', 'Bearer a', 'authorization', 'Bearer b'], ctx).repeated, 'authorization')
  t.equal(forwardHeaders(['Host', 'a', 'If-None-Match', '"a"', 'Range', 'bytes=0-1', 'If-None-Match', '"b"', 'Range', 'bytes=2-3'], ctx).repeated, 'if-none-match')
  t.equal(forwardHeaders(['Host', 'a', 'Accept', 'a', 'Accept', 'b', 'Cookie', 'c=1', 'Cookie', 'd=2', 'X-Forwarded-For', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2'], ctx).repeated, null)
  t.equal(forwardHeaders(['Host', 'a', 'Authorization', 'Bearer a'], ctx).repeated, null)
})

t.test('a 101 head for the client: the backend\'s end-to-end fields, Connection: Upgrade and the protocol', async (t) => {
  const head = switchingProtocolsHead([
    'Upgrade', 'websocket', 'Connection', 'Upgrade, X-Hop', 'Sec-WebSocket-Accept', 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
    'Sec-WebSocket-Protocol', 'chat', 'X-Hop', 'drop me', 'Keep-Alive', 'timeout=5', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'
  ], 'websocket', ['x-ficus-backend', 'new'])
  t.equal(head, 'HTTP/1.1 101 Switching Protocols\r\n' +
    'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n' +
    'x-ficus-backend: new\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
})
