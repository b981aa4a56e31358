import type { AddressInfo } from 'node:net'
import type { FlagSourceStatus } from './core/flags.js'
import type { Logger } from './adapters/logger.js'
import type { App } from './app.js'
import type { Config } from './config/schema.js'
import type { Health } from './control/health.js'

/** After shutdown.timeout, time left for closing before a process exits anyway. */
export const STOP_GRACE_MS = 5_000

/**
 * Start and stop steps shared by one-process Ficus and a cluster's primary (start.ts) and
 * its workers (src/cluster/).
 */

/** `http://host:port` of a listening server. */
export function urlOf(a: AddressInfo): string {
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
  return `http://${host}:${a.port}`
}

/**
 * Turns `health` ready: at once without Unleash; with it, once the first fetch succeeded or
 * after unleash.syncTimeout (so a new replica does not serve stale flags, but not forever).
 */
/** What readiness waits on: Unleash itself, or (cluster primary) Unleash and every worker. */
export interface Syncing {
  whenSynchronized(timeoutMs: number): Promise<boolean>
  readonly status: FlagSourceStatus
}

export function readyWhenFlagsAre(health: Health, flags: Syncing | undefined, config: Config, logger: Logger): void {
  if (flags === undefined || config.unleash === undefined) {
    health.phase = 'ready'
    return
  }
  const wait = config.unleash.syncTimeoutMs
  void flags.whenSynchronized(wait).then((synced) => {
    if (health.phase !== 'starting') return
    if (!synced) {
      const from = flags.status.loadedFrom
      logger.warn({ waitedMs: wait, flagsFrom: from, error: flags.status.lastError },
        from === 'none'
          ? 'Unleash did not answer within unleash.syncTimeout and there is no backup or bootstrap file: every flagged route serves legacy until it answers'
          : `Unleash did not answer within unleash.syncTimeout: serving with the flags of the ${from} file until it answers`)
    }
    health.phase = 'ready'
  })
}

/**
 * SIGTERM for a traffic listener: load balancers see /readyz fail at once and stop sending;
 * traffic is still served for the drain delay (answers carry Connection: close), then
 * listening stops and the requests in flight finish, all within `timeoutMs` (past it the
 * connections still open are cut).
 */
export async function drainTraffic(traffic: App, health: Health, shutdown: { readonly drainDelayMs: number; readonly timeoutMs: number }, logger: Logger): Promise<void> {
  health.phase = 'draining'
  const { drainDelayMs, timeoutMs } = shutdown
  const cap = setTimeout(() => {
    logger.warn({ timeoutMs }, 'shutdown.timeout reached: cutting the connections still open')
    traffic.server.closeAllConnections()
  }, timeoutMs)
  cap.unref()
  try {
    if (drainDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, drainDelayMs))
    logger.info({ drainDelayMs }, 'drain delay over: no new connections; finishing the requests in flight')
    await traffic.close()
  } finally {
    clearTimeout(cap)
  }
}
