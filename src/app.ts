import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import Fastify, { LogController, type FastifyInstance, type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault } from 'fastify'
import type { AuditEntry } from './adapters/audit-log.js'
import { Breakers } from './adapters/breakers.js'
import { DivergenceStore } from './adapters/divergence-store.js'
import type { Logger } from './adapters/logger.js'
import type { Metrics } from './adapters/metrics-registry.js'
import type { ProcessStore } from './adapters/open-store.js'
import { closeUpstreams, createUpstreams, type Upstream } from './adapters/upstreams.js'
import type { LiveConfig } from './config/live.js'
import type { Config } from './config/schema.js'
import adminApi, { type AdminOptions } from './control/admin-api.js'
import consolePlugin from './control/console.js'
import healthEndpoint, { type Health, type WorkersReady } from './control/health.js'
import metricsEndpoint, { type MetricsText } from './control/metrics-endpoint.js'
import type { Random } from './core/decide.js'
import type { FlagSource } from './core/flags.js'
import type { RouteTableRef } from './core/route-table.js'
import { ficusError } from './errors.js'
import { Admit } from './pipeline/admit.js'
import { Decide } from './pipeline/decide.js'
import { answerExpectContinue, clientErrorHandler, fastLane, frameworkErrors, refuseConnect, refuseExpectation, requestIdOf, rewriteUrl, targetOf, type EdgeDeps } from './pipeline/edge.js'
import { Exchanges, type Exchange } from './pipeline/exchange.js'
import type { BodyGuard } from './pipeline/forward/body-guard.js'
import { Forwarder } from './pipeline/forward/forwarder.js'
import { recorder } from './pipeline/record.js'
import { sendError } from './pipeline/respond.js'
import { Shadowing } from './pipeline/shadow/shadowing.js'
import { needsSync, SyncRuntime } from './pipeline/sync/runtime.js'
import { Upgrades } from './pipeline/upgrade.js'

/**
 * The two apps of a Ficus, built (not listening): the traffic listener, whose request
 * pipeline is listed in buildTraffic, and the admin listener. start.ts starts them.
 */

/** What Ficus needs from outside; tests swap any of them. */
export interface Deps {
  readonly logger: Logger
  readonly metrics?: Metrics
  readonly random?: Random
  /** Monotonic milliseconds. */
  readonly now?: () => number
  /** Entries to audit before Ficus listens (`--reset-state`). */
  readonly startupAudit?: readonly AuditEntry[]
  /** The environment routes.yaml's ${VARS} are expanded from, at start and on reload (default: process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>
}

/** A fastify instance logging through our pino logger. */
export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, Logger>

/** How often Node checks request head/body timeouts, in ms (Node's default of 30 s makes a 10 s limit fire at up to 40 s). */
const TIMEOUT_CHECK_MS = 250

/** What the traffic side reads and does not own: shared with the control side, or a cluster worker's own. */
export interface TrafficShared {
  readonly metrics: Metrics
  readonly live: LiveConfig
  readonly table: RouteTableRef
  readonly health: Health
  /** Unleash's verdicts for flagged routes (a cluster worker's are relayed by the primary). */
  readonly flags: FlagSource | undefined
  /** The process's handle on the sync store (shared with the admin API in one process), opened when a route is dual. */
  readonly store: ProcessStore
}

export interface TrafficParts {
  readonly traffic: App
  readonly upstreams: Map<string, Upstream>
  readonly shadowing: Shadowing
  readonly divergences: DivergenceStore
  /** new's circuit breaker per route (GET /admin/routes shows them). */
  readonly breakers: Breakers
  /** Dual writes (store, deliverer), once a route is dual; null before. */
  readonly sync: () => SyncRuntime | null
}

/**
 * The traffic listener's app (not listening). A request meets the pipeline's stages in this
 * order, each a module of its own under src/pipeline/ with one job:
 *
 *   1. edge + admit  Node's parser refusals, absolute-form targets, 100-continue, CONNECT
 *                    (edge.ts); then what must not be forwarded is refused and the upstream
 *                    headers are built (admit.ts). An Upgrade request (WebSocket) leaves
 *                    HTTP here: admitted and decided the same way, then tunnelled (upgrade.ts)
 *   2. decide        route, sticky key, flag: the one Decision later stages read (decide.ts)
 *   2b. sync         on a dual route only: ids through the id map; a write is recorded
 *                    before it is forwarded and its answer held until it is (sync/dual.ts)
 *   3. forward       body guard, the attempt on the decided side, streaming back, and the
 *                    fallback to legacy when new fails first (forward/)
 *   4. shadow        a copy to the other side, compared off the client's path (shadow/)
 *   5. record        once the response is over: metrics and the access-log line (record.ts)
 *
 * The request's state has one owner, its Exchange (exchange.ts), opened by `serve` below.
 */
export async function buildTraffic(config: Config, deps: Deps, shared: TrafficShared): Promise<TrafficParts> {
  const { logger } = deps
  const { metrics, live, table, health, flags, store } = shared
  const now = deps.now ?? (() => performance.now())
  const { limits } = config
  const upstreams = createUpstreams(config.upstreams)
  const divergences = new DivergenceStore(config.shadow.samples)

  const record = recorder(metrics, logger, now) // 5. record, when each response is over
  const exchanges = new Exchanges(now, record.exchange)
  const edge: EdgeDeps = { metrics, limits, exchanges, socketRefused: record.socketRefusal } // 1.
  const admit = new Admit(limits, live, metrics) // 1.
  const decide = new Decide(table, flags, deps.random ?? Math.random, metrics) // 2.
  const breakers = new Breakers(metrics, logger, now)
  const forward = new Forwarder({ upstreams, limits, live, metrics, breakers, now, draining: () => health.phase === 'draining' }) // 3.
  // 2b. Dual writes: opened at start when a route is dual, or when a reload makes one dual.
  let sync: SyncRuntime | null = null
  // compare.ids reads the id map of dual routes once the store is open.
  const shadow = new Shadowing({ upstreams, live, metrics, store: divergences, log: logger, now, idMap: () => sync?.store ?? null }) // 4.
  // Upgrade requests (WebSocket): the same edge, admit and decide, then a tunnel (never shadowed).
  const upgrades = new Upgrades({ exchanges, admit, decide, upstreams, live, limits, metrics, breakers, log: logger, now })
  let syncStarted: Promise<void> = Promise.resolve()
  const syncRuntime = (): SyncRuntime => {
    if (sync === null) {
      sync = new SyncRuntime(config, store, table, upstreams, metrics, logger)
      // A store that cannot be read refuses dual writes (503) until it can; reads go on.
      syncStarted = sync.start().catch((err: unknown) => { logger.error({ err }, 'sync: the store could not be opened') })
    }
    return sync
  }
  if (needsSync(config)) {
    syncRuntime()
    await syncStarted
  }

  /** One request through stages 1 to 4 (5 runs when its response is over). */
  function serve(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    // The parser refused this request's body while its head was on its way here: the edge
    // answered that on the socket and recorded it; there is nothing left to serve.
    if (req.socket.writableEnded) return
    const ex = exchanges.open(req, res, requestId, targetOf(req))
    try {
      if (!admit.admit(ex)) return
      if (!decide.decide(ex)) return
      const start = (body: BodyGuard | null): void => {
        try {
          forward.send(ex, body)
          // After the primary is on its way: a copy never goes ahead of the request a client waits for.
          if (ex.decision!.shadow) shadow.begin(ex, body)
        } catch (err) {
          internal(ex, err)
        }
      }
      if (ex.rule!.sync?.mode === 'dual') syncRuntime().dual.serve(ex, forward, start, (err) => { internal(ex, err) })
      else forward.receive(ex, start)
    } catch (err) {
      internal(ex, err)
    }
  }

  /** A bug of Ficus's: a 500 with the catalogue's code (never a stack), logged, the connection closed. */
  function internal(ex: Exchange, err: unknown): void {
    const e = ficusError('FICUS_ERR_INTERNAL', { cause: err })
    ex.fail(e)
    logger.error({ err, reqId: ex.requestId }, 'internal error while proxying')
    sendError(ex.res, e, ex.requestId, true)
  }

  const traffic = Fastify({
    loggerInstance: logger,
    // one access line per request, written by the record stage
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (parent) => parent, // no per-request child logger: reqId is in the line
    genReqId: requestIdOf,
    rewriteUrl,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    http: {
      maxHeaderSize: limits.headerBytes,
      headersTimeout: limits.headTimeoutMs,
      requireHostHeader: false, // checked by the admit stage, to answer with a Ficus code
      connectionsCheckingInterval: TIMEOUT_CHECK_MS
    },
    routerOptions: { maxParamLength: limits.headerBytes },
    clientErrorHandler: clientErrorHandler(edge),
    frameworkErrors: frameworkErrors(edge)
  })
  answerExpectContinue(traffic.server, edge)
  refuseExpectation(traffic.server, edge)
  refuseConnect(traffic.server, edge)
  upgrades.listen(traffic.server)
  // Every method but CONNECT, registered as bodyless so fastify never parses, buffers or
  // judges a body (it would answer 415 to a malformed Content-Type): the pipeline streams it.
  for (const m of METHODS) {
    if (m !== 'CONNECT') traffic.addHttpMethod(m, { hasBody: false, overrideExisting: true })
  }
  traffic.route({
    method: traffic.supportedMethods.filter((m) => m !== 'CONNECT'),
    url: '/*',
    handler: (request, reply) => {
      reply.hijack()
      serve(request.raw, reply.raw, request.id)
    }
  })
  // The common request skips fastify's router (edge.ts fastLane); the rest, and every request
  // once closing, go the way above.
  let closing = false
  fastLane(traffic.server, serve, () => closing, limits.headerBytes)
  // Before the server closes: open tunnels would keep it from closing (they ran through the drain delay).
  traffic.addHook('preClose', async () => {
    closing = true
    await upgrades.close()
  })
  traffic.addHook('onClose', async () => {
    breakers.close()
    await Promise.all([closeUpstreams(upstreams), shadow.close(), sync?.close()])
  })
  return { traffic, upstreams, shadowing: shadow, divergences, breakers, sync: () => sync }
}

export interface AdminParts {
  /** What GET /metrics renders: a prom-client Registry, or a cluster primary's aggregate of its workers'. */
  readonly metrics: MetricsText
  readonly health: Health
  /** Cluster mode: how many workers are ready, of how many (readiness needs all). */
  readonly workers?: () => WorkersReady
  readonly api: AdminOptions
  /** Run when the admin app closes (after the listener): flags, audit log. */
  readonly close: () => Promise<void>
}

/** The admin listener's app (not listening): /metrics, /healthz, /readyz, /admin/*. */
export async function buildAdmin(logger: Logger, parts: AdminParts): Promise<App> {
  const admin = Fastify({
    loggerInstance: logger.child({ component: 'admin' }),
    logController: new LogController({ disableRequestLogging: true }),
    // Admin input is checked, not cleaned: an unknown parameter is an error, not ignored.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, useDefaults: true, allErrors: true } }
  })
  await admin.register(metricsEndpoint, { metrics: parts.metrics })
  await admin.register(healthEndpoint, { health: parts.health, ...(parts.workers === undefined ? {} : { workers: parts.workers }) })
  await admin.register(adminApi, parts.api)
  // The console: its page and sign-in; it acts through the admin API above.
  await admin.register(consolePlugin, { live: parts.api.live, sessions: parts.api.sessions, control: parts.api.control })
  admin.addHook('onClose', parts.close)
  return admin
}
