import { Upstream } from './adapters/upstreams.js'
import type { Logger } from './adapters/logger.js'
import type { Ficus } from './app.js'
import type { LiveConfig } from './config/live.js'
import { ConfigError, formatProblem, isLoopback, loadConfig } from './config/load-config.js'
import type { Config } from './config/schema.js'
import type { Shadowing } from './pipeline/shadow/shadowing.js'

/**
 * Reload (SIGHUP, or routes.yaml changed on disk): the file is read and validated like at
 * start; an invalid one is rejected with every problem and the running config stays. A
 * valid one is swapped in: requests in flight finish with the decision they started with,
 * the next request sees the new routes. Upstream pools whose settings did not change are
 * kept (with their connections); a changed or removed upstream's pool finishes its requests
 * and closes.
 */

/** Keys read once at start: a change waits for a restart (and is said so in the log). */
export function restartOnly(prev: Config, next: Config): string[] {
  const keys: [string, (c: Config) => unknown][] = [
    ['listen', (c) => c.listen],
    ['admin.host', (c) => c.admin.host],
    ['admin.port', (c) => c.admin.port],
    ['limits', (c) => c.limits],
    ['state', (c) => c.state],
    ['log.level', (c) => c.log.level],
    ['shadow.samples', (c) => c.shadow.samples],
    ['unleash', (c) => c.unleash]
  ]
  return keys.filter(([, get]) => JSON.stringify(get(prev)) !== JSON.stringify(get(next))).map(([k]) => k)
}

/** Why a valid file still cannot be applied while running, or null. */
export function refusal(prev: Config, next: Config, hasFlags: boolean): string | null {
  const flagged = next.routes.filter((r) => r.flag !== null).map((r) => r.name)
  if (!hasFlags && flagged.length > 0) {
    return `routes ${flagged.join(', ')} read Unleash flags, but this Ficus was started without Unleash: restart it to connect (a reload cannot)`
  }
  // The admin port stays where it was bound until a restart: it must not lose its tokens there.
  if (!isLoopback(prev.admin.host) && next.admin.tokens.length === 0) {
    return `the admin API listens on ${prev.admin.host} (until a restart) and the new file has no admin token: refused, so the admin API is never left open`
  }
  return null
}

/**
 * Swaps a validated config into a running Ficus; returns the changed keys that need a
 * restart. Throws (nothing applied) when the file cannot be applied while running.
 */
async function applyConfig(ficus: Ficus, next: Config, log: Logger): Promise<string[]> {
  const prev = ficus.live.current
  const refused = refusal(prev, next, ficus.flags !== undefined)
  if (refused !== null) throw new Error(refused)
  const restart = restartOnly(prev, next)
  await applyToTraffic(ficus, next, async (apply) => ficus.control.reconfigure(next, apply), log)
  return restart
}

/** The parts of the traffic side a reload changes (a Ficus, or a cluster worker). */
export interface TrafficTarget {
  readonly live: LiveConfig
  /** By name; a reload adds, replaces and removes entries. */
  readonly upstreams: Map<string, Upstream>
  readonly shadowing: Shadowing
}

/**
 * Swaps `next` into the traffic side: upstream pools, shadow pools, the live config.
 * `swapTable` must run `apply` and swap the route table in one step (a ControlPlane's
 * reconfigure, or a worker's own table).
 */
export async function applyToTraffic(target: TrafficTarget, next: Config, swapTable: (apply: () => void) => Promise<void>, log: Logger): Promise<void> {
  const prev = target.live.current
  const upstreams = target.upstreams
  const retired: Upstream[] = []
  await swapTable(() => {
    // New and changed upstreams first, so the new routes find theirs ...
    for (const cfg of Object.values(next.upstreams)) {
      const old = upstreams.get(cfg.name)
      if (old !== undefined && JSON.stringify(old.config) === JSON.stringify(cfg)) continue
      upstreams.set(cfg.name, new Upstream(cfg))
      if (old !== undefined) retired.push(old)
      target.shadowing.forget(cfg.name)
    }
    // Shadow pools are sized and timed by shadow.maxInFlight and shadow.timeout.
    if (prev.shadow.maxInFlight !== next.shadow.maxInFlight || prev.shadow.timeoutMs !== next.shadow.timeoutMs) target.shadowing.forgetAll()
    target.live.current = next
  })
  // ... and removed ones last, once no route names them.
  for (const [name, old] of upstreams) {
    if (Object.hasOwn(next.upstreams, name)) continue
    upstreams.delete(name)
    retired.push(old)
    target.shadowing.forget(name)
  }
  for (const u of retired) {
    u.retire().catch((err: unknown) => { log.warn({ err, upstream: u.config.name }, 'closing a retired upstream pool failed') })
  }
}

/** Reads `file` and applies it; counts and logs the outcome. Never throws. */
export async function reloadFrom(ficus: Ficus, file: string, env: Readonly<Record<string, string | undefined>>, log: Logger, why: string): Promise<'success' | 'failure'> {
  return reloadWith(ficus.metrics, file, log, why, async () => loadConfig(file, env), async (next) => applyConfig(ficus, next, log))
}

/**
 * A reload's outline: `load` the file, `apply` it (returning the keys that need a restart);
 * counts and logs the outcome. Never throws. A cluster primary loads and applies its own way.
 */
export async function reloadWith(metrics: Pick<Ficus['metrics'], 'configReloads'>, file: string, log: Logger, why: string, load: () => Promise<Config>, apply: (next: Config) => Promise<string[]>): Promise<'success' | 'failure'> {
  let next: Config
  try {
    next = await load()
  } catch (err) {
    metrics.configReloads.inc({ outcome: 'failure' })
    if (err instanceof ConfigError) {
      log.error({ why, file, problems: err.problems.map((p) => formatProblem(file, p)) }, 'config reload rejected; the running config stays')
    } else {
      log.error({ why, file, err }, 'config reload failed; the running config stays')
    }
    return 'failure'
  }
  try {
    const restart = await apply(next)
    metrics.configReloads.inc({ outcome: 'success' })
    log.info({ why, file, routes: next.routes.length }, 'config reloaded')
    if (restart.length > 0) log.warn({ keys: restart }, 'these settings changed and take effect at the next start')
    return 'success'
  } catch (err) {
    metrics.configReloads.inc({ outcome: 'failure' })
    log.error({ why, file, err }, 'config reload failed; the running config stays')
    return 'failure'
  }
}
