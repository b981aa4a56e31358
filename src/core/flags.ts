import type { FlagState } from './flag-state.js'

/**
 * What the pipeline and the control plane ask of a flag source (Unleash, or in a cluster the
 * primary's relay of it). Types only: the sources are adapters (adapters/flags.ts,
 * cluster/flags.ts), the decide stage and the control plane depend on this interface.
 */

/**
 * What a flag is evaluated against: the fields of Unleash's context Ficus fills in (its
 * index signature lets the adapter hand it to unleash-client as it is, without a copy).
 */
export interface FlagContext {
  readonly [field: string]: string | undefined | { readonly [name: string]: string }
  /** The route's sticky key: Unleash's flexibleRollout with stickiness `default` or `userId` buckets it like Ficus. */
  readonly userId: string | undefined
  /** The client's address (after trusted hops): Unleash's remoteAddress strategy and IP constraints. */
  readonly remoteAddress: string
  readonly properties: { readonly route: string; readonly method: string; readonly path: string }
}

/** A source of per-request flag verdicts; the decide stage asks it, the admin API describes it. */
export interface FlagSource {
  isEnabled: (flag: string, ctx: FlagContext) => boolean
  state: (flag: string) => FlagState
  readonly status: FlagSourceStatus
  /** Called after every change of the flags' definitions (a fetch that found changes). */
  onChange: (listener: () => void) => void
  /** Resolves true when `check()` holds (now or after a change), false after `timeoutMs`. */
  until: (check: () => boolean, timeoutMs: number) => Promise<boolean>
}

export interface FlagSourceStatus {
  readonly source: 'unleash'
  readonly url: string
  /** A fetch from Unleash has succeeded since start. */
  readonly synchronized: boolean
  /** The last fetch succeeded. */
  readonly healthy: boolean
  /** Where the definitions in use came from: Unleash, this replica's backup, the bootstrap file, or none yet (all off). */
  readonly loadedFrom: 'unleash' | 'backup' | 'bootstrap' | 'none'
  readonly lastError: string | null
}
