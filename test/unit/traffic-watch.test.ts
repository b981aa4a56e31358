import t from 'tap'
import { createMetrics } from '../../src/adapters/metrics-registry.js'
import { parseConfig } from '../../src/config/load-config.js'
import { TrafficWatch } from '../../src/control/traffic-watch.js'

/**
 * What span GET /admin/traffic counts (docs/console.md): a young process exactly since it
 * started; an older one since it started for the first minute of watching, then what the
 * reads since cover, up to 5 minutes; after a quiet spell, since the start again. On a real
 * prom-client registry with Ficus's metrics; the clock is the test's.
 */

/** routes.yaml with these routes (`name: path` pairs), each on legacy. */
const configWith = (routes: Record<string, string>) => parseConfig(`
version: 1
sticky: header:x-user-id
upstreams: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }
routes:
${Object.entries(routes).map(([name, path]) => `  - { name: ${name}, match: { path: ${path} }, new: 0 }`).join('\n')}
`, 'routes.yaml', {})
const config = configWith({ items: '/api/items/*' })
const twoRoutes = configWith({ items: '/api/items/*', orders: '/api/orders/*' })

function rig (startedAt: number) {
  const metrics = createMetrics()
  let now = startedAt
  const live = { current: config }
  let reads = 0
  const source = { getMetricsAsJSON: async () => { reads++; return metrics.register.getMetricsAsJSON() } }
  const watch = new TrafficWatch({ live, source, now: () => now, startedAt })
  const serve = (n: number, route = 'items'): void => {
    for (let i = 0; i < n; i++) {
      metrics.requests.inc({ route, backend: 'legacy', role: 'primary', code: '200' })
      metrics.duration.observe({ route, backend: 'legacy', role: 'primary' }, 0.01)
    }
  }
  const at = async (ms: number, route = 'items'): Promise<{ coveredS: number; requests: number }> => {
    now = ms
    const v = (await watch.view()).routes[route]!
    return { coveredS: v.coveredS, requests: v.legacy.requests }
  }
  return { serve, at, watch, live, reads: () => reads, setNow: (ms: number) => { now = ms } }
}

t.test('a process younger than the window: exactly what it served since it started', async (t) => {
  const { serve, at } = rig(1_000_000)
  serve(30)
  t.same(await at(1_060_000), { coveredS: 60, requests: 30 })
  serve(10)
  t.same(await at(1_120_000), { coveredS: 120, requests: 40 })
})

t.test('an older process: since the start for the first minute, then the reads\' own span, up to 5 minutes; a quiet spell starts over', async (t) => {
  const start = 0
  const hour = 3_600_000
  const { serve, at } = rig(start)
  serve(1000) // the hour before anyone looked
  t.same(await at(hour), { coveredS: 3600, requests: 1000 }, 'first look: since the start, and it says so')
  serve(20)
  t.same(await at(hour + 30_000), { coveredS: 3630, requests: 1020 }, 'reads spanning under a minute: still since the start')
  serve(5)
  t.same(await at(hour + 60_000), { coveredS: 60, requests: 25 }, 'a minute of reads: what they cover')
  for (let s = 90; s <= 420; s += 30) {
    serve(1)
    await at(hour + s * 1000)
  }
  const full = await at(hour + 420_000)
  t.equal(full.coveredS, 300, 'at most the window')
  t.equal(full.requests, 10, 'one request per 30 s read over 5 minutes')
  serve(7)
  t.same(await at(hour + 420_000 + 10 * 60_000), { coveredS: 4620, requests: 1044 }, 'after 10 quiet minutes: since the start again')
})

t.test('reads closer than 2 s apart share one read of the counters', async (t) => {
  const { serve, at } = rig(0)
  serve(3)
  t.same(await at(10_000), { coveredS: 10, requests: 3 })
  serve(4)
  t.same(await at(11_000), { coveredS: 10, requests: 3 }, 'a second later: the same read')
  t.same(await at(12_000), { coveredS: 12, requests: 7 }, 'two seconds later: read again')
})

t.test('callers at the same moment share one read of the counters', async (t) => {
  const { watch, reads, setNow } = rig(0)
  setNow(10_000)
  const views = await Promise.all([watch.view(), watch.view(), watch.view()])
  t.equal(reads(), 1, 'one read for three callers')
  t.equal(views[0], views[2], 'the same view')
})

t.test('watched since it was young: the window stays exact past 5 minutes of age', async (t) => {
  const { serve, at } = rig(0)
  serve(10)
  t.same(await at(30_000), { coveredS: 30, requests: 10 })
  for (let s = 60; s <= 330; s += 30) await at(s * 1000)
  serve(2)
  t.same(await at(360_000), { coveredS: 300, requests: 2 }, 'the last 5 minutes, not the span since the watch began')
})

t.test('a route a reload adds is counted from the read it first appears in, not over its counters\' older life', async (t) => {
  const { serve, at, live } = rig(0)
  serve(100, 'orders') // counters from before the route was (again) in routes.yaml
  t.same(await at(3_600_000), { coveredS: 3600, requests: 0 })
  live.current = twoRoutes
  t.same(await at(3_610_000, 'orders'), { coveredS: 0, requests: 0 }, 'nothing covered yet')
  serve(4, 'orders')
  t.same(await at(3_620_000, 'orders'), { coveredS: 10, requests: 4 }, 'what came since it appeared')
})
