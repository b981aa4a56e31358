import { NO_TICKET, type Breakers } from '../../adapters/breakers.js'
import type { Metrics } from '../../adapters/metrics-registry.js'
import type { UpstreamSlots } from '../../adapters/upstreams.js'
import type { LiveConfig } from '../../config/live.js'
import type { Limits } from '../../config/schema.js'
import { fallbackBudget, fallbackScope, newAttemptBudget, whenEjected, type FallbackScope } from '../../core/fallback.js'
import { declaresBody } from '../../core/forward-headers.js'
import type { Backend } from '../../core/types.js'
import { ficusError, type FicusError } from '../../errors.js'
import type { Exchange } from '../exchange.js'
import { sendError } from '../respond.js'
import { Attempt, type AttemptContext, type AttemptObserver, type AttemptOptions } from './attempt.js'
import { BodyGuard } from './body-guard.js'

export interface ForwardOptions {
  /** By name; a reload adds, replaces and removes entries. */
  readonly upstreams: ReadonlyMap<string, UpstreamSlots>
  readonly limits: Limits
  /** For exposeBackend (a reload may change it). */
  readonly live: LiveConfig
  readonly metrics: Metrics
  /** new's circuit breaker per route. */
  readonly breakers: Breakers
  /** Monotonic milliseconds (the same clock as Exchange.start). */
  readonly now: () => number
  /** True once Ficus is stopping: answers then close their connection. */
  readonly draining: () => boolean
}

/**
 * Stage 3, forward (the "router" of Envoy's filter chain): guards the request body, sends
 * the request to the decided side (an Attempt), and when new fails before answering a
 * request that may be sent twice, or before anything reached it, lets legacy answer within
 * what is left of legacy's own timeout. new's circuit breaker (adapters/breakers.ts) keeps
 * requests away from a new that keeps failing. Cost on the hot path: an Attempt per request
 * (one undici dispatch), a BodyGuard only when there is a body; on new, ~75-145 ns for the
 * fallback scope and the breaker's admission and verdict, and for a read (legacy could answer
 * instead) ~300-600 ns for new's budget timer (bench/new-path-cost.ts); nothing on legacy.
 */
export class Forwarder implements AttemptContext {
  readonly sendTimeoutMs: number
  readonly live: LiveConfig
  readonly draining: () => boolean

  constructor (private readonly o: ForwardOptions) {
    this.sendTimeoutMs = o.limits.sendTimeoutMs
    this.live = o.live
    this.draining = o.draining
  }

  /**
   * Calls `ready` with the request body on its way (null without one) once it may be
   * forwarded: the first limits.bodyBuffer bytes (or the whole body) are read before a
   * backend connection is taken, so slow uploads cannot tie up the pool. A body that fails
   * first (413, 408, the client left) is answered here and `ready` is not called.
   * `whole`: read the body to its end first, refusing it past that many bytes (a dual write
   * is recorded whole).
   */
  receive (ex: Exchange, ready: (body: BodyGuard | null) => void, whole?: number): void {
    const { req, res } = ex
    if (!declaresBody(req.headers)) {
      ready(null)
      return
    }
    const { limits } = this.o
    const body = whole === undefined
      ? new BodyGuard(req, limits.bodyBytes, limits.bodyIdleTimeoutMs, limits.bodyBufferBytes)
      : new BodyGuard(req, Math.min(whole, limits.bodyBytes), limits.bodyIdleTimeoutMs, Math.min(whole, limits.bodyBytes) + 1)
    body.buffered(() => {
      if (ex.error !== null || res.writableEnded || res.destroyed) {
        // The edge answered already (whole-request timeout), or the client left.
        ex.clientAborted()
        body.detach()
      } else if (body.failure !== null) {
        this.clientFault(ex, body, body.failure) // 413 or 408 before anything was sent upstream
      } else if (body.destroyed && !req.complete) {
        ex.clientAborted() // the client broke off its upload
        res.destroy()
      } else {
        ready(body)
      }
    })
  }

  /** Sends the request to the side the decision chose (or, when new is ejected, to legacy or nowhere). */
  send (ex: Exchange, body: BodyGuard | null): void {
    if (ex.decision!.primary === 'legacy') {
      this.attempt(ex, 'legacy', body, { scope: 'none', observer: NO_TICKET })
      return
    }
    const rule = ex.rule!
    const scope = fallbackScope('new', ex.method, body !== null)
    const [admission, ticket] = this.o.breakers.admit(rule)
    if (admission === 'ejected') {
      this.ejected(ex, body, scope)
      return
    }
    let budgetMs: number | undefined
    if (scope === 'any') {
      const newUp = this.o.upstreams.get(rule.backends.new)
      const legacyUp = this.o.upstreams.get(rule.backends.legacy)
      if (newUp !== undefined && legacyUp !== undefined) budgetMs = newAttemptBudget(newUp.config.timeoutMs, legacyUp.config.timeoutMs, rule.fallback.newTimeout)
    }
    this.attempt(ex, 'new', body, { scope, observer: ticket, budgetMs })
  }

  /**
   * new is ejected from the route (its breaker is open): a read (a safe method, no body)
   * goes to legacy at once; a write goes to legacy when the route says `ejectedWrites: legacy`,
   * else it is refused with 503 and Retry-After (the cool-down left), before anything is sent.
   */
  private ejected (ex: Exchange, body: BodyGuard | null, scope: FallbackScope): void {
    const rule = ex.rule!
    if (whenEjected(scope, rule.fallback.ejectedWrites) === 'legacy') {
      this.fallBack(ex, 'ejected', undefined, body)
      return
    }
    this.o.metrics.writesRefused.inc({ route: rule.name, reason: 'new_ejected' })
    const err = ficusError('FICUS_ERR_NEW_EJECTED')
    ex.fail(err)
    sendError(ex.res, err, ex.requestId, body !== null && !ex.req.complete, { 'retry-after': this.o.breakers.retryAfterSeconds(rule.name) })
    body?.detach()
  }

  /** Starts one attempt on `backend`. */
  private attempt (ex: Exchange, backend: Backend, body: BodyGuard | null, o: AttemptOptions): void {
    ex.trying(backend)
    const upstream = this.o.upstreams.get(ex.rule!.backends[backend])
    if (upstream === undefined) {
      o.observer.abandoned()
      this.gone(ex, body) // a reload removed this upstream after the request was decided
      return
    }
    new Attempt(this, ex, upstream, body, o).begin()
  }

  /* ---------- AttemptContext ---------- */

  upstreamFailed (ex: Exchange, reason: string): void {
    this.o.metrics.upstreamErrors.inc({ route: ex.rule!.name, backend: ex.backend as string, reason })
  }

  /**
   * Legacy answers instead of new, within what is left of legacy's own timeout counted from
   * when the request arrived: a fallback never makes a client wait longer than legacy alone
   * could have. It is counted (ficus_fallbacks_total) once legacy answered.
   */
  fallBack (ex: Exchange, reason: string, err: FicusError | undefined, body: BodyGuard | null): void {
    ex.fellBack(reason, err)
    const legacy = this.o.upstreams.get(ex.rule!.backends.legacy)
    if (legacy === undefined) {
      this.gone(ex, body)
      return
    }
    const left = fallbackBudget(legacy.config.timeoutMs, this.o.now() - ex.start)
    if (left <= 0) {
      const e = ex.error ?? ficusError('FICUS_ERR_UPSTREAM_TIMEOUT')
      ex.fail(e)
      sendError(ex.res, e, ex.requestId, body !== null && !ex.req.complete)
      body?.detach()
      return
    }
    this.attempt(ex, 'legacy', body, { scope: 'none', observer: this.counted(ex.rule!.name, reason), headersTimeout: left })
  }

  /** Counts a fallback when legacy answers it. */
  private counted (route: string, reason: string): AttemptObserver {
    const { fallbacks } = this.o.metrics
    return { succeeded () { fallbacks.inc({ route, reason }) }, failed () {}, abandoned () {} }
  }

  /** The client sent too much or too slowly, or stopped reading: answer (if still possible), stop reading and close, as nginx does. */
  clientFault (ex: Exchange, body: BodyGuard | null, err: FicusError): void {
    ex.fail(err)
    this.o.metrics.clientErrors.inc({ reason: ex.outcome })
    sendError(ex.res, err, ex.requestId, true)
    body?.detach()
  }

  /** The request's upstream is no longer configured (removed by a reload while it was in flight). */
  private gone (ex: Exchange, body: BodyGuard | null): void {
    const err = ficusError('FICUS_ERR_UPSTREAM_CLOSING')
    ex.fail(err)
    sendError(ex.res, err, ex.requestId, body !== null)
    body?.detach()
  }
}
