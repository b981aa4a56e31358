import { createHmac, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { Pool, type Dispatcher } from 'undici'
import type { DivergenceStore } from '../adapters/divergence-store.js'
import type { Logger } from '../adapters/logger.js'
import { exchangeCounter, type ExchangeCounter, type Metrics } from '../adapters/metrics-registry.js'
import type { Upstream, Upstreams } from '../adapters/upstreams.js'
import type { LiveConfig } from '../config/live.js'
import type { ShadowLimits } from '../config/schema.js'
import { compare, joined, type ComparedSide, type Comparison, type Difference } from '../core/compare.js'
import { SAFE_METHODS } from '../core/decide.js'
import { pathOf, queryOf } from '../core/normalize-path.js'
import { showDifference } from '../core/redact.js'
import { stickyKey } from '../core/sticky-key.js'
import type { Backend } from '../core/types.js'
import { CATALOGUE, toUpstreamError } from '../errors.js'
import type { Exchange } from '../exchange.js'
import type { BodyGuard, Captured } from './body-guard.js'

/** Response headers as undici hands them over (lower-case names). */
type Headers = Record<string, string | string[] | undefined>

/**
 * What the proxy reports of the primary exchange, as it happens. Every method returns at
 * once and never throws: the client's response does not wait for, or depend on, the shadow.
 */
export interface PrimaryTap {
  /** The primary's response head (from `ex.backend`: a fallback answers from the other side). */
  head(status: number, headers: Headers): void
  /** A body chunk, after it was written to the client. */
  data(chunk: Buffer): void
  /** The primary response is complete. */
  end(): void
  /** The primary response will not be complete (failed, client gone): nothing to compare. */
  abandon(reason: string): void
}

export interface ShadowOptions {
  readonly upstreams: Upstreams
  /** shadow: bounds are read from here, so a reload changes them (pools keep their size). */
  readonly live: LiveConfig
  readonly metrics: Metrics
  readonly store: DivergenceStore
  readonly log: Logger
  /** Monotonic milliseconds. */
  readonly now: () => number
}


class ShadowTooLarge extends Error {
  override name = 'ShadowTooLarge'
  constructor () { super('the shadow response is larger than shadow.maxBodySize') }
}
class Abandoned extends Error {
  override name = 'Abandoned'
  constructor () { super('the comparison was abandoned') }
}

/**
 * Shadow traffic (DESIGN.md "Request path" 5 and 6): a copy of the request goes to the
 * side that did not answer, on pools of its own, and the two answers are compared off the
 * client's path. Bounded everywhere: in-flight copies (`maxInFlight`, else dropped), time
 * (`timeout`), bytes kept per side (`maxBodySize`). Whatever fails in here is caught and
 * counted as an `error` comparison; it never reaches the client's response.
 */
export class Shadowing {
  /** Shadow exchanges holding a slot (from `begin` until their comparison is recorded). */
  inFlight = 0
  private idlers: (() => void)[] = []
  private readonly pools = new Map<string, Pool>()
  /** Key for hashing sticky keys in samples: per process, so a hash cannot be looked up elsewhere. */
  private readonly secret = randomBytes(32)

  /** ficus_requests_total and ficus_request_duration_seconds, role=shadow. */
  readonly count: ExchangeCounter

  constructor (readonly opts: ShadowOptions) {
    this.count = exchangeCounter(opts.metrics, 'shadow')
  }

  get limits (): ShadowLimits {
    return this.opts.live.current.shadow
  }

  /**
   * Starts shadowing a request whose decision says so. Returns the tap the proxy feeds, or
   * null when no copy will be made (dropped at the concurrency bound, or an upgrade).
   * `body` is the request body on its way to the primary (null without one).
   */
  begin (ex: Exchange, req: IncomingMessage, res: ServerResponse, body: BodyGuard | null): PrimaryTap | null {
    try {
      const rule = ex.rule!
      if (req.headers.upgrade !== undefined) return null
      if (res.headersSent) {
        // The primary was refused at once (saturated): no load is added to the other side.
        this.unfinished(rule.name, 'skipped', 'primary_failed')
        return null
      }
      if (this.inFlight >= this.limits.maxInFlight) {
        this.unfinished(rule.name, 'skipped', 'concurrency', 'concurrency')
        return null
      }
      this.inFlight++
      const sx = new ShadowExchange(this, ex, req)
      if (body !== null) body.capture(this.limits.maxBodyBytes, (b) => sx.requestBody(b))
      else sx.requestBody(null)
      return sx
    } catch (err) {
      // Never the client's problem (the primary is already on its way).
      this.opts.log.error({ err, reqId: ex.requestId }, 'shadow comparison failed')
      return null
    }
  }

  /** The pool copies to `upstream` go through: never the primary's, so shadows cannot take its connections. */
  poolFor (upstream: Upstream): Pool {
    let pool = this.pools.get(upstream.config.name)
    if (pool === undefined) {
      pool = new Pool(upstream.config.origin, {
        connections: this.limits.maxInFlight,
        pipelining: 1,
        connect: { timeout: Math.min(upstream.config.connectTimeoutMs, this.limits.timeoutMs) },
        // Ficus's own timer ends a copy at shadow.timeout; undici's coarser timers (they tick
        // every ~0.5 s) are only a backstop, set past it so the outcome is always `timeout`.
        headersTimeout: this.limits.timeoutMs + 1000,
        bodyTimeout: this.limits.timeoutMs + 1000,
        strictContentLength: true
      })
      this.pools.set(upstream.config.name, pool)
    }
    return pool
  }

  /** Resolves when no shadow exchange is in flight (every comparison so far is recorded). */
  async idle (): Promise<void> {
    if (this.inFlight === 0) return
    await new Promise<void>((resolve) => this.idlers.push(resolve))
  }

  /** A slot is given back (ShadowExchange.release). */
  released (): void {
    this.inFlight--
    if (this.inFlight === 0 && this.idlers.length > 0) {
      const waiting = this.idlers
      this.idlers = []
      for (const resolve of waiting) resolve()
    }
  }

  keyHash (key: string | undefined): string | null {
    return key === undefined ? null : createHmac('sha256', this.secret).update(key).digest('hex').slice(0, 12)
  }

  /**
   * A shadowed request that ends without a comparison. `dropped`: the bound that cut it
   * (concurrency, timeout, body_too_large), counted in ficus_shadow_dropped_total.
   */
  unfinished (route: string, outcome: 'skipped' | 'error', reason: string, dropped?: string): void {
    const { metrics, store } = this.opts
    metrics.comparisons.inc({ route, outcome })
    if (dropped !== undefined) metrics.shadowDropped.inc({ route, reason: dropped })
    store.unfinished(route, outcome, reason)
  }

  /** After a reload replaced or removed an upstream: its shadow pool closes once its copies finish. */
  forget (name: string): void {
    const pool = this.pools.get(name)
    if (pool === undefined) return
    this.pools.delete(name)
    pool.close().catch(() => {})
  }

  /** A reload changed the bounds pools are built with (maxInFlight, timeout): every pool is rebuilt on next use. */
  forgetAll (): void {
    for (const name of [...this.pools.keys()]) this.forget(name)
  }

  /** Shadows in flight are disposable: cut them rather than wait (shutdown). */
  async close (): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy()))
    this.pools.clear()
  }
}

/** One side's answer as it arrives: kept by reference, up to the byte bound. */
class Side {
  status = 0
  headers: Headers = {}
  chunks: Buffer[] = []
  size = 0
  /** Past maxBodySize: the body is not kept (status and headers still compared). */
  tooLarge = false
  done = false
  ms: number | null = null

  keep (chunk: Buffer, max: number): void {
    if (this.tooLarge) return
    this.size += chunk.length
    if (this.size > max) {
      this.tooLarge = true
      this.chunks = []
    } else {
      this.chunks.push(chunk)
    }
  }
}

/**
 * One shadowed request: the copy (an undici dispatch handler) and the tap on the primary.
 * It ends exactly once (`over`): compared, skipped or failed, and gives its slot back.
 */
class ShadowExchange implements PrimaryTap, Dispatcher.DispatchHandler {
  private readonly primary = new Side()
  private readonly shadow = new Side()
  private readonly primarySide: Backend
  private readonly shadowSide: Backend
  private readonly isRead: boolean
  private readonly began: number
  /** The request body to send: undefined until known. */
  private body: Buffer | null | undefined = undefined
  private sent = 0
  private copyEnded = false
  /** The outcome is in the metrics (record ran), so a later failure is not counted again. */
  private counted = false
  private over = false
  private controller: Dispatcher.DispatchController | null = null
  private pendingAbort: Error | null = null
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly s: Shadowing, private readonly ex: Exchange, private readonly req: IncomingMessage) {
    this.primarySide = ex.decision!.primary
    this.shadowSide = this.primarySide === 'legacy' ? 'new' : 'legacy'
    this.isRead = SAFE_METHODS.has(ex.method)
    this.began = s.opts.now()
  }

  /* ---------- the request body (BodyGuard.capture) ---------- */

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

  /* ---------- PrimaryTap ---------- */

  head (status: number, headers: Headers): void {
    this.guard(() => {
      if (this.ex.backend !== this.primarySide) {
        // new failed and legacy answered: there is no answer from new to compare.
        this.stop('skipped', 'fallback')
        return
      }
      this.primary.status = status
      this.primary.headers = headers
      if (!this.isRead && !this.primaryOk()) {
        // A write the primary refused is not repeated on the other side.
        this.stop('skipped', 'write_not_2xx')
        return
      }
      this.maybeSend()
    })
  }

  data (chunk: Buffer): void {
    if (this.over || this.primary.done) return
    // Called for every chunk of the primary: guarded inline, without a closure per chunk.
    try {
      this.primary.keep(chunk, this.s.limits.maxBodyBytes)
      // Past the bound the body is not kept; status and headers are still compared.
      if (this.primary.tooLarge) this.end()
    } catch (err) {
      this.crashed(err)
    }
  }

  end (): void {
    this.guard(() => {
      if (this.primary.done) return
      this.primary.done = true
      this.primary.ms = this.s.opts.now() - this.began
      this.maybeCompare()
    })
  }

  abandon (reason: string): void {
    this.guard(() => {
      if (!this.primary.done) this.stop('skipped', reason)
    })
  }

  /** Ends without a comparison. */
  private stop (outcome: 'skipped' | 'error', reason: string, dropped?: string): void {
    if (this.over) return
    this.finish()
    this.primary.chunks = [] // the primary may stream on for a while: keep nothing
    this.shadow.chunks = []
    this.s.unfinished(this.ex.rule!.name, outcome, reason, dropped)
    this.release()
  }

  /** The primary answered 2xx (a write is copied only then). */
  private primaryOk (): boolean {
    return this.primary.status >= 200 && this.primary.status < 300
  }

  /* ---------- the copy ---------- */

  private maybeSend (): void {
    if (this.over || this.sent !== 0 || this.body === undefined) return
    if (!this.isRead && !this.primaryOk()) return
    const upstream = this.s.opts.upstreams.get(this.ex.rule!.backends[this.shadowSide])
    if (upstream === undefined) {
      this.stop('skipped', 'reloaded') // a reload removed the upstream meanwhile
      return
    }
    const headers = [...upstream.headersFor(this.ex.upstreamHeaders), 'x-ficus-shadow', '1']
    this.sent = this.s.opts.now()
    this.timer = setTimeout(() => this.deadline(), this.s.limits.timeoutMs)
    this.timer.unref()
    this.s.poolFor(upstream).dispatch({
      path: this.ex.target,
      method: this.ex.method,
      headers,
      body: this.body
    }, this)
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
        this.stop('error', 'timeout', 'timeout')
      } else {
        this.stop('skipped', 'primary_too_slow', 'timeout')
      }
    })
  }

  private abortCopy (err: Error): void {
    if (this.controller === null) this.pendingAbort = err
    else this.controller.abort(err)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.pendingAbort !== null) controller.abort(this.pendingAbort)
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: Headers): void {
    if (statusCode < 200) return
    this.shadow.status = statusCode
    this.shadow.headers = headers
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.shadow.keep(chunk, this.s.limits.maxBodyBytes)
    if (this.shadow.tooLarge) controller.abort(new ShadowTooLarge())
  }

  onResponseEnd (): void {
    this.copyEnded = true
    this.guard(() => {
      this.copyOver(this.shadow.status)
      this.shadow.done = true
      this.maybeCompare()
    })
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.copyEnded = true
    this.guard(() => {
      if (err instanceof Abandoned) return
      if (err instanceof ShadowTooLarge) {
        // Status and headers are still compared.
        this.copyOver(this.shadow.status)
        this.shadow.done = true
        this.maybeCompare()
        return
      }
      const code = (err as { code?: unknown }).code
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
        this.copyOver(CATALOGUE.FICUS_ERR_UPSTREAM_TIMEOUT.status)
        this.stop('error', 'timeout', 'timeout')
        return
      }
      const e = toUpstreamError(err, this.shadow.status !== 0)
      this.copyOver(e.statusCode)
      this.stop('error', CATALOGUE[e.code].reason)
    })
  }

  /** Counts the copy as a shadow exchange with `backend` (a failure counts as the status the client would have got). */
  private copyOver (status: number): void {
    const ms = this.s.opts.now() - this.sent
    this.shadow.ms = ms
    this.s.count(this.ex.rule!.name, this.shadowSide, status, ms / 1000)
  }

  /* ---------- the comparison ---------- */

  private maybeCompare (): void {
    if (this.over || !this.primary.done || !this.shadow.done) return
    this.finish()
    // Not now: called from the primary's end, the comparison would run before the response's
    // 'finish', inside the primary's measured time (access log `ms`, ficus_request_duration_seconds).
    setImmediate(() => this.compareSides())
  }

  private compareSides (): void {
    const { primary, shadow } = this
    const [legacy, next] = this.primarySide === 'legacy' ? [primary, shadow] : [shadow, primary]
    const a = unencoded(legacy)
    const b = unencoded(next)
    // Neither body encoded (the usual case): no promise per side (they cost ~5 µs of every
    // shadowed request).
    if (a !== null && b !== null) {
      this.compareNow(a, b)
      return
    }
    const max = this.s.limits.maxBodyBytes
    Promise.all([a ?? decoded(legacy, max), b ?? decoded(next, max)])
      .then(([x, y]) => this.compareNow(x, y), (err: unknown) => this.crashed(err))
  }

  /** Compares, records, and gives the slot back; never throws. */
  private compareNow (a: ComparedSide, b: ComparedSide): void {
    try {
      this.record(compare(a, b, this.ex.rule!.compare.rules))
      this.release()
    } catch (err) {
      this.crashed(err)
    }
  }

  private record (result: Comparison): void {
    const { metrics, store, log } = this.s.opts
    const rule = this.ex.rule!
    this.counted = true
    if (result.outcome === 'skipped') {
      // The comparator refused (a body past its bounds): counted like any other skip.
      this.s.unfinished(rule.name, 'skipped', result.reason, result.reason)
      return
    }
    metrics.comparisons.inc({ route: rule.name, outcome: result.outcome })
    const areas = result.outcome === 'diverged' ? new Set(result.differences.map((d) => d.area)) : new Set<Difference['area']>()
    for (const area of areas) metrics.divergences.inc({ route: rule.name, kind: area })
    const [legacy, next] = this.primarySide === 'legacy' ? [this.primary, this.shadow] : [this.shadow, this.primary]
    const rec = {
      route: rule.name,
      method: this.ex.method,
      path: pathOf(this.ex.target),
      requestId: this.ex.requestId,
      keyHash: result.outcome === 'diverged' ? this.s.keyHash(this.key()) : null,
      primary: this.primarySide,
      status: { legacy: legacy.status, new: next.status },
      ms: { legacy: round(legacy.ms), new: round(next.ms) }
    }
    store.compared(rec, result, areas, rule.compare.redact)
    if (result.outcome === 'diverged') {
      const first = result.differences[0] // shown as in samples: a keyed array's key may be redacted
      log.debug({ reqId: rec.requestId, route: rec.route, differences: result.differences.length, first: first === undefined ? undefined : showDifference(first, rule.compare.redact).path }, 'divergence')
    }
  }

  private key (): string | undefined {
    const rule = this.ex.rule!
    return stickyKey(rule.sticky, { headers: this.req.headers, query: queryOf(this.ex.target), clientIp: this.ex.clientIp })
  }

  /* ---------- ending ---------- */

  /** Marks the exchange over (once): no more input is taken, the copy is cut if still running. */
  private finish (): void {
    this.over = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.sent !== 0 && !this.copyEnded) this.abortCopy(new Abandoned())
  }

  private released = false
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
      this.s.opts.log.error({ err, reqId: this.ex.requestId, route: this.ex.rule?.name }, 'shadow comparison failed')
      if (!this.over) this.finish()
      // Counted once: an exception after the outcome was recorded (building the sample) is only logged.
      if (!this.released && !this.counted) this.s.unfinished(this.ex.rule?.name ?? 'default', 'error', 'exception')
    } catch {
      // The logger or the metrics failed as well: nothing left to do but free the slot.
    } finally {
      this.release()
    }
  }
}

function round(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 10) / 10
}

/** The side as the comparator reads it when its body needs no decoding, else null (see `decoded`). */
function unencoded (side: Side): ComparedSide | null {
  if (side.tooLarge) return { status: side.status, headers: side.headers, body: null }
  if (side.headers['content-encoding'] !== undefined && codingsOf(side.headers).length > 0) return null
  // The chunks as received: compare joins them only if the two bodies differ.
  return { status: side.status, headers: side.headers, body: side.chunks }
}

/** Content-Encoding's codings, in the order they were applied (`identity` left out). */
function codingsOf (headers: Headers): string[] {
  const encoding = headers['content-encoding']
  return (Array.isArray(encoding) ? encoding.join(',') : encoding ?? '').split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity')
}

const gunzip = promisify(zlib.gunzip)
const inflate = promisify(zlib.inflate)
const inflateRaw = promisify(zlib.inflateRaw)
const brotli = promisify(zlib.brotliDecompress)

/**
 * One side as the comparator reads it: the body joined and decoded (gzip, deflate, br,
 * off the event loop, capped at `max` bytes: past it the body counts as too large). Only for a
 * side `unencoded` refused: one kept (not too large) whose Content-Encoding names a coding.
 */
async function decoded (side: Side, max: number): Promise<ComparedSide> {
  const raw = joined(side.chunks)
  const codings = codingsOf(side.headers)
  let body = raw
  try {
    for (const c of codings.reverse()) {
      const opts = { maxOutputLength: max }
      if (c === 'gzip' || c === 'x-gzip') body = await gunzip(body, opts)
      else if (c === 'br') body = await brotli(body, opts)
      // Some servers send raw deflate (no zlib header) under that name.
      else if (c === 'deflate') {
        const input = body
        body = await inflate(input, opts).catch(async (err: unknown) => {
          if ((err as { code?: string }).code !== 'Z_DATA_ERROR') throw err
          return inflateRaw(input, opts)
        })
      }
      else break // an unknown coding: compared as the bytes that were sent
    }
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return { status: side.status, headers: side.headers, body: null }
    body = raw // a body that does not decode is compared as the bytes that were sent
  }
  return { status: side.status, headers: side.headers, body }
}
