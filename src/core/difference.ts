import type { Seg } from './rule-path.js'

/**
 * What a comparison reports (pure): each difference between legacy's answer and new's,
 * named from legacy to new, and the bounded list that keeps them.
 */

export type DifferenceKind = 'changed' | 'type' | 'missing' | 'extra' | 'length'
/** The part of the response a difference is in (the `kind` label of ficus_divergences_total). */
export type Area = 'status' | 'header' | 'body'

export interface Difference {
  /** Where: `status`, `header.content-type`, `body.items[2].price`. */
  readonly path: string
  /** The same with array positions folded (`body.items[*].price`), for per-field counts. */
  readonly field: string
  readonly area: Area
  readonly kind: DifferenceKind
  readonly legacy?: unknown
  readonly new?: unknown
  /** For a JSON body difference: where, as segments (redaction matches on it). */
  readonly at?: readonly Seg[]
}

/** The differences of one comparison, at most `max` (past it the result is marked truncated). */
export class Collector {
  readonly list: Difference[] = []
  truncated = false
  constructor (private readonly max: number) {}
  add (d: Difference): void {
    if (this.room()) this.list.push(d)
  }

  /** Whether one more difference is kept; once `max` are, the result is marked truncated instead. */
  room (): boolean {
    if (this.list.length < this.max) return true
    this.truncated = true
    return false
  }

  result (): { readonly outcome: 'diverged'; readonly differences: readonly Difference[]; readonly truncated: boolean } {
    return { outcome: 'diverged', differences: this.list, truncated: this.truncated }
  }
}
