import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { FlagSource } from '../adapters/flags.js'
import type { LiveConfig } from '../config/live.js'
import { decide, type Random } from '../core/decide.js'
import { forwardHeaders, validHost } from '../core/forward-headers.js'
import { normalizePath, pathOf, queryOf } from '../core/normalize-path.js'
import { stickyKey } from '../core/sticky-key.js'
import type { ErrorCode } from '../errors.js'
import type { Exchange } from '../exchange.js'
import { absoluteFormAuthority, hasBadTarget, openExchange, overBodyLimit, refuse, type EdgeDeps } from './edge.js'
import type { RouteTableRef } from './route-table.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's exchange record; set by the decision hook before anything else reads it. */
    ficus: Exchange
  }
}

export interface DecisionOptions {
  readonly table: RouteTableRef
  readonly live: LiveConfig
  readonly edge: EdgeDeps
  readonly random: Random
  /** Unleash, when routes.yaml has an unleash: block; a flagged route without it is legacy. */
  readonly flags: FlagSource | undefined
}

/**
 * First stage of the pipeline (onRequest): refuse what must not be forwarded, match the
 * route, build the upstream headers and make the one decision every later stage reads.
 */
async function decision(fastify: FastifyInstance, opts: DecisionOptions): Promise<void> {
  const { table, random, edge, flags } = opts
  const { live } = opts
  const { metrics, limits } = edge
  fastify.decorateRequest('ficus', null as unknown as Exchange)

  fastify.addHook('onRequest', function decideRequest(request: FastifyRequest, reply: FastifyReply, done: () => void) {
    const req = request.raw
    const res: ServerResponse = reply.raw
    const ex = openExchange(edge, req, res, request.id)
    request.ficus = ex
    const url = req.url as string

    if (hasBadTarget(req)) {
      ex.target = '' // not logged: it is not a path, and may hold credentials
      return refused(edge, reply, 'FICUS_ERR_BAD_TARGET', ex)
    }
    // Node parses `HTTP/2.0` in a request line like 1.x; nginx answers 505 to it.
    if (req.httpVersionMajor !== 1) return refused(edge, reply, 'FICUS_ERR_HTTP_VERSION', ex)
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing (Node would read it as chunked).
    if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return refused(edge, reply, 'FICUS_ERR_BAD_REQUEST', ex)
    if (overBodyLimit(req, limits)) return refused(edge, reply, 'FICUS_ERR_BODY_TOO_LARGE', ex)
    const authority = absoluteFormAuthority(req)
    const fwd = forwardHeaders(req.rawHeaders, {
      peer: req.socket.remoteAddress ?? '',
      proto: 'http',
      httpVersion: req.httpVersion,
      trustedHops: live.current.trustedHops,
      requestId: request.id,
      authority
    })
    ex.clientIp = fwd.clientIp
    // nginx and HAProxy answer 400 to a second Host; Node keeps the first one silently.
    if (fwd.hostCount > 1) return refused(edge, reply, 'FICUS_ERR_DUPLICATE_HOST', ex)
    // RFC 9112 §3.2; checked here rather than by Node so the answer carries a Ficus code.
    if (fwd.hostCount === 0 && req.httpVersion === '1.1' && authority === undefined) return refused(edge, reply, 'FICUS_ERR_MISSING_HOST', ex)
    const host = authority ?? req.headers.host
    if (host !== undefined && !validHost(host)) return refused(edge, reply, 'FICUS_ERR_INVALID_HOST', ex)

    const current = table.current
    const path = normalizePath(pathOf(url))
    const rule = current.match(req.method as string, path) ?? current.defaultRoute
    ex.rule = rule
    ex.upstreamHeaders = fwd.headers
    const flagged = rule.flag !== null
    const key = flagged || (rule.new > 0 && rule.new < 100)
      ? stickyKey(rule.sticky, { headers: req.headers, query: queryOf(url), clientIp: fwd.clientIp })
      : undefined
    let flagOn: boolean | undefined
    if (flagged && flags !== undefined) {
      flagOn = flags.isEnabled(rule.flag, { userId: key, remoteAddress: fwd.clientIp, properties: { route: rule.name, method: req.method as string, path } })
    }
    const d = decide(rule, req.method as string, key, random, flagOn)
    if (d.bucketSource === 'random') metrics.stickyMissing.inc({ route: rule.name })
    ex.decision = d
    done()
  })
}

/** Answers the request here, outside fastify's reply (hijacked). */
function refused(edge: EdgeDeps, reply: FastifyReply, code: ErrorCode, ex: Exchange): void {
  reply.hijack()
  refuse(edge, reply.request.raw, reply.raw, code, ex)
}

export default fp(decision, { name: 'ficus-decision', fastify: '5.x' })
