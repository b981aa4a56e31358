import type { AuditEntry, AuditLog } from '../adapters/audit-log.js'
import type { FlagSource, FlagSourceStatus } from '../core/flags.js'
import { UnleashAdminError, type UnleashAdminApi } from '../adapters/unleash-admin.js'
import type { Logger } from '../adapters/logger.js'
import { primeRoute, primeSyncRoute, type Metrics } from '../adapters/metrics-registry.js'
import { writeState } from '../adapters/state-file.js'
import type { Config } from '../config/schema.js'
import { flagState } from '../core/flag-state.js'
import { applyPatch, effectiveRule, type Overrides, type Patch, type RouteOverride } from '../core/overrides.js'
import { tableOf, type RouteTable, type RouteTableRef } from '../core/route-table.js'
import type { RouteRule } from '../core/types.js'
import type { ErrorCode } from '../errors.js'
import { routeView, type RouteView } from './route-view.js'

/** A refused control call: a catalogue code and what to tell the caller. */
export class ControlError extends Error {
  constructor (readonly code: ErrorCode, readonly detail: string) {
    super(detail)
    this.name = 'ControlError'
  }
}

/**
 * Called after every swap of the table (a change, a rollback, a reload), before the change
 * is acknowledged: a cluster primary sends the table's inputs to its workers and resolves
 * once every live worker applied them.
 */
export type Publish = (config: Config, overrides: Overrides) => Promise<void>

/** A change of a route's knobs this control plane made (a set, a rollback, a flag's rollout through Unleash), after it took effect. */
export interface RouteChange {
  readonly route: string
  readonly who: string
  readonly action: 'set' | 'rollback'
  readonly after: { readonly new: number; readonly shadow: number }
}

/** The fleet's flags, when routes.yaml has an unleash: block. */
export interface Fleet {
  readonly flags?: FlagSource
  /** Set with unleash.admin: `new` on a flagged route is changed in Unleash. */
  readonly admin?: UnleashAdminApi
  /** Longest wait for this replica to see a change made through Unleash's admin API. */
  readonly settleMs?: number
}

/**
 * Runtime control of the two knobs (docs/control.md): every change is validated,
 * written to the state file and the audit log, and only then swapped into the route table
 * and acknowledged, so the next request sees it and a restart keeps it. Changes are applied
 * one at a time, in arrival order.
 */
export class ControlPlane {
  private queue: Promise<unknown> = Promise.resolve()
  /** Share of new per route at the last gauge update, to see a flag go to 0. */
  private readonly lastShare = new Map<string, number | null>()
  /** The state file named at start: a reload cannot move it (the audit log stays beside it). */
  private readonly stateFile: string | undefined
  /** The routes requests see (routes.yaml with the overrides on top); built here, swapped whole on every change. */
  readonly table: RouteTableRef
  private publish: Publish | null = null
  private readonly changeListeners: ((c: RouteChange) => void)[] = []

  constructor (
    private config: Config,
    private overrides: Overrides,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly fleet: Fleet = {},
    private readonly now: () => Date = () => new Date()
  ) {
    this.stateFile = config.state
    this.table = { current: this.build(overrides) }
    fleet.flags?.onChange(() => { this.flagsChanged() })
    const unknown = Object.keys(overrides).filter((n) => this.fileRule(n) === undefined)
    if (config.state === undefined) log.warn('no state file configured (state: in routes.yaml): runtime changes and rollbacks last until Ficus stops')
    if (unknown.length > 0) log.warn({ routes: unknown }, 'the state file has overrides for routes routes.yaml no longer has; they are kept but unused')
    this.gauges()
  }

  /**
   * A reload: routes.yaml's new values, with the runtime overrides still on top. Queued
   * behind changes in progress, so a rollback of "all" covers exactly the routes it saw.
   */
  async reconfigure (config: Config, apply: () => void): Promise<void> {
    return this.serial(async () => {
      apply()
      this.config = config
      this.swap(this.overrides)
      await this.published()
    })
  }

  /** The runtime overrides in effect (what a new cluster worker starts from). */
  get currentOverrides (): Overrides {
    return this.overrides
  }

  /** Calls `fn` after each change of a route this control plane made (the ramp pauses when a person changes its route). */
  onChange (fn: (c: RouteChange) => void): void {
    this.changeListeners.push(fn)
  }

  private changed (c: RouteChange): void {
    for (const fn of this.changeListeners) {
      try {
        fn(c)
      } catch (err) {
        this.log.error({ err, route: c.route }, 'a listener of route changes failed')
      }
    }
  }

  /** Sets the hook awaited after every swap, before a change is acknowledged (one; cluster mode). */
  publishTo (publish: Publish): void {
    this.publish = publish
  }

  routes (): RouteView[] {
    return [...this.config.routes, this.config.defaultRoute].map((r) => this.view(r))
  }

  /** The flag source's health, for GET /admin/routes (null without an unleash: block). */
  flagSource (): FlagSourceStatus | null {
    return this.fleet.flags?.status ?? null
  }

  /**
   * PATCH /admin/routes/:name. On a flagged route, a share for `new` goes to Unleash (every
   * replica follows) or is refused; `new: null` clears a rollback, `shadow` stays local.
   */
  async patch (name: string, patch: Patch, who: string): Promise<RouteView> {
    const reason = patch.reason ?? null
    const rule = this.known(name)
    let flagged: { flag: string; share: number } | null = null
    if (rule.flag !== null && typeof patch.new === 'number') {
      if (this.overrides[name]?.new !== undefined) {
        throw new ControlError('FICUS_ERR_FLAG_MANAGED', `route "${name}" is rolled back on this replica, which bypasses its flag "${rule.flag}": clear the rollback first (ficus set ${name} --clear), then change the flag`)
      }
      // Outside the queue: Unleash may be slow or down, and a rollback must never wait behind it.
      await this.setFlag(rule, rule.flag, patch.new, who, reason)
      flagged = { flag: rule.flag, share: patch.new }
    }
    const local: Patch = flagged === null ? patch : { ...patch, new: undefined }
    if (local.new !== undefined || local.shadow !== undefined) {
      try {
        await this.serial(async () => {
          const change = { at: this.now().toISOString(), by: who, reason }
          const next = applyPatch(this.overrides[name], local, change)
          await this.commit({ ...this.overrides, [name]: next }, [name], 'set', who, reason)
        })
      } catch (err) {
        if (flagged === null || !(err instanceof ControlError)) throw err
        throw new ControlError(err.code, `the flag ${flagged.flag} WAS changed in Unleash (new: ${flagged.share} %); the local shadow change was not: ${err.detail}`)
      }
    }
    // Until this replica sees the new rollout (bounded), so the answer shows it in effect.
    if (flagged !== null && this.fleet.flags !== undefined) {
      const flags = this.fleet.flags
      const f = flagged
      const seen = await flags.until(() => flags.state(f.flag).share === f.share, this.fleet.settleMs ?? 5_000)
      if (!seen) this.log.warn({ route: name, flag: f.flag }, 'Unleash took the change, but this replica has not fetched it yet')
    }
    return this.view(this.known(name))
  }

  /**
   * A flagged route's rollout in Unleash, set even while this replica has it rolled back
   * (the ramp's rollback: the local override stops new here at once, the flag stops it on
   * every replica).
   */
  async setFlagShare (name: string, share: number, who: string, reason: string | null): Promise<void> {
    const rule = this.known(name)
    if (rule.flag === null) throw new ControlError('FICUS_ERR_FLAG_MANAGED', `route "${name}" has no flag`)
    await this.setFlag(rule, rule.flag, share, who, reason)
  }

  /** `new` on a flagged route: the flag's rollout in Unleash, audited here. */
  private async setFlag (rule: RouteRule, flag: string, share: number, who: string, reason: string | null): Promise<void> {
    const admin = this.fleet.admin
    if (admin === undefined) {
      throw new ControlError('FICUS_ERR_FLAG_MANAGED', `route "${rule.name}" takes its share of new from the Unleash flag "${flag}", which every replica reads: change the flag's rollout in Unleash (or configure unleash.admin.token so that ficus set changes it there). Setting it on one replica would split the fleet. \`ficus rollback ${rule.name}\` still stops new on this replica at once.`)
    }
    let done
    try {
      done = await admin.setRollout(flag, share)
    } catch (err) {
      if (err instanceof UnleashAdminError && err.kind === 'shape') throw new ControlError('FICUS_ERR_FLAG_MANAGED', err.message)
      this.log.error({ err, route: rule.name, flag }, 'Unleash did not take a rollout change')
      throw new ControlError('FICUS_ERR_FLAG_UPDATE', `${(err as Error).message}; nothing was changed`)
    }
    const shadow = effectiveRule(rule, this.overrides[rule.name]).shadow
    const detail = `flag ${flag}: flexibleRollout ${done.before} % → ${share} % in Unleash (${admin.describe()})${done.turnedOn ? '; the flag was off there and was turned on' : ''}${done.warning === undefined ? '' : `; ${done.warning}`}`
    const entry: AuditEntry = { time: this.now().toISOString(), who, action: 'set', route: rule.name, before: { new: done.before, shadow }, after: { new: share, shadow }, reason, detail }
    this.log.info({ route: rule.name, who, flag, before: done.before, after: share, turnedOn: done.turnedOn, reason }, 'flag rollout changed in Unleash')
    // Unleash has the change: failing to audit it must not report "nothing changed".
    await this.audit.appendAll([entry]).catch((err: unknown) => { this.log.error({ err, entry }, 'could not write the audit log for a change made in Unleash') })
    this.changed({ route: rule.name, who, action: 'set', after: { new: share, shadow } })
  }

  /** POST /admin/rollback: `new: 0` for one route or all. Idempotent. `trigger`: who decided, for ficus_rollbacks_total (ramp: the ramp controller). */
  async rollback (route: string | undefined, reason: string | null, who: string, trigger: 'manual' | 'ramp' | null = 'manual'): Promise<RouteView[]> {
    return this.serial(async () => {
      const rules = route === undefined ? [...this.config.routes, this.config.defaultRoute] : [this.known(route)]
      const change = { at: this.now().toISOString(), by: who, reason }
      const next: Record<string, RouteOverride | undefined> = { ...this.overrides }
      for (const r of rules) next[r.name] = applyPatch(this.overrides[r.name], { new: 0 }, change)
      await this.commit(next, rules.map((r) => r.name), 'rollback', who, reason)
      // null: a replica applying a rollback decided elsewhere (a ramp's record), counted where it was decided.
      if (trigger !== null) for (const r of rules) this.metrics.rollbacks.inc({ route: r.name, trigger })
      return rules.map((r) => this.view(r))
    })
  }

  /**
   * POST /admin/divergences/reset: audits that the divergence counts of one route (or all)
   * start over, and gives the routes' names; the caller then starts their new epoch. Traffic
   * is unchanged. A failed audit write refuses the reset (FICUS_ERR_STATE_WRITE).
   */
  async resetDivergences (route: string | undefined, reason: string | null, who: string): Promise<string[]> {
    return this.serial(async () => {
      const names = (route === undefined ? [...this.config.routes, this.config.defaultRoute] : [this.known(route)]).map((r) => r.name)
      const time = this.now().toISOString()
      const detail = 'divergence counts start a new epoch'
      try {
        await this.audit.appendAll(names.map((name) => ({ time, who, action: 'reset-divergences' as const, route: name, reason, detail })))
      } catch (err) {
        this.log.error({ err }, 'could not write the audit log; the divergence counts were not reset')
        throw new ControlError('FICUS_ERR_STATE_WRITE', 'the audit log could not be written; the divergence counts were not reset')
      }
      this.log.info({ routes: names, who, reason }, 'divergence counts reset')
      return names
    })
  }

  /** A mutation refused for want of a valid token: audited, nothing changes. */
  async refused (detail: string): Promise<void> {
    await this.audit.append({ time: this.now().toISOString(), who: 'unauthenticated', action: 'refused', route: null, reason: null, detail })
      .catch((err: unknown) => { this.log.error({ err }, 'could not write the audit log') })
  }

  /**
   * Writes the state (when there is a file) and the audit entries, then swaps the table.
   * A failed write changes nothing: the caller gets 503 and the old values stay in effect.
   */
  private async commit (next: Record<string, RouteOverride | undefined>, names: string[], action: 'set' | 'rollback', who: string, reason: string | null): Promise<void> {
    const clean: Record<string, RouteOverride> = {}
    for (const [k, v] of Object.entries(next)) if (v !== undefined) clean[k] = v
    const time = this.now().toISOString()
    const entries: AuditEntry[] = names.map((name) => {
      const rule = this.fileRule(name) as RouteRule
      const before = effectiveRule(rule, this.overrides[name])
      const after = effectiveRule(rule, clean[name])
      return { time, who, action, route: name, before: { new: this.share(before) ?? before.new, shadow: before.shadow }, after: { new: this.share(after) ?? after.new, shadow: after.shadow }, reason }
    })
    const previous = this.overrides
    const file = this.stateFile
    const dirSync = (err: unknown): void => { this.log.warn({ err, file }, 'the state file was replaced but its directory could not be synced') }
    if (file !== undefined) {
      try {
        await writeState(file, { version: 1, routes: clean }, dirSync)
      } catch (err) {
        this.log.error({ err, file }, 'could not write the state file; nothing was changed')
        throw new ControlError('FICUS_ERR_STATE_WRITE', `the state file could not be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); nothing was changed`)
      }
    }
    try {
      await this.audit.appendAll(entries)
    } catch (err) {
      this.log.error({ err }, 'could not write the audit log; undoing the change')
      if (file !== undefined) {
        try {
          await writeState(file, { version: 1, routes: previous }, dirSync)
        } catch (undo) {
          // The state file holds a change nobody was told about: say so loudly, and keep
          // serving what the file says, so a restart does not bring a surprise.
          this.log.fatal({ err: undo, file }, 'the state file could not be restored after a failed audit write: the change is in effect')
          this.swap(clean)
          await this.published()
          throw new ControlError('FICUS_ERR_STATE_WRITE', 'the audit log could not be written and the state file could not be restored: the change IS in effect, unaudited; check the disk')
        }
      }
      throw new ControlError('FICUS_ERR_STATE_WRITE', 'the audit log could not be written; nothing was changed')
    }
    this.swap(clean)
    await this.published()
    for (const e of entries) this.log.info({ route: e.route, who, action, before: e.before, after: e.after, reason }, 'route changed')
    for (const e of entries) this.changed({ route: e.route as string, who, action, after: e.after as { new: number; shadow: number } })
  }

  /** Builds the table from routes.yaml and the overrides, in one assignment. */
  private swap (overrides: Overrides): void {
    this.overrides = overrides
    this.table.current = this.build(overrides)
    this.gauges()
  }

  /** Awaits the publish hook (cluster mode) for the table just swapped in. */
  private async published (): Promise<void> {
    if (this.publish !== null) await this.publish(this.config, this.overrides)
  }

  private build (overrides: Overrides): RouteTable {
    return tableOf(this.config, overrides)
  }

  /** The share of new in effect: the rule's, or its flag's (null: strategies decide per user). */
  private share (r: RouteRule): number | null {
    if (r.flag === null) return r.new
    const flags = this.fleet.flags
    return flags === undefined ? 0 : flags.state(r.flag).share
  }

  private gauges (): void {
    const { routes, defaultRoute } = this.table.current
    // Reset first: a route a reload removed has no gauge left behind (synchronous: no scrape sees the gap).
    this.metrics.newPercent.reset()
    this.metrics.shadowPercent.reset()
    for (const r of [...routes, defaultRoute]) {
      const share = this.share(r)
      // A flag whose strategies decide per user has no single number: no series (documented).
      if (share !== null) this.metrics.newPercent.set({ route: r.name }, share)
      this.metrics.shadowPercent.set({ route: r.name }, r.shadow)
      primeRoute(this.metrics, r.name, r.flag !== null, this.config.ramp.routes[r.name] !== undefined)
      if (r.sync?.mode === 'dual') primeSyncRoute(this.metrics, r.name) // a route a reload made dual too
      this.lastShare.set(r.name, share)
    }
  }

  /** Unleash sent new definitions: gauges follow, and a flag that went to 0 % or off counts as a rollback. */
  private flagsChanged (): void {
    for (const r of this.table.current.routes) {
      if (r.flag === null) continue
      const before = this.lastShare.get(r.name)
      const after = this.share(r)
      if (before === after) continue
      const change = { route: r.name, flag: r.flag, before: before ?? null, after }
      if (before !== undefined && before !== 0 && after === 0) {
        this.metrics.rollbacks.inc({ route: r.name, trigger: 'flag' })
        this.log.warn(change, 'the route\'s flag went to 0 % or off in Unleash: new serves no one')
      } else {
        this.log.info(change, 'the route\'s share of new changed with its flag')
      }
    }
    this.gauges()
  }

  private view (rule: RouteRule): RouteView {
    const flag = rule.flag === null ? null : this.fleet.flags?.state(rule.flag) ?? flagState(rule.flag, undefined)
    const origin = (side: 'legacy' | 'new'): string | null => this.config.upstreams[rule.backends[side]]?.origin ?? null
    return { ...routeView(rule, this.overrides[rule.name], flag, this.audit.lastFor(rule.name)), upstreams: { legacy: origin('legacy'), new: origin('new') } }
  }

  private fileRule (name: string): RouteRule | undefined {
    return name === this.config.defaultRoute.name ? this.config.defaultRoute : this.config.routes.find((r) => r.name === name)
  }

  /** The route named `name` as routes.yaml has it; ControlError FICUS_ERR_UNKNOWN_ROUTE (404) otherwise. */
  known (name: string): RouteRule {
    const rule = this.fileRule(name)
    if (rule === undefined) throw new ControlError('FICUS_ERR_UNKNOWN_ROUTE', `no route named "${name}" (routes: ${this.config.routes.map((r) => r.name).join(', ')}, default)`)
    return rule
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }
}
