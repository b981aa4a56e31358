import type { AuditEntry } from '../adapters/audit-log.js'
import type { FlagState } from '../core/flag-state.js'
import type { RouteOverride } from '../core/overrides.js'
import type { RouteRule } from '../core/types.js'

/** A route as GET /admin/routes (and `ficus status`) shows it: its knobs and where each value comes from. */

/** One knob as GET /admin/routes shows it. */
export interface Knob {
  /** The share in effect; null when a flag's strategies decide per user (no single number). */
  readonly value: number | null
  /** `override` (set at runtime, kept in the state file), `file` (routes.yaml) or `flag` (Unleash). */
  readonly source: 'override' | 'file' | 'flag'
  /** What routes.yaml says, in effect again once the override is cleared (null: the route has a flag). */
  readonly file: number | null
}

export interface RouteView {
  readonly name: string
  readonly match: { readonly path: string; readonly methods: readonly string[] | null }
  readonly new: Knob
  readonly shadow: Knob
  /** The route's Unleash flag as this replica sees it; a rollback (override of new) bypasses it until cleared. */
  readonly flag: (FlagState & { readonly bypassed: boolean }) | null
  readonly lastChange: AuditEntry | null
  /** Divergence rate over the last 5 minutes (diverged / compared; null: nothing compared), in GET /admin/routes. */
  readonly divergence5m?: number | null
  /** Where each side is (the upstream's origin, no path or credentials): what a `curl` reproducing a request needs. */
  readonly upstreams?: { readonly legacy: string | null; readonly new: string | null }
}

/** The view with its recent divergence rate. */
export function withDivergence(v: RouteView, rate: number | null): RouteView {
  return { ...v, divergence5m: rate }
}

/** The view of `rule` with its runtime override, its flag as this replica sees it (null: no flag), and its last change. */
export function routeView(rule: RouteRule, o: RouteOverride | undefined, flag: FlagState | null, lastChange: AuditEntry | null): RouteView {
  const knob = (k: 'new' | 'shadow'): Knob => ({ value: o?.[k] ?? rule[k], source: o?.[k] === undefined ? 'file' : 'override', file: rule[k] })
  const seen = flag === null ? null : { ...flag, bypassed: o?.new !== undefined }
  return {
    name: rule.name,
    match: { path: rule.pattern.source, methods: rule.methods === null ? null : [...rule.methods] },
    new: seen === null ? knob('new') : seen.bypassed ? { value: o?.new ?? 0, source: 'override', file: null } : { value: seen.share, source: 'flag', file: null },
    shadow: knob('shadow'),
    flag: seen,
    lastChange
  }
}
