import t from 'tap'
import { bucket } from '../../src/core/bucket.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'

async function twoBackends (t: Parameters<typeof startUpstream>[0]) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  return { legacy, next, upstreams: { legacy: { url: legacy.url }, new: { url: next.url } } }
}

t.test('at 25 %, exactly the users whose bucket is <= 25 reach new, every time', async (t) => {
  const { upstreams } = await twoBackends(t)
  const f = await startTestFicus(t, { upstreams, routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 25 }] })
  let onNew = 0
  for (let i = 0; i < 400; i++) {
    const user = `user-${i}`
    const want = bucket('orders', user) <= 25 ? 'new' : 'legacy'
    for (let k = 0; k < 2; k++) {
      const r = await f.fetch('/orders/1', { headers: { 'x-user-id': user } })
      if (r.headers['x-served-by'] !== want) t.fail(`${user} went to ${String(r.headers['x-served-by'])}, expected ${want}`)
    }
    if (want === 'new') onNew++
  }
  t.ok(onNew > 70 && onNew < 130, `${onNew} of 400 users on new`)
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'new', role: 'primary', code: '200' }), onNew * 2)
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'legacy', role: 'primary', code: '200' }), (400 - onNew) * 2)
  t.equal(sample(m, 'ficus_sticky_key_missing_total', { route: 'orders' }), 0, 'every request had a key')
})

t.test('cookie, query and ip keys, and a route that overrides the sticky key', async (t) => {
  const { upstreams } = await twoBackends(t)
  const f = await startTestFicus(t, {
    upstreams,
    sticky: 'cookie:sid',
    routes: [
      { name: 'by-query', match: { path: '/q' }, new: 50, sticky: 'query:uid' },
      { name: 'by-ip', match: { path: '/ip' }, new: 50, sticky: 'ip' },
      { name: 'by-cookie', match: { path: '/c' }, new: 50 }
    ]
  })
  const side = (n: number, group: string, key: string): string => bucket(group, key) <= n ? 'new' : 'legacy'
  for (const uid of ['a', 'b', 'c', 'd', 'e', 'f']) {
    t.equal((await f.fetch(`/q?x=1&uid=${uid}`)).headers['x-served-by'], side(50, 'by-query', uid), `query uid=${uid}`)
    t.equal((await f.fetch('/c', { headers: { cookie: `theme=dark; sid=${uid}` } })).headers['x-served-by'], side(50, 'by-cookie', uid), `cookie sid=${uid}`)
  }
  t.equal((await f.fetch('/ip')).headers['x-served-by'], side(50, 'by-ip', '127.0.0.1'), 'ip: the peer address')
})

t.test('without a key each request gets a random bucket, and is counted', async (t) => {
  const { upstreams } = await twoBackends(t)
  // A deterministic random source: alternately bucket 1 (new) and bucket 100 (legacy).
  let flip = false
  const random = (): number => (flip = !flip) ? 0 : 0.999
  const f = await startTestFicus(t, { upstreams, routes: [{ name: 'orders', match: { path: '/*' }, new: 50 }] }, { random })
  const sides = []
  for (let i = 0; i < 4; i++) sides.push((await f.fetch('/x')).headers['x-served-by'])
  t.same(sides, ['new', 'legacy', 'new', 'legacy'])
  t.equal(sample(await f.scrape(), 'ficus_sticky_key_missing_total', { route: 'orders' }), 4)
  await f.fetch('/x', { headers: { 'x-user-id': 'u' } })
  t.equal(sample(await f.scrape(), 'ficus_sticky_key_missing_total', { route: 'orders' }), 4, 'keyed requests are not counted')
})

t.test('a client cannot pick its side with a header other than the sticky key', async (t) => {
  const { upstreams } = await twoBackends(t)
  const f = await startTestFicus(t, { upstreams, routes: [{ name: 'r', match: { path: '/*' }, new: 50 }] })
  const user = 'steady'
  const want = bucket('r', user) <= 50 ? 'new' : 'legacy'
  for (const extra of [{ 'x-ficus-backend': 'new' }, { 'x-ficus-backend': 'legacy' }, { 'x-ficus-shadow': '1' }, { 'x-forwarded-for': '1.2.3.4' }]) {
    t.equal((await f.fetch('/', { headers: { 'x-user-id': user, ...extra } })).headers['x-served-by'], want, JSON.stringify(extra))
  }
})

/** A CORS preflight as a browser sends it: no cookies, no custom headers (README "CORS preflights"). */
const preflight = (ip: string) => ({
  method: 'OPTIONS' as const,
  headers: { origin: 'https://app.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'x-user-id', 'x-forwarded-for': ip }
})

t.test('a list of sticky sources: the first one a request has decides, and a preflight keyed by ip stays on one side', async (t) => {
  const { upstreams } = await twoBackends(t)
  const f = await startTestFicus(t, {
    upstreams,
    trustedHops: 1, // the test's clients stand behind one proxy that sets X-Forwarded-For
    sticky: ['header:x-user-id', 'cookie:sid', 'ip'],
    routes: [{ name: 'api', match: { path: '/api/*' }, new: 50 }]
  })
  const side = (key: string): string => bucket('api', key) <= 50 ? 'new' : 'legacy'
  for (let i = 0; i < 20; i++) {
    const ip = `203.0.113.${i + 1}`
    const user = `user-${i}`
    t.equal((await f.fetch('/api/a', { headers: { 'x-user-id': user, cookie: 'sid=s', 'x-forwarded-for': ip } })).headers['x-served-by'], side(user), 'the header first')
    t.equal((await f.fetch('/api/a', { headers: { cookie: `sid=s${i}`, 'x-forwarded-for': ip } })).headers['x-served-by'], side(`s${i}`), 'then the cookie')
    const sides = new Set<unknown>()
    for (let k = 0; k < 3; k++) sides.add((await f.fetch('/api/a', preflight(ip))).headers['x-served-by'])
    t.same([...sides], [side(ip)], `${ip}: every preflight on the side of its address`)
  }
  t.equal(sample(await f.scrape(), 'ficus_sticky_key_missing_total', { route: 'api' }), 0, 'no request went to a random side')
})

t.test('keyed by ip, a browser\'s preflights and its requests land on the same side at 50 %', async (t) => {
  const { upstreams } = await twoBackends(t)
  const f = await startTestFicus(t, {
    upstreams,
    trustedHops: 1,
    sticky: 'header:x-user-id',
    routes: [{ name: 'api', match: { path: '/api/*' }, new: 50, sticky: 'ip' }]
  })
  const seen = new Set<unknown>()
  for (let i = 0; i < 20; i++) {
    const ip = `198.51.100.${i + 1}`
    const pre = (await f.fetch('/api/orders/1', preflight(ip))).headers['x-served-by']
    const put = (await f.fetch('/api/orders/1', { method: 'PUT', body: '{}', headers: { 'x-user-id': `u${i}`, 'x-forwarded-for': ip } })).headers['x-served-by']
    t.equal(put, pre, `${ip}: the request goes where its preflight went`)
    seen.add(pre)
  }
  t.same([...seen].sort(), ['legacy', 'new'], 'both sides serve some clients')
})

t.test('preflights pinned to one side by a route for OPTIONS', async (t) => {
  const { upstreams } = await twoBackends(t)
  const f = await startTestFicus(t, {
    upstreams,
    routes: [
      { name: 'api-preflight', match: { path: '/api/*', methods: ['OPTIONS'] }, new: 0 },
      { name: 'api', match: { path: '/api/*' }, new: 50 }
    ]
  })
  for (let i = 0; i < 10; i++) t.equal((await f.fetch('/api/x', preflight('192.0.2.1'))).headers['x-served-by'], 'legacy')
})
