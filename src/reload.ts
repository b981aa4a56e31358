import type { Logger } from './adapters/logger.js'
import type { Metrics } from './adapters/metrics-registry.js'
import { Upstream } from './adapters/upstreams.js'
import type { LiveConfig } from './config/live.js'
import { isLoopback } from './config/cross-check.js'
import { readConfig, warningsOf } from './config/load-config.js'
import { ConfigError, formatProblem } from './config/problems.js'
import type { Config } from './config/schema.js'
import type { Divergences } from './control/admin-api.js'
import type { ControlPlane } from './control/control-plane.js'
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
function restartOnly(prev: Config, next: Config): string[] {
  const keys: [string, (c: Config) => unknown][] = [
    ['listen', (c) => c.listen],
    ['admin.host', (c) => c.admin.host],
    ['admin.port', (c) => c.admin.port],
    ['limits', (c) => c.limits],
    ['state', (c) => c.state],
    ['log.level', (c) => c.log.level],
    ['shadow.samples', (c) => c.shadow.samples],
    ['unleash', (c) => c.unleash],
    ['store', (c) => c.store],
    ['sync', (c) => c.sync]
  ]
  return keys.filter(([, get]) => JSON.stringify(get(prev)) !== JSON.stringify(get(next))).map(([k]) => k)
}

/** Why a valid file still cannot be applied while running, or null. */
function refusal(prev: Config, next: Config, hasFlags: boolean): string | null {
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

/** The parts of the traffic side a reload changes (a Ficus, or a cluster worker). */
export interface TrafficTarget {
  readonly live: LiveConfig
  /** By name; a reload adds, replaces and removes entries. */
  readonly upstreams: Map<string, Upstream>
  readonly shadowing: Shadowing
}

/**
 * Swaps `next` into the traffic side (one process, or a cluster worker): upstream pools,
 * shadow pools, the live config. `swapTable` must run `apply` and swap the route table in
 * one step (a ControlPlane's reconfigure, or a worker's own table).
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

/** What a reload reads and changes: the running instance's control side and its traffic host. */
export interface Reloadable {
  /** routes.yaml, as it was named at start. */
  readonly file: string
  readonly env: Readonly<Record<string, string | undefined>>
  readonly log: Logger
  readonly metrics: Pick<Metrics, 'configReloads'>
  readonly live: LiveConfig
  readonly control: ControlPlane
  /** Ficus was started with Unleash (a reload cannot connect it). */
  readonly hasFlags: boolean
  /** The traffic side (start.ts's TrafficHost): swaps `next` in as `swapTable` swaps the route table. */
  readonly host: {
    reconfigure(next: Config, text: string, swapTable: (apply: () => void) => Promise<void>): Promise<void>
    /** Where divergence counts are kept: a route whose compare rules change starts a new epoch. */
    readonly divergences: Pick<Divergences, 'newEpoch'>
  }
}

/** Routes a reload adds, or whose compare: block it changes: their divergence counts start over. */
export function comparisonChanged(prev: Config, next: Config): string[] {
  const before = new Map(prev.routes.map((r) => [r.name, r.compare.source]))
  return next.routes.filter((r) => before.get(r.name) !== r.compare.source).map((r) => r.name)
}

/**
 * The one reload path (one process and cluster alike): reads and validates the file, refuses
 * what cannot be applied while running, swaps it into the traffic side together with the
 * route table (the control plane's reconfigure), and counts and logs the outcome. Never
 * throws.
 */
export async function reload(r: Reloadable, why: string): Promise<'success' | 'failure'> {
  const { file, log } = r
  let next: Config
  let text: string
  try {
    ({ config: next, text } = await readConfig(file, r.env))
  } catch (err) {
    r.metrics.configReloads.inc({ outcome: 'failure' })
    if (err instanceof ConfigError) {
      log.error({ why, file, problems: err.problems.map((p) => formatProblem(file, p)) }, 'config reload rejected; the running config stays')
    } else {
      log.error({ why, file, err }, 'config reload failed; the running config stays')
    }
    return 'failure'
  }
  try {
    const prev = r.live.current
    const refused = refusal(prev, next, r.hasFlags)
    if (refused !== null) throw new Error(refused)
    const restart = restartOnly(prev, next)
    await r.host.reconfigure(next, text, async (apply) => r.control.reconfigure(next, apply))
    const changed = comparisonChanged(prev, next)
    if (changed.length > 0) await r.host.divergences.newEpoch(changed, 'reload', null)
    r.metrics.configReloads.inc({ outcome: 'success' })
    log.info({ why, file, routes: next.routes.length, ...(changed.length > 0 ? { newDivergenceEpoch: changed } : {}) }, 'config reloaded')
    if (restart.length > 0) log.warn({ keys: restart }, 'these settings changed and take effect at the next start')
    const warned = warningsOf(next)
    if (warned.length > 0) log.warn({ warnings: warned.map((w) => formatProblem(file, w)) }, 'routes.yaml has settings that cannot apply (ficus check lists them)')
    return 'success'
  } catch (err) {
    r.metrics.configReloads.inc({ outcome: 'failure' })
    log.error({ why, file, err }, 'config reload failed; the running config stays')
    return 'failure'
  }
}
