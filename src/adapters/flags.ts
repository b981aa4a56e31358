import { Unleash, UnleashEvents, type ClientFeaturesResponse } from 'unleash-client'
import type { UnleashConfig } from '../config/schema.js'
import { flagState, type FlagState } from '../core/flag-state.js'
import type { FlagContext, FlagSource, FlagSourceStatus } from '../core/flags.js'
import type { Logger } from './logger.js'
import { flagSource, type Metrics } from './metrics-registry.js'
import { readIfPresent, writeFileAtomic } from './files.js'

/**
 * The fleet's flags (README "Running a fleet"): every replica
 * reads the same Unleash toggles through unleash-client, which keeps the last state it
 * fetched in memory and evaluates isEnabled() locally, so a request never waits for
 * Unleash and an outage changes nothing until it ends.
 *
 * Start-up: the last state this replica fetched (the backup file), else the bootstrap file,
 * is loaded at once; the first fetch from Unleash replaces it. Until either exists every
 * flag is off (legacy). Errors are counted and logged on change, never thrown.
 */

/** Every flag definition a client holds, with the segments they use (a /api/client/features document's parts). */
export interface FlagDefinitions {
  readonly features: ClientFeaturesResponse['features']
  readonly segments: NonNullable<ClientFeaturesResponse['segments']>
}

/** The bootstrap file cannot be used: Ficus does not start (a typo must not mean "every flag off"). */
export class FlagBootstrapError extends Error {
  readonly code = 'FICUS_ERR_FLAG_BOOTSTRAP'
  constructor (readonly file: string, reason: string) {
    super(`unleash.bootstrap ${file}: ${reason}`)
    this.name = 'FlagBootstrapError'
  }
}

/** Reads a /api/client/features document (the bootstrap file, or a backup). */
async function readFeatures(file: string): Promise<ClientFeaturesResponse | undefined> {
  let text: string | undefined
  try {
    text = await readIfPresent(file)
  } catch (err) {
    throw new Error(`cannot be read (${(err as Error).message})`)
  }
  if (text === undefined) return undefined
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw new Error('is not valid JSON')
  }
  if (data === null || typeof data !== 'object' || !Array.isArray((data as { features?: unknown }).features)) {
    throw new Error('is not an Unleash features document ({"version": 2, "features": [...]}, as GET /api/client/features answers)')
  }
  return data as ClientFeaturesResponse
}

export class UnleashFlags implements FlagSource {
  private synchronized = false
  private healthy = false
  private loadedFrom: FlagSourceStatus['loadedFrom'] = 'none'
  private lastError: string | null = null
  private stopped = false
  /** The SDK has definitions (from a fetch, the backup or the bootstrap file): isEnabled may be asked. */
  private clientReady = false
  private readonly changes: Changes
  /** The last fetch error logged while not yet synchronized (so an outage at start logs each new reason once). */
  private lastLogged: string | null = null

  private constructor (
    private readonly config: UnleashConfig,
    private readonly client: Unleash,
    private readonly metrics: Metrics,
    private readonly log: Logger
  ) {
    this.changes = new Changes(log)
    flagSource(metrics)
    // Always listening, also after stop(): destroy() while Unleash is unreachable can still
    // emit `error` from a fetch in flight, and an EventEmitter error without a listener throws.
    client.on(UnleashEvents.Error, (err: unknown) => { this.failed(err) })
    client.on(UnleashEvents.Warn, (msg: unknown) => { this.warned(msg) })
    client.on(UnleashEvents.Ready, () => {
      this.clientReady = true
      // Definitions from the backup or bootstrap file arrive without a `changed` event: gauges must follow them too.
      this.notify()
    })
    client.on(UnleashEvents.Changed, () => { this.fetched(true) })
    client.on(UnleashEvents.Unchanged, () => { this.fetched(false) })
  }

  /**
   * Opens the source and starts fetching (in the background: this never waits for Unleash).
   * Throws FlagBootstrapError when the bootstrap file is configured but unusable.
   */
  static async open (config: UnleashConfig, metrics: Metrics, log: Logger): Promise<UnleashFlags> {
    let bootstrap: ClientFeaturesResponse | undefined
    if (config.bootstrap !== undefined) {
      try {
        bootstrap = await readFeatures(config.bootstrap)
      } catch (err) {
        throw new FlagBootstrapError(config.bootstrap, (err as Error).message)
      }
      if (bootstrap === undefined) throw new FlagBootstrapError(config.bootstrap, 'file not found')
    }
    // The storage provider runs once the client starts, after `source.flags` is set.
    const source: { flags?: UnleashFlags } = {}
    const client = new Unleash({
      url: config.url,
      appName: config.appName,
      ...(config.instanceId === undefined ? {} : { instanceId: config.instanceId }),
      ...(config.environment === undefined ? {} : { environment: config.environment }),
      refreshInterval: config.refreshIntervalMs,
      customHeaders: { Authorization: config.token },
      disableAutoStart: true,
      skipInstanceCountWarning: true,
      // Our own storage: the backup first (it is newer than any bootstrap file shipped with
      // a deploy: a fleet-wide "off" it saw must survive a restart during an outage), then
      // the bootstrap file; written atomically (the SDK's own provider is not).
      storageProvider: {
        get: async () => {
          try {
            const backup = await readFeatures(config.backupPath)
            if (backup !== undefined) {
              source.flags?.loadedFromStore('backup')
              return backup
            }
          } catch (err) {
            log.warn({ err, file: config.backupPath }, 'the Unleash backup file cannot be used; ignored')
          }
          if (bootstrap !== undefined) source.flags?.loadedFromStore('bootstrap')
          return bootstrap
        },
        set: async (_key: string, data: ClientFeaturesResponse) => {
          await writeFileAtomic(config.backupPath, JSON.stringify(data)).then(
            () => { log.debug({ file: config.backupPath }, 'Unleash backup written') },
            (err: unknown) => { log.warn({ err, file: config.backupPath }, 'could not write the Unleash backup file') })
        }
      }
    })
    const flags = new UnleashFlags(config, client, metrics, log)
    source.flags = flags
    client.start().catch((err: unknown) => { flags.failed(err) })
    return flags
  }

  get status (): FlagSourceStatus {
    return {
      source: 'unleash',
      url: this.config.url,
      synchronized: this.synchronized,
      healthy: this.healthy,
      loadedFrom: this.loadedFrom,
      lastError: this.lastError
    }
  }

  isEnabled (flag: string, ctx: FlagContext): boolean {
    // Before any definition is loaded the SDK would emit a warning per call: answer "off" here.
    if (!this.clientReady) return false
    // Passed as it is (the SDK copies it into its own context); an undefined userId reads as absent there.
    return this.client.isEnabled(flag, ctx)
  }

  state (flag: string): FlagState {
    return flagState(flag, this.client.getFeatureToggleDefinition(flag))
  }

  /**
   * The definitions the client holds, for cluster workers to evaluate exactly what this
   * client would (src/cluster/flags.ts); null until it has any (every flag is then off).
   */
  definitions (): FlagDefinitions | null {
    if (!this.clientReady) return null
    const segments = new Map<number, NonNullable<ClientFeaturesResponse['segments']>[number]>()
    for (const f of this.client.getFeatureToggleDefinitions(true)) {
      for (const s of f.strategies ?? []) for (const seg of s.segments ?? []) if (seg !== undefined) segments.set(seg.id, seg)
    }
    return { features: this.client.getFeatureToggleDefinitions(), segments: [...segments.values()] }
  }

  onChange (listener: () => void): void {
    this.changes.onChange(listener)
  }

  async until (check: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.changes.until(check, timeoutMs)
  }

  /** Resolves true once synchronized with Unleash, or false after `timeoutMs`. */
  async whenSynchronized (timeoutMs: number): Promise<boolean> {
    return this.until(() => this.synchronized, timeoutMs)
  }

  /** Stops fetching and reporting; safe while Unleash is unreachable. */
  stop (): void {
    if (this.stopped) return
    this.stopped = true
    try {
      this.client.destroy()
    } catch (err) {
      this.log.warn({ err }, 'stopping the Unleash client failed')
    }
    // destroy() removes the repository's listeners, but a fetch in flight can still fail and
    // emit `error` on it: without a listener that throws (an unhandled rejection at exit).
    const repository = (this.client as unknown as { repository?: { on?: (e: string, f: () => void) => void } }).repository
    repository?.on?.('error', () => { this.metrics.flagErrors.inc({ kind: 'fetch' }) })
  }

  private loadedFromStore (where: 'backup' | 'bootstrap'): void {
    if (!this.synchronized) {
      this.loadedFrom = where
      this.log.info({ file: where === 'backup' ? this.config.backupPath : this.config.bootstrap }, `flags loaded from the ${where} file until Unleash answers`)
    }
  }

  /** A fetch answered (changed: new definitions; otherwise 304). */
  private fetched (changed: boolean): void {
    if (this.stopped) return
    const first = !this.synchronized
    this.synchronized = true
    this.loadedFrom = 'unleash'
    if (!this.healthy) {
      this.healthy = true
      this.lastError = null
      this.log.info({ url: this.config.url, first }, first ? 'flags synchronized with Unleash' : 'Unleash reachable again; flags are current')
    }
    this.metrics.flagSourceReady.set(1)
    if (changed || first) this.notify()
  }

  private notify (): void {
    if (!this.stopped) this.changes.notify()
  }

  private failed (err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    // The SDK prefixes what it re-emits: `Unleash Repository error:` (fetching definitions), `Unleash Metrics error:`.
    const kind = message.startsWith('Unleash Metrics error') ? 'metrics' : message.startsWith('Unleash Repository error') || (err as { code?: string }).code !== undefined ? 'fetch' : 'other'
    this.metrics.flagErrors.inc({ kind })
    if (this.stopped) return
    if (kind === 'fetch') this.unhealthy(message, err)
    else this.log.warn({ err, kind }, 'Unleash client error')
  }

  private warned (msg: unknown): void {
    const message = msg instanceof Error ? msg.message : String(msg)
    // The fetcher reports 5xx, 404 and 429 as warnings while it backs off: Unleash is not answering.
    if (/\/client\/features|Socket keep alive/.test(message)) {
      this.metrics.flagErrors.inc({ kind: 'fetch' })
      if (!this.stopped) this.unhealthy(message, msg)
    } else if (/\/client\/(metrics|register)/.test(message) || msg instanceof Error) {
      this.metrics.flagErrors.inc({ kind: 'metrics' })
    } else if (!this.stopped) {
      this.log.warn({ detail: message }, 'Unleash client warning')
    }
  }

  private unhealthy (message: string, err: unknown): void {
    this.lastError = message
    this.metrics.flagSourceReady.set(0)
    // Logged on the change only: an outage must not write a line per refresh.
    if (this.healthy) {
      this.log.warn({ err, url: this.config.url }, 'Unleash cannot be reached: serving the last flags it sent until it answers again')
    } else if (!this.synchronized && this.lastLogged !== message) {
      this.log.warn({ err, url: this.config.url }, 'Unleash cannot be reached yet: flagged routes use the backup, the bootstrap file, or legacy')
      this.lastLogged = message
    }
    this.healthy = false
  }
}

/** Listeners and a bounded wait on them: the part of FlagSource both sides share. */
export class Changes {
  private readonly listeners: (() => void)[] = []

  constructor (private readonly log: Logger) {}

  onChange (listener: () => void): void {
    this.listeners.push(listener)
  }

  notify (): void {
    for (const l of [...this.listeners]) {
      try {
        l()
      } catch (err) {
        this.log.error({ err }, 'a flag change listener failed')
      }
    }
  }

  async until (check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return true
    return new Promise<boolean>((resolve) => {
      const listener = (): void => { if (check()) finish(true) }
      const timer = setTimeout(() => { finish(false) }, timeoutMs)
      timer.unref()
      const finish = (ok: boolean): void => {
        clearTimeout(timer)
        const i = this.listeners.indexOf(listener)
        if (i !== -1) this.listeners.splice(i, 1)
        resolve(ok)
      }
      this.listeners.push(listener)
    })
  }
}
