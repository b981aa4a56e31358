import type { Logger } from '../../adapters/logger.js'
import { sealKey } from '../../adapters/sealed.js'
import { primeSyncRoute, type Metrics } from '../../adapters/metrics-registry.js'
import type { ProcessStore } from '../../adapters/open-store.js'
import type { SyncStore } from '../../adapters/sync-store.js'
import type { Upstream } from '../../adapters/upstreams.js'
import type { Config } from '../../config/schema.js'
import type { RouteTableRef } from '../../core/route-table.js'
import { Deliverer } from './deliverer.js'
import { Dual } from './dual.js'
import { StoreWatch } from './watch.js'

/**
 * Dual writes in one traffic process (docs/sync.md): the sync store, its watch (gauges,
 * admission), the Dual stage of the request path, and the deliverer of the outbox. Every
 * process of a Ficus runs one on the same store (`--workers`: one LMDB file; a fleet: one
 * PostgreSQL): claims are leased, so each write is delivered by one of them.
 */
export class SyncRuntime {
  readonly store: SyncStore
  readonly watch: StoreWatch
  readonly dual: Dual
  readonly deliverer: Deliverer

  constructor (config: Config, private readonly handle: ProcessStore, table: RouteTableRef, upstreams: ReadonlyMap<string, Upstream>, metrics: Metrics, log: Logger) {
    const { sync } = config
    // sync.auth passthrough: clients' credentials are kept sealed under this key (checked at load).
    const key = sync.auth.mode === 'passthrough' ? sealKey(sync.auth.key) : null
    this.store = handle.acquire()
    this.watch = new StoreWatch(this.store, metrics, log, Date.now, () => table.current.routes.filter((r) => r.sync?.mode === 'dual').map((r) => r.name))
    this.deliverer = new Deliverer({
      store: this.store,
      upstreamOf: (route, target) => {
        const rule = table.current.routes.find((r) => r.name === route)
        return rule === undefined ? undefined : upstreams.get(rule.backends[target])?.config
      },
      retry: sync.retry,
      concurrency: sync.concurrency,
      leaseMs: leaseFor(config),
      pollMs: POLL_MS,
      log,
      now: Date.now,
      random: Math.random,
      unmappedIds: sync.unmappedIds,
      maxIdWaitMs: sync.maxIdWaitMs,
      extraHeaders: sync.auth.mode === 'service' ? [[sync.auth.header, sync.auth.value]] : [],
      sealKey: key,
      onVerdict: (d, v) => {
        const labels = { route: d.route, target: d.target }
        metrics.syncDeliveries.inc({ ...labels, outcome: v.kind })
        if (v.kind === 'delivered') metrics.syncReplication.observe(labels, Math.max(0, Date.now() - d.createdAt) / 1000)
      },
      onIdMiss: (d) => { metrics.idmapMisses.inc({ route: d.route, where: 'delivery' }) }
    })
    this.dual = new Dual({
      store: this.store,
      watch: this.watch,
      sync,
      intentTtlMs: intentTtl(config),
      metrics,
      log,
      wallNow: Date.now,
      recorded: () => { this.deliverer.kick() },
      passthrough: key === null || sync.auth.mode !== 'passthrough' ? null : { headers: new Set(sync.auth.headers), key }
    })
    for (const r of config.routes) if (r.sync?.mode === 'dual') primeSyncRoute(metrics, r.name)
  }

  async start (): Promise<void> {
    await this.watch.start()
    this.deliverer.start()
  }

  /** Stops delivering (deliveries in flight finish), then lets go of the store (the process's last user closes it). */
  async close (): Promise<void> {
    this.watch.stop()
    await this.deliverer.stop()
    await this.handle.release()
  }
}

/**
 * A claim's lease: longer than any delivery can take (connecting, then the upstream's
 * timeout), so a live deliverer never loses its claim; a dead one's claims are taken again
 * after it.
 */
function leaseFor(config: Config): number {
  const longest = Math.max(0, ...Object.values(config.upstreams).map((u) => u.connectTimeoutMs + u.timeoutMs))
  return longest + 5_000
}
/** How often the outbox is read when nothing woke the deliverer (a write by another process, a retry coming due). */
const POLL_MS = 100

/**
 * How long an intent may wait for its answer: the whole request, then the slowest upstream
 * connecting, answering and sending its body, with a margin. Past it (or, on LMDB, as soon
 * as its process is gone) it is a dead letter: Ficus died before it knew the outcome.
 */
function intentTtl(config: Config): number {
  const upstream = Math.max(0, ...Object.values(config.upstreams).map((u) => u.connectTimeoutMs + u.timeoutMs + u.bodyTimeoutMs))
  return config.limits.requestTimeoutMs + upstream + 10_000
}

/** Whether a config needs the sync runtime: a route is dual. */
export function needsSync(config: Config): boolean {
  return config.routes.some((r) => r.sync?.mode === 'dual')
}
