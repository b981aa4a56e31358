import cluster, { type Worker } from 'node:cluster'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { AuditEntry } from '../adapters/audit-log.js'
import type { Logger } from '../adapters/logger.js'
import { createMetrics } from '../adapters/metrics-registry.js'
import { buildAdmin, openControl, type App, type ControlParts } from '../app.js'
import type { LiveConfig } from '../config/live.js'
import type { Config } from '../config/schema.js'
import type { Overrides } from '../core/overrides.js'
import { readyWhenFlagsAre, urlOf } from '../lifecycle.js'
import type { Instance } from '../main.js'
import type { Health, WorkersReady } from '../control/health.js'
import { refusal, reloadWith, restartOnly } from '../reload.js'
import { VERSION } from '../version.js'
import { ClusterDivergences } from './divergences.js'
import { RelayingFlags } from './flags.js'
import { ClusterMetrics } from './metrics.js'
import { isMessage, type ConfigText, type FromWorker, type MetricsJson, type ToWorker } from './protocol.js'
import { readConfig } from '../config/load-config.js'

/**
 * `ficus start --workers N`, N > 1: the primary process. It owns what must be single: the
 * config (loading, validation, reload), the admin listener (/metrics, /healthz, /readyz,
 * /admin/*), the ControlPlane (state file, audit log, Unleash and its admin API), signals
 * and the drain, and the workers themselves: N processes (node:cluster) that share the
 * traffic port and each run the proxy pipeline, shadowing, a divergence store and a metrics
 * registry of their own (src/cluster/worker.ts).
 *
 * Every change of the route table is sent to every live worker, and answered to the caller
 * only once all of them applied it; a worker that does not within APPLY_TIMEOUT_MS is
 * killed and replaced (a replacement starts from the current table), so after the answer no
 * worker serves the old one. A worker that dies is restarted, with a backoff when it keeps
 * dying.
 */

/** The worker's entry point, beside this file. */
const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url))
/** Longest wait for a worker to apply a change before it is replaced (a change's answer waits this long at most). */
const APPLY_TIMEOUT_MS = 5_000
/** Longest wait for a worker's metrics or divergences; past it, the answer goes without it (its last metrics are used). */
const ASK_TIMEOUT_MS = 2_000
/** Restart delay after a worker died: none when it had run STABLE_MS, else 100 ms doubling per crash up to 30 s. */
const RESTART_BASE_MS = 100
const RESTART_MAX_MS = 30_000
const STABLE_MS = 10_000

export interface PrimaryOptions {
  readonly workers: number
  readonly configPath: string
  readonly config: Config
  /** The text `config` was parsed from: workers parse the very same. */
  readonly text: string
  readonly env: Readonly<Record<string, string | undefined>>
  readonly logger: Logger
  readonly startupAudit: readonly AuditEntry[]
}

interface Pending {
  resolve(value: unknown): void
  reject(err: Error): void
  timer: NodeJS.Timeout
}

/** One worker process in one of the N slots. */
class Link {
  /** Sent `init` (after its hello): it receives every change from now on. */
  initialized = false
  /** Listening on the traffic port. */
  listening = false
  failure: Error | null = null
  readonly pending = new Map<number, Pending>()
  readonly startedAt = performance.now()

  constructor (readonly worker: Worker, readonly slot: number) {}

  get id (): number {
    return this.worker.id
  }
}

export async function startPrimary(opts: PrimaryOptions): Promise<Instance> {
  const primary = new Primary(opts)
  await primary.start()
  return primary
}

class Primary implements Instance {
  private readonly log: Logger
  private readonly health: Health = { phase: 'starting' }
  private readonly metrics = createMetrics()
  private readonly live: LiveConfig
  /** The config Ficus started with (start-only keys come from it) and the text of each config, to send to workers. */
  private readonly startConfig: Config
  private readonly texts = new WeakMap<Config, string>()
  /** The config the workers were last sent. */
  private published: Config
  private readonly links = new Set<Link>()
  /** Crashes in a row per slot (reset by a worker that ran STABLE_MS). */
  private readonly crashes: number[]
  private readonly restarts = new Set<NodeJS.Timeout>()
  /** kill() ran (start failed, or the process is going): no worker is replaced any more. */
  private killed = false
  private readonly logLevel: string
  private seq = 0
  private started = false
  private stopping: Promise<void> | null = null
  /** Resolves when no worker is left (while stopping). */
  private allGone: (() => void) | null = null
  private parts: ControlParts | undefined
  private relay: RelayingFlags | undefined
  private admin: App | undefined
  private readonly clusterMetrics: ClusterMetrics

  constructor (private readonly opts: PrimaryOptions) {
    this.log = opts.logger
    this.live = { current: opts.config }
    this.startConfig = opts.config
    this.published = opts.config
    this.texts.set(opts.config, opts.text)
    this.crashes = new Array<number>(opts.workers).fill(0)
    this.logLevel = opts.env.FICUS_LOG_LEVEL ?? opts.config.log.level
    this.clusterMetrics = new ClusterMetrics(this.metrics.register, async () => this.collectMetrics(), (id) => this.linkOf(id) !== undefined)
  }

  async start (): Promise<void> {
    const { config } = this.opts
    const log = this.log
    this.metrics.buildInfo.set({ version: VERSION }, 1)
    const parts = await openControl(config, { logger: log, startupAudit: this.opts.startupAudit }, this.metrics, (flags) => {
      this.relay = new RelayingFlags(flags, async (snap) => this.broadcast((seq) => ({ t: 'flags', seq, flags: snap }), 'a flag change'), log)
      return this.relay
    })
    this.parts = parts
    const { control, audit, flags } = parts
    control.publishTo(async (next, overrides) => this.publishRoutes(next, overrides))
    const admin = await buildAdmin(log, {
      metrics: this.clusterMetrics,
      health: this.health,
      workers: () => this.readiness(),
      api: { live: this.live, table: control.table, divergences: new ClusterDivergences(async (q) => this.askAll(q)), control, audit },
      close: async () => {
        flags?.stop()
        await audit.close()
      }
    })
    this.admin = admin
    let traffic: string
    try {
      await admin.listen({ host: config.admin.host, port: config.admin.port })
      cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], serialization: 'advanced' })
      cluster.on('exit', (worker, code, signal) => { this.exited(worker, code, signal) })
      const first = await Promise.all(Array.from({ length: this.opts.workers }, async (_, slot) => this.whenListening(this.fork(slot))))
      traffic = first[0] as string
    } catch (err) {
      this.kill()
      await admin.close()
      throw err
    }
    this.started = true
    const adminUrl = urlOf(admin.server.address() as AddressInfo)
    log.info({ traffic, admin: adminUrl, routes: config.routes.length, config: config.file, workers: this.opts.workers }, 'ficus listening')
    readyWhenFlagsAre(this.health, this.relay, config, log)
  }

  async reload (why: string): Promise<unknown> {
    const { configPath, env } = this.opts
    const control = this.parts?.control
    if (control === undefined || this.stopping !== null) return undefined
    let text = ''
    return reloadWith(this.metrics, configPath, this.log, why, async () => {
      const read = await readConfig(configPath, env)
      text = read.text
      return read.config
    }, async (next) => {
      const prev = this.live.current
      const refused = refusal(prev, next, this.parts?.flags !== undefined)
      if (refused !== null) throw new Error(refused)
      this.texts.set(next, text)
      await control.reconfigure(next, () => { this.live.current = next })
      return restartOnly(prev, next)
    })
  }

  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      this.health.phase = 'draining'
      for (const t of this.restarts) clearTimeout(t)
      this.restarts.clear()
      const gone = new Promise<void>((resolve) => { this.allGone = resolve })
      if (this.links.size === 0) this.allGone?.()
      // Each worker turns draining (answers carry Connection: close), waits the drain delay,
      // stops listening and finishes its requests in flight, then exits 0.
      for (const l of this.links) this.send(l, { t: 'drain' })
      try {
        await gone
      } finally {
        await this.admin?.close()
      }
    })()
    return this.stopping
  }

  shutdownTimeoutMs (): number {
    return this.live.current.shutdown.timeoutMs
  }

  kill (): void {
    this.killed = true
    for (const t of this.restarts) clearTimeout(t)
    this.restarts.clear()
    for (const l of this.links) l.worker.process.kill('SIGKILL')
  }

  private readiness (): WorkersReady {
    let ready = 0
    for (const l of this.links) if (l.listening) ready++
    return { ready, of: this.opts.workers }
  }

  private fork (slot: number): Link {
    // The environment the primary parsed the config with (runFicus may be given one), so a worker parses it alike.
    const link = new Link(cluster.fork(this.opts.env), slot)
    this.links.add(link)
    link.worker.on('message', (m: unknown) => { if (isMessage<FromWorker>(m)) this.received(link, m) })
    // The IPC channel can fail while the worker dies; 'exit' follows and handles it.
    link.worker.on('error', (err) => { this.log.warn({ err, worker: link.id }, 'worker channel error') })
    return link
  }

  /** Resolves with the traffic URL once the worker listens; rejects when it fails or exits first. */
  private async whenListening (link: Link): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null): void => {
        link.worker.off('message', onMessage)
        reject(link.failure ?? new Error(`worker ${link.id} exited during start (${signal ?? `code ${code}`})`))
      }
      const onMessage = (m: unknown): void => {
        if (!isMessage<FromWorker>(m) || m.t !== 'listening') return
        link.worker.off('message', onMessage)
        link.worker.off('exit', onExit)
        resolve(urlOf(m.address))
      }
      link.worker.on('message', onMessage)
      link.worker.once('exit', onExit)
    })
  }

  private received (link: Link, m: FromWorker): void {
    switch (m.t) {
      case 'hello': {
        const control = this.parts?.control
        if (control === undefined || this.stopping !== null) return
        const current = this.live.current
        this.send(link, {
          t: 'init',
          start: this.textOf(this.startConfig),
          current: current === this.startConfig ? null : this.textOf(current),
          overrides: control.currentOverrides,
          flags: this.relay?.snapshot() ?? null,
          logLevel: this.logLevel
        })
        link.initialized = true
        return
      }
      case 'listening':
        link.listening = true
        if (this.started) this.log.info({ worker: link.id, pid: link.worker.process.pid }, 'worker replaced and serving')
        return
      case 'failed': {
        const e = m.error
        link.failure = Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code, address: e.address, port: e.port })
        return
      }
      case 'reply': {
        const p = link.pending.get(m.seq)
        if (p === undefined) return
        link.pending.delete(m.seq)
        clearTimeout(p.timer)
        if (m.error !== undefined) p.reject(new Error(m.error))
        else p.resolve(m.value)
      }
    }
  }

  private exited (worker: Worker, code: number | null, signal: string | null): void {
    const link = this.linkOf(worker.id)
    if (link === undefined) return
    this.links.delete(link)
    for (const p of link.pending.values()) {
      clearTimeout(p.timer)
      p.reject(new Error('the worker exited'))
    }
    link.pending.clear()
    this.clusterMetrics.retire(link.id)
    if (this.stopping !== null) {
      if (code === 0) this.log.info({ worker: link.id, code, signal }, 'worker stopped')
      else this.log.warn({ worker: link.id, code, signal }, 'worker stopped without finishing its drain (shutdown.timeout, or killed)')
      if (this.links.size === 0) this.allGone?.()
      return
    }
    // During start, a worker that never listened makes start fail (whenListening); one that
    // had listened and then died is replaced like any other, or readiness would wait for it forever.
    if (this.killed || (!this.started && !link.listening)) return
    const ranMs = performance.now() - link.startedAt
    if (ranMs >= STABLE_MS) this.crashes[link.slot] = 0
    const crashes = this.crashes[link.slot] ?? 0
    const delayMs = crashes === 0 && ranMs >= STABLE_MS ? 0 : Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** crashes)
    this.crashes[link.slot] = crashes + 1
    this.log.error({ worker: link.id, pid: worker.process.pid, code, signal, ranMs: Math.round(ranMs), restartInMs: delayMs }, 'worker exited; starting a new one')
    const timer = setTimeout(() => {
      this.restarts.delete(timer)
      if (this.stopping === null) this.fork(link.slot)
    }, delayMs)
    this.restarts.add(timer)
  }

  private linkOf (id: number): Link | undefined {
    for (const l of this.links) if (l.id === id) return l
    return undefined
  }

  private textOf (config: Config): ConfigText {
    return { file: config.file, text: this.texts.get(config) ?? this.opts.text }
  }

  /** ControlPlane's publish hook: the table's inputs to every worker, awaited. */
  private async publishRoutes (config: Config, overrides: Overrides): Promise<void> {
    const changed = config !== this.published
    this.published = config
    const text = changed ? this.textOf(config) : null
    await this.broadcast((seq) => ({ t: 'routes', seq, config: text, overrides }), changed ? 'a reload' : 'a route change')
  }

  /**
   * Sends a change to every worker that has been given `init` and resolves once each applied
   * it, exited, or was killed (and is gone) for not answering within APPLY_TIMEOUT_MS: its
   * replacement starts from the state in effect.
   */
  private async broadcast (make: (seq: number) => ToWorker, what: string): Promise<void> {
    await Promise.all([...this.links].filter((l) => l.initialized).map(async (l) => {
      try {
        await this.ask(l, make, APPLY_TIMEOUT_MS)
      } catch (err) {
        if (!this.links.has(l)) return // exited meanwhile: nothing of the old state serves any more
        this.log.error({ worker: l.id, err }, `a worker did not apply ${what} in time: replacing it`)
        // Answered only once it is gone: no connection can be handed to it any more.
        const gone = new Promise((resolve) => l.worker.once('exit', resolve))
        l.worker.process.kill('SIGKILL')
        await gone
      }
    }))
  }

  private async ask (link: Link, make: (seq: number) => ToWorker, timeoutMs: number): Promise<unknown> {
    const seq = ++this.seq
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending.delete(seq)
        reject(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      link.pending.set(seq, { resolve, reject, timer })
      this.send(link, make(seq))
    })
  }

  private send (link: Link, m: ToWorker): void {
    if (!link.worker.isConnected()) return
    link.worker.send(m, (err: Error | null) => {
      if (err !== null) this.log.debug({ err, worker: link.id }, 'could not send to a worker')
    })
  }

  /** A question to every initialized worker: the answers that came within ASK_TIMEOUT_MS. */
  private async askAll<T>(q: { t: 'samples'; route: string | undefined; limit: number } | { t: 'summary'; route: string | undefined }): Promise<T[]> {
    const links = [...this.links].filter((l) => l.initialized)
    const answers = await Promise.allSettled(links.map(async (l) => this.ask(l, (seq) => ({ ...q, seq }), ASK_TIMEOUT_MS)))
    const out: T[] = []
    answers.forEach((a, i) => {
      if (a.status === 'fulfilled') out.push(a.value as T)
      else this.log.warn({ worker: links[i]?.id, err: a.reason as Error }, `a worker did not answer for /admin/divergences${q.t === 'summary' ? '/summary' : ''}`)
    })
    return out
  }

  private async collectMetrics (): Promise<Map<number, MetricsJson | null>> {
    const links = [...this.links].filter((l) => l.initialized)
    const answers = await Promise.allSettled(links.map(async (l) => this.ask(l, (seq) => ({ t: 'metrics', seq }), ASK_TIMEOUT_MS)))
    const out = new Map<number, MetricsJson | null>()
    answers.forEach((a, i) => {
      const l = links[i] as Link
      out.set(l.id, a.status === 'fulfilled' ? a.value as MetricsJson : null)
    })
    return out
  }
}
