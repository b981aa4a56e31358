import { P99_MIN, quantile, type Bucket, type RampSample } from './ramp.js'

/**
 * What a route's traffic looked like over a window, per side, pure: the console's routes view
 * (GET /admin/traffic) reads it. The sample is the ramp's (core/ramp.ts `sampleOf`), so the
 * console and the ramp's gates count the same way: a fallback is a request meant for new
 * that new failed, answered by legacy.
 */

export interface SideTraffic {
  /** Requests this side was meant to answer (on new: answered by new, or fallen back to legacy). */
  readonly requests: number
  readonly perSecond: number | null
  /** 5xx answers (Ficus's own on the side's behalf among them); on new, fallbacks too. */
  readonly failed: number
  readonly errorRate: number | null
  /** Quantiles of the answers' durations (ms), as Prometheus's histogram_quantile reads buckets; p99 null under 100 answers. */
  readonly p50Ms: number | null
  readonly p99Ms: number | null
}

export interface RouteTraffic {
  /** The span the counts cover (s): the window once it is full, shorter while the watch is young. */
  readonly coveredS: number
  /** The share of the route's requests meant for new (the actual one, against the configured share). */
  readonly newShare: number | null
  readonly legacy: SideTraffic
  readonly new: SideTraffic & { readonly fallbacks: number }
  /** The route's dual writes now: the oldest undelivered write's age (s) and the dead letters (null: not a dual route). */
  readonly sync: { readonly lagS: number | null; readonly deadLetters: number | null } | null
}

function side (requests: number, failed: number, buckets: readonly Bucket[], coveredS: number): SideTraffic {
  const answered = buckets.at(-1)?.count ?? 0
  const ms = (q: number): number | null => {
    const s = quantile(q, buckets)
    return s === null ? null : Math.round(s * 1e4) / 10
  }
  return {
    requests,
    perSecond: coveredS > 0 ? requests / coveredS : null,
    failed,
    errorRate: requests > 0 ? failed / requests : null,
    p50Ms: answered > 0 ? ms(0.5) : null,
    p99Ms: answered >= P99_MIN ? ms(0.99) : null
  }
}

/** The route's traffic from its sample; `fallbacks` as counted in the same window. */
export function trafficOf (s: RampSample, fallbacks: number): RouteTraffic {
  const coveredS = s.coveredMs / 1000
  const all = s.newTotal + s.legacyTotal
  return {
    coveredS,
    newShare: all > 0 ? s.newTotal / all : null,
    legacy: side(s.legacyTotal, s.legacyFailed, s.latency.legacy, coveredS),
    new: { ...side(s.newTotal, s.newFailed, s.latency.new, coveredS), fallbacks },
    sync: s.syncLagS === null && s.deadLetters === null ? null : { lagS: s.syncLagS, deadLetters: s.deadLetters }
  }
}
