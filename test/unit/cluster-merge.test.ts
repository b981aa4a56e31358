import t from 'tap'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { DivergenceSample, Epoch, RouteSummary, WindowCounts } from '../../src/adapters/divergence-store.js'
import { mergeSamples, mergeSummaries } from '../../src/cluster/divergences.js'
import { ClusterMetrics } from '../../src/cluster/metrics.js'
import type { MetricsJson } from '../../src/cluster/protocol.js'
import { parseWorkers } from '../../src/cluster/workers-option.js'
import { sample } from '../helpers/ficus.js'

/** The pure parts of cluster mode: the --workers value, and how workers' answers are merged. */

t.test('parseWorkers: 1..64 or auto; anything else says what is wrong', async (t) => {
  t.equal(parseWorkers('1'), 1)
  t.equal(parseWorkers('64'), 64)
  t.equal(parseWorkers(' 2 '), 2)
  t.equal(parseWorkers('auto', () => 4), 4)
  t.equal(parseWorkers('auto', () => 200), 64, 'auto is capped too')
  for (const bad of ['0', '65', 'abc', '1.5', '-1', '', '2x', '0x2']) {
    t.equal(parseWorkers(bad), `must be an integer from 1 to 64, or auto (got ${JSON.stringify(bad)})`, bad)
  }
})

const sampleAt = (requestId: string, time: string): DivergenceSample => ({
  route: 'orders', method: 'GET', path: '/orders/1', requestId, keyHash: null, primary: 'legacy',
  status: { legacy: 200, new: 200 }, ms: { legacy: 1, new: 1 }, time, epoch: 1, differences: [], truncated: false
})

t.test('mergeSamples: newest first over every worker, limit kept', async (t) => {
  const a = [sampleAt('a2', '2026-01-01T00:00:02.000Z'), sampleAt('a1', '2026-01-01T00:00:00.000Z')]
  const b = [sampleAt('b2', '2026-01-01T00:00:03.000Z'), sampleAt('b1', '2026-01-01T00:00:01.000Z')]
  t.same(mergeSamples([a, b], 10).map((s) => s.requestId), ['b2', 'a2', 'b1', 'a1'])
  t.same(mergeSamples([a, b], 3).map((s) => s.requestId), ['b2', 'a2', 'b1'])
  t.same(mergeSamples([], 3), [])
})

const START: Epoch = { n: 1, startedAt: '2026-01-01T00:00:00.000Z', why: 'start', reason: null }
const windowOf = (match: number, diverged: number): WindowCounts => ({
  comparisons: { match, diverged, error: 0, skipped: 0 }, divergenceRate: match + diverged === 0 ? null : diverged / (match + diverged), kinds: { status: 0, header: 0, body: diverged }
})
const summaryOf = (route: string, s: Partial<RouteSummary>): RouteSummary => ({
  route,
  epoch: START,
  since: START.startedAt,
  windows: { '5m': windowOf(0, 0), '1h': windowOf(0, 0) },
  comparisons: { match: 0, diverged: 0, error: 0, skipped: 0 },
  divergenceRate: null,
  kinds: { status: 0, header: 0, body: 0 },
  skipped: {},
  errors: {},
  topFields: [],
  otherFields: 0,
  lastDivergence: null,
  ...s
})

t.test('mergeSummaries: counts summed per route, rate recomputed, fields merged', async (t) => {
  const w1 = [summaryOf('orders', {
    comparisons: { match: 3, diverged: 1, error: 1, skipped: 2 },
    kinds: { status: 0, header: 0, body: 1 },
    skipped: { concurrency: 2 },
    errors: { timeout: 1 },
    topFields: [{ field: 'body.total', count: 1, kinds: { changed: 1 } }],
    lastDivergence: '2026-01-01T00:00:01.000Z'
  })]
  const w2 = [
    summaryOf('orders', {
      comparisons: { match: 1, diverged: 3, error: 0, skipped: 1 },
      kinds: { status: 1, header: 0, body: 2 },
      skipped: { concurrency: 1 },
      topFields: [{ field: 'body.total', count: 2, kinds: { changed: 2 } }, { field: 'status', count: 1, kinds: { changed: 1 } }],
      otherFields: 4,
      lastDivergence: '2026-01-01T00:00:05.000Z'
    }),
    summaryOf('customers', {})
  ]
  const [customers, orders] = mergeSummaries([w1, w2])
  t.equal(customers?.route, 'customers')
  t.same(orders, {
    route: 'orders',
    epoch: START,
    since: START.startedAt,
    windows: { '5m': windowOf(0, 0), '1h': windowOf(0, 0) },
    comparisons: { match: 4, diverged: 4, error: 1, skipped: 3 },
    divergenceRate: 0.5,
    kinds: { status: 1, header: 0, body: 3 },
    skipped: { concurrency: 3 },
    errors: { timeout: 1 },
    topFields: [{ field: 'body.total', count: 3, kinds: { changed: 3 } }, { field: 'status', count: 1, kinds: { changed: 1 } }],
    otherFields: 4,
    lastDivergence: '2026-01-01T00:00:05.000Z'
  })
})

t.test('mergeSummaries: windows summed; a worker still in an older epoch is left out of the counts', async (t) => {
  const reset: Epoch = { n: 2, startedAt: '2026-01-01T01:00:00.000Z', why: 'reset', reason: 'rules fixed' }
  const inWorker: Epoch = { ...reset, startedAt: '2026-01-01T01:00:00.004Z' }
  const fresh = (match: number, diverged: number): RouteSummary => summaryOf('orders', {
    epoch: inWorker, since: inWorker.startedAt, comparisons: { match, diverged, error: 0, skipped: 0 }, windows: { '5m': windowOf(match, diverged), '1h': windowOf(match, diverged) }
  })
  const stale = summaryOf('orders', { comparisons: { match: 0, diverged: 50, error: 0, skipped: 0 }, topFields: [{ field: 'body.noise', count: 50, kinds: { changed: 50 } }] })
  const [orders] = mergeSummaries([[fresh(3, 1)], [fresh(1, 1)], [stale]], () => reset)
  t.match(orders, {
    epoch: reset,
    since: reset.startedAt,
    comparisons: { match: 4, diverged: 2 },
    divergenceRate: 2 / 6,
    windows: { '5m': { comparisons: { match: 4, diverged: 2 }, divergenceRate: 2 / 6 }, '1h': { divergenceRate: 2 / 6 } },
    topFields: []
  }, 'the primary\'s epoch start is shown; the stale worker\'s noise is not counted')
  const [windowed] = mergeSummaries([[{ ...fresh(1, 0), since: '2026-01-01T01:10:00.000Z' }], [{ ...fresh(1, 0), since: '2026-01-01T01:10:00.000Z' }]], () => reset)
  t.equal(windowed?.since, '2026-01-01T01:10:00.000Z', 'counts since a time say from when')
})

/** A registry shaped like a Ficus process's, with the values given. */
async function registry(requests: number, newPercent: number | null, durations: number[]): Promise<{ register: Registry; json: () => Promise<MetricsJson> }> {
  const register = new Registry()
  const registers = [register]
  new Counter({ name: 'ficus_requests_total', help: 'h', labelNames: ['route'], registers }).inc({ route: 'orders' }, requests)
  const g = new Gauge({ name: 'ficus_route_new_percent', help: 'h', labelNames: ['route'], registers })
  if (newPercent !== null) g.set({ route: 'orders' }, newPercent)
  const h = new Histogram({ name: 'ficus_request_duration_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 1], registers })
  for (const d of durations) h.observe({ route: 'orders' }, d)
  new Gauge({ name: 'process_resident_memory_bytes', help: 'h', registers }).set(100)
  return { register, json: async () => register.getMetricsAsJSON() }
}

t.test('ClusterMetrics: counters and histograms summed, config gauges from the primary once, dead workers kept', async (t) => {
  const primary = await registry(0, 25, [])
  const w1 = await registry(3, null, [0.05, 0.5])
  const w2 = await registry(4, null, [2])
  const alive = new Set([1, 2])
  let answers = new Map<number, MetricsJson | null>([[1, await w1.json()], [2, await w2.json()]])
  const m = new ClusterMetrics(primary.register, async () => answers, (id) => alive.has(id))
  let text = await m.metrics()
  t.equal(sample(text, 'ficus_requests_total', { route: 'orders' }), 7)
  t.equal(sample(text, 'ficus_route_new_percent', { route: 'orders' }), 25, 'not 3 × 25')
  t.equal(sample(text, 'ficus_request_duration_seconds_bucket', { le: '0.1', route: 'orders' }), 1)
  t.equal(sample(text, 'ficus_request_duration_seconds_count', { route: 'orders' }), 3)
  t.equal(sample(text, 'process_resident_memory_bytes'), 300, 'memory of the whole instance')

  answers = new Map([[1, null], [2, await w2.json()]])
  text = await m.metrics()
  t.equal(sample(text, 'ficus_requests_total', { route: 'orders' }), 7, 'a worker that does not answer counts with its last values')

  // Worker 1 dies; its replacement (3) starts at zero: the sum must not go down.
  alive.delete(1)
  m.retire(1)
  alive.add(3)
  const w3 = await registry(1, null, [])
  answers = new Map([[2, await w2.json()], [3, await w3.json()]])
  text = await m.metrics()
  t.equal(sample(text, 'ficus_requests_total', { route: 'orders' }), 8, '3 (dead, as last scraped) + 4 + 1')
  t.equal(sample(text, 'ficus_request_duration_seconds_count', { route: 'orders' }), 3)
  t.equal(sample(text, 'process_resident_memory_bytes'), 300, 'a dead worker\'s gauges are gone')
  alive.delete(2)
  m.retire(2)
  answers = new Map([[3, await w3.json()]])
  t.equal(sample(await m.metrics(), 'ficus_requests_total', { route: 'orders' }), 8, 'retired lists compacted, still counted once')
  t.equal(sample(await m.metrics(), 'ficus_requests_total', { route: 'orders' }), 8)
})
