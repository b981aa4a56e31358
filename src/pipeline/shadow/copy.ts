import type { Dispatcher } from 'undici'
import { AbortableHandler } from '../../adapters/undici.js'
import { SAFE_METHODS } from '../../core/decide.js'
import type { Backend } from '../../core/types.js'
import { CATALOGUE, toUpstreamError } from '../../errors.js'
import type { Captured, Exchange, ResponseTap, UpstreamHeaders } from '../exchange.js'
import type { ExchangeCounter } from '../../adapters/metrics-registry.js'
import type { UpstreamSlots } from '../../adapters/upstreams.js'
import type { ShadowLimits, UpstreamConfig } from '../../config/schema.js'
import type { TimedAnswer, Verdicts } from './verdict.js'

/** What a copy needs from the shadow stage (shadowing.ts): its bounds, pools, clock, and where verdicts go. */
export interface CopyContext {
  /** shadow: in routes.yaml; a copy keeps the bounds it started with (a reload changes later ones). */
  readonly limits: ShadowLimits
  readonly upstreams: ReadonlyMap<string, UpstreamSlots>
  readonly verdicts: Verdicts
  /** ficus_requests_total and ficus_request_duration_seconds, role=shadow. */
  readonly count: ExchangeCounter
  /** Monotonic milliseconds. */
  readonly now: () => number
  /** The pool copies to `upstream` go through (never the primary's). */
  poolFor(upstream: UpstreamConfig): Dispatcher
  /** The copy is over: its slot is given back. */
  released(): void
}

class ShadowTooLarge extends Error {
  override name = 'ShadowTooLarge'
  constructor () { super('the shadow response is larger than shadow.maxBodySize') }
}
class Abandoned extends Error {
  override name = 'Abandoned'
  constructor () { super('the comparison was abandoned') }
}

/** One side's answer as it arrives: kept by reference, up to the byte bound. */
class Answer implements TimedAnswer {
  status = 0
  headers: UpstreamHeaders = {}
  /** The body's chunks; null past maxBodySize (status and headers are still compared). */
  chunks: Buffer[] | null = []
  size = 0
  done = false
  ms: number | null = null

  keep (chunk: Buffer, max: number): void {
    if (this.chunks === null) return
    this.size += chunk.length
    if (this.size > max) this.chunks = null
    else this.chunks.push(chunk)
  }
}

/**
 * One shadowed request: the copy sent to the side that did not answer (an undici dispatch
 * handler) and the tap on the answer the client gets. It ends exactly once (`over`):
 * compared, skipped or failed, and gives its slot back.
 */
export class ShadowCopy extends AbortableHandler implements ResponseTap {
  /** What the client got, from `answeredBy`. */
  private readonly answered = new Answer()
  /** What the copy got, from `copiedTo`. */
  private readonly copy = new Answer()
  private readonly answeredBy: Backend
  private readonly copiedTo: Backend
  private readonly isRead: boolean
  private readonly began: number
  /** The route's divergence epoch when the copy began: a comparison that ends in a later one is not counted in it. */
  private readonly epoch: number
  /** The request body to send: undefined until known. */
  private body: Buffer | null | undefined = undefined
  private sent = 0
  private copyEnded = false
  private over = false
  private released = false
  private timer: NodeJS.Timeout | null = null
  private readonly limits: ShadowLimits

  constructor (private readonly s: CopyContext, private readonly ex: Exchange) {
    super()
    this.limits = s.limits
    this.answeredBy = ex.decision!.primary
    this.copiedTo = this.answeredBy === 'legacy' ? 'new' : 'legacy'
    this.isRead = SAFE_METHODS.has(ex.method)
    this.began = s.now()
    this.epoch = s.verdicts.epochOf(ex.rule!.name)
  }

  /* ---------- the request body (BodyCapture.capture) ---------- */

  requestBody (b: Captured | null): void {
    this.guard(() => {
      if (b === 'too_large') this.stop('skipped', 'body_too_large', 'body_too_large')
      else if (b === 'failed') this.stop('skipped', 'request_body_incomplete')
      else {
        this.body = b
        this.maybeSend()
      }
    })
  }

  /* ---------- ResponseTap: the answer the client gets ---------- */

  head (status: number, headers: UpstreamHeaders): void {
    this.guard(() => {
      if (this.ex.backend !== this.answeredBy) {
        // new failed and legacy answered: there is no answer from new to compare.
        this.stop('skipped', 'fallback')
        return
      }
      this.answered.status = status
      this.answered.headers = headers
      if (!this.isRead && !this.answeredOk()) {
        // A write the primary refused is not repeated on the other side.
        this.stop('skipped', 'write_not_2xx')
        return
      }
      this.maybeSend()
    })
  }

  data (chunk: Buffer): void {
    if (this.over || this.answered.done) return
    // Called for every chunk of the primary: guarded inline, without a closure per chunk.
    try {
      this.answered.keep(chunk, this.limits.maxBodyBytes)
      // Past the bound the body is not kept; status and headers are still compared.
      if (this.answered.chunks === null) this.end()
    } catch (err) {
      this.crashed(err)
    }
  }

  end (): void {
    this.guard(() => {
      if (this.answered.done) return
      this.answered.done = true
      this.answered.ms = this.s.now() - this.began
      this.maybeCompare()
    })
  }

  abandon (reason: string): void {
    this.guard(() => {
      if (!this.answered.done) this.stop('skipped', reason)
    })
  }

  /** Ends without a comparison. */
  private stop (outcome: 'skipped' | 'error', reason: string, dropped?: string): void {
    if (this.over) return
    this.finish()
    this.answered.chunks = [] // the primary may stream on for a while: keep nothing
    this.copy.chunks = []
    this.s.verdicts.unfinished(this.ex.rule!.name, outcome, reason, dropped)
    this.release()
  }

  /** The primary answered 2xx (a write is copied only then). */
  private answeredOk (): boolean {
    return this.answered.status >= 200 && this.answered.status < 300
  }

  /* ---------- the copy ---------- */

  private maybeSend (): void {
    if (this.over || this.sent !== 0 || this.body === undefined) return
    if (!this.isRead && !this.answeredOk()) return
    const { ex } = this
    const upstream = this.s.upstreams.get(ex.rule!.backends[this.copiedTo])
    if (upstream === undefined) {
      this.stop('skipped', 'reloaded') // a reload removed the upstream meanwhile
      return
    }
    const headers = [...upstream.headersFor(ex.upstreamHeaders), 'x-ficus-shadow', '1']
    this.sent = this.s.now()
    this.timer = setTimeout(() => this.deadline(), this.limits.timeoutMs)
    this.timer.unref()
    this.s.poolFor(upstream.config).dispatch({ path: ex.targetOn(this.copiedTo) ?? ex.target, method: ex.method, headers, body: this.body }, this)
  }

  /**
   * shadow.timeout after the copy was sent: the comparison waits no longer for either
   * answer, so a slot is never held by a slow copy nor by a long primary stream.
   */
  private deadline (): void {
    this.guard(() => {
      this.timer = null
      if (this.over) return
      if (!this.copyEnded) {
        this.copyOver(CATALOGUE.FICUS_ERR_UPSTREAM_TIMEOUT.status)
        // new still had not answered after shadow.timeout where legacy had: a pair where new was slower, whatever its answer.
        if (this.copiedTo === 'new' && this.answered.done && this.answered.ms !== null) this.s.verdicts.newTimedOut(this.ex.rule!, this.answered.ms, this.limits.timeoutMs)
        this.stop('error', 'timeout', 'timeout')
      } else {
        this.stop('skipped', 'primary_too_slow', 'timeout')
      }
    })
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: UpstreamHeaders): void {
    if (statusCode < 200) return
    this.copy.status = statusCode
    this.copy.headers = headers
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.copy.keep(chunk, this.limits.maxBodyBytes)
    if (this.copy.chunks === null) controller.abort(new ShadowTooLarge())
  }

  onResponseEnd (): void {
    this.copyEnded = true
    this.guard(() => {
      this.copyOver(this.copy.status)
      this.copy.done = true
      this.maybeCompare()
    })
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.copyEnded = true
    this.guard(() => {
      if (err instanceof Abandoned) return
      if (err instanceof ShadowTooLarge) {
        // Status and headers are still compared.
        this.copyOver(this.copy.status)
        this.copy.done = true
        this.maybeCompare()
        return
      }
      const code = (err as { code?: unknown }).code
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
        this.copyOver(CATALOGUE.FICUS_ERR_UPSTREAM_TIMEOUT.status)
        this.stop('error', 'timeout', 'timeout')
        return
      }
      const e = toUpstreamError(err, this.copy.status !== 0)
      this.copyOver(e.statusCode)
      this.stop('error', CATALOGUE[e.code].reason)
    })
  }

  /** Counts the copy as a shadow exchange with `copiedTo` (a failure counts as the status the client would have got). */
  private copyOver (status: number): void {
    const ms = this.s.now() - this.sent
    this.copy.ms = ms
    this.s.count(this.ex.rule!.name, this.copiedTo, status, ms / 1000)
  }

  /* ---------- the comparison ---------- */

  private maybeCompare (): void {
    if (this.over || !this.answered.done || !this.copy.done) return
    this.finish()
    const [legacy, fromNew] = this.answeredBy === 'legacy' ? [this.answered, this.copy] : [this.copy, this.answered]
    // Not now: called from the primary's end, the comparison would run before the response's
    // 'finish', inside the primary's measured time (access log `ms`, ficus_request_duration_seconds).
    setImmediate(() => {
      try {
        this.s.verdicts.judge(this.ex, this.epoch, this.answeredBy, legacy, fromNew, this.limits, () => this.release())
      } catch (err) {
        this.s.verdicts.failed(this.ex, err, false, () => this.release())
      }
    })
  }

  /* ---------- ending ---------- */

  /** Marks the exchange over (once): no more input is taken, the copy is cut if still running. */
  private finish (): void {
    this.over = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.sent !== 0 && !this.copyEnded) this.abortRequest(new Abandoned())
  }

  private release (): void {
    if (this.released) return
    this.released = true
    this.s.released()
  }

  /** Runs `fn`; whatever it throws is an `error` comparison, never the client's problem. */
  private guard (fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.crashed(err)
    }
  }

  /** An `error` comparison, logged and counted once; the slot is given back even if logging or counting fails too. Never throws. */
  private crashed (err: unknown): void {
    try {
      if (!this.over) this.finish()
    } catch {
      // The copy could not be cut (it ends at its own timeout): the comparison is over anyway.
      this.over = true
    }
    this.s.verdicts.failed(this.ex, err, this.released, () => this.release())
  }
}
