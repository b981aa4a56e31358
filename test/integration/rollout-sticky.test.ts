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
