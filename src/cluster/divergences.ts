import { emptySummary, type DivergenceSample, type FieldCount, type ComparisonOutcome, type RouteSummary } from '../adapters/divergence-store.js'
import type { Divergences } from '../control/admin-api.js'

/**
 * /admin/divergences in cluster mode: each worker keeps the samples and counts of the
 * comparisons it made; the primary asks them all and merges. Samples: newest first over all
 * workers, `limit` respected (each worker sends its newest `limit`, so the merge is exact).
 * Summaries: counts summed; the fields that differ most are merged from each worker's top
 * list, so a field outside a worker's top 10 is counted from the others only.
 */

/** Fields listed per route, as DivergenceStore lists them. */
const TOP_FIELDS = 10

export class ClusterDivergences implements Divergences {
  /** `ask` sends a question to every worker and resolves with the answers that came in time. */
  constructor (private readonly ask: <T>(question: { t: 'samples'; route: string | undefined; limit: number } | { t: 'summary'; route: string | undefined }) => Promise<T[]>) {}

  async samples (route: string | undefined, limit: number): Promise<DivergenceSample[]> {
    return mergeSamples(await this.ask<DivergenceSample[]>({ t: 'samples', route, limit }), limit)
  }

  async summary (route?: string): Promise<RouteSummary[]> {
    const merged = mergeSummaries(await this.ask<RouteSummary[]>({ t: 'summary', route }))
    // A route asked for by name is always answered, at zero when no worker compared it yet.
    if (route !== undefined && merged.length === 0) return [emptySummary(route)]
    return merged
  }
}

/** Newest first (a stable sort keeps each worker's order within a millisecond), at most `limit`. */
export function mergeSamples(lists: readonly (readonly DivergenceSample[])[], limit: number): DivergenceSample[] {
  return lists.flat().sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0)).slice(0, limit)
}

/** One summary per route, summed over the workers, by route name. */
export function mergeSummaries(lists: readonly (readonly RouteSummary[])[]): RouteSummary[] {
  const byRoute = new Map<string, RouteSummary[]>()
  for (const list of lists) {
    for (const s of list) {
      const parts = byRoute.get(s.route)
      if (parts === undefined) byRoute.set(s.route, [s])
      else parts.push(s)
    }
  }
  return [...byRoute.keys()].sort().map((route) => mergeRoute(route, byRoute.get(route) as RouteSummary[]))
}

function mergeRoute(route: string, parts: readonly RouteSummary[]): RouteSummary {
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
  const done = comparisons.match + comparisons.diverged
  const topFields: FieldCount[] = [...fields.entries()]
    .sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1))
    .slice(0, TOP_FIELDS)
    .map(([field, f]) => ({ field, count: f.count, kinds: f.kinds }))
  return { route, comparisons, divergenceRate: done === 0 ? null : comparisons.diverged / done, kinds, skipped, errors, topFields, otherFields, lastDivergence }
}

function addInto(into: Record<string, number>, from: Readonly<Record<string, number | undefined>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + (v ?? 0)
}
