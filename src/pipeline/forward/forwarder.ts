import type { Metrics } from '../../adapters/metrics-registry.js'
import type { UpstreamSlots } from '../../adapters/upstreams.js'
import type { LiveConfig } from '../../config/live.js'
import type { Limits } from '../../config/schema.js'
import { fallbackBudget, mayFallBack } from '../../core/fallback.js'
import { declaresBody } from '../../core/forward-headers.js'
import type { Backend } from '../../core/types.js'
import { ficusError, type FicusError } from '../../errors.js'
import type { Exchange } from '../exchange.js'
import { sendError } from '../respond.js'
import { Attempt, type AttemptContext } from './attempt.js'
import { BodyGuard } from './body-guard.js'

export interface ForwardOptions {
  /** By name; a reload adds, replaces and removes entries. */
  readonly upstreams: ReadonlyMap<string, UpstreamSlots>
  readonly limits: Limits
  /** For exposeBackend (a reload may change it). */
  readonly live: LiveConfig
  readonly metrics: Metrics
  /** Monotonic milliseconds (the same clock as Exchange.start). */
  readonly now: () => number
  /** True once Ficus is stopping: answers then close their connection. */
  readonly draining: () => boolean
}

/**
 * Stage 3, forward (the "router" of Envoy's filter chain): guards the request body, sends
 * the request to the decided side (an Attempt), and when new fails before answering a
 * request that may be sent twice, lets legacy answer within what is left of legacy's own
 * timeout. Cost on the hot path: an Attempt per request (one undici dispatch), a
 * BodyGuard only when there is a body.
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
   */
  receive (ex: Exchange, ready: (body: BodyGuard | null) => void): void {
    const { req, res } = ex
    if (!declaresBody(req.headers)) {
      ready(null)
      return
    }
    const { limits } = this.o
    const body = new BodyGuard(req, limits.bodyBytes, limits.bodyIdleTimeoutMs, limits.bodyBufferBytes)
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

  /** Sends the request to the side the decision chose. */
  send (ex: Exchange, body: BodyGuard | null): void {
    const side = ex.decision!.primary
    this.attempt(ex, side, body, mayFallBack(side, ex.method, body !== null), undefined)
  }

  /** Starts one attempt on `backend`; `headersTimeout` (ms) overrides the upstream's, for a fallback. */
  private attempt (ex: Exchange, backend: Backend, body: BodyGuard | null, canFallBack: boolean, headersTimeout: number | undefined): void {
    ex.trying(backend)
    const upstream = this.o.upstreams.get(ex.rule!.backends[backend])
    if (upstream === undefined) {
      this.gone(ex, body) // a reload removed this upstream after the request was decided
      return
    }
    new Attempt(this, ex, upstream, body, canFallBack, headersTimeout).begin()
  }

  /* ---------- AttemptContext ---------- */

  upstreamFailed (ex: Exchange, reason: string): void {
    this.o.metrics.upstreamErrors.inc({ route: ex.rule!.name, backend: ex.backend as string, reason })
  }

  /**
   * Legacy answers instead of new, within what is left of legacy's own timeout counted from
   * when the request arrived: a fallback never makes a client wait longer than legacy alone
   * could have.
   */
  fallBack (ex: Exchange, reason: string, err?: FicusError): void {
    this.o.metrics.fallbacks.inc({ route: ex.rule!.name, reason })
    ex.fellBack(reason, err)
    const legacy = this.o.upstreams.get(ex.rule!.backends.legacy)
    if (legacy === undefined) {
      this.gone(ex, null)
      return
    }
    const left = fallbackBudget(legacy.config.timeoutMs, this.o.now() - ex.start)
    if (left <= 0) {
      const e = ex.error ?? ficusError('FICUS_ERR_UPSTREAM_TIMEOUT')
      ex.fail(e)
      sendError(ex.res, e, ex.requestId)
      return
    }
    this.attempt(ex, 'legacy', null, false, left)
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
