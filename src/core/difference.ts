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
/** Item pairs tried under the rules, past exact pairing, over all the unordered arrays of one comparison (bounds n × m searches, nested ones included). */
export const MAX_PAIRING_TRIES = 20_000

export class Collector {
  readonly list: Difference[] = []
  truncated = false
  /**
   * Item pairs an unordered comparison may still try, shared by every nested comparison of
   * one response (a probe made inside one gets the same object): nested unordered arrays
   * cannot multiply their searches.
   */
  readonly tries: { left: number }
  constructor (private readonly max: number, tries?: { left: number }) {
    this.tries = tries ?? { left: MAX_PAIRING_TRIES }
  }
  add (d: Difference): void {
    if (this.room()) this.list.push(d)
  }

  /** A probe: only whether there is a difference matters (it keeps none). */
  get probing (): boolean {
    return this.max === 0
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
