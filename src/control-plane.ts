import type { AuditEntry, AuditLog } from './adapters/audit-log.js'
import type { Logger } from './adapters/logger.js'
import type { Metrics } from './adapters/metrics-registry.js'
import { writeState } from './adapters/state-file.js'
import type { Config } from './config/schema.js'
import { applyPatch, effectiveRule, type Overrides, type Patch, type RouteOverride } from './core/overrides.js'
import type { RouteRule } from './core/types.js'
import type { ErrorCode } from './errors.js'
import { compileTable, type RouteTableRef } from './plugins/route-table.js'

/** A refused control call: a catalogue code and what to tell the caller. */
export class ControlError extends Error {
  constructor (readonly code: ErrorCode, readonly detail: string) {
    super(detail)
    this.name = 'ControlError'
  }
}

/** One knob as GET /admin/routes shows it. */
export interface Knob {
  readonly value: number
  /** `override` (set at runtime, kept in the state file) or `file` (routes.yaml). */
  readonly source: 'override' | 'file'
  /** What routes.yaml says, in effect again once the override is cleared. */
  readonly file: number
}

export interface RouteView {
  readonly name: string
  readonly match: { readonly path: string; readonly methods: readonly string[] | null }
  readonly new: Knob
  readonly shadow: Knob
  readonly lastChange: AuditEntry | null
}

/**
 * Runtime control of the two knobs (DESIGN.md "Admin port"): every change is validated,
 * written to the state file and the audit log, and only then swapped into the route table
 * and acknowledged, so the next request sees it and a restart keeps it. Changes are applied
 * one at a time, in arrival order.
 */
export class ControlPlane {
  private queue: Promise<unknown> = Promise.resolve()
  /** The state file named at start: a reload cannot move it (the audit log stays beside it). */
  private readonly stateFile: string | undefined

  constructor (
    private config: Config,
    private readonly table: RouteTableRef,
    private overrides: Overrides,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date()
  ) {
    this.stateFile = config.state
    const unknown = Object.keys(overrides).filter((n) => this.fileRule(n) === undefined)
    if (config.state === undefined) log.warn('no state file configured (state: in routes.yaml): runtime changes and rollbacks last until Ficus stops')
    if (unknown.length > 0) log.warn({ routes: unknown }, 'the state file has overrides for routes routes.yaml no longer has; they are kept but unused')
    this.swap(overrides)
  }

  /**
   * A reload: routes.yaml's new values, with the runtime overrides still on top. Queued
   * behind changes in progress, so a rollback of "all" covers exactly the routes it saw.
   */
  async reconfigure (config: Config, apply: () => void = () => {}): Promise<void> {
    return this.serial(async () => {
      apply()
      this.config = config
      this.swap(this.overrides)
    })
  }

  routes (): RouteView[] {
    return [...this.config.routes, this.config.defaultRoute].map((r) => this.view(r))
  }

  /** PATCH /admin/routes/:name. */
  async patch (name: string, patch: Patch, who: string): Promise<RouteView> {
    return this.serial(async () => {
      const rule = this.known(name)
      const change = { at: this.now().toISOString(), by: who, reason: patch.reason ?? null }
      const next = applyPatch(this.overrides[name], patch, change)
      await this.commit({ ...this.overrides, [name]: next }, [name], 'set', who, patch.reason ?? null)
      return this.view(rule)
    })
  }

  /** POST /admin/rollback: `new: 0` for one route or all. Idempotent. */
  async rollback (route: string | undefined, reason: string | null, who: string): Promise<RouteView[]> {
    return this.serial(async () => {
      const rules = route === undefined ? [...this.config.routes, this.config.defaultRoute] : [this.known(route)]
      const change = { at: this.now().toISOString(), by: who, reason }
      const next: Record<string, RouteOverride | undefined> = { ...this.overrides }
      for (const r of rules) next[r.name] = applyPatch(this.overrides[r.name], { new: 0 }, change)
      await this.commit(next, rules.map((r) => r.name), 'rollback', who, reason)
      for (const r of rules) this.metrics.rollbacks.inc({ route: r.name, trigger: 'manual' })
      return rules.map((r) => this.view(r))
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
      return { time, who, action, route: name, before: { new: before.new, shadow: before.shadow }, after: { new: after.new, shadow: after.shadow }, reason }
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
          throw new ControlError('FICUS_ERR_STATE_WRITE', 'the audit log could not be written and the state file could not be restored: the change IS in effect, unaudited; check the disk')
        }
      }
      throw new ControlError('FICUS_ERR_STATE_WRITE', 'the audit log could not be written; nothing was changed')
    }
    this.swap(clean)
    for (const e of entries) this.log.info({ route: e.route, who, action, before: e.before, after: e.after, reason }, 'route changed')
  }

  /** Builds the table from routes.yaml and the overrides, in one assignment. */
  private swap (overrides: Overrides): void {
    this.overrides = overrides
    const routes = this.config.routes.map((r) => effectiveRule(r, overrides[r.name]))
    const defaultRoute = effectiveRule(this.config.defaultRoute, overrides[this.config.defaultRoute.name])
    this.table.current = compileTable(routes, defaultRoute)
    // Reset first: a route a reload removed has no gauge left behind (synchronous: no scrape sees the gap).
    this.metrics.newPercent.reset()
    this.metrics.shadowPercent.reset()
    for (const r of [...routes, defaultRoute]) {
      this.metrics.newPercent.set({ route: r.name }, r.new)
      this.metrics.shadowPercent.set({ route: r.name }, r.shadow)
    }
  }

  private view (rule: RouteRule): RouteView {
    const o = this.overrides[rule.name]
    const knob = (k: 'new' | 'shadow'): Knob => ({ value: o?.[k] ?? rule[k], source: o?.[k] === undefined ? 'file' : 'override', file: rule[k] })
    const last = this.audit.latest(Number.MAX_SAFE_INTEGER).find((e) => e.route === rule.name) ?? null
    return {
      name: rule.name,
      match: { path: rule.pattern.source, methods: rule.methods === null ? null : [...rule.methods] },
      new: knob('new'),
      shadow: knob('shadow'),
      lastChange: last
    }
  }

  private fileRule (name: string): RouteRule | undefined {
    return name === this.config.defaultRoute.name ? this.config.defaultRoute : this.config.routes.find((r) => r.name === name)
  }

  private known (name: string): RouteRule {
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
