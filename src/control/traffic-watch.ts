import { countsOf, sampleOf } from '../core/ramp.js'
import { trafficOf, type RouteTraffic } from '../core/traffic.js'
import { windowOf, type CountWindow } from '../core/window.js'
import type { LiveConfig } from '../config/live.js'
import type { RouteRule } from '../core/types.js'
import type { MetricJson } from '../core/ramp.js'

/**
 * Each route's traffic over the last 5 minutes (GET /admin/traffic, the console's routes
 * view): the counters this process exposes on /metrics (a cluster's primary: its workers',
 * merged), read into a sliding window when someone asks, at most once per `everyMs`. Nothing
 * runs while nobody asks. The counters start at 0 with the process, so a process younger than
 * the window is counted exactly; an older one, watched again after a quiet spell, is counted
 * since it started for the first minute (a long average, said as such by `coveredS`), then
 * over what the reads since cover, up to the window. Legacy's quantiles include the answers it
 * gave for new (fallbacks), which its request count leaves out: the duration histogram does
 * not tell them apart.
 */

export const TRAFFIC_WINDOW_MS = 5 * 60_000
/** How long reads must span before they, not the time since the start, are what is counted. */
const FRESH_MS = 60_000

export interface TrafficOptions {
  readonly live: LiveConfig
  readonly source: { getMetricsAsJSON(): Promise<readonly MetricJson[]> }
  readonly now?: () => number
  /** When this process's counters started at 0 (ms since the epoch). */
  readonly startedAt?: number
  /** The shortest time between two reads of the counters (ms). */
  readonly everyMs?: number
}

export interface TrafficView {
  /** The window asked for (s); each route says what span its counts cover. */
  readonly windowS: number
  readonly routes: Record<string, RouteTraffic>
}

export class TrafficWatch {
  private readonly now: () => number
  private readonly startedAt: number
  private readonly everyMs: number
  private windows = new Map<string, CountWindow>()
  private readAt = -Infinity
  /** The first read after a quiet spell. */
  private watchFrom = 0
  private reading: Promise<void> | null = null

  constructor (private readonly o: TrafficOptions) {
    this.now = o.now ?? Date.now
    this.startedAt = o.startedAt ?? this.now()
    this.everyMs = o.everyMs ?? 2_000
  }

  async view (): Promise<TrafficView> {
    if (this.now() - this.readAt >= this.everyMs) {
      // Callers at the same moment share one read of the counters.
      this.reading ??= this.read().finally(() => { this.reading = null })
      await this.reading
    }
    // What the last read says, worked out once per read (a reload changing the routes works it out again).
    if (this.last !== null && this.last.readAt === this.readAt && this.last.routes === this.rules()) return this.last.view
    // Spans from the last read, which the windows end at.
    const watched = this.readAt - this.watchFrom
    const ms = watched < FRESH_MS ? TRAFFIC_WINDOW_MS : Math.min(TRAFFIC_WINDOW_MS, watched)
    const routes: Record<string, RouteTraffic> = {}
    for (const rule of this.rules()) {
      const w = this.windows.get(rule.name)
      const inc = w?.increase(ms) ?? { coveredMs: 0, counts: new Map<string, number>() }
      routes[rule.name] = trafficOf(sampleOf(inc.coveredMs, inc.counts, this.gauges.get(rule.name)), inc.counts.get('fb') ?? 0)
    }
    const view = { windowS: TRAFFIC_WINDOW_MS / 1000, routes }
    this.last = { readAt: this.readAt, routes: this.rules(), view }
    return view
  }

  /** Every route, the default one (what no other route matches) last, as GET /admin/routes lists them. */
  private rules (): readonly RouteRule[] {
    const config = this.o.live.current
    if (this.rulesOf !== config) {
      this.rulesOf = config
      this.allRules = [...config.routes, config.defaultRoute]
    }
    return this.allRules
  }

  private rulesOf: unknown = null
  private allRules: readonly RouteRule[] = []

  private last: { readonly readAt: number; readonly routes: unknown; readonly view: TrafficView } | null = null

  private gauges = new Map<string, { lag: number | null; dead: number | null }>()

  private async read (): Promise<void> {
    const json = await this.o.source.getMetricsAsJSON()
    const now = this.now()
    // After a quiet spell longer than the window, what the windows hold is older than any window asked for: start again.
    const fresh = now - this.readAt > TRAFFIC_WINDOW_MS
    if (fresh) {
      this.windows = new Map()
      // A process younger than the window is counted exactly since it started: as if watched since then.
      this.watchFrom = now - this.startedAt <= TRAFFIC_WINDOW_MS ? this.startedAt : now
    }
    const names = new Set(this.rules().map((r) => r.name))
    const { counts, gauges } = countsOf(json, names)
    this.gauges = gauges
    // Counters start at 0 with the process: until the window fills, the counts since then. A
    // route a reload added meanwhile (whose counters may be older than the reload) is counted
    // from this read on.
    for (const [route, c] of counts) windowOf(this.windows, route, TRAFFIC_WINDOW_MS, fresh ? this.startedAt : null).record(now, c)
    for (const route of this.windows.keys()) if (!names.has(route)) this.windows.delete(route)
    this.readAt = now
  }
}
