import t from 'tap'
import { admin } from '../helpers/admin.js'
import { caughtUp, dualRig, wrote } from '../helpers/dual.js'
import { startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import type { RouteTraffic, SideTraffic } from '../../src/core/traffic.js'

/**
 * GET /admin/traffic, what the console's routes view shows of each side (docs/console.md):
 * per route and side over the last 5 minutes, requests, failures, error rate and latency, the
 * actual share of new, and a dual route's sync lag and dead letters. Counted from the same
 * counters /metrics exposes, checked here against what the clients saw.
 */

interface Traffic { windowS: number; routes: Record<string, RouteTraffic> }

t.test('per side: the requests and failures clients saw, the actual share of new, quantiles; a route without traffic has no rates', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    setTimeout(() => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}') }, 5)
  })
  // New fails every request for an odd id with a 500 (not a fallback: new answered).
  const next = await startUpstream(t, 'new', (req, res) => {
    const odd = Number((req.url ?? '').split('/').pop()) % 2 === 1
    res.writeHead(odd ? 500 : 200, { 'content-type': 'application/json' }).end(odd ? '{"error":"boom"}' : '{"ok":true}')
  })
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    exposeBackend: true,
    admin: { host: '127.0.0.1', port: 0, tokens: { vera: { token: 'vera-secret-token', role: 'viewer' } } },
    routes: [
      { name: 'items', match: { path: '/api/items/:id' }, new: 50 },
      { name: 'quiet', match: { path: '/quiet/*' }, new: 0 }
    ]
  })
  const seen = { legacy: 0, new: 0, newFailed: 0, legacyFailed: 0 }
  for (let i = 0; i < 240; i++) {
    const r = await f.fetch(`/api/items/${i}`, { headers: { 'x-user-id': `user-${i}` } })
    const side = r.headers['x-ficus-backend'] === 'new' ? 'new' : 'legacy'
    seen[side]++
    if (r.status >= 500) seen[side === 'new' ? 'newFailed' : 'legacyFailed']++
  }
  t.ok(seen.new > 0 && seen.legacy > 0, `both sides served (${seen.legacy} legacy, ${seen.new} new)`)
  t.equal((await f.fetch('/elsewhere')).status, 200, 'no route matches: the default route, on legacy')

  const r = await admin(f, 'GET', '/admin/traffic', { token: 'vera-secret-token' })
  t.equal(r.status, 200, 'a viewer reads it')
  const body = r.body as unknown as Traffic
  t.equal(body.windowS, 300)
  const items = body.routes.items as RouteTraffic
  t.ok(items.coveredS > 0 && items.coveredS < 120, `a young process is counted since it started (${items.coveredS} s)`)
  t.match(items.legacy, { requests: seen.legacy, failed: seen.legacyFailed, errorRate: 0 })
  t.match(items.new, { requests: seen.new, failed: seen.newFailed, fallbacks: 0 })
  t.equal(items.new.errorRate, seen.newFailed / seen.new, 'new\'s error rate: its 500s over its requests')
  t.equal(items.newShare, seen.new / 240, 'the actual share of new, from what was served')
  t.ok((items.legacy.perSecond as number) > 0)
  t.ok((items.legacy.p50Ms as number) >= 5, `legacy's p50 is at least its 5 ms delay (${items.legacy.p50Ms} ms)`)
  const p99 = (s: SideTraffic, n: number): void => {
    if (n >= 100) t.ok((s.p99Ms as number) >= (s.p50Ms as number), `p99 over ${n} answers`)
    else t.equal(s.p99Ms, null, `no p99 from ${n} answers`)
  }
  p99(items.legacy, seen.legacy)
  p99(items.new, seen.new)
  t.equal(items.sync, null, 'not a dual route')
  t.match(body.routes.default, { legacy: { requests: 1, failed: 0 }, new: { requests: 0 } }, 'the default route is counted too')
  t.match(body.routes.quiet, { newShare: null, legacy: { requests: 0, errorRate: null, p50Ms: null, p99Ms: null }, new: { requests: 0, errorRate: null } })

  // A later read counts what came since.
  await f.fetch('/api/items/2', { headers: { 'x-user-id': 'user-2' } })
  await waitFor(async () => {
    const again = (await admin(f, 'GET', '/admin/traffic', { token: 'vera-secret-token' })).body as unknown as Traffic
    const x = again.routes.items as RouteTraffic
    return x.legacy.requests + x.new.requests === 241
  }, { message: 'the 241st request was not counted by a later read' })
})

t.test('a new whose requests fall back: each counts as one of new\'s requests and failures, answered by legacy', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', (_req, res) => { res.writeHead(503).end() })
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    fallback: { breaker: false },
    routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 100 }]
  })
  for (let i = 0; i < 10; i++) t.equal((await f.fetch(`/api/items/${i}`)).status, 200, 'legacy answered for new')
  const items = ((await admin(f, 'GET', '/admin/traffic')).body as unknown as Traffic).routes.items as RouteTraffic
  t.match(items.new, { requests: 10, failed: 10, errorRate: 1, fallbacks: 10 })
  t.match(items.legacy, { requests: 0, failed: 0 }, 'legacy\'s own users: none')
  t.equal(items.newShare, 1)
})

t.test('a dual route: its sync lag and dead letters, as /admin/sync has them', async (t) => {
  const { next, f } = await dualRig(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f)
  next.refuse = (method, path) => (method === 'PATCH' && path === '/api/notes/n-3e9' ? 422 : null)
  await wrote(f, '/api/notes/1000', { n: 'a2' }, 'PATCH')
  await waitFor(async () => {
    const r = (await admin(f, 'GET', '/admin/traffic')).body as unknown as Traffic
    return r.routes.notes?.sync?.deadLetters === 1
  }, { message: 'the dead letter did not reach /admin/traffic' })
  const r = (await admin(f, 'GET', '/admin/traffic')).body as unknown as Traffic
  t.match(r.routes['notes-create'], { sync: { deadLetters: 0, lagS: 0 } })
  t.match(r.routes.notes, { sync: { deadLetters: 1 } })
})
