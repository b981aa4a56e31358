import { randomUUID } from 'node:crypto'
import { ServerResponse, STATUS_CODES, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { Limits } from '../config/schema.js'
import { acceptableRequestId, declaresMoreThan, unmapIPv4 } from '../core/forward-headers.js'
import { errorBody, ficusError, reasonOf, type ErrorCode, type FicusError } from '../errors.js'
import { Exchanges } from './exchange.js'
import type { SocketRefusal } from './record.js'
import { refuse } from './respond.js'

/**
 * The HTTP edge: what happens to a request before the pipeline sees it. Node's parser
 * already refuses smuggling shapes (CL+TE, bad chunking, obs-fold); this module shapes
 * those refusals into catalogue errors, accepts absolute-form targets (RFC 9112 §3.2.2),
 * answers `Expect: 100-continue` and refuses other expectations (417). Every refusal of a
 * request is counted and logged (within the refusal budget, record.ts), a parser refusal too,
 * though Node made no request of it; a connection that never sent a byte is just closed, as
 * nginx does.
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
  /** A request the edge refuses is an exchange like any other (an access-log line, metrics). */
  readonly exchanges: Exchanges
  /** The access-log line of a refusal Node's parser made before there was a request (record.ts). */
  readonly socketRefused: (r: SocketRefusal) => void
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
 * refused by the admit stage.
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

function hasBadTarget(req: IncomingMessage): boolean {
  return (req as EdgeRequest)[kBadTarget] === true
}

/** The target the exchange logs and forwards: '' for one that is not a path (it may hold credentials). */
export function targetOf(req: IncomingMessage): string {
  return hasBadTarget(req) ? '' : req.url ?? ''
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
    // The newest request was refused by a stage already, and its body, which was never read,
    // is what the parser choked on: that answer (Connection: close) ends the connection once
    // it is written. Not a second refusal.
    const last = Exchanges.newest(socket)
    if (last !== null && last.error !== null && !last.req.complete && last.res.writableEnded) return
    const ex = Exchanges.inProgress(socket)
    const e = ficusError(code, { cause: err })
    const reason = reasonOf(code)
    deps.metrics.clientErrors.inc({ reason })
    // No request was made of what was refused: it gets an id and a line of its own.
    const refused = (): string => {
      const requestId = randomUUID()
      deps.socketRefused({ requestId, error: e, status: e.statusCode, ip: unmapIPv4(socket.remoteAddress ?? '') })
      return requestId
    }
    if (ex !== null && ex.req.complete) {
      // A later pipelined request is malformed; the one in progress was read whole. As nginx
      // does, it is answered first, then the refusal, then the connection closes.
      const requestId = refused()
      ex.res.once('finish', () => answerAndClose(socket, e, requestId))
      return
    }
    // A request already in the pipeline (its body is bad, or the whole-request timeout): its
    // exchange records the error, and the request in progress upstream is abandoned.
    if (socket.writable && (ex === null || !ex.res.headersSent)) {
      answerAndClose(socket, e, ex === null ? refused() : ex.requestId)
      ex?.cutShort(e, e.statusCode)
    } else {
      socket.destroy()
      ex?.cutShort(e, null)
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
export function lingerClose(socket: Socket): void {
  socket.end()
  const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref()
  socket.once('close', () => clearTimeout(linger))
  socket.once('end', () => socket.destroySoon()) // destroyed once our answer is flushed
  socket.resume() // read and drop what the client still sends, so it is not reset before it reads the answer
}

/**
 * A response on a socket Node handed over (`connect`, `upgrade`), or null when it cannot
 * carry one (the socket was destroyed). Anything answered on it is the connection's last
 * answer: Node applies no timeout to such a socket, so Ficus closes it, lingering as for any
 * refusal.
 */
export function responseOn(req: IncomingMessage, socket: Socket): ServerResponse | null {
  const res = new ServerResponse(req)
  try {
    res.assignSocket(socket)
  } catch {
    socket.destroy() // a response Ficus does not know of holds the socket: nothing can be answered
    return null
  }
  res.once('finish', () => lingerClose(socket))
  return res
}

/** fastify `frameworkErrors`: the router could not read the path (bad percent-encoding). */
export function frameworkErrors(deps: EdgeDeps) {
  return function onFrameworkError(_err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack()
    refuse(deps.exchanges.open(request.raw, reply.raw, request.id), 'FICUS_ERR_BAD_TARGET', deps.metrics)
  }
}

/**
 * `CONNECT`: Node hands the socket to a `connect` listener, and without one destroys it with
 * no answer. Ficus opens no tunnels: 501, recorded like any refused request, and closed.
 */
export function refuseConnect(server: Server, deps: EdgeDeps): void {
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => socket.destroy())
    const earlier = Exchanges.inProgress(socket)
    if (earlier !== null) {
      // Pipelined behind a request still being answered: the socket carries that response,
      // so the 501 follows it (written on the socket), then the connection closes; the
      // exchange is recorded when it does.
      const ex = deps.exchanges.open(req, new ServerResponse(req), requestIdOf(req))
      const e = ficusError('FICUS_ERR_CONNECT')
      ex.refused(e, e.statusCode)
      deps.metrics.clientErrors.inc({ reason: ex.outcome })
      earlier.res.once('finish', () => answerAndClose(socket, e, ex.requestId))
      return
    }
    const res = responseOn(req, socket)
    if (res !== null) refuse(deps.exchanges.open(req, res, requestIdOf(req)), 'FICUS_ERR_CONNECT', deps.metrics)
  })
}

/**
 * Any other expectation than 100-continue (`Expect: 103-checkpoint`): RFC 9110 §10.1.1 lets a
 * server answer 417, which Node does itself, unrecorded; with this listener the 417 carries
 * the catalogue's code, is counted and has its access-log line. (nginx ignores the field.)
 */
export function refuseExpectation(server: Server, deps: EdgeDeps): void {
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    // Before rewriteUrl: an absolute-form target is still raw here (it may hold credentials).
    const target = req.url?.startsWith('/') === true ? req.url : ''
    refuse(deps.exchanges.open(req, res, requestIdOf(req), target), 'FICUS_ERR_EXPECTATION', deps.metrics)
  })
}

/**
 * `Expect: 100-continue`: a body over the limit is refused before the client sends it, as
 * nginx does; otherwise the client is told to go on. Node stops answering 100 itself once
 * this listener exists.
 */
export function answerExpectContinue(server: Server, deps: EdgeDeps): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (declaresMoreThan(req.headers, deps.limits.bodyBytes)) {
      // Before rewriteUrl: an absolute-form target is still raw here (it may hold credentials).
      const target = req.url?.startsWith('/') === true ? req.url : ''
      refuse(deps.exchanges.open(req, res, requestIdOf(req), target), 'FICUS_ERR_BODY_TOO_LARGE', deps.metrics)
      return
    }
    res.writeContinue()
    server.emit('request', req, res)
  })
}

/**
 * The common request's way in, around fastify's router: an origin-form target (`/…`) whose
 * path has no percent-encoding goes straight to `serve`, with the id fastify would have given
 * it (`requestIdOf`) and the URL its `rewriteUrl` would have left as it is. Everything else
 * (absolute-form and asterisk-form targets, a percent-encoded path the router must check, a
 * target longer than `maxTarget`, and every request once the server is closing, which fastify
 * answers 503) takes fastify's way, as before. What is saved per request: the router's lookup
 * and fastify's Request and Reply with the listeners they add (about 3 µs of ~75 µs of CPU per
 * request on the bench machine; docs/benchmarks.md "issue #24").
 */
export function fastLane(server: Server, serve: (req: IncomingMessage, res: ServerResponse, requestId: string) => void, closing: () => boolean, maxTarget: number): void {
  const routed = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[]
  if (routed.length !== 1) throw new Error(`the traffic server has ${routed.length} request listeners, expected fastify's one`)
  const viaFastify = routed[0] as (req: IncomingMessage, res: ServerResponse) => void
  server.removeAllListeners('request')
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (closing() || !plainOriginForm(req.url ?? '', maxTarget)) {
      viaFastify(req, res)
      return
    }
    serve(req, res, requestIdOf(req))
  })
}

/** `/…` with no `%` before the query (what fastify's router would decode and may refuse), and not too long. */
function plainOriginForm(url: string, maxTarget: number): boolean {
  if (url.charCodeAt(0) !== 47 /* '/' */ || url.length > maxTarget) return false
  const percent = url.indexOf('%')
  if (percent === -1) return true
  const query = url.indexOf('?')
  const hash = url.indexOf('#')
  const end = query === -1 ? hash : hash === -1 ? query : Math.min(query, hash)
  return end !== -1 && percent > end
}
