import { EventEmitter } from 'node:events'
import { Unleash, UnleashEvents, type ClientFeaturesResponse, type UnleashConfig as SdkConfig } from 'unleash-client'
import { Changes, type UnleashFlags } from '../adapters/flags.js'
import type { FlagContext, FlagSource, FlagSourceStatus } from '../core/flags.js'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { UnleashConfig } from '../config/schema.js'
import { flagState, type FlagState } from '../core/flag-state.js'
import type { FlagSnapshot } from './protocol.js'

/**
 * Flags in cluster mode. One Unleash client per Ficus, in the primary, as in one process:
 * one fetch loop, one backup file, one instance for Unleash to count. It relays every change
 * of the definitions to the workers, which evaluate them with unleash-client's own
 * evaluator (every strategy, constraint and segment, as the primary's client would), so all
 * workers switch together and a user's side never depends on the worker.
 */

type Feature = ClientFeaturesResponse['features'][number]
type Segment = NonNullable<ClientFeaturesResponse['segments']>[number]

/**
 * The primary's flags as its ControlPlane sees them: the Unleash client's, but a change is
 * seen (gauges, `ficus set`'s answer, rollback counting) only once every worker applied it.
 */
export class RelayingFlags implements FlagSource {
  private readonly changes: Changes
  /** The definitions every live worker has. */
  private applied = new Map<string, Feature>()
  /** The last snapshot sent (a worker that starts now gets it). */
  private latest: FlagSnapshot
  private relaying: Promise<void> = Promise.resolve()

  constructor (private readonly inner: UnleashFlags, private readonly broadcast: (flags: FlagSnapshot) => Promise<void>, log: Logger) {
    this.changes = new Changes(log)
    this.latest = this.take()
    this.applied = featuresOf(this.latest)
    inner.onChange(() => { this.relay() })
  }

  /** What a worker starting now is given. */
  snapshot (): FlagSnapshot {
    return { definitions: this.latest.definitions, status: this.inner.status }
  }

  isEnabled (flag: string, ctx: FlagContext): boolean {
    return this.inner.isEnabled(flag, ctx)
  }

  state (flag: string): FlagState {
    return flagState(flag, this.applied.get(flag))
  }

  get status (): FlagSourceStatus {
    return this.inner.status
  }

  onChange (listener: () => void): void {
    this.changes.onChange(listener)
  }

  async until (check: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.changes.until(check, timeoutMs)
  }

  /**
   * The client's first sync (or the timeout), and then every worker holding what it fetched:
   * readiness must not turn on while workers still evaluate the backup file (or nothing).
   * The relay is queued in the same notification that ends the client's wait, so awaiting
   * the queue afterwards includes it.
   */
  async whenSynchronized (timeoutMs: number): Promise<boolean> {
    const synced = await this.inner.whenSynchronized(timeoutMs)
    await this.relaying
    return synced
  }

  private take (): FlagSnapshot {
    return { definitions: this.inner.definitions(), status: this.inner.status }
  }

  /** Sends the client's definitions to every worker; once all applied them, listeners see them. In order, one at a time. */
  private relay (): void {
    const run = async (): Promise<void> => {
      const snap = this.take()
      this.latest = snap
      await this.broadcast(snap)
      this.applied = featuresOf(snap)
      this.changes.notify()
    }
    this.relaying = this.relaying.then(run, run)
  }
}

function featuresOf(snap: FlagSnapshot): Map<string, Feature> {
  return new Map((snap.definitions?.features ?? []).map((f) => [f.name, f]))
}

/** unleash-client's repository interface, fed by the primary instead of fetching. */
type Repository = NonNullable<SdkConfig['repository']>

class RelayedRepository extends EventEmitter implements Repository {
  private toggles = new Map<string, Feature>()
  private segments = new Map<number, Segment>()
  /** Definitions were relayed at least once: the SDK is ready. */
  loaded = false

  set (snap: FlagSnapshot): void {
    if (snap.definitions === null) return
    this.toggles = new Map(snap.definitions.features.map((f) => [f.name, f]))
    this.segments = new Map(snap.definitions.segments.map((s) => [s.id, s]))
    if (!this.loaded) {
      this.loaded = true
      this.emit(UnleashEvents.Ready)
    }
    this.emit(UnleashEvents.Changed, snap.definitions.features)
  }

  getToggle (name: string): Feature | undefined {
    return this.toggles.get(name)
  }

  getToggles (): Feature[] {
    return [...this.toggles.values()]
  }

  getTogglesWithSegmentData (): ReturnType<Repository['getTogglesWithSegmentData']> {
    return this.getToggles().map((t) => ({
      ...t,
      strategies: t.strategies?.map(({ segments, ...rest }) => ({ ...rest, segments: segments?.map((id) => this.segments.get(id)).filter((s) => s !== undefined) }))
    }))
  }

  getSegment (id: number): Segment | undefined {
    return this.segments.get(id)
  }

  stop (): void {}

  async start (): Promise<void> {}
}

/**
 * A worker's flags: the definitions the primary relays, evaluated by an unleash-client
 * that never fetches (its repository is fed over IPC). It reports usage metrics to Unleash
 * like any SDK (it is the one that evaluates), counting failures in
 * `ficus_flag_errors_total{kind="metrics"}`.
 */
export class RelayedFlags implements FlagSource {
  private readonly repository = new RelayedRepository()
  private readonly client: Unleash
  private readonly changes: Changes
  private relayedStatus: FlagSourceStatus
  private stopped = false

  constructor (config: UnleashConfig, first: FlagSnapshot, metrics: Metrics, private readonly log: Logger) {
    this.changes = new Changes(log)
    this.relayedStatus = first.status
    this.client = new Unleash({
      url: config.url,
      appName: config.appName,
      ...(config.instanceId === undefined ? {} : { instanceId: config.instanceId }),
      ...(config.environment === undefined ? {} : { environment: config.environment }),
      refreshInterval: config.refreshIntervalMs,
      customHeaders: { Authorization: config.token },
      repository: this.repository,
      disableAutoStart: true,
      skipInstanceCountWarning: true
    })
    // Only usage reports talk to Unleash from here; their failures are counted, never thrown.
    this.client.on(UnleashEvents.Error, (err: unknown) => {
      metrics.flagErrors.inc({ kind: 'metrics' })
      log.debug({ err }, 'Unleash client error')
    })
    this.client.on(UnleashEvents.Warn, (msg: unknown) => {
      metrics.flagErrors.inc({ kind: 'metrics' })
      log.debug({ detail: String(msg) }, 'Unleash client warning')
    })
    this.update(first)
    this.client.start().catch((err: unknown) => { log.warn({ err }, 'the Unleash client did not start') })
  }

  update (snap: FlagSnapshot): void {
    this.relayedStatus = snap.status
    this.repository.set(snap)
    this.changes.notify()
  }

  isEnabled (flag: string, ctx: FlagContext): boolean {
    // Before the primary had any definition every flag is off, as in one process (the SDK
    // would answer the same, with a warning per call).
    if (!this.repository.loaded) return false
    return this.client.isEnabled(flag, ctx)
  }

  state (flag: string): FlagState {
    return flagState(flag, this.repository.getToggle(flag))
  }

  get status (): FlagSourceStatus {
    return this.relayedStatus
  }

  onChange (listener: () => void): void {
    this.changes.onChange(listener)
  }

  async until (check: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.changes.until(check, timeoutMs)
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    try {
      this.client.destroy()
    } catch (err) {
      this.log.warn({ err }, 'stopping the Unleash client failed')
    }
  }
}
