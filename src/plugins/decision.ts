import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { Config } from '../config/schema.js'
import { decide, type Random } from '../core/decide.js'
import { forwardHeaders } from '../core/forward-headers.js'
import { normalizePath, pathOf, queryOf } from '../core/normalize-path.js'
import { stickyKey } from '../core/sticky-key.js'
import { ficusError, reasonOf, type ErrorCode } from '../errors.js'
import { Exchange } from '../exchange.js'
import { absoluteFormAuthority, hasBadTarget } from './edge.js'
import { sendError } from './respond.js'
import type { RouteTableRef } from './route-table.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's exchange record; set by the decision hook before anything else reads it. */
    ficus: Exchange
  }
}

export interface DecisionOptions {
  readonly table: RouteTableRef
  readonly config: Pick<Config, 'trustedHops' | 'limits'>
  readonly metrics: Metrics
  readonly random: Random
  /** Milliseconds, monotonic. */
  readonly now: () => number
  /** Called once per request when its response is over (finished or aborted). */
  readonly onEnd: (ex: Exchange, res: ServerResponse) => void
}

/**
 * First stage of the pipeline (onRequest): refuse what must not be forwarded, match the
 * route, build the upstream headers and make the one decision every later stage reads.
 */
async function decision(fastify: FastifyInstance, opts: DecisionOptions): Promise<void> {
  const { table, metrics, random, now, onEnd } = opts
  const { trustedHops, limits } = opts.config
  fastify.decorateRequest('ficus', null as unknown as Exchange)

  fastify.addHook('onRequest', function decideRequest(request: FastifyRequest, reply: FastifyReply, done: () => void) {
    const req = request.raw
    const res = reply.raw
    const ex = new Exchange(request.id, req.method as string, now())
    request.ficus = ex
    res.once('close', () => onEnd(ex, res))

    const url = req.url as string
    const fwd = forwardHeaders(req.rawHeaders, {
      peer: req.socket.remoteAddress ?? '',
      proto: 'http',
      httpVersion: req.httpVersion,
      trustedHops,
      requestId: request.id,
      authority: absoluteFormAuthority(req)
    })
    if (hasBadTarget(req)) return refuse(request, reply, 'FICUS_ERR_BAD_TARGET')
    // nginx and HAProxy answer 400 to a second Host; Node keeps the first one silently.
    if (fwd.hostCount > 1) return refuse(request, reply, 'FICUS_ERR_DUPLICATE_HOST')
    // RFC 9112 §3.2; checked here rather than by Node so the answer carries a Ficus code.
    if (fwd.hostCount === 0 && req.httpVersion === '1.1' && absoluteFormAuthority(req) === undefined) return refuse(request, reply, 'FICUS_ERR_MISSING_HOST')
    const length = req.headers['content-length']
    if (length !== undefined && Number(length) > limits.bodyBytes) return refuse(request, reply, 'FICUS_ERR_BODY_TOO_LARGE')

    const current = table.current
    const rule = current.match(req.method as string, normalizePath(pathOf(url))) ?? current.defaultRoute
    ex.rule = rule
    ex.target = url
    ex.upstreamHeaders = fwd.headers
    ex.clientIp = fwd.clientIp
    const key = rule.new > 0 && rule.new < 100
      ? stickyKey(rule.sticky, { headers: req.headers, query: queryOf(url), clientIp: fwd.clientIp })
      : undefined
    const d = decide(rule, req.method as string, key, random)
    if (d.bucketSource === 'random') metrics.stickyMissing.inc({ route: rule.name })
    ex.decision = d
    done()
  })

  /** Answers without forwarding; the body is not read, so the connection is closed after. */
  function refuse(request: FastifyRequest, reply: FastifyReply, code: ErrorCode): void {
    const err = ficusError(code)
    const ex = request.ficus
    ex.error = err
    ex.outcome = reasonOf(code)
    metrics.clientErrors.inc({ reason: ex.outcome })
    reply.hijack()
    sendError(reply.raw, err, request.id, true)
  }
}

export default fp(decision, { name: 'ficus-decision', fastify: '5.x' })
