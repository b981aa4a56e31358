import type { Comparison } from '../core/compare.js'
import type { Difference, DifferenceKind } from '../core/difference.js'
import type { RulePath } from '../core/rule-path.js'
import { showDifference, type ShownDifference } from '../core/redact.js'
import type { Backend } from '../core/types.js'

/**
 * What engineers of new read to fix divergences: per route, counts of comparison outcomes,
 * a bounded ring of recent divergence samples (redacted), and Diffy-style counts of which
 * field differs how often. In memory, per process: a fleet reads each replica (or the
 * metrics, which Prometheus aggregates).
 */

export type ComparisonOutcome = 'match' | 'diverged' | 'error' | 'skipped'

/** One shadowed request, as the shadow stage reports it. */
export interface ShadowedRequest {
  readonly route: string
  readonly method: string
  /**
   * Path and query string (`/posts?_page=2`), secret parameter values `[redacted]`
   * (core/redact.ts showTarget); built only for a divergence.
   */
  readonly path: string
  readonly requestId: string
  /** Keyed hash of the sticky key (never the key itself), or null without one. */
  readonly keyHash: string | null
  readonly primary: Backend
  readonly status: { readonly legacy: number | null; readonly new: number | null }
  /** Milliseconds each side took, request sent to response read. */
  readonly ms: { readonly legacy: number | null; readonly new: number | null }
}

export interface DivergenceSample extends ShadowedRequest {
  /** ISO 8601. */
  readonly time: string
  readonly differences: readonly ShownDifference[]
  /** More differences existed than a comparison keeps. */
  readonly truncated: boolean
}

export interface FieldCount {
  /** Field path with array positions folded: `body.items[*].price`. */
  readonly field: string
  readonly count: number
  readonly kinds: Readonly<Partial<Record<DifferenceKind, number>>>
}

export interface RouteSummary {
  readonly route: string
  readonly comparisons: Readonly<Record<ComparisonOutcome, number>>
  /** diverged / (match + diverged); null before the first completed comparison. */
  readonly divergenceRate: number | null
  readonly kinds: Readonly<Record<'status' | 'header' | 'body', number>>
  readonly skipped: Readonly<Record<string, number>>
  readonly errors: Readonly<Record<string, number>>
  readonly topFields: readonly FieldCount[]
  /** Distinct fields past the per-route bound, counted here instead. */
  readonly otherFields: number
  readonly lastDivergence: string | null
}

/** Distinct field paths counted per route; a body with generated keys cannot grow memory past it. */
export const MAX_FIELDS_PER_ROUTE = 500
/** Longest field path counted (characters). */
const MAX_FIELD_CHARS = 300
/** Field paths listed in a summary. */
const TOP_FIELDS = 10

class RouteStats {
  readonly comparisons: Record<ComparisonOutcome, number> = { match: 0, diverged: 0, error: 0, skipped: 0 }
  readonly kinds = { status: 0, header: 0, body: 0 }
  readonly skipped: Record<string, number> = {}
  readonly errors: Record<string, number> = {}
  readonly fields = new Map<string, { count: number; kinds: Partial<Record<DifferenceKind, number>> }>()
  otherFields = 0
  /** Newest last; at most `capacity`. */
  readonly samples: DivergenceSample[] = []
  lastDivergence: string | null = null
}

export class DivergenceStore {
  private readonly routes = new Map<string, RouteStats>()

  private lastMs = -1
  private lastIso = ''

  /** `capacity`: samples kept per route; `now`: wall-clock milliseconds for sample times. */
  constructor (private readonly capacity: number, private readonly now: () => number = Date.now) {}

  /** The sample time, formatted once per millisecond (toISOString costs ~1 µs; under load many divergences share one). */
  private isoTime (): string {
    const ms = this.now()
    if (ms !== this.lastMs) {
      this.lastMs = ms
      this.lastIso = new Date(ms).toISOString()
    }
    return this.lastIso
  }

  /** A shadowed request that produced no comparison (reason: concurrency, fallback, …) or failed (error). */
  unfinished (route: string, outcome: 'skipped' | 'error', reason: string): void {
    const s = this.stats(route)
    s.comparisons[outcome]++
    const map = outcome === 'skipped' ? s.skipped : s.errors
    map[reason] = (map[reason] ?? 0) + 1
  }

  /** A completed comparison (`areas`: the parts that differed); a divergence keeps a redacted sample. */
  compared (req: ShadowedRequest, result: Exclude<Comparison, { outcome: 'skipped' }>, areas: ReadonlySet<Difference['area']>, redact: readonly RulePath[]): void {
    const s = this.stats(req.route)
    s.comparisons[result.outcome]++
    if (result.outcome === 'match') return
    const time = this.isoTime()
    s.lastDivergence = time
    for (const a of areas) s.kinds[a]++
    for (const d of result.differences) {
      // Field paths are data (keys); a long one is counted under its cut form.
      const field = d.field.length <= MAX_FIELD_CHARS ? d.field : `${d.field.slice(0, MAX_FIELD_CHARS)}…`
      let f = s.fields.get(field)
      if (f === undefined) {
        if (s.fields.size >= MAX_FIELDS_PER_ROUTE) {
          s.otherFields++
          continue
        }
        f = { count: 0, kinds: {} }
        s.fields.set(field, f)
      }
      f.count++
      f.kinds[d.kind] = (f.kinds[d.kind] ?? 0) + 1
    }
    if (this.capacity === 0) return
    // Fields listed rather than spread from req: V8 builds a spread-then-extended literal in
    // dictionary mode, 3 µs per diverged comparison (measured), against 0.1 µs written out.
    s.samples.push({
      route: req.route,
      method: req.method,
      path: req.path,
      requestId: req.requestId,
      keyHash: req.keyHash,
      primary: req.primary,
      status: req.status,
      ms: req.ms,
      time,
      differences: result.differences.map((d) => showDifference(d, redact)),
      truncated: result.truncated
    })
    if (s.samples.length > this.capacity) s.samples.shift()
  }

  /** Newest first; every route's when `route` is undefined. */
  samples (route: string | undefined, limit: number): DivergenceSample[] {
    const lists = route === undefined ? [...this.routes.values()].map((s) => s.samples) : [this.routes.get(route)?.samples ?? []]
    // Each ring reversed is newest first; a stable sort by time keeps that order within a millisecond.
    const all = lists.flatMap((l) => l.slice().reverse()).sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0))
    return all.slice(0, limit)
  }

  summary (route?: string): RouteSummary[] {
    const names = route === undefined ? [...this.routes.keys()].sort() : [route]
    return names.map((name) => {
      const s = this.routes.get(name) ?? new RouteStats()
      const done = s.comparisons.match + s.comparisons.diverged
      const topFields = [...s.fields.entries()]
        .sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1))
        .slice(0, TOP_FIELDS)
        .map(([field, f]) => ({ field, count: f.count, kinds: { ...f.kinds } }))
      return {
        route: name,
        comparisons: { ...s.comparisons },
        divergenceRate: done === 0 ? null : s.comparisons.diverged / done,
        kinds: { ...s.kinds },
        skipped: { ...s.skipped },
        errors: { ...s.errors },
        topFields,
        otherFields: s.otherFields,
        lastDivergence: s.lastDivergence
      }
    })
  }

  private stats (route: string): RouteStats {
    let s = this.routes.get(route)
    if (s === undefined) {
      s = new RouteStats()
      this.routes.set(route, s)
    }
    return s
  }
}

/** A route's summary before any comparison: every count at 0. */
export function emptySummary(route: string): RouteSummary {
  return new DivergenceStore(0).summary(route)[0] as RouteSummary
}
