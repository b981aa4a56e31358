import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { unmapIPv4 } from '../core/forward-headers.js'
import type { Backend, Decision, RouteRule } from '../core/types.js'
import { reasonOf, type FicusError, type Reason } from '../errors.js'

/**
 * What happened to one client request: its one outcome, read when the response is over
 * (metrics, access log), like Envoy's response flags.
 */
export type Outcome =
  | 'ok'
  /** new failed before answering; legacy answered. */
  | 'fallback'
  /** The client closed the connection before the response was complete. */
  | 'client_aborted'
  /** A catalogue error's reason (refused, timeout, body_too_large, …). */
  | Reason

/** Why an upgraded connection's tunnel ended: one side closed it, or Ficus did (a limit, a drain), or a socket failed. */
export type TunnelEnd = 'client' | 'upstream' | 'idle' | 'max_lifetime' | 'drain' | 'error'

/** An upgraded connection (WebSocket, …) relayed byte for byte (pipeline/upgrade.ts). */
export interface Tunnel {
  /** The protocol switched to, as the backend's `Upgrade` named it (`websocket`). */
  readonly protocol: string
  /** Milliseconds from the request's arrival to the 101. */
  readonly handshakeMs: number
  /** Bytes relayed from the client to the backend, and back, after the 101. */
  readonly fromClient: number
  readonly toClient: number
  /** Why it ended; null while it is open. */
  readonly end: TunnelEnd | null
}

/** Response headers as undici hands them over (lower-case names). */
export type UpstreamHeaders = Record<string, string | string[] | undefined>

/**
 * Watches the response the client gets as it streams (the shadow stage's copy compares with
 * it). Every method returns at once and never throws: the client's response does not wait
 * for, or depend on, a tap.
 */
export interface ResponseTap {
  head(status: number, headers: UpstreamHeaders): void
  /** A body chunk, after it was written to the client. */
  data(chunk: Buffer): void
  /** The response is complete. */
  end(): void
  /** The response will not be complete (failed, client gone): `reason` says why. */
  abandon(reason: string): void
}

/** The request body as another stage kept it: the bytes, or why they could not be kept. */
export type Captured = Buffer | 'too_large' | 'failed'

/** The request body on its way upstream (forward/body-guard.ts), as another stage may keep a copy of it. */
export interface BodyCapture {
  /** Keeps up to `max` bytes; `done` is called once, with the whole body or why it was not kept. */
  capture(max: number, done: (body: Captured) => void): void
}

/**
 * Holds the answer to a dual write (pipeline/sync/outbox.ts) until the write is recorded
 * for the other side: the forward stage asks it at the answer's head, buffers what it is
 * told to, and lets the answer go once `commit` resolved. Its methods never throw.
 */
export interface ResponseHold {
  /**
   * A final answer's head from `backend`: hold it until it is committed (`head`: at once;
   * `body`: once the whole body is in, up to `maxBytes`), or null to stream it as usual (the
   * write did not succeed: nothing to record).
   */
  head(backend: Backend, status: number, headers: UpstreamHeaders): 'head' | 'body' | null
  readonly maxBytes: number
  /**
   * Records the write; resolves with null when the answer may go to the client, or the
   * error to answer instead. `body` is the whole answer body, or null when it was not held
   * whole (mode `head`, or over `maxBytes`).
   */
  commit(backend: Backend, status: number, headers: UpstreamHeaders, body: Buffer | null): Promise<FicusError | null>
  /** The request reached `backend` but its answer will never be known (reset, timeout, the client left): `reason` says why. */
  unknown(backend: Backend, reason: string): void
}

/** An upstream request in progress (queued or running), which can be given up. */
export interface Abortable {
  abort(err: Error): void
}

/** Why an upstream request was aborted when its client went away first. */
export class ClientGone extends Error {
  override name = 'ClientGone'
  constructor () { super('client closed the connection') }
}

/**
 * One client request on its way through the pipeline: the request state has this one owner.
 * Stages read its fields and change it only through the methods below, each named for the
 * transition it records. It is opened in one place (`Exchanges.open`) and closed once, when
 * the response is over (`close`, by the record stage).
 */
export class Exchange {
  /** The route the request matched (the `default` pseudo-route when none did). */
  readonly rule: RouteRule | null = null
  /** The one decision of the request (decide stage); every later stage reads it. */
  readonly decision: Decision | null = null
  /** Headers for the upstream request, as a flat name/value list (admit stage). */
  readonly upstreamHeaders: string[] = []
  /** The client's address: the peer, or the first untrusted hop of X-Forwarded-For. */
  readonly clientIp: string = ''
  /** Request header names left out of the upstream request (limits.headerNames: drop), as sent. */
  readonly droppedHeaders: readonly string[] = []
  /** The side that answered, or was being tried when it failed. */
  readonly backend: Backend | null = null
  readonly outcome: Outcome = 'ok'
  /** The failure the log line reports (kept when legacy answered after new failed). */
  readonly error: FicusError | null = null
  /** Why new was abandoned for legacy, when it was. */
  readonly fallback: string | null = null
  /** A status Ficus wrote on the socket itself, outside the response object (a 408 from Node's request timeout). */
  readonly answered: number | null = null
  /** What watches the response as it streams (the shadow stage's copy), if anything. */
  readonly tap: ResponseTap | null = null
  /** The tunnel, once the backend switched protocols (an Upgrade); null for every other request. */
  readonly tunnel: Tunnel | null = null
  /**
   * Path and query per side when ids differ per side (a dual route's ids through the id map;
   * null for a side it could not be mapped to); null: `target` on both sides.
   */
  readonly targets: { readonly legacy: string | null; readonly new: string | null } | null = null
  /** Holds a dual write's answer until the write is recorded (the sync stage); null otherwise. */
  readonly hold: (ResponseHold & { closed(): void }) | null = null
  private upstream: Abortable | null = null

  constructor (
    readonly requestId: string,
    readonly method: string,
    /** Monotonic milliseconds when the request arrived. */
    readonly start: number,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** Path and query sent upstream (origin-form, byte-for-byte what the client sent); '' when it was not a path. */
    readonly target: string
  ) {}

  /** The fields above, writable: for the transitions below only (outside, they are read-only). */
  private get w (): Writable<Exchange> {
    return this
  }

  /* ---------- admit and decide ---------- */

  /** The request may go upstream, with these headers, for this client; `dropped`: header names left out of them. */
  admitted (upstreamHeaders: string[], clientIp: string, dropped: readonly string[] = []): void {
    this.w.upstreamHeaders = upstreamHeaders
    this.w.clientIp = clientIp
    if (dropped.length > 0) this.w.droppedHeaders = dropped
  }

  /**
   * Refused before forwarding (answered by the refusing stage; `onSocket`: the status the
   * edge writes on the socket itself, outside the response object).
   */
  refused (err: FicusError, onSocket?: number): void {
    // Refused before the forwarding headers were read: the peer's address is the client's.
    if (this.clientIp === '') this.w.clientIp = peerOf(this.req)
    if (onSocket !== undefined) this.w.answered = onSocket
    this.fail(err)
  }

  routed (rule: RouteRule, decision: Decision): void {
    this.w.rule = rule
    this.w.decision = decision
  }

  /* ---------- sync ---------- */

  /** The path and query each side gets (ids translated through the id map; null: cannot be mapped for that side). */
  translated (targets: { readonly legacy: string | null; readonly new: string | null }): void {
    this.w.targets = targets
  }

  /** The path and query `side` gets; null when the ids could not be mapped for it. */
  targetOn (side: Backend): string | null {
    return this.targets === null ? this.target : this.targets[side]
  }

  /** A dual write: its answer is held until the write is recorded. */
  holding (hold: ResponseHold & { closed(): void }): void {
    this.w.hold = hold
  }

  /* ---------- forward ---------- */

  /** An attempt on `backend` begins (the primary, or legacy after a fallback). */
  trying (backend: Backend): void {
    this.w.backend = backend
  }

  /** The upstream request in progress, or null once it is over: given up if the client leaves first. */
  running (upstream: Abortable | null): void {
    this.upstream = upstream
  }

  /** new failed and legacy answers instead; `err` is new's failure, kept for the log line. */
  fellBack (reason: string, err?: FicusError): void {
    this.w.fallback = reason
    this.w.outcome = 'fallback'
    if (err !== undefined) this.w.error = err
  }

  /** The request failed with a catalogue error (answered, or the connection aborted). */
  fail (err: FicusError): void {
    this.w.error = err
    this.w.outcome = reasonOf(err.code)
  }

  /** The client went away before its response was complete (unless a failure already says why). */
  clientAborted (): void {
    if (this.error === null) this.w.outcome = 'client_aborted'
  }

  /**
   * The HTTP edge answered on the socket itself (`answered`: the status it wrote, or null
   * when it could only close): the upstream request in progress is abandoned.
   */
  cutShort (err: FicusError, answered: number | null): void {
    if (answered !== null) this.w.answered = answered
    this.fail(err)
    this.upstream?.abort(new ClientGone())
  }

  /** The shadow stage watches the response (at most one tap); the forward stage feeds it. */
  watch (tap: ResponseTap): void {
    this.w.tap = tap
  }

  /* ---------- upgrade ---------- */

  /** The backend switched protocols and Ficus wrote its 101 on the socket: bytes now flow both ways. */
  tunnelled (protocol: string, handshakeMs: number): void {
    this.w.answered = 101
    this.w.tunnel = { protocol, handshakeMs, fromClient: 0, toClient: 0, end: null }
  }

  /** `n` bytes relayed through the tunnel, from the client or to it. */
  relayed (fromClient: boolean, n: number): void {
    const t = this.tunnel as Writable<Tunnel>
    if (fromClient) t.fromClient += n
    else t.toClient += n
  }

  /** The tunnel ends, for this reason (the first one given counts). */
  tunnelEnds (end: TunnelEnd): void {
    const t = this.tunnel as Writable<Tunnel>
    t.end ??= end
  }

  /* ---------- close ---------- */

  /**
   * The response is over (finished, or the connection closed): what is still running for it
   * is given up, and the final outcome settled. Returns the status the client got (499, as
   * nginx logs it, when it got none). Once per exchange.
   */
  close (): number {
    this.upstream?.abort(new ClientGone())
    this.hold?.closed()
    const finished = this.res.writableFinished
    if (this.tap !== null) {
      // A shadowed request whose response did not complete has nothing to compare.
      const failed = this.error !== null || (this.outcome !== 'ok' && this.outcome !== 'client_aborted')
      this.tap.abandon(failed ? 'primary_failed' : 'client_aborted')
    }
    // A tunnel's response is the 101 on the socket: it is never "finished", and its end is not an abort.
    if (!finished && this.tunnel === null && (this.outcome === 'ok' || this.outcome === 'fallback')) this.w.outcome = 'client_aborted'
    return this.answered ?? (this.res.headersSent ? this.res.statusCode : CLIENT_CLOSED)
  }
}

/** nginx's status for "the client closed the connection before the response": well known to SREs. */
const CLIENT_CLOSED = 499

function peerOf(req: IncomingMessage): string {
  return unmapIPv4(req.socket.remoteAddress ?? '')
}

type Writable<T> = { -readonly [K in keyof T]: T[K] }

const kOpen = Symbol('ficus.openExchanges')
type TrackedSocket = Socket & { [kOpen]?: Exchange[] }

/**
 * Opens exchanges: the one place an Exchange is made and attached. Each is tracked on its
 * connection until it is over (so the HTTP edge, which only sees a socket, finds the request
 * in progress on it), and `record` is called once, when its response is over: when the
 * response closes, or when the connection does (a pipelined response still queued behind
 * another gets no `close` of its own from Node).
 */
export class Exchanges {
  constructor (private readonly now: () => number, private readonly record: (ex: Exchange) => void) {}

  open (req: IncomingMessage, res: ServerResponse, requestId: string, target = req.url ?? ''): Exchange {
    const ex = new Exchange(requestId, req.method ?? '', this.now(), req, res, target)
    const socket = req.socket as TrackedSocket
    let open = socket[kOpen]
    if (open === undefined) {
      const list: Exchange[] = open = socket[kOpen] = []
      socket.once('close', () => { for (const left of list.splice(0)) this.record(left) })
    }
    const list = open
    list.push(ex)
    res.on('close', () => {
      const i = list.indexOf(ex)
      if (i === -1) return // recorded when its connection closed
      if (i === 0) list.shift() // the usual case: no array is made for what is removed
      else list.splice(i, 1)
      this.record(ex)
    })
    return ex
  }

  /**
   * The exchange whose response is in progress on `socket` (the oldest one not finished:
   * pipelined requests are answered in order), or null.
   */
  static inProgress (socket: Socket): Exchange | null {
    for (const ex of (socket as TrackedSocket)[kOpen] ?? []) if (!ex.res.writableFinished) return ex
    return null
  }

  /** The newest exchange on `socket` whose response has not closed yet (finished or not), or null. */
  static newest (socket: Socket): Exchange | null {
    return (socket as TrackedSocket)[kOpen]?.at(-1) ?? null
  }
}
