import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import { NO_TICKET, type Breakers, type BreakerTicket } from '../adapters/breakers.js'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import { dialUpgrade, type Dialled } from '../adapters/upgrade-dial.js'
import type { Upstream } from '../adapters/upstreams.js'
import type { LiveConfig } from '../config/live.js'
import type { Limits } from '../config/schema.js'
import { fallbackScope, isFallbackStatus, newAttemptBudget, whenEjected } from '../core/fallback.js'
import { declaresBody, responseHeaders, switchingProtocolsHead } from '../core/forward-headers.js'
import type { Backend } from '../core/types.js'
import { ficusError, reasonOf, toUpstreamError, type FicusError } from '../errors.js'
import type { Admit } from './admit.js'
import type { Decide } from './decide.js'
import { requestIdOf, responseOn, rewriteUrl, targetOf } from './edge.js'
import { Exchanges, type Exchange, type TunnelEnd } from './exchange.js'
import { sendError } from './respond.js'

/**
 * Upgrades (WebSocket, and any other `Connection: upgrade` protocol): Node hands the socket of
 * an Upgrade request to the server's `upgrade` event instead of the HTTP pipeline. Such a
 * request is admitted and decided like any other (edge target rules, admit, the same sticky
 * Decision: a user's WebSocket lands on the side of its HTTP requests), never shadowed, and
 * sent to the decided backend on a connection of its own (adapters/upgrade-dial.ts). When the
 * backend answers 101 its head is relayed and the two sockets are piped both ways, byte for
 * byte (frames are not parsed, so any protocol passes) with back-pressure: a side that does
 * not read pauses the other. When it answers anything else, that answer is relayed and the
 * connection closed. When new cannot be reached (or answers 502/503/504) legacy is tried, as
 * for any read: new gets fallback.newTimeout to answer, its breaker is asked first and told
 * how it went. An Upgrade request with a body is refused (501): Node hands it over with the
 * body unread, and no client that matters sends one (curl --http2 does, for h2c). Limits: `limits.upgradeIdleTimeout` (no byte either way) and
 * `limits.upgradeMaxLifetime`. Drain: tunnels run through the drain delay, and are ended
 * (FIN both ways) when the listener closes.
 * Cost on the request path: none (only Upgrade requests reach this module); per tunnelled
 * chunk, two counter increments.
 */

export interface UpgradeDeps {
  readonly exchanges: Exchanges
  readonly admit: Admit
  readonly decide: Decide
  readonly upstreams: ReadonlyMap<string, Upstream>
  readonly live: LiveConfig
  readonly limits: Limits
  readonly metrics: Metrics
  /** new's circuit breaker per route: an upgrade is admitted, and heard, like any request. */
  readonly breakers: Breakers
  readonly log: Logger
  /** Monotonic milliseconds. */
  readonly now: () => number
}

/** After a tunnel's first FIN (from a side, or Ficus's to both), how long the sides have to close before they are destroyed, in ms. */
const END_GRACE_MS = 5000

/** One open tunnel, as the drain sees it. */
interface Open {
  end(reason: TunnelEnd): void
  readonly closed: Promise<void>
}

export class Upgrades {
  private readonly open = new Set<Open>()
  private closing = false

  constructor (private readonly d: UpgradeDeps) {}

  /** Takes the server's Upgrade requests. */
  listen (server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.receive(req, socket, head))
  }

  /** Tunnels open now. */
  get size (): number {
    return this.open.size
  }

  /**
   * The listener is closing: no new upgrade is taken (503), and every open tunnel is ended
   * (FIN both ways); resolves when all are closed (a side that does not close within
   * END_GRACE_MS is destroyed).
   */
  async close (): Promise<void> {
    this.closing = true
    const all = [...this.open]
    for (const t of all) t.end('drain')
    await Promise.all(all.map((t) => t.closed))
  }

  private receive (req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy())
    const earlier = Exchanges.inProgress(socket)
    // Pipelined behind a request still being answered: its turn comes when that answer is sent.
    if (earlier !== null) earlier.res.once('finish', () => this.start(req, socket, head))
    else this.start(req, socket, head)
  }

  private start (req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (socket.destroyed) return
    req.url = rewriteUrl(req) // fastify's rewriteUrl does not see an upgrade: absolute-form targets as for any request
    // Anything answered on it but a 101 is the connection's last answer.
    const res = responseOn(req, socket)
    if (res === null) return
    const ex = this.d.exchanges.open(req, res, requestIdOf(req), targetOf(req))
    try {
      if (this.closing) {
        this.answer(ex, ficusError('FICUS_ERR_DRAINING'))
        return
      }
      if (declaresBody(req.headers)) {
        this.d.metrics.clientErrors.inc({ reason: 'upgrade_body' })
        this.answer(ex, ficusError('FICUS_ERR_UPGRADE_BODY'))
        return
      }
      if (!this.d.admit.admit(ex)) return
      if (!this.d.decide.decide(ex)) return
      this.first(ex, socket, head)
    } catch (err) {
      this.internal(ex, err)
    }
  }

  /** A bug of Ficus's: logged, answered with 500 when nothing was sent yet, the connection closed. */
  private internal (ex: Exchange, err: unknown): void {
    this.d.log.error({ err, reqId: ex.requestId }, 'internal error while proxying an upgrade')
    if (ex.res.headersSent) {
      ex.res.destroy()
      return
    }
    this.answer(ex, ficusError('FICUS_ERR_INTERNAL', { cause: err }))
  }

  /** The decided side, through new's breaker when it is new: ejected, the upgrade goes to legacy at once. */
  private first (ex: Exchange, socket: Socket, head: Buffer): void {
    if (ex.decision!.primary === 'legacy') {
      this.dial(ex, socket, head, 'legacy', NO_TICKET)
      return
    }
    const [admission, ticket] = this.d.breakers.admit(ex.rule!)
    if (admission !== 'ejected') this.dial(ex, socket, head, 'new', ticket)
    else if (whenEjected(fallbackScope('new', ex.method, false), ex.rule!.fallback.ejectedWrites) === 'legacy') this.fallBack(ex, socket, head, 'ejected')
    else {
      this.d.metrics.writesRefused.inc({ route: ex.rule!.name, reason: 'new_ejected' })
      const err = ficusError('FICUS_ERR_NEW_EJECTED')
      ex.fail(err)
      sendError(ex.res, err, ex.requestId, true, { 'retry-after': this.d.breakers.retryAfterSeconds(ex.rule!.name) })
    }
  }

  private answer (ex: Exchange, err: FicusError): void {
    ex.fail(err)
    sendError(ex.res, err, ex.requestId, true)
  }

  /** The Upgrade request to `side`'s backend, and what follows its answer; `ticket` hears how new did. */
  private dial (ex: Exchange, socket: Socket, head: Buffer, side: Backend, ticket: BreakerTicket): void {
    const { metrics } = this.d
    const route = ex.rule!.name
    const upstream = this.d.upstreams.get(ex.rule!.backends[side])
    if (upstream === undefined) {
      // A reload removed the upstream after the request was decided.
      this.answer(ex, ficusError('FICUS_ERR_UPSTREAM_CLOSING'))
      return
    }
    ex.trying(side)
    const headers = upstream.headersFor(ex.upstreamHeaders).concat('connection', 'upgrade', 'upgrade', String(ex.req.headers.upgrade))
    const canFallBack = fallbackScope(side, ex.method, false) === 'any'
    // new gets fallback.newTimeout to answer when legacy could still; legacy what is left of its own.
    const legacyUp = this.d.upstreams.get(ex.rule!.backends.legacy)
    const answerMs = side === 'new'
      ? (canFallBack && legacyUp !== undefined ? newAttemptBudget(upstream.config.timeoutMs, legacyUp.config.timeoutMs, ex.rule!.fallback.newTimeout) : upstream.config.timeoutMs)
      : Math.max(1, ex.fallback === null ? upstream.config.timeoutMs : upstream.config.timeoutMs - (this.d.now() - ex.start))
    const dial = dialUpgrade(upstream.config, ex.method, ex.target, headers, answerMs)
    ex.running(dial) // given up if the client leaves first
    dial.answer.then((a: Dialled) => {
      ex.running(null)
      if (socket.destroyed) {
        ticket.abandoned()
        if (a.kind === 'switched') a.socket.destroy()
        else a.response.destroy()
        return
      }
      // A fallback is counted once legacy answered (switched or not).
      if (side === 'legacy' && ex.fallback !== null) metrics.fallbacks.inc({ route, reason: ex.fallback })
      if (a.kind === 'answered') {
        const status = a.response.statusCode ?? 502
        if (side === 'new' && isFallbackStatus(status)) ticket.failed(`status_${status}`)
        else ticket.succeeded()
        if (canFallBack && isFallbackStatus(status)) {
          a.response.destroy()
          this.fallBack(ex, socket, head, `status_${status}`)
          return
        }
        metrics.upgrades.inc({ route, backend: side, outcome: 'declined' })
        this.relay(ex, a.response, side)
      } else {
        ticket.succeeded()
        metrics.upgrades.inc({ route, backend: side, outcome: 'switched' })
        this.tunnel(ex, socket, head, side, a)
      }
    }, (err: unknown) => {
      ex.running(null)
      if ((err as { code?: unknown }).code === 'ABORTED' || socket.destroyed) {
        ticket.abandoned()
        return
      }
      const e = toUpstreamError(err, false)
      ticket.failed(reasonOf(e.code))
      metrics.upstreamErrors.inc({ route, backend: side, reason: reasonOf(e.code) })
      if (canFallBack) {
        this.fallBack(ex, socket, head, reasonOf(e.code), e)
        return
      }
      metrics.upgrades.inc({ route, backend: side, outcome: 'failed' })
      this.answer(ex, e)
    }).catch((err: unknown) => {
      this.internal(ex, err)
      socket.destroy()
    })
  }

  private fallBack (ex: Exchange, socket: Socket, head: Buffer, reason: string, err?: FicusError): void {
    ex.fellBack(reason, err)
    this.dial(ex, socket, head, 'legacy', NO_TICKET)
  }

  /** The backend declined the upgrade (401, 426, a plain 200…): its answer, then the connection closes. */
  private relay (ex: Exchange, response: IncomingMessage, side: Backend): void {
    const headers: Record<string, string | string[]> = responseHeaders(response.headers)
    headers.connection = 'close'
    if (this.d.live.current.exposeBackend) headers['x-ficus-backend'] = side
    ex.res.writeHead(response.statusCode ?? 502, headers)
    response.on('error', () => ex.res.destroy())
    response.on('aborted', () => ex.res.destroy())
    // The client left, or the backend stalls its answer: neither holds the backend's connection.
    ex.res.once('close', () => response.destroy())
    response.setTimeout(this.d.upstreams.get(ex.rule!.backends[side])?.config.bodyTimeoutMs ?? 30_000, () => response.destroy())
    response.pipe(ex.res)
  }

  /** The backend switched protocols: its 101 to the client, then bytes both ways until one side closes or a limit is reached. */
  private tunnel (ex: Exchange, socket: Socket, head: Buffer, side: Backend, a: Extract<Dialled, { kind: 'switched' }>): void {
    const { metrics, limits, now } = this.d
    const route = ex.rule!.name
    const up = a.socket
    const protocol = upgradeOf(a.rawHeaders) ?? String(ex.req.headers.upgrade)
    const extra = this.d.live.current.exposeBackend ? ['x-ficus-backend', side] : []
    socket.write(switchingProtocolsHead(a.rawHeaders, protocol, extra))
    ex.tunnelled(protocol, now() - ex.start)

    const gauge = metrics.upgradedConnections.labels({ route, backend: side })
    gauge.inc()
    const fromClient = metrics.upgradeBytes.series({ route, backend: side, direction: 'from_client' })
    const toClient = metrics.upgradeBytes.series({ route, backend: side, direction: 'to_client' })
    socket.on('data', (c: Buffer) => {
      ex.relayed(true, c.length)
      fromClient.inc(c.length)
    })
    up.on('data', (c: Buffer) => {
      ex.relayed(false, c.length)
      toClient.inc(c.length)
    })
    up.on('error', () => up.destroy())
    socket.on('error', () => ex.tunnelEnds('client'))
    up.on('error', () => ex.tunnelEnds('upstream'))

    let grace: NodeJS.Timeout | undefined
    /** Both sockets are destroyed END_GRACE_MS from now, if they have not closed by then. */
    const closing = (): void => {
      grace ??= setTimeout(() => {
        socket.destroy()
        up.destroy()
      }, END_GRACE_MS).unref()
    }
    // One side sent its FIN: pipe() passes it on (the other side may still finish what it
    // sends), and a peer that never closes its side cannot hold the tunnel open past the grace.
    socket.on('end', () => {
      ex.tunnelEnds('client')
      closing()
    })
    up.on('end', () => {
      ex.tunnelEnds('upstream')
      closing()
    })
    const end = (reason: TunnelEnd): void => {
      ex.tunnelEnds(reason)
      // A closed socket is not ended again (Node would make an error object for nothing).
      if (!socket.destroyed) socket.end()
      if (!up.destroyed) up.end()
      closing()
    }
    // One side gone: the other is ended (what is in flight to it is still written), and destroyed if it lingers.
    socket.once('close', () => end('client'))
    up.once('close', () => end('upstream'))
    if (limits.upgradeIdleTimeoutMs > 0) {
      // Reads and writes of the client's socket both count: no byte either way for this long.
      socket.setTimeout(limits.upgradeIdleTimeoutMs, () => end('idle'))
    }
    const lifetime = limits.upgradeMaxLifetimeMs > 0 ? setTimeout(() => end('max_lifetime'), limits.upgradeMaxLifetimeMs).unref() : undefined

    let closedSides = 0
    let done: () => void = () => {}
    const t: Open = { end, closed: new Promise<void>((resolve) => { done = resolve }) }
    const closed = (): void => {
      if (++closedSides < 2) return
      clearTimeout(grace)
      clearTimeout(lifetime)
      this.open.delete(t)
      gauge.dec()
      metrics.upgradesClosed.inc({ route, backend: side, reason: ex.tunnel?.end ?? 'client' })
      done()
    }
    socket.once('close', closed)
    up.once('close', closed)
    this.open.add(t)

    if (a.head.length > 0) {
      ex.relayed(false, a.head.length)
      toClient.inc(a.head.length)
      socket.write(a.head)
    }
    if (head.length > 0) {
      ex.relayed(true, head.length)
      fromClient.inc(head.length)
      up.write(head)
    }
    // pipe() pauses the reading side while the other's buffer is full, and resumes it on 'drain'.
    socket.pipe(up)
    up.pipe(socket)
    if (this.closing) end('drain')
  }
}

/** The `Upgrade` value of the backend's 101, as it sent it. */
function upgradeOf(raw: readonly string[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === 'upgrade') return raw[i + 1]
  return undefined
}

