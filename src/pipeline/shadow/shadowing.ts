import type { Pool } from 'undici'
import type { DivergenceStore } from '../../adapters/divergence-store.js'
import type { Logger } from '../../adapters/logger.js'
import { exchangeCounter, type ExchangeCounter, type Metrics } from '../../adapters/metrics-registry.js'
import { createPool } from '../../adapters/undici.js'
import type { UpstreamSlots } from '../../adapters/upstreams.js'
import type { LiveConfig } from '../../config/live.js'
import type { ShadowLimits, UpstreamConfig } from '../../config/schema.js'
import type { BodyCapture, Exchange } from '../exchange.js'
import { ShadowCopy, type CopyContext } from './copy.js'
import { Verdicts, type IdMap } from './verdict.js'

export interface ShadowOptions {
  /** By name; the copy goes to the route's other side. */
  readonly upstreams: ReadonlyMap<string, UpstreamSlots>
  /** shadow: bounds are read from here when a copy starts, so a reload changes the next copies (pools keep their size). */
  readonly live: LiveConfig
  readonly metrics: Metrics
  readonly store: DivergenceStore
  readonly log: Logger
  /** Monotonic milliseconds. */
  readonly now: () => number
  /** The id map of dual routes, for compare.ids: the sync store once it is open (null before). */
  readonly idMap?: () => IdMap | null
}

/**
 * Stage 4, shadow (README "What happens to a request"; docs/shadow.md): a copy of the
 * request goes to the side that did not answer, on pools of its own, and the two answers
 * are compared off the client's path (copy.ts, decode.ts, verdict.ts). Bounded everywhere:
 * copies in flight (`maxInFlight`, else dropped), time (`timeout`), bytes kept per side
 * (`maxBodySize`). Whatever fails in here is caught and counted as an `error` comparison;
 * it never reaches the client's response. Cost when not shadowing: none (the decision says
 * so); when shadowing: a second upstream exchange and the comparison.
 */
export class Shadowing implements CopyContext {
  /** Shadow copies holding a slot (from `begin` until their comparison is recorded). */
  inFlight = 0
  private idlers: (() => void)[] = []
  private readonly pools = new Map<string, Pool>()
  /** ficus_requests_total and ficus_request_duration_seconds, role=shadow. */
  readonly count: ExchangeCounter
  readonly verdicts: Verdicts
  readonly upstreams: ReadonlyMap<string, UpstreamSlots>
  readonly now: () => number

  constructor (private readonly opts: ShadowOptions) {
    this.count = exchangeCounter(opts.metrics, 'shadow')
    this.verdicts = new Verdicts(opts.metrics, opts.store, opts.log, opts.idMap)
    this.upstreams = opts.upstreams
    this.now = opts.now
  }

  get limits (): ShadowLimits {
    return this.opts.live.current.shadow
  }

  /**
   * Starts shadowing a request whose decision says so, after its primary attempt began (a
   * copy never goes ahead of the request a client waits for): the copy watches the answer
   * the client gets. `body` is the request body on its way to the primary (null without one).
   */
  begin (ex: Exchange, body: BodyCapture | null): void {
    try {
      const route = ex.rule!.name
      if (ex.req.headers.upgrade !== undefined) return
      if (ex.fallback === 'ejected') {
        // new is ejected: legacy answers this request already; a copy to legacy would be a second one.
        this.verdicts.unfinished(route, 'skipped', 'new_ejected')
        return
      }
      if (ex.res.headersSent) {
        // The primary was refused at once (saturated): no load is added to the other side.
        this.verdicts.unfinished(route, 'skipped', 'primary_failed')
        return
      }
      const other = ex.decision!.primary === 'legacy' ? 'new' : 'legacy'
      if (ex.targetOn(other) === null) {
        // A dual route's id the map does not know for the other side: a copy would compare two different records.
        this.opts.metrics.idmapMisses.inc({ route, where: 'shadow' })
        this.verdicts.unfinished(route, 'skipped', 'id_unmapped')
        return
      }
      if (this.inFlight >= this.limits.maxInFlight) {
        this.verdicts.unfinished(route, 'skipped', 'concurrency', 'concurrency')
        return
      }
      this.inFlight++
      const copy = new ShadowCopy(this, ex)
      if (body !== null) body.capture(this.limits.maxBodyBytes, (b) => copy.requestBody(b))
      else copy.requestBody(null)
      ex.watch(copy)
    } catch (err) {
      // Never the client's problem (the primary is already on its way).
      this.opts.log.error({ err, reqId: ex.requestId }, 'shadow comparison failed')
    }
  }

  /** The pool copies to `upstream` go through: never the primary's, so copies cannot take its connections. */
  poolFor (upstream: UpstreamConfig): Pool {
    let pool = this.pools.get(upstream.name)
    if (pool === undefined) {
      const { maxInFlight, timeoutMs } = this.limits
      pool = createPool(upstream.origin, {
        connections: maxInFlight,
        connectTimeoutMs: Math.min(upstream.connectTimeoutMs, timeoutMs),
        // Ficus's own timer ends a copy at shadow.timeout; undici's coarser timers (they tick
        // every ~0.5 s) are only a backstop, set past it so the outcome is always `timeout`.
        headersTimeoutMs: timeoutMs + 1000,
        bodyTimeoutMs: timeoutMs + 1000
      })
      this.pools.set(upstream.name, pool)
    }
    return pool
  }

  /** Resolves when no copy is in flight (every comparison so far is recorded). */
  async idle (): Promise<void> {
    if (this.inFlight === 0) return
    await new Promise<void>((resolve) => this.idlers.push(resolve))
  }

  /** A slot is given back (ShadowCopy.release). */
  released (): void {
    this.inFlight--
    if (this.inFlight === 0 && this.idlers.length > 0) {
      const waiting = this.idlers
      this.idlers = []
      for (const resolve of waiting) resolve()
    }
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

  /** Copies in flight are disposable: cut them rather than wait (shutdown). */
  async close (): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy()))
    this.pools.clear()
  }
}
