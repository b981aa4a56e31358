import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { Limits } from '../config/schema.js'
import { errorBody, ficusError, reasonOf, type ErrorCode } from '../errors.js'
import { sendError } from './respond.js'

/**
 * The HTTP edge: what happens to a request before the pipeline sees it. Node's parser
 * already refuses smuggling shapes (CL+TE, bad chunking, obs-fold) and a missing Host; this
 * module shapes those refusals into catalogue errors, accepts absolute-form targets
 * (RFC 9112 §3.2.2), and answers `Expect: 100-continue`.
 */

const kAuthority = Symbol('ficus.authority')
const kBadTarget = Symbol('ficus.badTarget')
type EdgeRequest = IncomingMessage & { [kAuthority]?: string; [kBadTarget]?: true }

/** How long a refused connection may linger so the client can read the answer, in ms. */
const LINGER_MS = 1000

/**
 * fastify `rewriteUrl`: absolute-form `http://host/p?q` becomes `/p?q`, keeping the bytes
 * of the path, and the target's authority replaces Host (RFC 9112 §3.2.2). Anything else
 * that is not origin-form (`*`, garbage) is flagged and refused by the decision hook.
 */
export function rewriteUrl(req: IncomingMessage): string {
  const url = req.url ?? ''
  if (url.charCodeAt(0) === 47 /* '/' */) return url
  const m = /^https?:\/\/([^/?#\s]+)([^#\s]*)/i.exec(url)
  if (m === null) {
    (req as EdgeRequest)[kBadTarget] = true
    return '/'
  }
  (req as EdgeRequest)[kAuthority] = m[1] as string
  const rest = m[2] as string
  return rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest
}

export function absoluteFormAuthority(req: IncomingMessage): string | undefined {
  return (req as EdgeRequest)[kAuthority]
}

export function hasBadTarget(req: IncomingMessage): boolean {
  return (req as EdgeRequest)[kBadTarget] === true
}

/**
 * fastify `clientErrorHandler`: Node's parser refused the request (malformed, headers over
 * the limit, head not received in time). Answer with the catalogue's JSON and close.
 */
export function clientErrorHandler(metrics: Metrics, log: Logger) {
  return function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'FICUS_ERR_REQUEST_TIMEOUT'
      : err.code === 'HPE_HEADER_OVERFLOW' ? 'FICUS_ERR_HEADERS_TOO_LARGE' : 'FICUS_ERR_BAD_REQUEST'
    const reason = reasonOf(code)
    metrics.clientErrors.inc({ reason })
    log.debug({ reason, err: err.code, peer: socket.remoteAddress }, 'client error')
    // A response of an earlier request on this connection may be half-written: then only close.
    const inProgress = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
    if (socket.writable && (inProgress === undefined || inProgress === null || !inProgress.headersSent)) {
      const e = ficusError(code)
      const body = errorBody(e, undefined)
      socket.end(`HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
      setTimeout(() => socket.destroy(), LINGER_MS).unref()
    } else {
      socket.destroy()
    }
  }
}

/** fastify `frameworkErrors`: the router could not read the path (bad percent-encoding). */
export function frameworkErrors(metrics: Metrics) {
  return function onFrameworkError(_err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
    metrics.clientErrors.inc({ reason: reasonOf('FICUS_ERR_BAD_TARGET') })
    reply.hijack()
    sendError(reply.raw, ficusError('FICUS_ERR_BAD_TARGET'), request.id, true)
  }
}

/**
 * `Expect: 100-continue`: a body over the limit is refused before the client sends it
 * (417-style early answer, as nginx does with 413); otherwise the client is told to go on.
 * Node stops answering 100 itself once this listener exists.
 */
export function answerExpectContinue(server: Server, limits: Limits, metrics: Metrics): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length'] ?? 0)
    if (length > limits.bodyBytes) {
      metrics.clientErrors.inc({ reason: reasonOf('FICUS_ERR_BODY_TOO_LARGE') })
      sendError(res, ficusError('FICUS_ERR_BODY_TOO_LARGE'), undefined, true)
      return
    }
    res.writeContinue()
    server.emit('request', req, res)
  })
}
