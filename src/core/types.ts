/**
 * Types shared by the pure core. Nothing here does I/O, reads a clock or draws a
 * random number: callers hand those in (see decide.ts).
 */

import type { CompiledCompare } from './compare-rules.js'

/** The two sides of a migration. Also the `backend` label of every metric. */
export type Backend = 'legacy' | 'new'

/** One place a route reads the key that keeps a user on one side (README "The migration, one route at a time"). */
export type StickySpec =
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string }
  | { readonly kind: 'query'; readonly name: string }
  | { readonly kind: 'ip' }

/**
 * A path pattern from `match.path`, compiled.
 * `/orders` is exact, `/orders/:id` has a parameter segment, `/orders/*` is a prefix
 * (it matches `/orders`, `/orders/` and everything below).
 */
export interface PathPattern {
  readonly source: string
  /** One entry per segment after the leading `/`: a literal, or null for a `:param`. */
  readonly segments: readonly (string | null)[]
  readonly prefix: boolean
}

/** A route as the core sees it: already validated, percentages in range. */
export interface RouteRule {
  readonly name: string
  /** null = every method. */
  readonly methods: ReadonlySet<string> | null
  readonly pattern: PathPattern
  /** Share of users (0..100, integer) whose requests new answers; unused while `flag` decides. */
  readonly new: number
  /**
   * Unleash toggle that decides "serve from new" for this route, or null. A runtime
   * override of `new` (a rollback) sets it to null in the effective rule: the local kill
   * switch beats the flag.
   */
  readonly flag: string | null
  /** Share of requests (0..100) also sent to the other side for comparison. */
  readonly shadow: number
  /** Whether writes are shadowed too (after the primary answered 2xx); reads only otherwise. */
  readonly shadowWrites: boolean
  /** What happens to the route's writes beyond the primary (`sync:`); null: nothing (mode off). */
  readonly sync: SyncRule | null
  /** How the two answers are compared, and what samples never show. */
  readonly compare: CompiledCompare
  /** Where the sticky key is read, in order: the first source the request has gives the key. */
  readonly sticky: readonly StickySpec[]
  /** Upstream name that plays each role for this route. */
  readonly backends: { readonly legacy: string; readonly new: string }
  readonly fallback: FallbackPolicy
  /**
   * A shadowed request whose answer from new took longer than legacy's by more than this (ms)
   * counts as `new="slower"` in ficus_shadow_pairs_total: the route's ramp plan's
   * `gates.latency.slowerBy`, 20 ms without one.
   */
  readonly slowerByMs: number
}

/** The circuit breaker of new on a route (core/breaker.ts), from `fallback.breaker`. */
export interface BreakerPolicy {
  /** Failures in a row that eject new; 0: this test is off. */
  readonly consecutiveFailures: number
  /** Share of failed attempts (0..1] in the window that ejects new; 0: this test is off. */
  readonly failureRate: number
  /** Attempts in the window before the failure rate is judged. */
  readonly minRequests: number
  readonly windowMs: number
  /** The first cool-down; each ejection in a row doubles it, up to maxEjectionMs. */
  readonly ejectionMs: number
  readonly maxEjectionMs: number
  /** Requests let through at once while half-open. */
  readonly probes: number
}

/** How long new may take to answer a request legacy could still serve: a share of legacy's timeout, or a duration. */
export type NewTimeout = { readonly share: number } | { readonly ms: number }

/** What a route does when new fails (`fallback:` in routes.yaml). */
export interface FallbackPolicy {
  readonly newTimeout: NewTimeout
  /** A write (or a request with a body) while new is ejected: refused with 503, or sent to legacy. */
  readonly ejectedWrites: 'refuse' | 'legacy'
  /** null: no breaker on this route. */
  readonly breaker: BreakerPolicy | null
}

/** The one decision made per request; every later stage reads it and nothing re-decides. */
export interface Decision {
  readonly route: string
  readonly primary: Backend
  /** The user's bucket (1..100), or null when the percentage made it irrelevant (0 or 100). */
  readonly bucket: number | null
  /** How the side was chosen: bucket of the sticky key, random bucket (no key), not needed (0 or 100), or the route's flag. */
  readonly bucketSource: 'key' | 'random' | 'none' | 'flag'
  /** The user's sticky key as read from the request (undefined: none, or not read on this route). */
  readonly key: string | undefined
  /** Whether this request is also sent to the other side. */
  readonly shadow: boolean
}

/** Where a created entity's id is in the answer: a JSON body field, or the last segment of Location. */
export type LearnSpec = { readonly from: 'body'; readonly field: string } | { readonly from: 'location' }

/** An id in the request path: the pattern's `:param` at `segment` (0 = the first after the leading `/`). */
export interface PathId {
  readonly param: string
  readonly segment: number
  readonly entity: string
}

/** A route's `sync:` as the pipeline reads it. */
export interface SyncRule {
  /** `dual`: durable delivery to the other side; `mirror`: the best-effort copy of shadowWrites. */
  readonly mode: 'mirror' | 'dual'
  readonly entity: string
  /** The path id that names the entity (`key: path.id`); null on a create (its key is the id it is given). */
  readonly key: PathId | null
  readonly learn: LearnSpec | null
  /** Path ids translated through the id map (the key's included). */
  readonly pathIds: readonly PathId[]
  /** JSON body fields (dotted paths) holding ids of an entity, translated for the other side. */
  readonly bodyIds: readonly { readonly field: string; readonly entity: string }[]
  /** `learn:` as written (kept in each entry, read back by the deliverer). */
  readonly learnText: string | null
}
