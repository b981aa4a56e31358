import { AggregatorRegistry, type Aggregator, type Registry } from 'prom-client'
import type { MetricsText } from '../control/metrics-endpoint.js'
import type { MetricsJson } from './protocol.js'

/**
 * GET /metrics of a cluster: the primary's registry and every worker's, as one Ficus.
 * Counters and histograms are summed (requests, comparisons, … of all workers). Where a sum
 * is wrong the series is chosen by metric name here (not by metric class: only the
 * registries' getMetricsAsJSON() output is read): what describes the config or the
 * instance, which the primary alone holds, is taken from it once, never multiplied by N.
 */

type Rule = Aggregator | 'primary'

/** Metrics that are not summed over the processes. */
const BY_NAME: Readonly<Record<string, Rule>> = {
  // One value per Ficus: the config, the version, Unleash's health (the primary's client).
  ficus_build_info: 'primary',
  ficus_route_new_percent: 'primary',
  ficus_route_shadow_percent: 'primary',
  ficus_flag_source_ready: 'primary',
  // The ramp controller runs in the primary (the admin API's process).
  ficus_ramp_step_percent: 'primary',
  ficus_ramp_state: 'primary',
  ficus_ramp_gate_observed: 'primary',
  ficus_ramp_gate_threshold: 'primary',
  ficus_ramp_gate_verdict: 'primary',
  // Verify jobs run by Ficus run in the primary (the admin API's process).
  ficus_verify_last_result: 'primary',
  ficus_verify_last_completed_timestamp_seconds: 'primary',
  // When the instance started, and which Node runs it.
  process_start_time_seconds: 'primary',
  nodejs_version_info: 'primary',
  // Read from the sync store, which every process shares: the same value in each.
  ficus_sync_pending: 'max',
  ficus_sync_dead_letters: 'max',
  ficus_sync_lag_seconds: 'max',
  ficus_idmap_entries: 'max',
  // One process that cannot reach the store refuses its dual writes: the lowest says so.
  ficus_sync_store_up: 'min',
  // A per-process limit, not a quantity.
  process_max_fds: 'max'
}

/** Kinds whose values only grow: a dead worker's last values stay in the sums. */
const MONOTONIC = new Set<string>(['counter', 'histogram'])
const AGGREGATORS = new Set<string>(['sum', 'first', 'min', 'max', 'average'])

/** A metric's kind as getMetricsAsJSON() writes it (`counter`, `gauge`, …; the typings say an enum). */
function kindOf(m: MetricsJson[number]): string {
  return String(m.type)
}

/** Sets each metric's aggregator for AggregatorRegistry, and drops from workers what the primary alone reports. */
function prepare(list: MetricsJson, fromPrimary: boolean): MetricsJson {
  const out: MetricsJson = []
  for (const m of list) {
    const rule = BY_NAME[m.name]
    if (rule === 'primary') {
      if (fromPrimary) out.push({ ...m, aggregator: 'first' })
      continue
    }
    // Gauges keep prom-client's own choice (event-loop lag: average, min, max); the rest is summed.
    const own = kindOf(m) === 'gauge' && AGGREGATORS.has(m.aggregator) ? m.aggregator : 'sum'
    out.push({ ...m, aggregator: rule ?? own })
  }
  return out
}

export class ClusterMetrics implements MetricsText {
  /** Each live worker's last answer, by worker id: used again when it does not answer in time. */
  private readonly last = new Map<number, MetricsJson>()
  /** Counters and histograms of workers that exited, as last scraped (at most one list once compacted). */
  private retired: MetricsJson[] = []

  /**
   * `collect` asks every worker (null: no answer in time); `alive` says whether a worker has
   * not exited meanwhile.
   */
  constructor (
    private readonly primary: Registry,
    private readonly collect: () => Promise<Map<number, MetricsJson | null>>,
    private readonly alive: (id: number) => boolean
  ) {}

  get contentType (): string {
    return this.primary.contentType
  }

  async metrics (): Promise<string> {
    return (await this.aggregate()).metrics()
  }

  /** The same, as prom-client's JSON (what the ramp controller reads). */
  async getMetricsAsJSON (): Promise<MetricsJson> {
    return (await this.aggregate()).getMetricsAsJSON()
  }

  private async aggregate (): Promise<Registry> {
    const [own, answers] = await Promise.all([this.primary.getMetricsAsJSON(), this.collect()])
    for (const [id, json] of answers) if (json !== null && this.alive(id)) this.last.set(id, json)
    if (this.retired.length > 1) this.retired = [await AggregatorRegistry.aggregate(this.retired.map((r) => prepare(r, false))).getMetricsAsJSON()]
    const lists = [prepare(own, true), ...this.retired.map((r) => prepare(r, false)), ...[...this.last.values()].map((w) => prepare(w, false))]
    return AggregatorRegistry.aggregate(lists)
  }

  /**
   * A worker exited. Its counters and histograms, as last scraped, stay in the sums: a sum
   * that went down would read as a counter reset to Prometheus, and rate() would see a
   * burst. Counts since that scrape are lost with the process.
   */
  retire (id: number): void {
    const json = this.last.get(id)
    this.last.delete(id)
    if (json !== undefined) this.retired.push(json.filter((m) => MONOTONIC.has(kindOf(m))))
  }
}
