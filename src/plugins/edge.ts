import { randomUUID } from 'node:crypto'
import { ServerResponse, STATUS_CODES, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { Limits } from '../config/schema.js'
import { acceptableRequestId, unmapIPv4 } from '../core/forward-headers.js'
import { errorBody, ficusError, reasonOf, type ErrorCode, type FicusError } from '../errors.js'
import { attachExchange, ClientGone, Exchange, exchangeOf } from '../exchange.js'
import { sendError } from './respond.js'

/**
 * The HTTP edge: what happens to a request before the pipeline sees it. Node's parser
 * already refuses smuggling shapes (CL+TE, bad chunking, obs-fold); this module shapes
 * those refusals into catalogue errors, accepts absolute-form targets (RFC 9112 §3.2.2) and
 * answers `Expect: 100-continue`. Every refusal of a request is counted and logged like any
 * other request; a connection that never sent a byte is just closed, as nginx does.
 */

const kAuthority = Symbol('ficus.authority')
const kBadTarget = Symbol('ficus.badTarget')
type EdgeRequest = IncomingMessage & { [kAuthority]?: string; [kBadTarget]?: true }

/**
 * How long a refused connection lingers so the client can read the answer, in ms: closing
 * while the client still sends makes the kernel reset the connection, which can discard the
 * answer before the client reads it (nginx's lingering_timeout is 5 s too). It ends sooner
 * when the client closes its side.
 */
const LINGER_MS = 5000

export interface EdgeDeps {
  readonly metrics: Metrics
  readonly limits: Limits
  /** The `close` listener of every response: the access log and metrics of its exchange (record.ts). */
  readonly record: (this: ServerResponse) => void
  /** Monotonic milliseconds. */
  readonly now: () => number
}

/** The request id: the client's `x-request-id` when it is short printable ASCII, else a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const id = req.headers['x-request-id']
  return acceptableRequestId(id) ? id : randomUUID()
}

/**
 * fastify `rewriteUrl`: absolute-form `http://host/p?q` becomes `/p?q`, keeping the bytes
 * of the path, and the target's authority replaces Host (RFC 9112 §3.2.2). Anything else
 * that is not origin-form (`*`, garbage, credentials in the authority) is flagged and
 * refused by the decision hook.
 */
export function rewriteUrl(req: IncomingMessage): string {
  const url = req.url ?? ''
  if (url.charCodeAt(0) === 47 /* '/' */) return url
  const m = /^https?:\/\/([^/?#\s@]+)([/?][^#\s]*)?$/i.exec(url)
  if (m === null) {
    (req as EdgeRequest)[kBadTarget] = true
    return '/'
  }
  (req as EdgeRequest)[kAuthority] = m[1] as string
  const rest = m[2] ?? ''
  return rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest
}

export function absoluteFormAuthority(req: IncomingMessage): string | undefined {
  return (req as EdgeRequest)[kAuthority]
}

export function hasBadTarget(req: IncomingMessage): boolean {
  return (req as EdgeRequest)[kBadTarget] === true
}

/**
 * Answers a request Ficus refuses before it has a route, and records it (one access-log line,
 * `ficus_client_errors_total`). `close`: the body was not read, so the connection ends.
 */
export function refuse(deps: EdgeDeps, req: IncomingMessage, res: ServerResponse, code: ErrorCode, ex: Exchange): void {
  const err = ficusError(code)
  // Refused before the forwarding headers were read: the peer's address is the client's.
  if (ex.clientIp === '') ex.clientIp = unmapIPv4(req.socket.remoteAddress ?? '')
  ex.error = err
  ex.outcome = reasonOf(code)
  deps.metrics.clientErrors.inc({ reason: ex.outcome })
  sendError(res, err, ex.requestId, true)
}

/** The exchange record of a request: attached to its response, recorded once the response is over. */
export function openExchange(deps: EdgeDeps, req: IncomingMessage, res: ServerResponse, requestId: string): Exchange {
  const ex = new Exchange(requestId, req.method ?? '', deps.now())
  ex.target = req.url ?? ''
  attachExchange(res, ex)
  res.once('close', deps.record)
  return ex
}

/** A declared body over limits.bodySize (refused before it is read). */
export function overBodyLimit(req: IncomingMessage, limits: Limits): boolean {
  const length = req.headers['content-length']
  return length !== undefined && Number(length) > limits.bodyBytes
}

/**
 * fastify `clientErrorHandler`: Node's parser refused the request (malformed, headers over
 * the limit, head or whole request not received in time). Answer with the catalogue's JSON
 * and close.
 */
export function clientErrorHandler(deps: EdgeDeps) {
  return function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    // Already answered (a refusal above is being read), or nothing was ever sent: just close.
    if (socket.writableEnded || socket.bytesRead === 0) {
      socket.destroy()
      return
    }
    const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'FICUS_ERR_REQUEST_TIMEOUT'
      : err.code === 'HPE_HEADER_OVERFLOW' ? 'FICUS_ERR_HEADERS_TOO_LARGE' : 'FICUS_ERR_BAD_REQUEST'
    const e = ficusError(code)
    const reason = reasonOf(code)
    deps.metrics.clientErrors.inc({ reason })
    const inProgress = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? null
    if (inProgress !== null && inProgress.req.complete) {
      // A later pipelined request is malformed; the one in progress was read whole. As nginx
      // does, it is answered first, then the refusal, then the connection closes.
      inProgress.once('finish', () => answerAndClose(socket, e, undefined))
      return
    }
    // A request already in the pipeline (its body is bad, or the whole-request timeout): its exchange records the error.
    const ex = inProgress === null ? null : exchangeOf(inProgress)
    if (socket.writable && (inProgress === null || !inProgress.headersSent)) {
      answerAndClose(socket, e, ex?.requestId)
      if (ex !== null) ex.answered = e.statusCode
    } else {
      socket.destroy()
    }
    if (ex !== null) {
      ex.error = e
      ex.outcome = reason
      // The client was answered here: the request in progress upstream is abandoned.
      ex.attempt?.abort(new ClientGone())
    }
  }
}

/** Writes a catalogue error straight to the socket (there is no response object to use) and closes it. */
function answerAndClose(socket: Socket, e: FicusError, requestId: string | undefined): void {
  if (!socket.writable) return
  const body = errorBody(e, requestId)
  socket.write(`HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  lingerClose(socket)
}

/**
 * Ends a connection after an answer without resetting it: what the client still sends is
 * read and dropped, the socket is destroyed once the answer is flushed and the client has
 * closed its side, and at the latest after LINGER_MS.
 */
function lingerClose(socket: Socket): void {
  socket.end()
  const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref()
  socket.once('close', () => clearTimeout(linger))
  socket.once('end', () => socket.destroySoon()) // destroyed once our answer is flushed
  socket.resume() // read and drop what the client still sends, so it is not reset before it reads the answer
}

/** fastify `frameworkErrors`: the router could not read the path (bad percent-encoding). */
export function frameworkErrors(deps: EdgeDeps) {
  return function onFrameworkError(_err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack()
    refuse(deps, request.raw, reply.raw, 'FICUS_ERR_BAD_TARGET', openExchange(deps, request.raw, reply.raw, request.id))
  }
}

/**
 * `CONNECT`: Node hands the socket to a `connect` listener, and without one destroys it with
 * no answer. Ficus opens no tunnels: 501, recorded like any refused request, and closed.
 */
export function refuseConnect(server: Server, deps: EdgeDeps): void {
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const res = new ServerResponse(req)
    res.assignSocket(socket)
    // Node applies no timeout to a socket it handed over: Ficus closes it, lingering as for any refusal.
    res.once('finish', () => lingerClose(socket))
    socket.on('error', () => socket.destroy())
    refuse(deps, req, res, 'FICUS_ERR_CONNECT', openExchange(deps, req, res, requestIdOf(req)))
  })
}

/**
 * `Expect: 100-continue`: a body over the limit is refused before the client sends it, as
 * nginx does; otherwise the client is told to go on. Node stops answering 100 itself once
 * this listener exists.
 */
export function answerExpectContinue(server: Server, deps: EdgeDeps): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (overBodyLimit(req, deps.limits)) {
      refuse(deps, req, res, 'FICUS_ERR_BODY_TOO_LARGE', openExchange(deps, req, res, requestIdOf(req)))
      return
    }
    res.writeContinue()
    server.emit('request', req, res)
  })
}
