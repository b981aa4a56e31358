/**
 * What to do with a delivery's outcome (pure): the write reached the other side, is to be
 * tried again after a backoff, or is a dead letter (DESIGN.md "Data-safe writes": retries
 * with backoff and jitter honouring Retry-After; non-retryable 4xx and exhausted retries are
 * dead letters). The caller hands in the clock's reading and a random number.
 */

export interface RetryPolicy {
  /** First backoff, ms; each attempt doubles it, up to maxMs. */
  readonly baseMs: number
  readonly maxMs: number
  /** Attempts at most; the last failure is a dead letter. */
  readonly maxAttempts: number
  /** A write older than this is not tried again (a dead letter), ms. */
  readonly maxAgeMs: number
}

/** How one attempt ended: the target's status, or a failure to reach it (a catalogue reason). */
export type AttemptResult = { readonly status: number; readonly retryAfterMs?: number | undefined } | { readonly failed: string }

export type Verdict =
  | { readonly kind: 'delivered' }
  | { readonly kind: 'retry'; readonly afterMs: number; readonly reason: string }
  | { readonly kind: 'dead'; readonly reason: string }

/**
 * Statuses worth trying again: the target is busy or not ready (408 Request Timeout, 425 Too
 * Early, 429 Too Many Requests) or failing (5xx). Any other 4xx says the write itself is
 * refused and will be refused again: a dead letter, for an operator.
 */
function retryable(status: number): boolean {
  return status >= 500 || status === 408 || status === 425 || status === 429
}

/**
 * The verdict on an attempt (`attempts` made so far, this one included; `ageMs` since the
 * write was appended; `random` in [0, 1)).
 * @example verdict({ status: 503 }, 1, 0, policy, 0.5) // { kind: 'retry', afterMs: …, reason: 'status_503' }
 */
export function verdict(result: AttemptResult, attempts: number, ageMs: number, p: RetryPolicy, random: number): Verdict {
  if ('status' in result && result.status >= 200 && result.status < 300) return { kind: 'delivered' }
  const reason = 'status' in result ? `status_${result.status}` : result.failed
  if ('status' in result && !retryable(result.status)) return { kind: 'dead', reason }
  if (attempts >= p.maxAttempts) return { kind: 'dead', reason: `${reason} (after ${attempts} attempts)` }
  const afterMs = backoff(attempts, p, random, 'status' in result ? result.retryAfterMs : undefined)
  if (ageMs + afterMs > p.maxAgeMs) return { kind: 'dead', reason: `${reason} (older than maxAge)` }
  return { kind: 'retry', afterMs, reason }
}

/**
 * "Equal jitter": half of the exponential step, plus a random share of the other half, so
 * deliveries that failed together do not all come back together; never sooner than the
 * target's Retry-After, never longer than maxMs (unless Retry-After asks for more).
 */
export function backoff(attempts: number, p: RetryPolicy, random: number, retryAfterMs?: number): number {
  const step = Math.min(p.maxMs, p.baseMs * 2 ** Math.min(attempts - 1, 30))
  const jittered = Math.round(step / 2 + (step / 2) * random)
  return retryAfterMs === undefined ? jittered : Math.max(jittered, retryAfterMs)
}

/** A Retry-After header value (seconds, or an HTTP date) as ms from `now`; undefined when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now: number): number | undefined {
  if (value === undefined || value === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}
