import { emptySummary, type DivergenceSample, type Epoch, type EpochCause, type FieldCount, type ComparisonOutcome, type RouteSummary, type Since, type WindowCounts } from '../adapters/divergence-store.js'
import type { Divergences } from '../control/admin-api.js'

/**
 * /admin/divergences in cluster mode: each worker keeps the samples and counts of the
 * comparisons it made; the primary asks them all and merges. Samples: newest first over all
 * workers, `limit` respected (each worker sends its newest `limit`, so the merge is exact).
 * Summaries: counts summed; the fields that differ most are merged from each worker's top
 * list, so a field outside a worker's top 10 is counted from the others only.
 *
 * Epochs are the primary's: it numbers them, tells every worker (which start their counts
 * over) before it answers, and gives a worker that starts later the current ones. A
 * worker's answer from another epoch than the primary's (a change still on its way) is
 * left out of the counts.
 */

/** Fields listed per route, as DivergenceStore lists them. */
const TOP_FIELDS = 10

export type DivergenceQuestion =
  | { t: 'samples'; route: string | undefined; limit: number; since: Since | undefined }
  | { t: 'summary'; route: string | undefined; since: Since }

export class ClusterDivergences implements Divergences {
  private readonly book = new Map<string, Epoch>()
  private readonly started: Epoch

  /**
   * `ask` sends a question to every worker and resolves with the answers that came in time;
   * `tell` gives every worker new epochs and resolves once they have them.
   */
  constructor (
    private readonly ask: <T>(question: DivergenceQuestion) => Promise<T[]>,
    private readonly tell: (epochs: Record<string, Epoch>) => Promise<void>,
    private readonly now: () => number = Date.now
  ) {
    this.started = { n: 1, startedAt: new Date(now()).toISOString(), why: 'start', reason: null }
  }

  async samples (route: string | undefined, limit: number, since?: Since): Promise<DivergenceSample[]> {
    return mergeSamples(await this.ask<DivergenceSample[]>({ t: 'samples', route, limit, since }), limit)
  }

  async summary (route?: string, since: Since = 'epoch'): Promise<RouteSummary[]> {
    const merged = mergeSummaries(await this.ask<RouteSummary[]>({ t: 'summary', route, since }), (name) => this.epochOf(name))
    // A route asked for by name is always answered, at zero when no worker compared it yet.
    if (route !== undefined && merged.length === 0) return [{ ...emptySummary(route), epoch: this.epochOf(route), since: this.epochOf(route).startedAt }]
    return merged
  }

  async newEpoch (routes: readonly string[], why: EpochCause, reason: string | null): Promise<Epoch[]> {
    const startedAt = new Date(this.now()).toISOString()
    const made: Record<string, Epoch> = {}
    const list = routes.map((route) => {
      const epoch: Epoch = { n: this.epochOf(route).n + 1, startedAt, why, reason }
      this.book.set(route, epoch)
      made[route] = epoch
      return epoch
    })
    await this.tell(made)
    return list
  }

  /** Every route's epoch past the first: what a worker that starts now adopts. */
  epochs (): Record<string, Epoch> {
    return Object.fromEntries(this.book)
  }

  private epochOf (route: string): Epoch {
    return this.book.get(route) ?? this.started
  }
}

/** Newest first (a stable sort keeps each worker's order within a millisecond), at most `limit`. */
export function mergeSamples(lists: readonly (readonly DivergenceSample[])[], limit: number): DivergenceSample[] {
  return lists.flat().sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0)).slice(0, limit)
}

/**
 * One summary per route, summed over the workers, by route name. `epochOf` gives the
 * route's current epoch: the answers of workers still in another are left out (without it,
 * the newest epoch any worker reports).
 */
export function mergeSummaries(lists: readonly (readonly RouteSummary[])[], epochOf?: (route: string) => Epoch): RouteSummary[] {
  const byRoute = new Map<string, RouteSummary[]>()
  for (const list of lists) {
    for (const s of list) {
      const parts = byRoute.get(s.route)
      if (parts === undefined) byRoute.set(s.route, [s])
      else parts.push(s)
    }
  }
  return [...byRoute.keys()].sort().map((route) => {
    const parts = byRoute.get(route) as RouteSummary[]
    const epoch = epochOf?.(route) ?? parts.reduce((a, b) => (b.epoch.n > a.epoch.n ? b : a)).epoch
    const current = parts.filter((p) => p.epoch.n === epoch.n)
    return mergeRoute(route, epoch, current)
  })
}

function mergeRoute(route: string, epoch: Epoch, parts: readonly RouteSummary[]): RouteSummary {
  const comparisons: Record<ComparisonOutcome, number> = { match: 0, diverged: 0, error: 0, skipped: 0 }
  const kinds = { status: 0, header: 0, body: 0 }
  const skipped: Record<string, number> = {}
  const errors: Record<string, number> = {}
  const fields = new Map<string, { count: number; kinds: Record<string, number> }>()
  let otherFields = 0
  let lastDivergence: string | null = null
  for (const p of parts) {
    for (const k of Object.keys(comparisons) as ComparisonOutcome[]) comparisons[k] += p.comparisons[k]
    for (const k of Object.keys(kinds) as (keyof typeof kinds)[]) kinds[k] += p.kinds[k]
    addInto(skipped, p.skipped)
    addInto(errors, p.errors)
    for (const f of p.topFields) {
      let acc = fields.get(f.field)
      if (acc === undefined) {
        acc = { count: 0, kinds: {} }
        fields.set(f.field, acc)
      }
      acc.count += f.count
      addInto(acc.kinds, f.kinds)
    }
    otherFields += p.otherFields
    if (p.lastDivergence !== null && (lastDivergence === null || p.lastDivergence > lastDivergence)) lastDivergence = p.lastDivergence
  }
  // Counts since the epoch show the primary's start of it (a worker's is when it heard of it);
  // counts since a time show that time, the same from every worker.
  const windowed = parts.map((p) => p.since).filter((x, i) => x !== parts[i]?.epoch.startedAt).sort()
  const since = windowed.length === 0 ? epoch.startedAt : windowed[windowed.length - 1] as string
  const done = comparisons.match + comparisons.diverged
  const topFields: FieldCount[] = [...fields.entries()]
    .sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1))
    .slice(0, TOP_FIELDS)
    .map(([field, f]) => ({ field, count: f.count, kinds: f.kinds }))
  const windows = { '5m': mergeWindows(parts.map((p) => p.windows['5m'])), '1h': mergeWindows(parts.map((p) => p.windows['1h'])) }
  return { route, epoch, since, windows, comparisons, divergenceRate: done === 0 ? null : comparisons.diverged / done, kinds, skipped, errors, topFields, otherFields, lastDivergence }
}

function mergeWindows(parts: readonly WindowCounts[]): WindowCounts {
  const comparisons: Record<ComparisonOutcome, number> = { match: 0, diverged: 0, error: 0, skipped: 0 }
  const kinds = { status: 0, header: 0, body: 0 }
  for (const p of parts) {
    for (const k of Object.keys(comparisons) as ComparisonOutcome[]) comparisons[k] += p.comparisons[k]
    for (const k of Object.keys(kinds) as (keyof typeof kinds)[]) kinds[k] += p.kinds[k]
  }
  const done = comparisons.match + comparisons.diverged
  return { comparisons, divergenceRate: done === 0 ? null : comparisons.diverged / done, kinds }
}

function addInto(into: Record<string, number>, from: Readonly<Record<string, number | undefined>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + (v ?? 0)
}
