import type { UnleashFlags } from '../adapters/flags.js'
import type { Deps } from '../app.js'
import type { Config } from '../config/schema.js'
import type { Health, WorkersReady } from '../control/health.js'
import type { Overrides } from '../core/overrides.js'
import { start, type ControlSide, type Instance, type TrafficHost } from '../start.js'
import { ClusterDivergences, type DivergenceQuestion } from './divergences.js'
import { mergeBreakers } from '../adapters/breakers.js'
import type { BreakerSnapshot } from '../core/breaker.js'
import type { BreakerSource } from '../control/admin-api.js'
import { RelayingFlags } from './flags.js'
import { ClusterMetrics } from './metrics.js'
import type { ConfigText, MetricsJson, ToWorker } from './protocol.js'
import { Workers } from './workers.js'

/**
 * `ficus start --workers N`, N > 1: the primary process. It runs the same start sequence as
 * one process (start.ts) and owns what must be single: the config (loading, validation,
 * reload), the admin listener, the ControlPlane (state file, audit log, Unleash and its
 * admin API), signals and the drain. Traffic is served by N worker processes sharing the
 * port (worker.ts), each with the proxy pipeline, a divergence store and a metrics registry
 * of its own; this host hands them every change of the route table and the flags
 * (workers.ts supervises them) and answers /metrics and /admin/divergences from all of them.
 */

/** Longest wait for a worker's metrics or divergences; past it, the answer goes without it (its last metrics are used). */
const ASK_TIMEOUT_MS = 2_000

export interface ClusterOptions {
  readonly workers: number
  /** The text `config` was parsed from: workers parse the very same. */
  readonly text: string
}

export async function startCluster(config: Config, deps: Deps, opts: ClusterOptions): Promise<Instance> {
  return (await start(config, deps, new ClusterTraffic(config, deps, opts))).instance
}

class ClusterTraffic implements TrafficHost {
  private readonly workers: Workers
  /** The config Ficus started with (start-only keys come from it) and the text of each config, to send to workers. */
  private readonly startConfig: Config
  private readonly texts = new WeakMap<Config, string>()
  /** The config the workers were last sent. */
  private published: Config
  private readonly logLevel: string
  private side: ControlSide | undefined
  private relay: RelayingFlags | undefined
  private clusterMetrics: ClusterMetrics | undefined
  readonly divergences: ClusterDivergences
  readonly described: { readonly workers: number }

  constructor (config: Config, private readonly deps: Deps, opts: ClusterOptions) {
    this.startConfig = config
    this.published = config
    this.texts.set(config, opts.text)
    const env = deps.env ?? process.env
    this.logLevel = env.FICUS_LOG_LEVEL ?? config.log.level
    this.workers = new Workers({
      count: opts.workers,
      env,
      log: deps.logger,
      init: () => this.init(),
      exited: (id) => this.clusterMetrics?.retire(id)
    })
    this.divergences = new ClusterDivergences(async (q) => this.askAll(q),
      async (epochs) => this.workers.broadcast((seq) => ({ t: 'epochs', seq, epochs }), 'new divergence epochs'))
    this.described = { workers: opts.workers }
  }

  /** One Unleash client, in the primary; what it fetches is relayed to every worker (cluster/flags.ts). */
  flagsFor (flags: UnleashFlags): RelayingFlags {
    this.relay = new RelayingFlags(flags, async (snap) => this.workers.broadcast((seq) => ({ t: 'flags', seq, flags: snap }), 'a flag change'), this.deps.logger)
    return this.relay
  }

  get metricsText (): ClusterMetrics {
    return this.clusterMetrics!
  }

  async attach (side: ControlSide): Promise<void> {
    this.side = side
    side.control.publishTo(async (next, overrides) => this.publishRoutes(next, overrides))
    this.clusterMetrics = new ClusterMetrics(side.metrics.register, async () => this.collectMetrics(), (id) => this.workers.has(id))
  }

  readiness (): WorkersReady {
    return this.workers.readiness()
  }

  async listen (): Promise<string> {
    return this.workers.start()
  }

  async reconfigure (next: Config, text: string, swapTable: (apply: () => void) => Promise<void>): Promise<void> {
    this.texts.set(next, text)
    const { live } = this.side!
    await swapTable(() => { live.current = next })
  }

  async drain (health: Health): Promise<void> {
    health.phase = 'draining'
    await this.workers.drain()
  }

  async abandon (): Promise<void> {
    this.workers.kill()
  }

  kill (): void {
    this.workers.kill()
  }

  /**
   * What a worker is given at its hello: the config Ficus started with (listen, limits and
   * the other start-only keys come from it, as they would in one process), the current one
   * when a reload changed it since, the runtime overrides, and the flags.
   */
  private init (): ToWorker {
    const { live, control } = this.side!
    const current = live.current
    return {
      t: 'init',
      start: this.textOf(this.startConfig),
      current: current === this.startConfig ? null : this.textOf(current),
      overrides: control.currentOverrides,
      flags: this.relay?.snapshot() ?? null,
      logLevel: this.logLevel,
      epochs: this.divergences.epochs()
    }
  }

  private textOf (config: Config): ConfigText {
    return { file: config.file, text: this.texts.get(config) ?? this.texts.get(this.startConfig) as string }
  }

  /** ControlPlane's publish hook: the table's inputs to every worker, awaited. */
  private async publishRoutes (config: Config, overrides: Overrides): Promise<void> {
    const changed = config !== this.published
    this.published = config
    const text = changed ? this.textOf(config) : null
    await this.workers.broadcast((seq) => ({ t: 'routes', seq, config: text, overrides }), changed ? 'a reload' : 'a route change')
  }

  /** A question to every initialized worker: the answers that came within ASK_TIMEOUT_MS. */
  private async askAll<T>(q: DivergenceQuestion): Promise<T[]> {
    const out: T[] = []
    for (const { id, answer } of await this.workers.askEach((seq) => ({ ...q, seq }), ASK_TIMEOUT_MS)) {
      if (answer.status === 'fulfilled') out.push(answer.value as T)
      else this.deps.logger.warn({ worker: id, err: answer.reason as Error }, `a worker did not answer for /admin/divergences${q.t === 'summary' ? '/summary' : ''}`)
    }
    return out
  }

  /** Each route's breaker of new over every worker that answered in time. */
  readonly breakers: BreakerSource = {
    snapshots: async () => {
      const lists: Record<string, BreakerSnapshot>[] = []
      for (const { id, answer } of await this.workers.askEach((seq) => ({ t: 'breakers', seq }), ASK_TIMEOUT_MS)) {
        if (answer.status === 'fulfilled') lists.push(answer.value as Record<string, BreakerSnapshot>)
        else this.deps.logger.warn({ worker: id, err: answer.reason as Error }, 'a worker did not answer for its breakers (/admin/routes)')
      }
      return mergeBreakers(lists)
    }
  }

  private async collectMetrics (): Promise<Map<number, MetricsJson | null>> {
    const out = new Map<number, MetricsJson | null>()
    for (const { id, answer } of await this.workers.askEach((seq) => ({ t: 'metrics', seq }), ASK_TIMEOUT_MS)) {
      out.set(id, answer.status === 'fulfilled' ? answer.value as MetricsJson : null)
    }
    return out
  }
}
