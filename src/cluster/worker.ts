import cluster from 'node:cluster'
import type { AddressInfo } from 'node:net'
import { createLogger, type Logger } from '../adapters/logger.js'
import { createMetrics, type Metrics } from '../adapters/metrics-registry.js'
import { ProcessStore } from '../adapters/open-store.js'
import { buildTraffic, type TrafficParts } from '../app.js'
import type { LiveConfig } from '../config/live.js'
import { parseConfig } from '../config/load-config.js'
import type { Config } from '../config/schema.js'
import { tableOf } from '../core/route-table.js'
import type { Overrides } from '../core/overrides.js'
import { drainTraffic, STOP_GRACE_MS } from '../lifecycle.js'
import type { Health } from '../control/health.js'
import type { RouteTableRef } from '../core/route-table.js'
import { applyToTraffic } from '../reload.js'
import { RelayedFlags } from './flags.js'
import { isMessage, type ConfigText, type FromWorker, type ToWorker } from './protocol.js'

/**
 * A cluster worker (src/cluster/primary.ts starts N of them): the traffic listener on the
 * shared port, the proxy pipeline, shadowing, its own divergence store and metrics
 * registry. Everything it knows of routes and flags comes from the primary, and it answers
 * the primary's questions (metrics, divergences). It logs to the same stdout, every line
 * with `worker: <id>`.
 *
 * It stops (drains like one Ficus would, then exits 0) when the primary says so, and when
 * the primary is gone (the IPC channel closed); it ignores SIGTERM and SIGINT.
 */


interface Serving {
  readonly logger: Logger
  readonly metrics: Metrics
  readonly live: LiveConfig
  readonly table: RouteTableRef
  readonly health: Health
  readonly parts: TrafficParts
  readonly flags: RelayedFlags | undefined
}

const id = cluster.worker?.id ?? 0
let serving: Serving | null = null
let stopping = false
/** Messages are handled one at a time, in order: a change is applied after the ones before it. */
let queue: Promise<void> = Promise.resolve()

function send(m: FromWorker, then?: () => void): void {
  if (process.connected && process.send !== undefined) process.send(m, undefined, {}, () => then?.())
  else then?.()
}

function reply(seq: number, value: unknown): void {
  send({ t: 'reply', seq, value })
}

/** The same text and environment as the primary: the same Config. */
function parse(c: ConfigText): Config {
  return parseConfig(c.text, c.file, process.env)
}

async function start(m: Extract<ToWorker, { t: 'init' }>): Promise<void> {
  const config = parse(m.start)
  const logger = createLogger(m.logLevel).child({ worker: id })
  const metrics = createMetrics()
  const live: LiveConfig = { current: config }
  const table: RouteTableRef = { current: tableOf(config, m.overrides) }
  const health: Health = { phase: 'starting' }
  const flags = config.unleash === undefined || m.flags === null ? undefined : new RelayedFlags(config.unleash, m.flags, metrics, logger)
  // The worker's own handle on the sync store (the primary has one for the admin API).
  const parts = await buildTraffic(config, { logger }, { metrics, live, table, health, flags, store: new ProcessStore(config.store) })
  for (const [route, epoch] of Object.entries(m.epochs)) parts.divergences.adopt(route, epoch)
  serving = { logger, metrics, live, table, health, parts, flags }
  // Reloaded since Ficus started: built as at start (listen, limits, …), then reloaded, as one process would be.
  if (m.current !== null) await applyRoutes(serving, m.current, m.overrides)
  await parts.traffic.listen({ host: config.listen.host, port: config.listen.port })
  health.phase = 'ready'
  const address = parts.traffic.server.address() as AddressInfo
  logger.info({ pid: process.pid, port: address.port }, 'worker listening')
  send({ t: 'listening', address: { address: address.address, family: address.family, port: address.port } })
}

async function applyRoutes(s: Serving, config: ConfigText | null, overrides: Overrides): Promise<void> {
  if (config === null) {
    s.table.current = tableOf(s.live.current, overrides)
    return
  }
  const next = parse(config)
  await applyToTraffic({ live: s.live, upstreams: s.parts.upstreams, shadowing: s.parts.shadowing }, next, async (apply) => {
    apply()
    s.table.current = tableOf(next, overrides)
  }, s.logger)
}

async function handle(m: ToWorker): Promise<void> {
  if (m.t === 'drain') {
    stop('the primary is stopping')
    return
  }
  if (m.t === 'init') {
    try {
      await start(m)
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { address?: string; port?: number }
      stopping = true
      serving?.logger.fatal({ err }, 'worker could not start')
      // The primary reports it (a port in use, …) and exits 1 when it happens at start.
      send({ t: 'failed', error: { message: e.message, ...(e.code === undefined ? {} : { code: e.code, address: e.address, port: e.port }) } }, () => process.exit(1))
    }
    return
  }
  const s = serving
  if (s === null) return
  switch (m.t) {
    case 'routes':
      await applyRoutes(s, m.config, m.overrides)
      reply(m.seq, null)
      return
    case 'flags':
      s.flags?.update(m.flags)
      reply(m.seq, null)
      return
    case 'metrics':
      reply(m.seq, await s.metrics.register.getMetricsAsJSON())
      return
    case 'samples':
      reply(m.seq, s.parts.divergences.samples(m.route, m.limit, m.since))
      return
    case 'summary':
      reply(m.seq, s.parts.divergences.summary(m.route, m.since))
      return
    case 'epochs':
      for (const [route, epoch] of Object.entries(m.epochs)) s.parts.divergences.adopt(route, epoch)
      reply(m.seq, null)
      return
    case 'breakers':
      reply(m.seq, s.parts.breakers.snapshots())
  }
}

/**
 * Drains like one Ficus (readiness off, drain delay, stop listening, finish in flight), then
 * exits 0. `now`: no drain delay (the primary is gone, and with it readiness and the shared
 * listening socket: the delay would serve no one).
 */
function stop(why: string, now = false): void {
  if (stopping) return
  stopping = true
  const s = serving
  if (s === null) process.exit(0)
  s.logger.info({ why }, 'worker stopping')
  const { timeoutMs } = s.live.current.shutdown
  const shutdown = now ? { drainDelayMs: 0, timeoutMs } : s.live.current.shutdown
  setTimeout(() => {
    s.logger.error('worker stop did not finish within shutdown.timeout; exiting')
    s.logger.flush()
    process.exit(1)
  }, timeoutMs + STOP_GRACE_MS).unref()
  drainTraffic(s.parts.traffic, s.health, shutdown, s.logger).then(() => {
    s.flags?.stop()
    s.logger.flush()
    process.exit(0)
  }, (err: unknown) => {
    s.logger.error({ err }, 'worker stop failed')
    s.logger.flush()
    process.exit(1)
  })
}

process.on('message', (m: unknown) => {
  if (!isMessage<ToWorker>(m)) return
  const run = async (): Promise<void> => handle(m)
  queue = queue.then(run).catch((err: unknown) => {
    const seq = (m as { seq?: number }).seq
    if (seq !== undefined) send({ t: 'reply', seq, error: (err as Error).message })
    serving?.logger.error({ err, message: m.t }, 'worker could not handle a message from the primary')
  })
})
// The primary coordinates the stop. A signal sent to the whole process group (Ctrl-C, a
// systemd unit's SIGTERM) reaches the workers too: were they to stop on it, one that exits
// before the primary saw its own signal would be taken for a crash and replaced.
const ignored = (signal: NodeJS.Signals): void => { serving?.logger.debug({ signal }, 'signal ignored by a worker: the primary stops the workers') }
process.on('SIGTERM', ignored)
process.on('SIGINT', ignored)
process.on('SIGHUP', ignored) // reloads are the primary's
// The primary is gone: nobody answers for this worker any more (admin, readiness).
process.on('disconnect', () => { stop('the primary is gone', true) })
process.on('uncaughtException', (err) => {
  if (serving !== null) {
    serving.logger.fatal({ err }, 'uncaught exception in a worker; exiting (the primary starts a new one)')
    serving.logger.flush()
  } else {
    process.stderr.write(`ficus worker: ${err.stack ?? String(err)}\n`)
  }
  process.exit(1)
})
send({ t: 'hello' })
