import type { Backend } from './types.js'

/**
 * When legacy answers for new (pure): new failed before answering, on a request that is
 * safe to send a second time (README "What happens to a request").
 */

/** Idempotent methods (RFC 9110 §9.2.2): the only ones that may be sent twice. */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/** Answers from new that mean "new failed" rather than "the request is wrong". */
const FALLBACK_STATUS: ReadonlySet<number> = new Set([502, 503, 504])

/**
 * Whether a failure of this attempt may be answered by legacy instead: the attempt is on
 * new, the method is idempotent, and no request body was streamed (it could not be sent
 * again).
 */
export function mayFallBack(backend: Backend, method: string, hasBody: boolean): boolean {
  return backend === 'new' && !hasBody && IDEMPOTENT.has(method)
}

/** Whether new's answer with `status` counts as its failure (legacy answers instead, when it may). */
export function isFallbackStatus(status: number): boolean {
  return FALLBACK_STATUS.has(status)
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
