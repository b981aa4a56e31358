import type { Logger } from '../../adapters/logger.js'
import type { Metrics } from '../../adapters/metrics-registry.js'
import type { StoreStats, SyncStore } from '../../adapters/sync-store.js'
import type { Backend } from '../../core/types.js'

const TARGETS: readonly Backend[] = ['legacy', 'new']

/**
 * Watches the sync store from one process: reads its stats every `everyMs` for the gauges
 * (pending, dead letters, lag, id map) and for the outbox's admission (is it full; is the
 * store answering), so no request asks the store for them. Off the request path.
 */
export class StoreWatch {
  private timer: NodeJS.Timeout | null = null
  private last: StoreStats | null = null
  /** The store answered the last read, and no write failed since. */
  private failing = false
  private readonly seen = new Set<string>()

  constructor (
    private readonly store: SyncStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly now: () => number,
    /** The dual routes now (a reload may change them): their gauges read 0, not "no data", while nothing of theirs waits. */
    private readonly dualRoutes: () => readonly string[] = () => [],
    private readonly everyMs = 1000
  ) {}

  /** Reads now, then every `everyMs`. */
  async start (): Promise<void> {
    await this.read()
    this.timer = setInterval(() => { void this.read() }, this.everyMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /**
   * Writes waiting (pending and intents) at the last read, plus those this process recorded
   * since, plus those it admitted that are still on their way (their intent, the primary,
   * their settle): admission counts a write from the moment it lets it in, so that writes
   * admitted together cannot take the outbox past sync.maxPending. (Counted twice for a
   * moment at most, between a read or a settle and the end of its exchange: refused a little
   * early, never admitted past the bound, by this process.)
   */
  get waiting (): number {
    return (this.last === null ? 0 : this.last.pending + this.last.intents + this.since) + this.inFlight
  }

  private since = 0
  private inFlight = 0

  /** This process admitted a write: it counts as waiting until its exchange ends (`res` closes), then as recorded if it was. */
  admitted (res: { once(event: 'close', listener: () => void): unknown }): void {
    this.inFlight++
    res.once('close', () => { this.inFlight-- })
  }

  /** This process recorded a write (admission counts it before the next read). */
  recorded (): void {
    this.since++
  }

  /**
   * Whether `target` may be behind on some record: at the last read some write to it was
   * pending or a dead letter, or this process recorded writes since. False lets a request
   * skip its fence without asking the store (a write another replica recorded within the
   * last read interval is not seen).
   */
  mayBeBehind (target: Backend): boolean {
    if (this.last === null || this.since > 0) return true
    return this.last.routes.some((r) => r.target === target && (r.pending > 0 || r.dead > 0))
  }

  /** Whether the store can take writes: it answered its last read and no write failed since. */
  get healthy (): boolean {
    return !this.failing
  }

  /** A write to the store failed (disk full, unwritable, PostgreSQL gone): writes are refused until a read succeeds again. */
  failed (err: unknown): void {
    if (!this.failing) this.log.error({ err }, 'sync: the store failed a write; dual writes are refused until it answers again')
    this.failing = true
    this.metrics.syncStoreUp.set(0)
  }

  /** The last stats read (null before the first). */
  get stats (): StoreStats | null {
    return this.last
  }

  async read (): Promise<void> {
    try {
      const [st, ids] = await Promise.all([this.store.stats(), this.store.idCounts()])
      await this.store.probe()
      this.last = st
      this.since = 0
      if (this.failing) this.log.info('sync: the store answers again; dual writes are taken')
      this.failing = false
      this.metrics.syncStoreUp.set(1)
      this.gauges(st, ids)
    } catch (err) {
      if (!this.failing) this.log.error({ err }, 'sync: the store does not answer; dual writes are refused until it does')
      this.failing = true
      this.metrics.syncStoreUp.set(0)
    }
  }

  private gauges (st: StoreStats, ids: Record<string, number>): void {
    const { syncPending, syncDeadLetters, syncLag, idmapEntries } = this.metrics
    const now = this.now()
    const current = new Set<string>()
    for (const r of st.routes) {
      const labels = { route: r.route, target: r.target }
      current.add(`${r.route}\t${r.target}`)
      syncPending.set(labels, r.pending)
      syncDeadLetters.set(labels, r.dead)
      syncLag.set(labels, r.oldestPending === null ? 0 : Math.max(0, now - r.oldestPending) / 1000)
    }
    // A dual route and target with nothing left (or never anything): 0, not its last value or no
    // data. A route no longer dual with nothing of its own left: no series (it has no sync).
    const dual = new Set<string>()
    for (const route of this.dualRoutes()) for (const target of TARGETS) dual.add(`${route}\t${target}`)
    for (const rt of dual) this.seen.add(rt)
    for (const rt of this.seen) {
      if (current.has(rt) || dual.has(rt)) continue
      const [route, target] = rt.split('\t') as [string, string]
      syncPending.remove({ route, target })
      syncDeadLetters.remove({ route, target })
      syncLag.remove({ route, target })
      this.seen.delete(rt)
    }
    for (const rt of this.seen) {
      if (current.has(rt)) continue
      const [route, target] = rt.split('\t') as [string, string]
      syncPending.set({ route, target }, 0)
      syncDeadLetters.set({ route, target }, 0)
      syncLag.set({ route, target }, 0)
    }
    for (const rt of current) this.seen.add(rt)
    for (const [entity, n] of Object.entries(ids)) idmapEntries.set({ entity }, n)
  }
}
