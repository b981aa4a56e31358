import t from 'tap'
import { LineBudget } from '../../src/core/line-budget.js'
import { plainHeaderName, refusedMethod, transferCoding, validHost } from '../../src/core/strictness.js'

t.test('validHost: names, IPv4 and bracketed IPv6, with an optional port of up to 5 digits, at most 65535', async (t) => {
  const ok = [
    '', 'shop.example', 'shop.example.', 'SHOP.Example:8080', 'localhost', 'legacy_api.internal', 'xn--caf-dma.example', 'a-b.c-d',
    '10.0.0.1', '10.0.0.1:80', '255.255.255.255', '0.0.0.0', 'shop.example:1', 'shop.example:65535', 'shop.example:0080', 'v1.example',
    '[::1]', '[::1]:443', '[::]', '[2001:db8::8a2e:370:7334]', '[2001:0db8:0000:0000:0000:ff00:0042:8329]', '[::ffff:192.0.2.1]',
    '[64:ff9b::192.0.2.1]:80', '[1:2:3:4:5:6:7:8]', '[fe80::]',
    // an empty port is the default one (RFC 3986 §3.2.3: port = *DIGIT), as nginx takes it
    'shop.example:', '10.0.0.1:', '[::1]:'
  ]
  for (const host of ok) t.ok(validHost(host), `${JSON.stringify(host)} is valid`)
  const bad = [
    // not a host at all
    'a b', 'alice@shop.example', 'shop.example/x', 'shop.example?x', 'shop"example', 'a\tb', 'shop.example\\x', 'shop\x00.example',
    // empty labels
    'shop..example', '.shop.example', 'shop.example..', '.', '..', 'a..b:80',
    // characters RFC 3986 allows in a reg-name but no host has
    'caf%C3%A9.example', 'a,b.example', 'a;b', 'a=b', 'a!b', '~user.example', "a'b", 'a(b)', 'a*b', 'a+b', 'a$b', 'a&b',
    // ports
    'shop.example:80a', 'shop.example:123456', 'shop.example:65536', 'shop.example:99999', 'shop.example:-1',
    'shop.example:+80', 'shop.example:80:80', ':80',
    // numbers that are not a dotted quad (inet_aton reads them as addresses)
    '256.0.0.1', '1.2.3', '127.1', '2130706433', '0x7f.0.0.1', '010.0.0.1', '1.2.3.4.5', 'shop.123', '1.2.3.4.',
    // IP literals
    '[::1', '::1', '[::1]x', '[::1]:65536', '[1:2:3:4:5:6:7:8:9]', '[1::2::3]', '[12345::]', '[::g]', '[:1]',
    '[fe80::1%25eth0]', '[v1.fe80::a]', '[]', '[::ffff:192.0.2.256]', '[1.2.3.4]', '[1:2:3:4:5:6:7:1.2.3.4]'
  ]
  for (const host of bad) t.notOk(validHost(host), `${JSON.stringify(host)} is refused`)
})

t.test('transferCoding: chunked alone; an empty element or chunked not last is malformed; another coding before chunked is unsupported', async (t) => {
  for (const v of ['chunked', 'Chunked', ' chunked ', 'CHUNKED']) t.equal(transferCoding(v), 'chunked', JSON.stringify(v))
  for (const v of ['', ' ', ', chunked', 'chunked, , chunked', 'gzip, , chunked', 'gzip,,chunked', 'chunked,', 'gzip', 'chunked, gzip', 'identity']) t.equal(transferCoding(v), 'malformed', JSON.stringify(v))
  for (const v of ['gzip, chunked', 'identity, chunked', 'chunked, chunked', 'x-custom, chunked']) t.equal(transferCoding(v), 'unsupported', JSON.stringify(v))
})

t.test('plainHeaderName: letters, digits and "-" only', async (t) => {
  for (const n of ['Host', 'x-forwarded-for', 'X-Request-Id', 'Sec-CH-UA-2', 'a']) t.ok(plainHeaderName(n), n)
  for (const n of ['X_Forwarded_For', 'x.real.ip', 'X~A', 'X!A', "X'A", 'x|y', 'x#y', 'x$y', 'x%y', 'x&y', 'x*y', 'x+y', 'x^y', 'x`y']) t.notOk(plainHeaderName(n), n)
})

t.test('refusedMethod: TRACE only on a route that lists it', async (t) => {
  t.ok(refusedMethod({ methods: null }, 'TRACE'), 'a route of every method does not take TRACE')
  t.notOk(refusedMethod({ methods: new Set(['GET', 'TRACE']) }, 'TRACE'), 'a route that lists TRACE takes it')
  for (const m of ['GET', 'POST', 'OPTIONS', 'DELETE', 'PROPFIND']) t.notOk(refusedMethod({ methods: null }, m), m)
})

t.test('LineBudget: lines past the budget of a window are counted by outcome, and a new window starts afresh', async (t) => {
  const b = new LineBudget(3, 1000)
  t.same([0, 1, 2, 3, 4].map((ms) => b.take(ms, 'bad_request')), [true, true, true, false, false])
  t.notOk(b.take(999, 'invalid_host'))
  t.same(b.drain(), { total: 3, byOutcome: { bad_request: 2, invalid_host: 1 } })
  t.same(b.drain(), { total: 0, byOutcome: {} }, 'drained')
  t.ok(b.take(1000, 'bad_request'), 'the next window')
  t.same([1001, 1002, 1003].map((ms) => b.take(ms, 'x')), [true, true, false])
})
