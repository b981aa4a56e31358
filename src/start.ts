import type { AddressInfo } from 'node:net'
import { AuditLog } from './adapters/audit-log.js'
import { mergeBreakers } from './adapters/breakers.js'
import { ProcessStore } from './adapters/open-store.js'
import type { DivergenceStore } from './adapters/divergence-store.js'
import { UnleashFlags } from './adapters/flags.js'
import { createMetrics, type Metrics } from './adapters/metrics-registry.js'
import { readState } from './adapters/state-file.js'
import { UnleashAdminApi } from './adapters/unleash-admin.js'
import type { Upstream } from './adapters/upstreams.js'
import { buildAdmin, buildTraffic, type App, type Deps, type TrafficParts } from './app.js'
import type { LiveConfig } from './config/live.js'
import type { Config } from './config/schema.js'
import type { BreakerSource, Divergences } from './control/admin-api.js'
import { ControlPlane } from './control/control-plane.js'
import { SyncControl } from './control/sync-control.js'
import { VerifyControl } from './control/verify-control.js'
import { RampControl } from './control/ramp-control.js'
import { TrafficWatch } from './control/traffic-watch.js'
import { ConsoleSessions } from './control/console-sessions.js'
import type { Health, WorkersReady } from './control/health.js'
import type { MetricsText } from './control/metrics-endpoint.js'
import type { FlagSource } from './core/flags.js'
import type { RouteTableRef } from './core/route-table.js'
import { drainTraffic, readyWhenFlagsAre, urlOf, type Syncing } from './lifecycle.js'
import type { Shadowing } from './pipeline/shadow/shadowing.js'
import { applyToTraffic, reload } from './reload.js'
import { VERSION } from './version.js'

/**
 * The start sequence, one for both ways Ficus runs: in one process (InProcessTraffic,
 * below) or as a cluster's primary whose workers serve traffic (cluster/primary.ts). The
 * control side is opened (state file, audit log, Unleash, the ControlPlane), the traffic
 * side attached to it, the admin listener started first (so health answers during start),
 * then traffic; readiness follows the flags. The started instance reloads and stops the
 * same way in both modes.
 */

/** A started Ficus, as main.ts drives it. */
export interface Instance {
  /** Reads routes.yaml again and applies it (never throws; the outcome is logged and counted; skipped once stopping). */
  reload(why: string): Promise<'success' | 'failure' | 'skipped'>
  /** Readiness off, drain, finish in flight (within shutdown.timeout), then the admin listener closes. */
  stop(): Promise<void>
  /** shutdown.timeout in effect, in ms. */
  shutdownTimeoutMs(): number
  /** Exiting at once (a second signal, a crash): ends what this instance started (cluster workers). */
  kill(): void
}

/** The control side, once open: what a TrafficHost is attached to. */
export interface ControlSide {
  readonly config: Config
  readonly deps: Deps
  readonly metrics: Metrics
  /** The config in effect (replaced by a reload). */
  readonly live: LiveConfig
  readonly health: Health
  readonly control: ControlPlane
  /** The flags the control plane sees (undefined without an unleash: block). */
  readonly flags: (FlagSource & Syncing) | undefined
  /** This process's handle on the sync store: the admin API's, and the traffic side's when it runs here. */
  readonly store: ProcessStore
}

/** Where traffic is served: in this process, or by a cluster's workers. */
export interface TrafficHost {
  /** Cluster mode: the flags the control plane sees are the primary's relay of them to its workers. */
  flagsFor?(flags: UnleashFlags): FlagSource & Syncing
  /** Builds what serves traffic (not listening yet). */
  attach(side: ControlSide): Promise<void>
  /** What /metrics renders, and where /admin/divergences reads (after attach). */
  readonly metricsText: MetricsText
  readonly divergences: Divergences
  /** new's circuit breakers (after attach). */
  readonly breakers: BreakerSource
  /** Cluster mode: readiness needs every worker. */
  readiness?(): WorkersReady
  /** Fields the "ficus listening" line adds (cluster mode: how many workers). */
  readonly described?: Readonly<Record<string, unknown>>
  /** Starts serving traffic; resolves with its URL once listening. */
  listen(): Promise<string>
  /** A reload: swaps `next` into the traffic side; `swapTable(apply)` runs `apply` as the route table is swapped. */
  reconfigure(next: Config, text: string, swapTable: (apply: () => void) => Promise<void>): Promise<void>
  /** SIGTERM: readiness off, drain delay, stop listening, finish in flight. */
  drain(health: Health, shutdown: Config['shutdown']): Promise<void>
  /** Start failed after attach: undo what it started. */
  abandon(): Promise<void>
  /** Exiting at once. */
  kill(): void
}

export interface Started {
  readonly instance: Instance
  readonly trafficUrl: string
  readonly adminUrl: string
  readonly admin: App
  readonly side: ControlSide
  readonly audit: AuditLog
  /** Unleash, when routes.yaml has an unleash: block. */
  readonly flags: UnleashFlags | undefined
}

/** Starts Ficus with its traffic served by `host`. */
export async function start(config: Config, deps: Deps, host: TrafficHost): Promise<Started> {
  const { logger } = deps
  const metrics = deps.metrics ?? createMetrics()
  metrics.buildInfo.set({ version: VERSION }, 1)
  const health: Health = { phase: 'starting' }
  const live: LiveConfig = { current: config }
  const { control, audit, flags, seen } = await openControl(config, deps, metrics, host.flagsFor?.bind(host))
  const store = new ProcessStore(config.store)
  const side: ControlSide = { config, deps, metrics, live, health, control, flags: seen, store }
  await host.attach(side)
  // On this process's handle on the sync store, opened when first needed (a cluster's primary has no traffic side).
  const sync = new SyncControl({ live, store, audit, log: logger })
  // Verify jobs run by Ficus: on their schedule, and through the admin API.
  const verify = new VerifyControl({ live, store, audit, log: logger, metrics })
  verify.start()
  // Ramps: every replica follows them and watches its trip-wire; the one holding the lease drives.
  const ramp = new RampControl({ live, control, store, audit, log: logger, metrics, source: host.metricsText, flags: seen, verify: (job) => verify.fact(job) })
  ramp.start()
  const admin = await buildAdmin(logger, {
    metrics: host.metricsText,
    health,
    ...(host.readiness === undefined ? {} : { workers: host.readiness.bind(host) }),
    api: { live, table: control.table, divergences: host.divergences, breakers: host.breakers, control, audit, sync, verify, ramp, sessions: new ConsoleSessions(), traffic: new TrafficWatch({ live, source: host.metricsText }) },
    close: async () => {
      flags?.stop()
      await verify.close().catch((err: unknown) => { logger.error({ err }, 'stopping the verify runs failed') })
      await ramp.close().catch((err: unknown) => { logger.error({ err }, 'stopping the ramp controller failed') })
      await sync.close().catch((err: unknown) => { logger.error({ err }, 'closing the admin API\'s sync store failed') })
      await audit.close()
    }
  })
  let trafficUrl: string
  try {
    await admin.listen({ host: config.admin.host, port: config.admin.port })
    trafficUrl = await host.listen()
  } catch (err) {
    await Promise.allSettled([host.abandon(), admin.close()])
    throw err
  }
  const adminUrl = urlOf(admin.server.address() as AddressInfo)
  logger.info({ traffic: trafficUrl, admin: adminUrl, routes: config.routes.length, config: config.file, ...host.described }, 'ficus listening')
  readyWhenFlagsAre(health, seen, config, logger)
  let stopping: Promise<void> | null = null
  const instance: Instance = {
    reload: async (why) => {
      if (stopping !== null) {
        logger.warn({ why }, 'reload ignored: stopping')
        return 'skipped'
      }
      return reload({ file: config.file, env: deps.env ?? process.env, log: logger, metrics, live, control, hasFlags: flags !== undefined, host }, why)
    },
    stop: async () => {
      stopping ??= (async () => {
        try {
          await host.drain(health, live.current.shutdown)
        } finally {
          await admin.close()
        }
      })()
      return stopping
    },
    shutdownTimeoutMs: () => live.current.shutdown.timeoutMs,
    kill: () => { host.kill() }
  }
  return { instance, trafficUrl, adminUrl, admin, side, audit, flags }
}

/** The audit log's file: next to the state file (`ficus-state.json` → `ficus-state.audit.jsonl`). */
function auditFileOf(state: string): string {
  return `${state.replace(/\.json$/i, '')}.audit.jsonl`
}

/**
 * Opens the state file, the audit log and Unleash, and the ControlPlane over them (one per
 * Ficus: in cluster mode, the primary's). `flagsFor` gives the ControlPlane another view of
 * the flags (a cluster primary's relay); `seen` is the view in use.
 */
async function openControl(config: Config, deps: Deps, metrics: Metrics, flagsFor?: (flags: UnleashFlags) => FlagSource & Syncing) {
  const { logger } = deps
  // Runtime overrides from the state file win over routes.yaml (a corrupt file stops start-up).
  const state = config.state === undefined ? { version: 1 as const, routes: {} } : await readState(config.state)
  const audit = await AuditLog.open(config.state === undefined ? undefined : auditFileOf(config.state))
  if (deps.startupAudit !== undefined) await audit.appendAll(deps.startupAudit)
  const flags = config.unleash === undefined ? undefined : await UnleashFlags.open(config.unleash, metrics, logger)
  const unleashAdmin = config.unleash?.admin === undefined ? undefined : new UnleashAdminApi(config.unleash.admin)
  const seen = flags === undefined ? undefined : flagsFor?.(flags) ?? flags
  const control = new ControlPlane(config, state.routes, audit, metrics, logger, {
    ...(seen === undefined ? {} : { flags: seen }),
    ...(unleashAdmin === undefined ? {} : { admin: unleashAdmin }),
    settleMs: 2 * (config.unleash?.refreshIntervalMs ?? 0) + 2_000
  })
  return { control, audit, flags, seen }
}

/** Traffic served by this process: the pipeline on the traffic listener (app.ts). */
class InProcessTraffic implements TrafficHost {
  private side: ControlSide | undefined
  private parts: TrafficParts | undefined

  get metricsText (): MetricsText {
    return this.side!.metrics.register
  }

  get divergences (): Divergences {
    return this.parts!.divergences
  }

  readonly breakers: BreakerSource = {
    snapshots: () => mergeBreakers([this.parts!.breakers.snapshots()])
  }

  get traffic (): TrafficParts {
    return this.parts!
  }

  async attach (side: ControlSide): Promise<void> {
    this.side = side
    const { config, deps, metrics, live, health, control, flags, store } = side
    this.parts = await buildTraffic(config, deps, { metrics, live, table: control.table, health, flags, store })
  }

  async listen (): Promise<string> {
    const { listen } = this.side!.config
    await this.parts!.traffic.listen({ host: listen.host, port: listen.port })
    return urlOf(this.parts!.traffic.server.address() as AddressInfo)
  }

  async reconfigure (next: Config, _text: string, swapTable: (apply: () => void) => Promise<void>): Promise<void> {
    const { live } = this.side!
    const { upstreams, shadowing } = this.parts!
    await applyToTraffic({ live, upstreams, shadowing }, next, swapTable, this.side!.deps.logger)
  }

  async drain (health: Health, shutdown: Config['shutdown']): Promise<void> {
    await drainTraffic(this.parts!.traffic, health, shutdown, this.side!.deps.logger)
  }

  async abandon (): Promise<void> {
    await this.parts?.traffic.close()
  }

  kill (): void {}
}

/** One process's parts, for tests and tools that look inside a running Ficus. */
export interface Ficus {
  readonly traffic: App
  readonly admin: App
  readonly health: Health
  readonly metrics: Metrics
  readonly table: RouteTableRef
  /** By name; a reload adds, replaces and removes entries. */
  readonly upstreams: Map<string, Upstream>
  readonly shadowing: Shadowing
  readonly divergences: DivergenceStore
  readonly control: ControlPlane
  readonly audit: AuditLog
  readonly live: LiveConfig
  /** Unleash, when routes.yaml has an unleash: block (read at start; a reload does not change it). */
  readonly flags: UnleashFlags | undefined
  /** Dual writes (store, deliverer), once a route is dual; null before. */
  readonly sync: TrafficParts['sync']
}

export interface Running extends Instance {
  readonly ficus: Ficus
  /** `http://host:port` of the traffic listener, with the port actually bound. */
  readonly trafficUrl: string
  readonly adminUrl: string
}

/** Starts Ficus in this process and listens (traffic and admin). */
export async function startFicus(config: Config, deps: Deps): Promise<Running> {
  const host = new InProcessTraffic()
  const s = await start(config, deps, host)
  const { traffic, upstreams, shadowing, divergences, sync } = host.traffic
  const { metrics, health, live, control } = s.side
  const ficus: Ficus = { traffic, admin: s.admin, health, metrics, table: control.table, upstreams, shadowing, divergences, control, audit: s.audit, live, flags: s.flags, sync }
  return { ...s.instance, ficus, trafficUrl: s.trafficUrl, adminUrl: s.adminUrl }
}
