import type { OutgoingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'
import { AbortableHandler } from '../../adapters/undici.js'
import type { LiveConfig } from '../../config/live.js'
import type { UpstreamSlots, Waiter } from '../../adapters/upstreams.js'
import { isFallbackStatus, type FallbackScope } from '../../core/fallback.js'
import { responseHeaders } from '../../core/forward-headers.js'
import type { Backend } from '../../core/types.js'
import { ficusError, reasonOf, toUpstreamError, type FicusError } from '../../errors.js'
import { ClientGone, type Abortable, type Exchange, type UpstreamHeaders } from '../exchange.js'
import { sendError } from '../respond.js'
import type { BodyGuard } from './body-guard.js'

/**
 * A failure answer from new up to this size is read to its end before legacy is asked, so
 * the connection to new is kept; a larger or unsized one is cut (bytes).
 */
const DISCARD_MAX_BYTES = 64 * 1024

/** What an attempt needs from the forward stage around it: settings, and what to do when it cannot answer itself. */
export interface AttemptContext {
  /** limits.sendTimeout: longest wait for a client that stopped reading, in ms. */
  readonly sendTimeoutMs: number
  /** exposeBackend (`x-ficus-backend` on responses) is read from here: a reload may change it. */
  readonly live: LiveConfig
  /** True once Ficus is stopping: answers then close their connection. */
  readonly draining: () => boolean
  /** The attempt failed on the upstream (counted in ficus_upstream_errors_total). */
  upstreamFailed(ex: Exchange, reason: string): void
  /**
   * new failed before answering and legacy may answer: `reason` is the failure, `err` it as
   * an error when there is one, `body` the request body (intact: nothing of it was sent).
   */
  fallBack(ex: Exchange, reason: string, err: FicusError | undefined, body: BodyGuard | null): void
  /** The client sent too much or too slowly, or stopped reading: answer if still possible, and close. */
  clientFault(ex: Exchange, body: BodyGuard | null, err: FicusError): void
}

/**
 * Hears how an attempt ended, exactly once: the upstream answered (`succeeded`; for new, an
 * answer other than 502/503/504), failed (`reason` as in ficus_upstream_errors_total, or
 * status_5xx), or neither (the client left first, or the client's own fault).
 * new's circuit breaker listens to its attempts; a fallback is counted when legacy answered.
 */
export interface AttemptObserver {
  succeeded(): void
  failed(reason: string): void
  abandoned(): void
}

/** What an attempt is sent with. */
export interface AttemptOptions {
  /** Which failures legacy may answer for (core/fallback.ts). */
  readonly scope: FallbackScope
  readonly observer: AttemptObserver
  /** Overrides the upstream's response-head timeout (ms): a fallback gets what is left of legacy's. */
  readonly headersTimeout?: number | undefined
  /** new's whole budget to a response head, connecting included (ms): past it, legacy answers (scope `any` only). */
  readonly budgetMs?: number | undefined
}

/** Attempts cut short by Ficus itself. */
class FallbackOnStatus extends Error {
  override name = 'FallbackOnStatus'
  constructor (readonly status: number) { super(`upstream answered ${status}`) }
}
class OverBudget extends Error {
  override name = 'OverBudget'
  constructor () { super('new did not answer within fallback.newTimeout') }
}
class SendTimeout extends Error {
  override name = 'SendTimeout'
  constructor () { super('the client did not read the response in time') }
}
/** A dual write's answer could not be recorded: the client gets `error` instead. */
class Unrecorded extends Error {
  override name = 'Unrecorded'
  constructor (readonly error: FicusError) { super(error.message) }
}

/** A dual write's answer, held until the write is recorded (Exchange.hold). */
interface Held {
  readonly mode: 'head' | 'body'
  readonly status: number
  readonly headers: UpstreamHeaders
  readonly chunks: Buffer[]
  size: number
  committing: boolean
  /** The upstream's answer is complete (its trailers, when it had some). */
  ended: boolean
  trailers: UpstreamHeaders
  /** The attempt ended otherwise (failed, the client left): nothing is to be written. */
  dropped: boolean
}

/**
 * One exchange with one upstream: waits for a slot, runs on undici's dispatch handler
 * interface, streams the answer to the client, and ends exactly once (`finish`), giving its
 * slot back. When new fails and legacy may answer (its FallbackScope: before the response
 * started, or before anything was sent), it hands over to the context's `fallBack`; any other
 * failure is answered from the catalogue (a 502/503/504, or an aborted connection once the
 * response started). Its observer hears how it ended (new's breaker; a fallback's count).
 */
export class Attempt extends AbortableHandler implements Waiter, Abortable {
  private state: 'idle' | 'queued' | 'running' | 'over' = 'idle'
  /** The response head has been written to the client. */
  private streaming = false
  /** The upstream's response head, checked and waiting to be written (sendHead). */
  private head: { statusCode: number; headers: OutgoingHttpHeaders } | null = null
  /** new's failure answer is being read to its end (the connection stays usable). */
  private discarding = 0
  /** Running while the client does not read (between a full write and its drain): past sendTimeout, abort. */
  private stall: NodeJS.Timeout | null = null
  /** new's budget to a response head (AttemptOptions.budgetMs), until the head arrives. */
  private budget: NodeJS.Timeout | null = null
  /** The observer has been told how the attempt ended. */
  private settled = false
  /** The client left (abort with ClientGone) while undici had not started the request. */
  private clientGone = false
  /** A dual write's 2xx answer, held until the write is recorded; null otherwise. */
  private held: Held | null = null
  private readonly scope: FallbackScope

  constructor (
    private readonly ctx: AttemptContext,
    private readonly ex: Exchange,
    private readonly upstream: UpstreamSlots,
    private readonly body: BodyGuard | null,
    private readonly o: AttemptOptions
  ) {
    super()
    this.scope = o.scope
  }

  begin (): void {
    if (this.o.budgetMs !== undefined) this.budget = setTimeout(() => { this.overBudget() }, this.o.budgetMs)
    switch (this.upstream.admit(this)) {
      case 'now':
        this.start()
        return
      case 'queued':
        this.state = 'queued'
        this.ex.running(this)
        return
      case 'full':
        this.state = 'over'
        this.clearBudget()
        this.failed(ficusError('FICUS_ERR_UPSTREAM_SATURATED'), this.scope !== 'none') // nothing was sent
    }
  }

  /**
   * new used up its budget before a response head: legacy answers now. A request undici has
   * not started yet (still connecting) is marked over here, and aborted when it starts.
   */
  private overBudget (): void {
    this.budget = null
    if (this.state === 'queued') {
      // Still in Ficus's own queue: nothing reached new, and its slowness is not new's failure.
      this.upstream.cancel(this)
      this.state = 'over'
      this.ex.running(null)
      this.ctx.upstreamFailed(this.ex, 'timeout')
      this.settle('abandoned')
      this.ctx.fallBack(this.ex, 'timeout', ficusError('FICUS_ERR_UPSTREAM_TIMEOUT'), this.body)
    } else if (this.state === 'running') {
      this.abortRequest(new OverBudget()) // still connecting: applied if the connection opens after all
      if (this.started || !this.finish()) return // started: onResponseError falls back
      if (this.clientGone) {
        this.settle('abandoned') // the client left while new was connecting: nobody to answer
        this.body?.detach()
        return
      }
      this.failed(ficusError('FICUS_ERR_UPSTREAM_TIMEOUT'), true)
    }
  }

  private clearBudget (): void {
    if (this.budget !== null) clearTimeout(this.budget)
    this.budget = null
  }

  /** Tells the observer how the attempt ended, once. */
  private settle (verdict: 'succeeded' | 'abandoned'): void
  private settle (verdict: 'failed', reason: string): void
  private settle (verdict: 'succeeded' | 'failed' | 'abandoned', reason?: string): void {
    if (this.settled) return
    this.settled = true
    if (verdict === 'failed') this.o.observer.failed(reason as string)
    else this.o.observer[verdict]()
  }

  /** Whether legacy may answer for a failure now: before the response started (scope any), or before anything was sent (scope unsent). */
  private mayFallBack (): boolean {
    return this.scope === 'any' ? !this.streaming : this.scope === 'unsent' && !this.started
  }

  /** The attempt holds a slot: dispatch (Waiter.start, or straight from begin). */
  start (): void {
    this.state = 'running'
    this.ex.running(this)
    this.upstream.dispatch({
      // A dual route's ids, translated for this side (sync stage); the client's target otherwise.
      path: this.ex.targetOn(this.ex.backend as Backend) ?? this.ex.target,
      method: this.ex.method,
      headers: this.upstream.headersFor(this.ex.upstreamHeaders),
      body: this.body,
      headersTimeout: this.o.headersTimeout
    }, this)
  }

  abort (err: Error): void {
    if (this.state === 'queued') {
      // Nothing was sent: leave the queue without touching the Pool.
      this.upstream.cancel(this)
      this.state = 'over'
      this.clearBudget()
      this.settle('abandoned')
      this.ex.running(null)
      this.body?.detach()
    } else if (this.state === 'running') {
      if (!this.started) this.clientGone = true
      this.abortRequest(err)
    }
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: UpstreamHeaders): void {
    if (statusCode < 200) return // interim responses are not relayed
    this.clearBudget()
    const newFailed = this.ex.backend === 'new' && isFallbackStatus(statusCode)
    if (newFailed) this.settle('failed', `status_${statusCode}`)
    else this.settle('succeeded')
    if (newFailed && this.scope === 'any') {
      const length = Number(headers['content-length'] ?? NaN)
      if (this.ex.method === 'HEAD' || length <= DISCARD_MAX_BYTES) this.discarding = statusCode
      else controller.abort(new FallbackOnStatus(statusCode))
      return
    }
    const out = responseHeaders(headers)
    if (this.ctx.live.current.exposeBackend) out['x-ficus-backend'] = this.ex.backend as string
    // The upstream answered before the whole request body arrived: the rest will not be
    // read, so this connection cannot carry another request.
    if ((this.body !== null && !this.ex.req.complete) || this.ctx.draining()) out.connection = 'close'
    // The head goes out with the first body bytes (as Node would send it anyway), so a
    // body broken from its first bytes (bad chunk size) still gets a clean 502.
    this.head = { statusCode, headers: out }
    this.ex.tap?.head(statusCode, headers)
    const mode = this.ex.hold?.head(this.ex.backend as Backend, statusCode, headers) ?? null
    if (mode !== null) {
      this.held = { mode, status: statusCode, headers, chunks: [], size: 0, committing: false, ended: false, trailers: {}, dropped: false }
      if (mode === 'head') this.commitHeld(controller, null)
    }
  }

  /**
   * Records a held dual write (its body when it was held whole), then lets its answer go to
   * the client; the upstream is not read meanwhile. When it cannot be recorded the client
   * gets that error instead (the write was applied on the primary, and Ficus says so).
   */
  private commitHeld (controller: Dispatcher.DispatchController | null, body: Buffer | null): void {
    const h = this.held as Held
    h.committing = true
    controller?.pause()
    void this.ex.hold!.commit(this.ex.backend as Backend, h.status, h.headers, body).then((err) => {
      if (h.dropped) return
      this.held = null
      if (this.ex.res.destroyed) {
        // The client left while the write was recorded: nobody to answer; stop reading the upstream.
        if (!h.ended) controller?.abort(new ClientGone())
        return
      }
      if (err !== null) {
        if (h.ended) this.unrecorded(err)
        else controller?.abort(new Unrecorded(err))
        return
      }
      const invalid = this.sendHead()
      if (invalid !== null) {
        if (h.ended) this.failed(toUpstreamError(invalid, false), false)
        else controller?.abort(invalid)
        return
      }
      for (const chunk of h.chunks) {
        this.ex.res.write(chunk)
        this.ex.tap?.data(chunk)
      }
      if (h.ended) this.end(h.trailers)
      else controller?.resume()
    }).catch(() => {
      // A bug of Ficus's while releasing the answer: never an unhandled rejection; the client connection is cut.
      this.ex.res.destroy()
    })
  }

  /** A dual write the primary took but Ficus could not record: the client is told so, never a plain success. */
  private unrecorded (err: FicusError): void {
    this.ex.fail(err)
    sendError(this.ex.res, err, this.ex.requestId, this.body !== null && !this.ex.req.complete)
    this.body?.detach()
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
      this.ex.res.writeHead(head.statusCode, head.headers)
    } catch (err) {
      return Object.assign(new Error('invalid response header from upstream'), { code: 'HPE_INVALID_HEADER_TOKEN', cause: err })
    }
    this.streaming = true
    return null
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding !== 0) return
    const h = this.held
    if (h !== null) {
      h.chunks.push(chunk)
      h.size += chunk.length
      // Larger than a body worth holding: recorded without it (a create's id is then not learned from it).
      if (!h.committing && h.size > this.ex.hold!.maxBytes) this.commitHeld(controller, null)
      return
    }
    const invalid = this.sendHead() // sent with this chunk
    if (invalid !== null) {
      controller.abort(invalid)
      return
    }
    const { res } = this.ex
    const written = res.write(chunk)
    this.ex.tap?.data(chunk)
    if (written || this.stall !== null) return // (a chunk undici had in hand after pause(): the wait is on)
    // The client is slower than the upstream: wait for it, but not forever, since a
    // reader that stopped would hold this upstream connection.
    controller.pause()
    this.stall = setTimeout(() => { controller.abort(new SendTimeout()) }, this.ctx.sendTimeoutMs)
    res.once('drain', () => {
      if (this.stall !== null) clearTimeout(this.stall)
      this.stall = null
      controller.resume()
    })
  }

  onResponseEnd (_controller: Dispatcher.DispatchController, trailers: UpstreamHeaders): void {
    if (!this.finish()) return
    const { ex } = this
    if (this.discarding !== 0) {
      this.ctx.fallBack(ex, `status_${this.discarding}`, undefined, null)
      return
    }
    const h = this.held
    if (h !== null) {
      h.ended = true
      h.trailers = trailers
      if (!h.committing) this.commitHeld(null, Buffer.concat(h.chunks))
      return
    }
    const invalid = this.sendHead()
    if (invalid !== null) {
      this.failed(toUpstreamError(invalid, false), this.scope === 'any')
      return
    }
    this.end(trailers)
  }

  /** The whole answer was written: end the client's response. */
  private end (trailers: UpstreamHeaders): void {
    const { ex } = this
    if (ex.res.chunkedEncoding && Object.keys(trailers).length > 0) ex.res.addTrailers(trailers)
    ex.res.end()
    ex.tap?.end()
    if (this.body !== null && !ex.req.complete) this.body.detach()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.finish()) return
    const { ex, body } = this
    const { req, res } = ex
    const h = this.held
    if (h !== null) {
      // The primary answered 2xx: the write was applied, whatever happens to its answer now.
      h.dropped = true
      this.held = null
      if (!h.committing) void ex.hold!.commit(ex.backend as Backend, h.status, h.headers, null)
    } else if (this.started && !(err instanceof Unrecorded)) {
      ex.hold?.unknown(ex.backend as Backend, err.name === 'ClientGone' ? 'client_aborted' : reasonOf(toUpstreamError(err, this.streaming).code))
    }
    if (err instanceof Unrecorded) {
      this.settle('abandoned')
      this.unrecorded(err.error)
    } else if (err instanceof ClientGone || (res.destroyed && !res.writableFinished)) {
      this.settle('abandoned')
      ex.clientAborted() // unless the edge already said why (408)
      body?.detach()
    } else if (err instanceof FallbackOnStatus) {
      this.ctx.fallBack(ex, `status_${err.status}`, undefined, null)
    } else if (err instanceof OverBudget) {
      this.failed(ficusError('FICUS_ERR_UPSTREAM_TIMEOUT', { cause: err }), this.mayFallBack())
    } else if (err instanceof SendTimeout) {
      this.settle('abandoned')
      this.ctx.clientFault(ex, body, ficusError('FICUS_ERR_SEND_TIMEOUT'))
    } else if (body?.failure != null) {
      this.settle('abandoned')
      this.ctx.clientFault(ex, body, body.failure) // 413 or 408: the body went over the limit or stalled
    } else if (req.destroyed && !req.complete) {
      this.settle('abandoned')
      ex.clientAborted() // the client broke off its own upload
      res.destroy()
    } else {
      this.failed(toUpstreamError(err, this.streaming), this.mayFallBack())
    }
  }

  /** Marks the attempt over exactly once, giving its slot back; false when it already was. */
  private finish (): boolean {
    if (this.state === 'over') return false
    this.state = 'over'
    this.upstream.release()
    this.ex.running(null)
    if (this.stall !== null) clearTimeout(this.stall)
    this.clearBudget()
    return true
  }

  /** Counts an upstream failure; legacy answers when it may, else the client gets the error. */
  private failed (err: FicusError, canFallBack: boolean): void {
    const { ex } = this
    const reason = reasonOf(err.code)
    this.ctx.upstreamFailed(ex, reason)
    // Ficus's own queue being full says nothing of new's health.
    if (reason === 'saturated') this.settle('abandoned')
    else this.settle('failed', reason)
    if (canFallBack) {
      this.ctx.fallBack(ex, reason, err, this.body) // the error is kept for the log line
      return
    }
    ex.fail(err)
    // A request body that was not read to its end closes the connection.
    sendError(ex.res, err, ex.requestId, this.body !== null && !ex.req.complete)
    this.body?.detach()
  }
}
