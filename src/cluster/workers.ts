import cluster, { type Worker } from 'node:cluster'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { Logger } from '../adapters/logger.js'
import type { WorkersReady } from '../control/health.js'
import { urlOf } from '../lifecycle.js'
import { WorkerChannel, type Ask } from './channel.js'
import { isMessage, type FromWorker, type ToWorker } from './protocol.js'

/**
 * Supervision of a cluster's N worker processes (node:cluster): started in N slots, each
 * initialized with what the primary holds, and restarted when it dies, with a backoff when
 * it keeps dying. A change is applied by every live worker before it is acknowledged: one
 * that does not apply it in time is killed and replaced (its replacement starts from the
 * state in effect), so after the answer no worker serves the old one.
 */

/** The worker's entry point, beside this file. */
const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url))
/** Longest wait for a worker to apply a change before it is replaced (a change's answer waits this long at most). */
const APPLY_TIMEOUT_MS = 5_000
/** Restart delay after a worker died: none when it had run STABLE_MS, else 100 ms doubling per crash up to 30 s. */
const RESTART_BASE_MS = 100
const RESTART_MAX_MS = 30_000
const STABLE_MS = 10_000

/** One worker process in one of the N slots. */
class Link {
  /** Sent `init` (after its hello): it receives every change from now on. */
  initialized = false
  /** Listening on the traffic port. */
  listening = false
  failure: Error | null = null
  readonly startedAt = performance.now()

  constructor (readonly channel: WorkerChannel, readonly slot: number) {}

  get worker (): Worker {
    return this.channel.worker
  }

  get id (): number {
    return this.worker.id
  }
}

export interface WorkersOptions {
  readonly count: number
  /** The environment the primary parsed the config with, so a worker parses it alike. */
  readonly env: Readonly<Record<string, string | undefined>>
  readonly log: Logger
  /** A worker said hello: what initializes it. */
  init(): ToWorker
  /** A worker exited (its last metrics are kept as retired). */
  exited(id: number): void
}

export class Workers {
  private readonly links = new Set<Link>()
  /** Crashes in a row per slot (reset by a worker that ran STABLE_MS). */
  private readonly crashes: number[]
  private readonly restarts = new Set<NodeJS.Timeout>()
  /** kill() ran (start failed, or the process is going): no worker is replaced any more. */
  private killed = false
  private started = false
  private stopping = false
  /** Resolves when no worker is left (while stopping). */
  private allGone: (() => void) | null = null
  private seq = 0

  constructor (private readonly o: WorkersOptions) {
    this.crashes = new Array<number>(o.count).fill(0)
  }

  /** Starts the N workers; resolves with the traffic URL once every one listens, rejects when one fails first. */
  async start (): Promise<string> {
    cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], serialization: 'advanced' })
    cluster.on('exit', (worker, code, signal) => { this.exited(worker, code, signal) })
    const urls = await Promise.all(Array.from({ length: this.o.count }, async (_, slot) => this.whenListening(this.fork(slot))))
    this.started = true
    return urls[0] as string
  }

  readiness (): WorkersReady {
    let ready = 0
    for (const l of this.links) if (l.listening) ready++
    return { ready, of: this.o.count }
  }

  has (id: number): boolean {
    return this.linkOf(id) !== undefined
  }

  /**
   * Sends a change to every worker that has been given `init` and resolves once each applied
   * it, exited, or was killed (and is gone) for not answering within APPLY_TIMEOUT_MS.
   */
  async broadcast (make: Ask, what: string): Promise<void> {
    await Promise.all(this.initialized().map(async (l) => {
      try {
        await l.channel.ask(make, APPLY_TIMEOUT_MS)
      } catch (err) {
        if (!this.links.has(l)) return // exited meanwhile: nothing of the old state serves any more
        this.o.log.error({ worker: l.id, err }, `a worker did not apply ${what} in time: replacing it`)
        // Answered only once it is gone: no connection can be handed to it any more.
        const gone = new Promise((resolve) => l.worker.once('exit', resolve))
        l.worker.process.kill('SIGKILL')
        await gone
      }
    }))
  }

  /** A question to every initialized worker: each one's answer, or why there is none (within `timeoutMs`). */
  async askEach (make: Ask, timeoutMs: number): Promise<{ readonly id: number; readonly answer: PromiseSettledResult<unknown> }[]> {
    const links = this.initialized()
    const answers = await Promise.allSettled(links.map(async (l) => l.channel.ask(make, timeoutMs)))
    return answers.map((answer, i) => ({ id: (links[i] as Link).id, answer }))
  }

  /** SIGTERM: each worker drains like one Ficus would (readiness off, drain delay, finish in flight), then exits. */
  async drain (): Promise<void> {
    this.stopping = true
    this.cancelRestarts()
    const gone = new Promise<void>((resolve) => { this.allGone = resolve })
    if (this.links.size === 0) this.allGone?.()
    for (const l of this.links) l.channel.send({ t: 'drain' })
    await gone
  }

  kill (): void {
    this.killed = true
    this.cancelRestarts()
    for (const l of this.links) l.worker.process.kill('SIGKILL')
  }

  private initialized (): Link[] {
    return [...this.links].filter((l) => l.initialized)
  }

  private cancelRestarts (): void {
    for (const t of this.restarts) clearTimeout(t)
    this.restarts.clear()
  }

  private fork (slot: number): Link {
    const link = new Link(new WorkerChannel(cluster.fork(this.o.env), this.o.log, () => ++this.seq), slot)
    this.links.add(link)
    link.worker.on('message', (m: unknown) => { if (isMessage<FromWorker>(m)) this.received(link, m) })
    // The IPC channel can fail while the worker dies; 'exit' follows and handles it.
    link.worker.on('error', (err) => { this.o.log.warn({ err, worker: link.id }, 'worker channel error') })
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
      case 'hello':
        if (this.stopping) return
        link.channel.send(this.o.init())
        link.initialized = true
        return
      case 'listening':
        link.listening = true
        if (this.started) this.o.log.info({ worker: link.id, pid: link.worker.process.pid }, 'worker replaced and serving')
        return
      case 'failed': {
        const e = m.error
        link.failure = Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code, address: e.address, port: e.port })
        return
      }
      case 'reply':
        link.channel.replied(m)
    }
  }

  private exited (worker: Worker, code: number | null, signal: string | null): void {
    const link = this.linkOf(worker.id)
    if (link === undefined) return
    this.links.delete(link)
    link.channel.closed()
    this.o.exited(link.id)
    const { log } = this.o
    if (this.stopping) {
      if (code === 0) log.info({ worker: link.id, code, signal }, 'worker stopped')
      else log.warn({ worker: link.id, code, signal }, 'worker stopped without finishing its drain (shutdown.timeout, or killed)')
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
    log.error({ worker: link.id, pid: worker.process.pid, code, signal, ranMs: Math.round(ranMs), restartInMs: delayMs }, 'worker exited; starting a new one')
    const timer = setTimeout(() => {
      this.restarts.delete(timer)
      if (!this.stopping) this.fork(link.slot)
    }, delayMs)
    this.restarts.add(timer)
  }

  private linkOf (id: number): Link | undefined {
    for (const l of this.links) if (l.id === id) return l
    return undefined
  }
}
