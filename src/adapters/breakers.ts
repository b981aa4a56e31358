import { Breaker, type Admission, type BreakerSnapshot, type BreakerState, type Transition } from '../core/breaker.js'
import type { BreakerPolicy, RouteRule } from '../core/types.js'
import type { Logger } from './logger.js'
import type { Metrics } from './metrics-registry.js'

/**
 * The circuit breakers of new, one per route (core/breaker.ts decides; this keeps them, runs
 * their cool-down timers and reports every change: a log line, `ficus_breaker_state`,
 * `ficus_breaker_ejections_total`). A route's breaker is made at its first request on new and
 * kept across reloads while its policy stays the same.
 */

/** One attempt on new, as its breaker hears of it: exactly one of the three, once. */
export interface BreakerTicket {
  succeeded(): void
  failed(reason: string): void
  abandoned(): void
}

/** The breaker of a route as GET /admin/routes shows it (in a cluster: over every worker). */
export interface BreakerView extends BreakerSnapshot {
  /** Processes whose breaker of this route is open or half-open, of how many have one. */
  readonly ejectedIn: number
  readonly processes: number
}

const STATES: readonly BreakerState[] = ['closed', 'open', 'half_open']

interface Entry {
  readonly breaker: Breaker
  /** The policy's identity and its text (a reload builds equal policies anew). */
  policy: BreakerPolicy
  readonly policyText: string
  timer: NodeJS.Timeout | null
}

/** A ticket that reports nothing: attempts on legacy, and routes without a breaker. */
export const NO_TICKET: BreakerTicket = { succeeded () {}, failed () {}, abandoned () {} }

/** One attempt's line to its breaker: the first verdict counts (one allocation per request on new). */
class Ticket implements BreakerTicket {
  private done = false
  constructor (private readonly b: Breakers, private readonly route: string, private readonly e: Entry, private readonly probe: number | false) {}

  succeeded (): void {
    if (this.settle()) this.b.heard(this.route, this.e, this.e.breaker.succeeded(this.b.clock(), this.probe))
  }

  failed (reason: string): void {
    if (this.settle()) this.b.heard(this.route, this.e, this.e.breaker.failed(this.b.clock(), this.probe, reason))
  }

  abandoned (): void {
    if (this.settle()) this.e.breaker.abandoned(this.probe)
  }

  private settle (): boolean {
    if (this.done) return false
    this.done = true
    return true
  }
}

export class Breakers {
  private readonly byRoute = new Map<string, Entry>()

  constructor (private readonly metrics: Metrics, private readonly log: Logger, private readonly now: () => number) {}

  /**
   * Whether a request of `rule` may go to new, and the ticket its attempt reports to. A route
   * without a breaker always passes.
   */
  admit (rule: RouteRule): [Admission, BreakerTicket] {
    const policy = rule.fallback.breaker
    if (policy === null) return ['pass', NO_TICKET]
    const e = this.entry(rule.name, policy)
    // Closed (nearly always): nothing to decide, no clock to read.
    if (e.breaker.state === 'closed') return ['pass', this.ticket(rule.name, e, false)]
    const [admission, t] = e.breaker.admit(this.now())
    if (t !== null) this.changed(rule.name, e, t)
    if (admission === 'ejected') return [admission, NO_TICKET]
    return [admission, this.ticket(rule.name, e, admission === 'probe')]
  }

  /** Retry-After for a request refused while new is ejected from `route`: the cool-down left, in whole seconds, at least 1. */
  retryAfterSeconds (route: string): number {
    const e = this.byRoute.get(route)
    const left = e === undefined ? null : e.breaker.snapshot(this.now()).openForMs
    return Math.max(1, Math.ceil((left ?? 0) / 1000))
  }

  /** Every route's breaker now, by route name (routes that never sent a request to new have none). */
  snapshots (): Record<string, BreakerSnapshot> {
    const now = this.now()
    const out: Record<string, BreakerSnapshot> = {}
    for (const [route, e] of this.byRoute) out[route] = e.breaker.snapshot(now)
    return out
  }

  /** Stops the cool-down timers (Ficus is stopping). */
  close (): void {
    for (const e of this.byRoute.values()) if (e.timer !== null) clearTimeout(e.timer)
  }

  private entry (route: string, policy: BreakerPolicy): Entry {
    let e = this.byRoute.get(route)
    if (e !== undefined && e.policy !== policy) {
      if (JSON.stringify(policy) === e.policyText) e.policy = policy // the same policy, rebuilt by a reload
      else e = undefined // changed: a fresh breaker
    }
    if (e === undefined) {
      const old = this.byRoute.get(route)
      if (old?.timer != null) clearTimeout(old.timer)
      e = { breaker: new Breaker(policy), policy, policyText: JSON.stringify(policy), timer: null }
      this.byRoute.set(route, e)
      this.gauge(route, 'closed')
    }
    return e
  }

  private ticket (route: string, e: Entry, probe: boolean): BreakerTicket {
    return new Ticket(this, route, e, probe ? e.breaker.probeCycle : false)
  }

  /** A verdict on one attempt, from its Ticket. */
  heard (route: string, e: Entry, t: Transition | null): void {
    if (t !== null) this.changed(route, e, t)
  }

  get clock (): () => number {
    return this.now
  }

  private changed (route: string, e: Entry, t: Transition): void {
    if (this.byRoute.get(route) !== e) return // a verdict for a breaker a reload replaced
    this.gauge(route, t.to)
    if (e.timer !== null) clearTimeout(e.timer)
    e.timer = null
    const snap = e.breaker.snapshot(this.now())
    if (t.to === 'open') {
      this.metrics.breakerEjections.inc({ route })
      this.log.warn({ route, breaker: t.to, why: t.why, coolDownMs: t.coolDownMs, ejections: snap.ejections, lastFailure: snap.lastFailure },
        `new ejected from route ${route}: legacy serves its requests for ${Math.round((t.coolDownMs ?? 0) / 100) / 10} s`)
      // Half-open when the cool-down is over, even if no request comes to move it.
      e.timer = setTimeout(() => {
        e.timer = null
        const next = e.breaker.tick(this.now())
        if (next !== null) this.changed(route, e, next)
      }, t.coolDownMs ?? 0)
      e.timer.unref()
    } else if (t.to === 'closed') {
      this.log.info({ route, breaker: t.to, why: t.why }, `new is back on route ${route}: a probe succeeded`)
    } else {
      this.log.info({ route, breaker: t.to, why: t.why }, `route ${route}: cool-down over, probing new`)
    }
  }

  private gauge (route: string, state: BreakerState): void {
    for (const s of STATES) this.metrics.breakerState.set({ route, state: s }, s === state ? 1 : 0)
  }
}

/** The breakers of several processes (cluster workers) as one view per route. */
export function mergeBreakers(lists: readonly Readonly<Record<string, BreakerSnapshot>>[]): Record<string, BreakerView> {
  const out: Record<string, BreakerView> = {}
  const severity: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }
  for (const list of lists) {
    for (const [route, s] of Object.entries(list)) {
      const ejected = s.state === 'closed' ? 0 : 1
      const m = out[route]
      if (m === undefined) {
        out[route] = { ...s, ejectedIn: ejected, processes: 1 }
        continue
      }
      out[route] = {
        state: severity[s.state] > severity[m.state] ? s.state : m.state,
        ejections: Math.max(m.ejections, s.ejections),
        openForMs: m.openForMs === null ? s.openForMs : s.openForMs === null ? m.openForMs : Math.max(m.openForMs, s.openForMs),
        window: { requests: m.window.requests + s.window.requests, failures: m.window.failures + s.window.failures },
        consecutiveFailures: Math.max(m.consecutiveFailures, s.consecutiveFailures),
        lastFailure: s.lastFailure ?? m.lastFailure,
        ejectedIn: m.ejectedIn + ejected,
        processes: m.processes + 1
      }
    }
  }
  return out
}
