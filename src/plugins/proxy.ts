import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http'
import { Transform, type Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Dispatcher } from 'undici'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { Upstream, Upstreams } from '../adapters/upstreams.js'
import type { Limits } from '../config/schema.js'
import { responseHeaders } from '../core/forward-headers.js'
import type { Backend } from '../core/types.js'
import { ficusError, reasonOf, toUpstreamError, type FicusError } from '../errors.js'
import { ClientGone, type Exchange } from '../exchange.js'
import { sendError } from './respond.js'

export interface ProxyOptions {
  readonly upstreams: Upstreams
  readonly limits: Limits
  readonly exposeBackend: boolean
  readonly metrics: Metrics
  readonly log: Logger
}

/** Idempotent methods (RFC 9110 §9.2.2): the only ones that may be sent twice (fallback). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
/** Answers from new that mean "new failed" rather than "the request is wrong". */
const FALLBACK_STATUS: ReadonlySet<number> = new Set([502, 503, 504])

/** An attempt cut short by Ficus itself because new answered with a failure status. */
class FallbackOnStatus extends Error {
  override name = 'FallbackOnStatus'
  constructor (readonly status: number) { super(`upstream answered ${status}`) }
}

/**
 * The terminal stage ("router" in Envoy's filter chain): forwards to the decided backend
 * over our own undici Pool, streams the answer back, maps failures to the catalogue and,
 * when new fails before answering an idempotent request without a body, lets legacy answer.
 *
 * Every method is registered as bodyless so fastify never parses, buffers or judges a body
 * (it would answer 415 to a malformed Content-Type); Ficus streams bodies itself.
 */
async function proxy(fastify: FastifyInstance, opts: ProxyOptions): Promise<void> {
  const { upstreams, limits, exposeBackend, metrics, log } = opts
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
        const body = requestBody(req, ex)
        send(ex, req, res, decision.primary, body)
      } catch (err) {
        internalError(ex, res, err)
      }
    }
  })

  function requestBody(req: IncomingMessage, ex: Exchange): Readable | null {
    const length = req.headers['content-length']
    if (req.headers['transfer-encoding'] === undefined) {
      // Node's parser enforces Content-Length framing; the limit was checked on the header.
      return length === undefined || length === '0' ? null : req
    }
    // Chunked: count while streaming, and stop at the limit (413).
    let seen = 0
    const limit = limits.bodyBytes
    const counted = new Transform({
      transform (chunk: Buffer, _enc, cb) {
        seen += chunk.length
        if (seen > limit) {
          ex.bodyTooLarge = true
          cb(ficusError('FICUS_ERR_BODY_TOO_LARGE'))
        } else {
          cb(null, chunk)
        }
      }
    })
    req.on('error', (err) => counted.destroy(err))
    req.pipe(counted)
    return counted
  }

  function send(ex: Exchange, req: IncomingMessage, res: ServerResponse, backend: Backend, body: Readable | null): void {
    const rule = ex.rule!
    const upstream = upstreams.get(rule.backends[backend])!
    ex.backend = backend
    const canFallBack = backend === 'new' && body === null && IDEMPOTENT.has(req.method as string)
    if (upstream.saturated) {
      failed(ex, req, res, ficusError('FICUS_ERR_UPSTREAM_SATURATED'), canFallBack)
      return
    }
    let headers = ex.upstreamHeaders
    if (upstream.config.hostHeader === 'upstream') headers = withHost(headers, upstream.config.authority)
    upstream.dispatch({
      path: ex.target,
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body
    }, new Attempt(ex, req, res, upstream, canFallBack))
  }

  /** One exchange with one upstream, on undici's dispatch handler interface. */
  class Attempt implements Dispatcher.DispatchHandler {
    private controller: Dispatcher.DispatchController | null = null
    private streaming = false
    private over = false

    constructor (
      private readonly ex: Exchange,
      private readonly req: IncomingMessage,
      private readonly res: ServerResponse,
      private readonly upstream: Upstream,
      private readonly canFallBack: boolean
    ) {
      ex.abortUpstream = (err) => { this.controller?.abort(err) }
    }

    onRequestStart (controller: Dispatcher.DispatchController): void {
      this.controller = controller
      // The client may have left while the request waited for a connection.
      if (this.res.destroyed) controller.abort(new ClientGone())
    }

    onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
      if (statusCode < 200) return // interim responses are not relayed
      if (this.canFallBack && FALLBACK_STATUS.has(statusCode)) {
        controller.abort(new FallbackOnStatus(statusCode))
        return
      }
      const out = responseHeaders(headers)
      if (exposeBackend) out['x-ficus-backend'] = this.ex.backend as string
      try {
        this.res.writeHead(statusCode, out)
      } catch (err) {
        // Node refused a header value the upstream sent (invalid characters).
        controller.abort(Object.assign(new Error('invalid response header from upstream'), { code: 'HPE_INVALID_HEADER_TOKEN', cause: err }))
        return
      }
      this.streaming = true
    }

    onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
      if (!this.res.write(chunk)) {
        controller.pause()
        this.res.once('drain', () => controller.resume())
      }
    }

    onResponseEnd (): void {
      if (this.finish()) this.res.end()
    }

    onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
      if (!this.finish()) return
      const { ex, req, res } = this
      if (err instanceof ClientGone || (res.destroyed && !res.writableFinished)) {
        ex.outcome = 'client_aborted'
      } else if (err instanceof FallbackOnStatus) {
        fallBack(ex, req, res, `status_${err.status}`)
      } else if (ex.bodyTooLarge) {
        const e = ficusError('FICUS_ERR_BODY_TOO_LARGE')
        ex.error = e
        ex.outcome = reasonOf(e.code)
        metrics.clientErrors.inc({ reason: ex.outcome })
        sendError(res, e, ex.requestId, true)
      } else if (req.destroyed && !req.complete) {
        // The client broke off its own upload.
        ex.outcome = 'client_aborted'
        res.destroy()
      } else {
        failed(ex, req, res, toUpstreamError(err, this.streaming), this.canFallBack && !this.streaming)
      }
    }

    /** Marks the attempt over exactly once; false when it already was. */
    private finish (): boolean {
      if (this.over) return false
      this.over = true
      this.upstream.release()
      this.ex.abortUpstream = null
      return true
    }
  }

  /** Counts an upstream failure; legacy answers when it may, else the client gets the error. */
  function failed(ex: Exchange, req: IncomingMessage, res: ServerResponse, err: FicusError, canFallBack: boolean): void {
    const reason = reasonOf(err.code)
    metrics.upstreamErrors.inc({ backend: ex.backend as string, reason })
    ex.error = err // kept for the log line even when legacy answers
    if (canFallBack) {
      fallBack(ex, req, res, reason)
      return
    }
    ex.outcome = reason
    sendError(res, err, ex.requestId)
  }

  function fallBack(ex: Exchange, req: IncomingMessage, res: ServerResponse, reason: string): void {
    metrics.fallbacks.inc({ route: ex.rule!.name, reason })
    ex.fallback = reason
    ex.outcome = 'fallback'
    send(ex, req, res, 'legacy', null)
  }

  function internalError(ex: Exchange, res: ServerResponse, err: unknown): void {
    const e = ficusError('FICUS_ERR_INTERNAL', { cause: err })
    ex.error = e
    ex.outcome = reasonOf(e.code)
    log.error({ err, reqId: ex.requestId }, 'internal error while proxying')
    sendError(res, e, ex.requestId)
  }
}

/** A copy of the header list with Host replaced (upstream `hostHeader: upstream`). */
function withHost(headers: readonly string[], authority: string): string[] {
  const out = headers.slice()
  for (let i = 0; i < out.length; i += 2) {
    if (out[i] === 'host') out[i + 1] = authority
  }
  return out
}

export default fp(proxy, { name: 'ficus-proxy', fastify: '5.x', dependencies: ['ficus-decision'] })
