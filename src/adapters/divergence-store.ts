import { createHmac, randomBytes } from 'node:crypto'
import type { Comparison } from '../core/compare.js'
import type { Difference, DifferenceKind } from '../core/difference.js'
import type { RulePath } from '../core/rule-path.js'
import { showDifference, type ShownDifference } from '../core/redact.js'
import type { Backend } from '../core/types.js'

/**
 * What engineers of new read to fix divergences: per route, counts of comparison outcomes,
 * a bounded ring of recent divergence samples (redacted), and Diffy-style counts of which
 * field differs how often. Counts cover the route's epoch (since Ficus started, its
 * compare rules last changed, or someone reset them) and per-minute buckets of the last
 * hour (the 5-minute and 1-hour windows, and `since`). In memory, per process: a fleet
 * reads each replica (or the metrics, which Prometheus aggregates).
 */

export type ComparisonOutcome = 'match' | 'diverged' | 'error' | 'skipped'

/** Why a route's counts started over: Ficus started, a reload changed its compare rules, or someone reset them. */
export type EpochCause = 'start' | 'reload' | 'reset'

/**
 * The span a route's divergence counts cover: from `startedAt` on, under one set of compare
 * rules. Numbered per route from 1 (the start); the Prometheus counters never start over.
 */
export interface Epoch {
  readonly n: number
  /** ISO 8601. */
  readonly startedAt: string
  readonly why: EpochCause
  /** Given with a reset. */
  readonly reason: string | null
}

/** What counts cover: the epoch, or the time since a moment (wall-clock ms) within the last hour. */
export type Since = 'epoch' | number

/** Counts over a recent window. */
export interface WindowCounts {
  readonly comparisons: Readonly<Record<ComparisonOutcome, number>>
  /** diverged / (match + diverged); null without a completed comparison. */
  readonly divergenceRate: number | null
  readonly kinds: Readonly<Record<'status' | 'header' | 'body', number>>
}

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
  /**
   * The sticky key, undefined without one. Never shown: a sample carries its keyed hash, made
   * when the sample is read (an HMAC per divergence cost ~3 µs; samples are read far less
   * often than written).
   */
  readonly stickyKey: string | undefined
  readonly primary: Backend
  readonly status: { readonly legacy: number | null; readonly new: number | null }
  /** Milliseconds each side took, request sent to response read. */
  readonly ms: { readonly legacy: number | null; readonly new: number | null }
}

export interface DivergenceSample extends Omit<ShadowedRequest, 'stickyKey'> {
  /** Keyed hash of the sticky key (never the key itself), or null without one. */
  readonly keyHash: string | null
  /** ISO 8601. */
  readonly time: string
  /** The route's epoch when it was recorded (samples outlive an epoch; counts do not). */
  readonly epoch: number
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
  readonly epoch: Epoch
  /** Start of what the counts below cover (ISO 8601): the epoch's start, or `since` to the minute. */
  readonly since: string
  /** The last 5 minutes and the last hour, to the minute, never before the epoch's start. */
  readonly windows: { readonly '5m': WindowCounts; readonly '1h': WindowCounts }
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
/** Distinct field paths counted per route and minute (the windows' top fields). */
const MAX_FIELDS_PER_MINUTE = 100
/** Minutes kept for the windows: the longest window, and the longest `since`. */
export const WINDOW_MINUTES = 60
const MINUTE_MS = 60_000

type FieldMap = Map<string, { count: number; kinds: Partial<Record<DifferenceKind, number>> }>

/** Counts over a span: the epoch, or one minute. */
class Counts {
  readonly comparisons: Record<ComparisonOutcome, number> = { match: 0, diverged: 0, error: 0, skipped: 0 }
  readonly kinds = { status: 0, header: 0, body: 0 }
  readonly skipped: Record<string, number> = {}
  readonly errors: Record<string, number> = {}
  readonly fields: FieldMap = new Map()
  otherFields = 0
  constructor (readonly maxFields: number) {}
}

class Minute extends Counts {
  constructor (readonly minute: number) {
    super(MAX_FIELDS_PER_MINUTE)
  }
}

class RouteStats {
  epochCounts = new Counts(MAX_FIELDS_PER_ROUTE)
  /** Oldest first; the last WINDOW_MINUTES minutes that had an event. */
  minutes: Minute[] = []
  /** Newest last; at most `capacity`. */
  readonly samples: DivergenceSample[] = []
  lastDivergence: string | null = null
  constructor (public epoch: Epoch) {}
}

export class DivergenceStore {
  private readonly routes = new Map<string, RouteStats>()
  /** The first epoch of every route: since this store was made. */
  private readonly started: Epoch

  private lastMs = -1
  private lastIso = ''

  /** `capacity`: samples kept per route; `now`: wall-clock milliseconds (sample times, epochs, windows). */
  constructor (private readonly capacity: number, private readonly now: () => number = Date.now) {
    this.started = { n: 1, startedAt: new Date(now()).toISOString(), why: 'start', reason: null }
  }

  /** The sample time, formatted once per millisecond (toISOString costs ~1 µs; under load many divergences share one). */
  private isoTime (ms: number): string {
    if (ms !== this.lastMs) {
      this.lastMs = ms
      this.lastIso = new Date(ms).toISOString()
    }
    return this.lastIso
  }

  /** A shadowed request that produced no comparison (reason: concurrency, fallback, …) or failed (error). */
  unfinished (route: string, outcome: 'skipped' | 'error', reason: string): void {
    const s = this.stats(route)
    for (const c of [s.epochCounts, this.minuteOf(s, this.now())]) {
      c.comparisons[outcome]++
      const map = outcome === 'skipped' ? c.skipped : c.errors
      map[reason] = (map[reason] ?? 0) + 1
    }
  }

  /** A completed comparison (`areas`: the parts that differed); a divergence keeps a redacted sample. */
  compared (req: ShadowedRequest, result: Exclude<Comparison, { outcome: 'skipped' }>, areas: ReadonlySet<Difference['area']>, redact: readonly RulePath[]): void {
    const s = this.stats(req.route)
    const ms = this.now()
    const minute = this.minuteOf(s, ms)
    s.epochCounts.comparisons[result.outcome]++
    minute.comparisons[result.outcome]++
    if (result.outcome === 'match') return
    const time = this.isoTime(ms)
    s.lastDivergence = time
    for (const a of areas) {
      s.epochCounts.kinds[a]++
      minute.kinds[a]++
    }
    for (const d of result.differences) {
      // Field paths are data (keys); a long one is counted under its cut form.
      const field = d.field.length <= MAX_FIELD_CHARS ? d.field : `${d.field.slice(0, MAX_FIELD_CHARS)}…`
      countField(s.epochCounts, field, d.kind)
      countField(minute, field, d.kind)
    }
    if (this.capacity === 0) return
    // Fields listed rather than spread from req: V8 builds a spread-then-extended literal in
    // dictionary mode, 3 µs per diverged comparison (measured), against 0.1 µs written out.
    const sample: DivergenceSample = {
      route: req.route,
      method: req.method,
      path: req.path,
      requestId: req.requestId,
      keyHash: null,
      primary: req.primary,
      status: req.status,
      ms: req.ms,
      time,
      epoch: s.epoch.n,
      differences: result.differences.map((d) => showDifference(d, redact)),
      truncated: result.truncated
    }
    if (req.stickyKey !== undefined) this.unhashed.set(sample, req.stickyKey)
    s.samples.push(sample)
    if (s.samples.length > this.capacity) s.samples.shift()
  }

  /** The route's current epoch. */
  epochOf (route: string): Epoch {
    return this.routes.get(route)?.epoch ?? this.started
  }

  /** Every route's epoch past the first (what a new cluster worker adopts). */
  epochs (): Record<string, Epoch> {
    const out: Record<string, Epoch> = {}
    for (const [name, s] of this.routes) if (s.epoch !== this.started) out[name] = s.epoch
    return out
  }

  /** Starts the next epoch of each route, now: its counts and windows start over (samples stay, marked with their epoch). */
  newEpoch (routes: readonly string[], why: EpochCause, reason: string | null): Epoch[] {
    const startedAt = new Date(this.now()).toISOString()
    return routes.map((route) => {
      const epoch: Epoch = { n: this.epochOf(route).n + 1, startedAt, why, reason }
      this.adopt(route, epoch)
      return epoch
    })
  }

  /** Makes `epoch` the route's current one (a cluster worker, told by its primary); its counts start over. */
  adopt (route: string, epoch: Epoch): void {
    const s = this.stats(route)
    if (s.epoch.n === epoch.n && s.epoch.startedAt === epoch.startedAt) return
    s.epoch = epoch
    s.epochCounts = new Counts(MAX_FIELDS_PER_ROUTE)
    s.minutes = []
  }

  /** Newest first; every route's when `route` is undefined; `since`: of the route's current epoch, or from that time on. */
  samples (route: string | undefined, limit: number, since?: Since): DivergenceSample[] {
    const names = route === undefined ? [...this.routes.keys()] : [route]
    const lists = names.map((name) => {
      const s = this.routes.get(name)
      if (s === undefined) return []
      if (since === undefined) return s.samples
      if (since === 'epoch') return s.samples.filter((x) => x.epoch === s.epoch.n)
      const from = new Date(since).toISOString()
      return s.samples.filter((x) => x.time >= from)
    })
    // Each ring reversed is newest first; a stable sort by time keeps that order within a millisecond.
    const all = lists.flatMap((l) => l.slice().reverse()).sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0))
    const out = all.slice(0, limit)
    for (const x of out) this.hashKey(x)
    return out
  }

  /** Key for hashing sticky keys in samples: per process, so a hash cannot be looked up elsewhere. */
  private readonly secret = randomBytes(32)
  /** Samples whose sticky key is not hashed yet (the key is dropped once it is). */
  private readonly unhashed = new WeakMap<DivergenceSample, string>()

  private hashKey (x: DivergenceSample): void {
    const key = this.unhashed.get(x)
    if (key === undefined) return
    (x as { keyHash: string | null }).keyHash = createHmac('sha256', this.secret).update(key).digest('hex').slice(0, 12)
    this.unhashed.delete(x)
  }

  /**
   * Per route: counts since the epoch began (or, with `since` a time, over the minutes since
   * then, to the minute, never before the epoch), and the 5-minute and 1-hour windows.
   */
  summary (route?: string, since: Since = 'epoch'): RouteSummary[] {
    const names = route === undefined ? [...this.routes.keys()].sort() : [route]
    const ms = this.now()
    return names.map((name) => {
      const s = this.routes.get(name) ?? new RouteStats(this.started)
      const epochMs = Date.parse(s.epoch.startedAt)
      const fromMinute = since === 'epoch' ? null : Math.floor(since / MINUTE_MS)
      const windowed = fromMinute !== null && fromMinute * MINUTE_MS > epochMs
      const c = windowed ? sum(s.minutes.filter((m) => m.minute >= fromMinute), MAX_FIELDS_PER_ROUTE) : s.epochCounts
      const now = Math.floor(ms / MINUTE_MS)
      const done = c.comparisons.match + c.comparisons.diverged
      return {
        route: name,
        epoch: s.epoch,
        since: windowed ? new Date(fromMinute * MINUTE_MS).toISOString() : s.epoch.startedAt,
        windows: { '5m': windowCounts(s.minutes, now - 4), '1h': windowCounts(s.minutes, now - (WINDOW_MINUTES - 1)) },
        comparisons: { ...c.comparisons },
        divergenceRate: done === 0 ? null : c.comparisons.diverged / done,
        kinds: { ...c.kinds },
        skipped: { ...c.skipped },
        errors: { ...c.errors },
        topFields: topFields(c.fields),
        otherFields: c.otherFields,
        lastDivergence: s.lastDivergence
      }
    })
  }

  private stats (route: string): RouteStats {
    let s = this.routes.get(route)
    if (s === undefined) {
      s = new RouteStats(this.started)
      this.routes.set(route, s)
    }
    return s
  }

  /** The bucket of the minute of `ms` (made when it is the first event in it; minutes past the hour dropped). */
  private minuteOf (s: RouteStats, ms: number): Minute {
    const minute = Math.floor(ms / MINUTE_MS)
    const last = s.minutes[s.minutes.length - 1]
    if (last !== undefined && last.minute >= minute) return last // the wall clock stepped back: the newest minute takes it
    const m = new Minute(minute)
    s.minutes.push(m)
    while ((s.minutes[0] as Minute).minute <= minute - WINDOW_MINUTES) s.minutes.shift()
    return m
  }
}

function countField(c: Counts, field: string, kind: DifferenceKind): void {
  let f = c.fields.get(field)
  if (f === undefined) {
    if (c.fields.size >= c.maxFields) {
      c.otherFields++
      return
    }
    f = { count: 0, kinds: {} }
    c.fields.set(field, f)
  }
  f.count++
  f.kinds[kind] = (f.kinds[kind] ?? 0) + 1
}

/** The minutes summed into one span. */
function sum(minutes: readonly Counts[], maxFields: number): Counts {
  const out = new Counts(maxFields)
  for (const m of minutes) {
    for (const k of Object.keys(out.comparisons) as ComparisonOutcome[]) out.comparisons[k] += m.comparisons[k]
    for (const k of Object.keys(out.kinds) as (keyof Counts['kinds'])[]) out.kinds[k] += m.kinds[k]
    for (const [r, n] of Object.entries(m.skipped)) out.skipped[r] = (out.skipped[r] ?? 0) + n
    for (const [r, n] of Object.entries(m.errors)) out.errors[r] = (out.errors[r] ?? 0) + n
    for (const [field, f] of m.fields) {
      let acc = out.fields.get(field)
      if (acc === undefined) {
        if (out.fields.size >= maxFields) {
          out.otherFields += f.count
          continue
        }
        acc = { count: 0, kinds: {} }
        out.fields.set(field, acc)
      }
      acc.count += f.count
      for (const [k, n] of Object.entries(f.kinds) as [DifferenceKind, number][]) acc.kinds[k] = (acc.kinds[k] ?? 0) + n
    }
    out.otherFields += m.otherFields
  }
  return out
}

function windowCounts(minutes: readonly Minute[], fromMinute: number): WindowCounts {
  const comparisons: Record<ComparisonOutcome, number> = { match: 0, diverged: 0, error: 0, skipped: 0 }
  const kinds = { status: 0, header: 0, body: 0 }
  for (const m of minutes) {
    if (m.minute < fromMinute) continue
    for (const k of Object.keys(comparisons) as ComparisonOutcome[]) comparisons[k] += m.comparisons[k]
    for (const k of Object.keys(kinds) as (keyof typeof kinds)[]) kinds[k] += m.kinds[k]
  }
  const done = comparisons.match + comparisons.diverged
  return { comparisons, divergenceRate: done === 0 ? null : comparisons.diverged / done, kinds }
}

function topFields(fields: FieldMap): FieldCount[] {
  return [...fields.entries()]
    .sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1))
    .slice(0, TOP_FIELDS)
    .map(([field, f]) => ({ field, count: f.count, kinds: { ...f.kinds } }))
}

/** A route's summary before any comparison: every count at 0. */
export function emptySummary(route: string): RouteSummary {
  return new DivergenceStore(0).summary(route)[0] as RouteSummary
}
