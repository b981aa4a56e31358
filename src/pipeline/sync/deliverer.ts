import type { Pool } from 'undici'
import type { Logger } from '../../adapters/logger.js'
import type { Delivery, SyncStore } from '../../adapters/sync-store.js'
import { createPool } from '../../adapters/undici.js'
import type { UpstreamConfig } from '../../config/schema.js'
import { retryAfterMs, verdict, type RetryPolicy, type Verdict } from '../../core/delivery.js'
import type { Backend } from '../../core/types.js'
import { reasonOf, toUpstreamError } from '../../errors.js'

/**
 * Delivers the outbox (issue #20; DESIGN.md "Data-safe writes"): claims due entries from the
 * sync store (each entity key's oldest only, under a lease), sends each to its target on
 * pools of its own (never the users' connections), and records the verdict of core/delivery.ts:
 * delivered, retried after a backoff, or a dead letter. Every delivery carries
 * `Idempotency-Key: ficus-<route>-<seq>`, the same on every attempt, and `x-ficus-sync: 1`
 * (which Ficus drops from client requests, so a backend calling back through Ficus makes no
 * echo). At least once: a delivery whose answer was lost is sent again, and the key lets the
 * target see it is the same write.
 * Off the request path: it costs users nothing but the store's own work.
 */

export interface DelivererOptions {
  readonly store: SyncStore
  /** The upstream that plays `target` for `route`; undefined: the route is gone (the entry waits). */
  readonly upstreamOf: (route: string, target: Backend) => UpstreamConfig | undefined
  readonly retry: RetryPolicy
  /** Deliveries in flight at most (all targets). */
  readonly concurrency: number
  /** How long a claim holds an entry before another process may take it, ms (longer than a delivery can take). */
  readonly leaseMs: number
  /** How often to look for due entries when nothing woke it, ms. */
  readonly pollMs: number
  readonly log: Logger
  /** Wall-clock ms (entries' times are wall clock: they outlive the process). */
  readonly now: () => number
  readonly random: () => number
  /** Told of each verdict (metrics, tests). */
  readonly onVerdict?: (d: Delivery, v: Verdict) => void
}

export class Deliverer {
  private readonly pools = new Map<string, Pool>()
  private inFlight = 0
  private timer: NodeJS.Timeout | null = null
  private running = false
  private ticking: Promise<void> | null = null
  private again = false
  private readonly active = new Set<Promise<void>>()

  constructor (private readonly o: DelivererOptions) {}

  start (): void {
    this.running = true
    this.kick()
  }

  /** Looks for due entries now (an append happened). */
  kick (): void {
    if (!this.running) return
    if (this.ticking !== null) {
      this.again = true
      return
    }
    this.ticking = this.tick().finally(() => {
      this.ticking = null
      if (this.again) {
        this.again = false
        this.kick()
      }
    })
  }

  /** Stops claiming; resolves once the deliveries in flight ended, then closes the pools. */
  async stop (): Promise<void> {
    this.running = false
    if (this.timer !== null) clearTimeout(this.timer)
    await this.ticking
    await Promise.all([...this.active])
    await Promise.all([...this.pools.values()].map(async (p) => p.close()))
  }

  private async tick (): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    try {
      const room = this.o.concurrency - this.inFlight
      if (room > 0) {
        for (const d of await this.o.store.claim(this.o.now(), room, this.o.leaseMs)) {
          const p = this.deliver(d).finally(() => {
            this.active.delete(p)
            this.kick() // a slot is free, and the key's next write may be due
          })
          this.active.add(p)
        }
      }
    } catch (err) {
      this.o.log.error({ err }, 'sync: claiming from the store failed; trying again')
    }
    if (this.running) {
      this.timer = setTimeout(() => this.kick(), this.o.pollMs)
      this.timer.unref()
    }
  }

  private async deliver (d: Delivery): Promise<void> {
    this.inFlight++
    try {
      const upstream = this.o.upstreamOf(d.route, d.target)
      if (upstream === undefined) {
        await this.o.store.retry(d.seq, this.o.now() + this.o.retry.maxMs, `no upstream plays ${d.target} for route ${d.route}`)
        return
      }
      const result = await this.send(d, upstream)
      const v = verdict(result, d.attempts, this.o.now() - d.createdAt, this.o.retry, this.o.random())
      if (v.kind === 'delivered') await this.o.store.delivered(d.seq)
      else if (v.kind === 'retry') await this.o.store.retry(d.seq, this.o.now() + v.afterMs, v.reason)
      else {
        await this.o.store.deadLetter(d.seq, v.reason)
        this.o.log.warn({ seq: d.seq, route: d.route, key: d.key, target: d.target, reason: v.reason }, `sync: write ${d.seq} to ${d.target} is a dead letter; its key ${d.key} waits`)
      }
      this.o.onVerdict?.(d, v)
    } catch (err) {
      // The store failed: the lease runs out and the entry is claimed again.
      this.o.log.error({ err, seq: d.seq }, 'sync: recording a delivery failed; it will be tried again')
    } finally {
      this.inFlight--
    }
  }

  private async send (d: Delivery, upstream: UpstreamConfig): Promise<{ status: number; retryAfterMs?: number } | { failed: string }> {
    const headers: string[] = []
    for (const [n, v] of d.headers) headers.push(n, v)
    headers.push('idempotency-key', `ficus-${d.route}-${d.seq}`, 'x-ficus-sync', '1')
    try {
      const r = await this.poolFor(upstream).request({ path: d.path, method: d.method, headers, body: d.body ?? undefined })
      await r.body.dump()
      const ra = r.headers['retry-after']
      return { status: r.statusCode, retryAfterMs: retryAfterMs(Array.isArray(ra) ? ra[0] : ra, this.o.now()) }
    } catch (err) {
      return { failed: reasonOf(toUpstreamError(err, false).code) }
    }
  }

  private poolFor (u: UpstreamConfig): Pool {
    let p = this.pools.get(u.origin)
    if (p === undefined) {
      p = createPool(u.origin, { connections: this.o.concurrency, connectTimeoutMs: u.connectTimeoutMs, headersTimeoutMs: u.timeoutMs, bodyTimeoutMs: u.bodyTimeoutMs })
      this.pools.set(u.origin, p)
    }
    return p
  }
}
