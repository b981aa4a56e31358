import { METHODS, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Dispatcher } from 'undici'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { Upstream, Upstreams, Waiter } from '../adapters/upstreams.js'
import type { LiveConfig } from '../config/live.js'
import type { Limits } from '../config/schema.js'
import { declaresBody, responseHeaders } from '../core/forward-headers.js'
import type { Backend } from '../core/types.js'
import { ficusError, reasonOf, toUpstreamError, type FicusError } from '../errors.js'
import { ClientGone, type Exchange } from '../exchange.js'
import { BodyGuard } from './body-guard.js'
import { sendError } from './respond.js'
import type { Shadowing } from './shadow.js'

export interface ProxyOptions {
  readonly upstreams: Upstreams
  readonly limits: Limits
  /** For exposeBackend (a reload may change it). */
  readonly live: LiveConfig
  readonly metrics: Metrics
  readonly log: Logger
  /** Copies shadowed requests to the other side; the proxy only feeds it. */
  readonly shadowing: Shadowing
  /** Monotonic milliseconds (the same clock as Exchange.start). */
  readonly now: () => number
  /** True once Ficus is stopping: answers then close their connection. */
  readonly draining: () => boolean
}

/** Idempotent methods (RFC 9110 §9.2.2): the only ones that may be sent twice (fallback). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
/** Answers from new that mean "new failed" rather than "the request is wrong". */
const FALLBACK_STATUS: ReadonlySet<number> = new Set([502, 503, 504])
/**
 * A failure answer from new up to this size is read to its end before legacy is asked, so
 * the connection to new is kept; a larger or unsized one is cut (bytes).
 */
const DISCARD_MAX_BYTES = 64 * 1024

/** Attempts cut short by Ficus itself. */
class FallbackOnStatus extends Error {
  override name = 'FallbackOnStatus'
  constructor (readonly status: number) { super(`upstream answered ${status}`) }
}
class SendTimeout extends Error {
  override name = 'SendTimeout'
  constructor () { super('the client did not read the response in time') }
}

/**
 * The terminal stage ("router" in Envoy's filter chain): forwards to the decided backend
 * over Ficus's own undici Pool, streams the answer back, maps failures to the catalogue and,
 * when new fails before answering an idempotent request without a body, lets legacy answer.
 *
 * Every method is registered as bodyless so fastify never parses, buffers or judges a body
 * (it would answer 415 to a malformed Content-Type); Ficus streams bodies itself.
 */
async function proxy(fastify: FastifyInstance, opts: ProxyOptions): Promise<void> {
  const { upstreams, limits, live, metrics, log, now, shadowing, draining } = opts
  for (const m of METHODS) {
    if (m !== 'CONNECT') fastify.addHttpMethod(m, { hasBody: false, overrideExisting: true })
  }

  fastify.route({
    method: fastify.supportedMethods.filter((m) => m !== 'CONNECT'),
    url: '/*',
    handler: function forwardRequest(request: FastifyRequest, reply: FastifyReply) {
      reply.hijack()
      const ex = request.ficus
      const req = request.raw
      const res = reply.raw
      try {
        const decision = ex.decision
        if (decision === null) throw new Error('no decision for request')
        const forward = (body: BodyGuard | null): void => {
          send(ex, req, res, decision.primary, upstreams.get(ex.rule!.backends[decision.primary]), body, undefined)
          // After the primary is on its way: a copy never goes ahead of the request a client waits for.
          if (decision.shadow) ex.shadow = shadowing.begin(ex, req, res, body)
        }
        if (!declaresBody(req.headers)) {
          forward(null)
          return
        }
        // The first limits.bodyBuffer bytes (or the whole body) are read before a backend
        // connection is taken: slow uploads cannot tie up the pool.
        const body = new BodyGuard(req, limits.bodyBytes, limits.bodyIdleTimeoutMs, limits.bodyBufferBytes)
        body.buffered(() => {
          if (ex.error !== null || res.writableEnded || res.destroyed) {
            // The edge answered already (whole-request timeout), or the client left.
            if (ex.error === null) ex.outcome = 'client_aborted'
            body.detach()
          } else if (body.failure !== null) {
            clientFault(ex, res, body, body.failure) // 413 or 408 before anything was sent upstream
          } else if (body.destroyed && !req.complete) {
            ex.outcome = 'client_aborted' // the client broke off its upload
            res.destroy()
          } else {
            forward(body)
          }
        })
      } catch (err) {
        const e = ficusError('FICUS_ERR_INTERNAL', { cause: err })
        ex.error = e
        ex.outcome = reasonOf(e.code)
        log.error({ err, reqId: ex.requestId }, 'internal error while proxying')
        sendError(res, e, ex.requestId, true)
      }
    }
  })

  /** The client sent too much or too slowly, or stopped reading: answer (if still possible), stop reading and close, as nginx does. */
  function clientFault(ex: Exchange, res: ServerResponse, body: BodyGuard | null, err: FicusError): void {
    ex.error = err
    ex.outcome = reasonOf(err.code)
    metrics.clientErrors.inc({ reason: ex.outcome })
    sendError(res, err, ex.requestId, true)
    body?.detach()
  }

  /** Starts one attempt on `backend`'s upstream; `headersTimeout` (ms) overrides the upstream's, for a fallback. */
  function send(ex: Exchange, req: IncomingMessage, res: ServerResponse, backend: Backend, upstream: Upstream | undefined, body: BodyGuard | null, headersTimeout: number | undefined): void {
    ex.backend = backend
    if (upstream === undefined) {
      // A reload removed this upstream after the request was decided: the pool is closing.
      gone(ex, res, body)
      return
    }
    const canFallBack = backend === 'new' && body === null && IDEMPOTENT.has(req.method as string)
    new Attempt(ex, req, res, upstream, body, canFallBack, headersTimeout).begin()
  }

  /**
   * One exchange with one upstream: waits for a slot, runs on undici's dispatch handler
   * interface, and ends exactly once (`finish`), giving its slot back.
   */
  class Attempt implements Dispatcher.DispatchHandler, Waiter {
    private state: 'idle' | 'queued' | 'running' | 'over' = 'idle'
    private controller: Dispatcher.DispatchController | null = null
    private pendingAbort: Error | null = null
    /** The response head has been written to the client. */
    private streaming = false
    /** The upstream's response head, checked and waiting to be written (sendHead). */
    private head: { statusCode: number; headers: OutgoingHttpHeaders } | null = null
    /** new's failure answer is being read to its end (the connection stays usable). */
    private discarding = 0
    /** Running while the client does not read (between a full write and its drain): past limits.sendTimeout, abort. */
    private stall: NodeJS.Timeout | null = null

    constructor (
      private readonly ex: Exchange,
      private readonly req: IncomingMessage,
      private readonly res: ServerResponse,
      private readonly upstream: Upstream,
      private readonly body: BodyGuard | null,
      private readonly canFallBack: boolean,
      private readonly headersTimeout: number | undefined
    ) {}

    begin (): void {
      switch (this.upstream.admit(this)) {
        case 'now':
          this.start()
          return
        case 'queued':
          this.state = 'queued'
          this.ex.attempt = this
          return
        case 'full':
          this.state = 'over'
          this.failed(ficusError('FICUS_ERR_UPSTREAM_SATURATED'), this.canFallBack)
      }
    }

    /** The attempt holds a slot: dispatch (Waiter.start, or straight from begin). */
    start (): void {
      this.state = 'running'
      this.ex.attempt = this
      this.upstream.dispatch({
        path: this.ex.target,
        method: this.req.method as Dispatcher.HttpMethod,
        headers: this.upstream.headersFor(this.ex.upstreamHeaders),
        body: this.body,
        headersTimeout: this.headersTimeout
      }, this)
    }

    abort (err: Error): void {
      if (this.state === 'queued') {
        // Nothing was sent: leave the queue without touching the Pool.
        this.upstream.cancel(this)
        this.state = 'over'
        this.ex.attempt = null
        this.body?.detach()
      } else if (this.state === 'running') {
        if (this.controller === null) this.pendingAbort = err
        else this.controller.abort(err)
      }
    }

    onRequestStart (controller: Dispatcher.DispatchController): void {
      this.controller = controller
      if (this.pendingAbort !== null) controller.abort(this.pendingAbort)
    }

    onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
      if (statusCode < 200) return // interim responses are not relayed
      if (this.canFallBack && FALLBACK_STATUS.has(statusCode)) {
        const length = Number(headers['content-length'] ?? NaN)
        if (this.req.method === 'HEAD' || length <= DISCARD_MAX_BYTES) this.discarding = statusCode
        else controller.abort(new FallbackOnStatus(statusCode))
        return
      }
      const out = responseHeaders(headers)
      if (live.current.exposeBackend) out['x-ficus-backend'] = this.ex.backend as string
      // The upstream answered before the whole request body arrived: the rest will not be
      // read, so this connection cannot carry another request.
      if ((this.body !== null && !this.req.complete) || draining()) out.connection = 'close'
      // The head goes out with the first body bytes (as Node would send it anyway), so a
      // body broken from its first bytes (bad chunk size) still gets a clean 502.
      this.head = { statusCode, headers: out }
      this.ex.shadow?.head(statusCode, headers)
    }

    /**
     * Writes the pending response head; from then on a failure can only abort the client
     * connection. Node checks the header names and values as it writes them (nothing is sent
     * when one is invalid): that refusal is returned, for a 502.
     */
    private sendHead (): Error | null {
      const head = this.head
      if (head === null) return null
      this.head = null
      try {
        this.res.writeHead(head.statusCode, head.headers)
      } catch (err) {
        return Object.assign(new Error('invalid response header from upstream'), { code: 'HPE_INVALID_HEADER_TOKEN', cause: err })
      }
      this.streaming = true
      return null
    }

    onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
      if (this.discarding !== 0) return
      const invalid = this.sendHead() // sent with this chunk
      if (invalid !== null) {
        controller.abort(invalid)
        return
      }
      const written = this.res.write(chunk)
      this.ex.shadow?.data(chunk)
      if (written || this.stall !== null) return // (a chunk undici had in hand after pause(): the wait is on)
      // The client is slower than the upstream: wait for it, but not forever, since a
      // reader that stopped would hold this upstream connection.
      controller.pause()
      this.stall = setTimeout(() => { controller.abort(new SendTimeout()) }, limits.sendTimeoutMs)
      this.res.once('drain', () => {
        if (this.stall !== null) clearTimeout(this.stall)
        this.stall = null
        controller.resume()
      })
    }

    onResponseEnd (_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
      if (!this.finish()) return
      if (this.discarding !== 0) {
        fallBack(this.ex, this.req, this.res, `status_${this.discarding}`)
        return
      }
      const invalid = this.sendHead()
      if (invalid !== null) {
        this.failed(toUpstreamError(invalid, false), this.canFallBack)
        return
      }
      if (this.res.chunkedEncoding && Object.keys(trailers).length > 0) this.res.addTrailers(trailers)
      this.res.end()
      this.ex.shadow?.end()
      if (this.body !== null && !this.req.complete) this.body.detach()
    }

    onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
      if (!this.finish()) return
      const { ex, req, res, body } = this
      if (err instanceof ClientGone || (res.destroyed && !res.writableFinished)) {
        if (ex.error === null) ex.outcome = 'client_aborted' // else the edge already said why (408)
        body?.detach()
      } else if (err instanceof FallbackOnStatus) {
        fallBack(ex, req, res, `status_${err.status}`)
      } else if (err instanceof SendTimeout) {
        clientFault(this.ex, this.res, this.body, ficusError('FICUS_ERR_SEND_TIMEOUT'))
      } else if (body?.failure != null) {
        clientFault(ex, res, body, body.failure) // 413 or 408: the body went over the limit or stalled
      } else if (req.destroyed && !req.complete) {
        ex.outcome = 'client_aborted' // the client broke off its own upload
        res.destroy()
      } else {
        this.failed(toUpstreamError(err, this.streaming), this.canFallBack && !this.streaming)
      }
    }

    /** Marks the attempt over exactly once, giving its slot back; false when it already was. */
    private finish (): boolean {
      if (this.state === 'over') return false
      this.state = 'over'
      this.upstream.release()
      this.ex.attempt = null
      if (this.stall !== null) clearTimeout(this.stall)
      return true
    }

    /** Counts an upstream failure; legacy answers when it may, else the client gets the error. */
    private failed (err: FicusError, canFallBack: boolean): void {
      const { ex } = this
      const reason = reasonOf(err.code)
      metrics.upstreamErrors.inc({ route: ex.rule!.name, backend: ex.backend as string, reason })
      ex.error = err // kept for the log line even when legacy answers
      if (canFallBack) {
        fallBack(ex, this.req, this.res, reason)
        return
      }
      ex.outcome = reason
      this.answer(err)
    }


    /** Sends the error; a request body that was not read to its end closes the connection. */
    private answer (err: FicusError, close = false): void {
      const unread = this.body !== null && !this.req.complete
      sendError(this.res, err, this.ex.requestId, close || unread)
      this.body?.detach()
    }
  }

  /**
   * Legacy answers instead of new. The whole exchange stays within legacy's own timeout,
   * counted from when the request arrived: a fallback never makes a client wait longer than
   * legacy alone could have.
   */
  function fallBack(ex: Exchange, req: IncomingMessage, res: ServerResponse, reason: string): void {
    metrics.fallbacks.inc({ route: ex.rule!.name, reason })
    ex.fallback = reason
    const legacy = upstreams.get(ex.rule!.backends.legacy)
    if (legacy === undefined) {
      gone(ex, res, null)
      return
    }
    const left = Math.floor(legacy.config.timeoutMs - (now() - ex.start))
    if (left <= 0) {
      const err = ex.error ?? ficusError('FICUS_ERR_UPSTREAM_TIMEOUT')
      ex.error = err
      ex.outcome = reasonOf(err.code)
      sendError(res, err, ex.requestId)
      return
    }
    ex.outcome = 'fallback'
    send(ex, req, res, 'legacy', legacy, null, left)
  }
}

/** The request's upstream is no longer configured (removed by a reload while it was in flight). */
function gone(ex: Exchange, res: ServerResponse, body: BodyGuard | null): void {
  const err = ficusError('FICUS_ERR_UPSTREAM_CLOSING')
  ex.error = err
  ex.outcome = reasonOf(err.code)
  sendError(res, err, ex.requestId, body !== null)
  body?.detach()
}


export default fp(proxy, { name: 'ficus-proxy', fastify: '5.x', dependencies: ['ficus-decision'] })
