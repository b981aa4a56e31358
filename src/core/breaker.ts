/**
 * The circuit breaker of new on one route (Envoy's outlier detection), as a pure state
 * machine: it reads no clock (every call is given `now`, in monotonic ms) and does no I/O.
 * docs/reliability.md "When new breaks" describes it for operators.
 *
 * closed ──(N failures in a row, or a failure rate over the window)──▶ open
 * open ──(cool-down over)──▶ half_open ──(probe answered)──▶ closed
 *                             half_open ──(probe failed)──▶ open, for a longer cool-down
 *
 * While open, the route's requests do not go to new (the forward stage serves them from
 * legacy, or refuses writes); half-open lets `probes` requests through at a time.
 */

import type { BreakerPolicy } from './types.js'

export type BreakerState = 'closed' | 'open' | 'half_open'

/** What a request may do: go to new (`pass`), go as a half-open probe (`probe`), or not go to new (`ejected`). */
export type Admission = 'pass' | 'probe' | 'ejected'

/** A change of state, for the log, the metrics and the admin API. */
export interface Transition {
  readonly from: BreakerState
  readonly to: BreakerState
  /** Why: `consecutive` / `rate` (ejected), `cooled` (half-open), `probe_ok`, `probe_failed`. */
  readonly why: 'consecutive' | 'rate' | 'cooled' | 'probe_ok' | 'probe_failed'
  /** For `open`: the cool-down, ms. */
  readonly coolDownMs?: number
}

/** The breaker as GET /admin/routes shows it. */
export interface BreakerSnapshot {
  readonly state: BreakerState
  /** Ejections in a row (the cool-down grows with them); 0 once new has stayed healthy for maxEjection. */
  readonly ejections: number
  /** While open: ms left of the cool-down. */
  readonly openForMs: number | null
  /** Attempts and failures in the current window. */
  readonly window: { readonly requests: number; readonly failures: number }
  readonly consecutiveFailures: number
  /** The reason of the last failure seen (refused, timeout, status_503, …). */
  readonly lastFailure: string | null
}

const SLOTS = 10

export class Breaker {
  private s: BreakerState = 'closed'
  private ejections = 0
  private openUntil = 0
  /** When the breaker last closed (the ejection streak is forgotten maxEjectionMs later). */
  private closedAt = -Infinity
  private consecutive = 0
  private probing = 0
  /** Counts half-open periods: a probe's verdict counts only in the period it was let through in. */
  private cycle = 0
  private lastFailure: string | null = null
  /** The window as SLOTS slots of windowMs / SLOTS: attempts and failures, and each slot's start. */
  private readonly total = new Array<number>(SLOTS).fill(0)
  private readonly failures = new Array<number>(SLOTS).fill(0)
  private readonly slotStart = new Array<number>(SLOTS).fill(-Infinity)

  constructor (readonly policy: BreakerPolicy) {}

  get state (): BreakerState {
    return this.s
  }

  /** The current half-open period, to hand back with a probe's verdict. */
  get probeCycle (): number {
    return this.cycle
  }

  /**
   * Whether a request goes to new; a `probe` must be answered with `succeeded`, `failed` or
   * `abandoned` (its slot is held until then). The second value is the transition the call
   * made (open → half_open once the cool-down is over), or null.
   */
  admit (now: number): [Admission, Transition | null] {
    let t: Transition | null = null
    if (this.s === 'open') {
      if (now < this.openUntil) return ['ejected', null]
      t = this.cooled()
    }
    if (this.s === 'half_open') {
      if (this.probing >= this.policy.probes) return ['ejected', t]
      this.probing++
      return ['probe', t]
    }
    return ['pass', t]
  }

  /** Moves open → half_open once the cool-down is over (for a timer: the state is right even with no traffic). */
  tick (now: number): Transition | null {
    return this.s === 'open' && now >= this.openUntil ? this.cooled() : null
  }

  /**
   * new answered (anything but a failure). `probe`: the probeCycle the request was let
   * through in as a probe, or false; a probe of an earlier half-open period changes nothing.
   */
  succeeded (now: number, probe: number | false): Transition | null {
    if (probe !== false) {
      if (!this.current(probe)) return null
      this.s = 'closed'
      this.closedAt = now
      this.consecutive = 0
      this.clearWindow()
      return { from: 'half_open', to: 'closed', why: 'probe_ok' }
    }
    if (this.s !== 'closed') return null // an answer to a request sent before the ejection
    this.consecutive = 0
    this.count(now, false)
    return null
  }

  /** new failed (could not be reached, reset, timed out, answered 502/503/504): `reason` as in the metrics. */
  failed (now: number, probe: number | false, reason: string): Transition | null {
    this.lastFailure = reason
    if (probe !== false) return this.current(probe) ? this.eject(now, 'probe_failed') : null
    if (this.s !== 'closed') return null
    this.consecutive++
    this.count(now, true)
    const p = this.policy
    if (p.consecutiveFailures > 0 && this.consecutive >= p.consecutiveFailures) return this.eject(now, 'consecutive')
    if (p.failureRate > 0) {
      const [requests, failures] = this.inWindow(now)
      if (requests >= p.minRequests && failures >= p.failureRate * requests) return this.eject(now, 'rate')
    }
    return null
  }

  /** A request admitted as a probe ended without a verdict (its client left first). */
  abandoned (probe: number | false): void {
    if (probe !== false) this.current(probe)
  }

  /** Whether a probe of `cycle` is one of the current half-open period, and if so, frees its slot. */
  private current (cycle: number): boolean {
    if (this.s !== 'half_open' || cycle !== this.cycle) return false
    this.probing = Math.max(0, this.probing - 1)
    return true
  }

  snapshot (now: number): BreakerSnapshot {
    const [requests, failures] = this.inWindow(now)
    return {
      state: this.s,
      ejections: this.ejections,
      openForMs: this.s === 'open' ? Math.max(0, this.openUntil - now) : null,
      window: { requests, failures },
      consecutiveFailures: this.consecutive,
      lastFailure: this.lastFailure
    }
  }

  private eject (now: number, why: Transition['why']): Transition {
    const from = this.s
    const p = this.policy
    if (from === 'closed' && now - this.closedAt >= p.maxEjectionMs) this.ejections = 0
    this.ejections++
    const coolDownMs = Math.min(p.maxEjectionMs, p.ejectionMs * 2 ** Math.min(this.ejections - 1, 30))
    this.s = 'open'
    this.openUntil = now + coolDownMs
    this.consecutive = 0
    this.clearWindow()
    return { from, to: 'open', why, coolDownMs }
  }

  private cooled (): Transition {
    this.s = 'half_open'
    this.probing = 0
    this.cycle++
    return { from: 'open', to: 'half_open', why: 'cooled' }
  }

  private count (now: number, failure: boolean): void {
    const width = this.policy.windowMs / SLOTS
    const n = Math.floor(now / width)
    const i = n % SLOTS
    if (this.slotStart[i] !== n) {
      this.slotStart[i] = n
      this.total[i] = 0
      this.failures[i] = 0
    }
    this.total[i]!++
    if (failure) this.failures[i]!++
  }

  /** Attempts and failures in the slots of the last windowMs. */
  private inWindow (now: number): [number, number] {
    const n = Math.floor(now / (this.policy.windowMs / SLOTS))
    let requests = 0
    let failures = 0
    for (let i = 0; i < SLOTS; i++) {
      if (n - (this.slotStart[i] as number) < SLOTS) {
        requests += this.total[i] as number
        failures += this.failures[i] as number
      }
    }
    return [requests, failures]
  }

  private clearWindow (): void {
    this.slotStart.fill(-Infinity)
  }
}
