import type { Backend, NewTimeout } from './types.js'

/**
 * When legacy answers for new (pure): new failed before answering a read, or any request
 * failed before it reached new (README "What happens to a request").
 */

/**
 * Safe methods (RFC 9110 §9.2.1): the only ones that may be sent to both sides. Idempotent
 * is not enough here: a PUT or a DELETE is idempotent on *one* system, but new and legacy
 * keep their own data, so one that reached new and then legacy is a write on both.
 */
const SAFE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/** Answers from new that mean "new failed" rather than "the request is wrong". */
const FALLBACK_STATUS: ReadonlySet<number> = new Set([502, 503, 504])

/**
 * Which failures of an attempt legacy may answer for:
 * - `any`: any failure before the response started (new's 502/503/504 too): the request is
 *   a read (a safe method) without a body, so sending it to legacy as well changes nothing;
 * - `unsent`: only a failure before a byte of the request reached new (the connection could
 *   not be opened, new's queue in Ficus was full): any method, body included, since new never
 *   saw it;
 * - `none`: the attempt is on legacy.
 */
export type FallbackScope = 'any' | 'unsent' | 'none'

/** @example fallbackScope('new', 'POST', true) // 'unsent' */
export function fallbackScope(backend: Backend, method: string, hasBody: boolean): FallbackScope {
  if (backend !== 'new') return 'none'
  return !hasBody && SAFE.has(method) ? 'any' : 'unsent'
}

/**
 * Where a request goes while new is ejected from its route: a read (scope `any`) to legacy;
 * a write to legacy only when the route says `ejectedWrites: legacy`, else it is refused.
 * @example whenEjected('unsent', 'refuse') // 'refuse'
 */
export function whenEjected(scope: FallbackScope, ejectedWrites: 'refuse' | 'legacy'): 'legacy' | 'refuse' {
  return scope === 'any' || ejectedWrites === 'legacy' ? 'legacy' : 'refuse'
}

/** Whether new's answer with `status` counts as its failure (legacy answers instead, when it may). */
export function isFallbackStatus(status: number): boolean {
  return FALLBACK_STATUS.has(status)
}

/**
 * The time new gets, in ms, to start answering a request that may fall back (scope `any`):
 * its own timeout, cut to `fallback.newTimeout`, so legacy still has time to answer within
 * legacy's own timeout counted from the request's arrival.
 * @example newAttemptBudget(10_000, 10_000, { share: 0.5 }) // 5000
 */
export function newAttemptBudget(newTimeoutMs: number, legacyTimeoutMs: number, limit: NewTimeout): number {
  const cut = 'share' in limit ? Math.floor(legacyTimeoutMs * limit.share) : limit.ms
  return Math.max(1, Math.min(newTimeoutMs, cut))
}

/**
 * The time legacy gets once new failed, in ms: what is left of legacy's own timeout counted
 * from when the request arrived, so a fallback never makes a client wait longer than legacy
 * alone could have. 0 or less: none left.
 * @example fallbackBudget(30_000, 1_250) // 28750
 */
export function fallbackBudget(legacyTimeoutMs: number, elapsedMs: number): number {
  return Math.floor(legacyTimeoutMs - elapsedMs)
}
