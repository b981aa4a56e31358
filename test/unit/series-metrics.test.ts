import fc from 'fast-check'
import { Counter, Histogram, Registry } from 'prom-client'
import t from 'tap'
import { SeriesCounter, SeriesHistogram } from '../../src/adapters/series-metrics.js'
import { DURATION_BUCKETS } from '../../src/adapters/metrics-registry.js'

// The series metrics replace prom-client's on the per-request path: Prometheus, Grafana and
// the cluster aggregation must not see any difference, so both get the same updates and
// their exposition (text and JSON) must be identical.
/** JSON with keys sorted, without exemplars (Ficus has none; prom-client writes `null`). */
const canonical = (x: unknown): string => JSON.stringify(x, (k, v: unknown) =>
  k === 'exemplar' ? undefined : v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v)
const label = fc.constantFrom('legacy', 'new', 'none', 'a "quoted" \\ route\nname', 'ünï')
const observation = fc.record({ route: label, backend: label, role: fc.constantFrom('primary', 'shadow'), v: fc.double({ min: 0, max: 60, noNaN: true }) })

t.test('histogram: same text and JSON as prom-client for any observations', async (t) => {
  await fc.assert(fc.asyncProperty(fc.array(observation, { maxLength: 60 }), async (obs) => {
    const a = new Registry()
    const b = new Registry()
    const labelNames = ['route', 'backend', 'role'] as const
    const theirs = new Histogram({ name: 'h_seconds', help: 'help "x"', labelNames, buckets: DURATION_BUCKETS, registers: [a] })
    const ours = new SeriesHistogram('h_seconds', 'help "x"', labelNames, DURATION_BUCKETS, [b])
    for (const { v, ...labels } of obs) {
      theirs.observe(labels, v)
      ours.observe(labels, v)
    }
    return await b.metrics() === await a.metrics() &&
      canonical(await b.getMetricsAsJSON()) === canonical(await a.getMetricsAsJSON())
  }), { numRuns: 100 })
  t.pass('100 random runs: identical text and JSON')
  // Values on a bucket's bound belong to it (le = less or equal).
  const r = new Registry()
  const h = new SeriesHistogram('b', 'b', ['x'], [1, 2], [r])
  h.observe({ x: 'y' }, 1)
  h.observe({ x: 'y' }, 2.0000001)
  t.match(await r.metrics(), /b_bucket\{le="1",x="y"\} 1\nb_bucket\{le="2",x="y"\} 1\nb_bucket\{le="\+Inf",x="y"\} 2/)
})

t.test('counter: same exposition as prom-client; a kept series is the same series', async (t) => {
  await fc.assert(fc.asyncProperty(fc.array(fc.record({ route: label, code: fc.constantFrom(200, 499, 502), by: fc.nat(5) }), { maxLength: 60 }), async (incs) => {
    const a = new Registry()
    const b = new Registry()
    const theirs = new Counter({ name: 'c_total', help: 'c', labelNames: ['route', 'code'] as const, registers: [a] })
    const ours = new SeriesCounter('c_total', 'c', ['route', 'code'] as const, [b])
    for (const { by, ...labels } of incs) {
      theirs.inc(labels, by)
      ours.series(labels).inc(by)
    }
    return await b.metrics() === await a.metrics()
  }), { numRuns: 100 })
  t.pass('100 random runs: identical text')
  const c = new SeriesCounter('k_total', 'k', ['route'] as const, [])
  const s = c.series({ route: 'r' })
  c.inc({ route: 'r' })
  s.inc(2)
  t.equal(c.series({ route: 'r' }).value, 3, 'inc by labels and by the kept series count in one series')
})

t.test('bad updates are refused, as prom-client refuses them', async (t) => {
  const c = new SeriesCounter('k_total', 'k', ['route'] as const, [])
  t.throws(() => { c.inc({ route: 'r' }, -1) }, TypeError)
  t.throws(() => { c.inc({ route: 'r' }, Number.NaN) }, TypeError)
  t.throws(() => { c.inc({} as { route: string }) }, /label route missing/)
  const h = new SeriesHistogram('h', 'h', ['route'] as const, [1], [])
  t.throws(() => { h.observe({ route: 'r' }, Number.POSITIVE_INFINITY) }, TypeError)
  t.equal(h.series({ route: 'r' }).count, 0, 'nothing counted by a refused update')
  const kept = c.series({ route: 'r' })
  kept.inc()
  c.reset()
  t.equal(c.series({ route: 'r' }).value, 0, 'reset starts the series again')
  kept.inc()
  t.equal(c.series({ route: 'r' }).value, 1, 'a series kept before a reset is still the one exposed')
})
