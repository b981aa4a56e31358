import type { AuditEntry } from '../adapters/audit-log.js'
import type { RouteSummary } from '../adapters/divergence-store.js'
import type { FlagSourceStatus } from '../core/flags.js'
import type { Knob, RouteView } from '../control/route-view.js'
import { adminCall, adminGet, adminText, type AdminTarget } from './admin-client.js'
import { rate as percent, table } from './divergences.js'

/**
 * The release manager's commands: `ficus status`, `ficus set`, `ficus rollback`,
 * `ficus audit`. Each is one or two admin API calls and a table (or `--json`).
 */

interface Counts { readonly legacy: number; readonly new: number }

/**
 * `ficus status`: routes with their percentages and where they come from, requests/s by
 * backend over `sampleMs` (two reads of /metrics), and the divergence rate.
 */
export async function statusCommand(target: AdminTarget, json: boolean, sampleMs: number, wait: (ms: number) => Promise<void>): Promise<string> {
  const before = await primaryCounts(target)
  await wait(sampleMs)
  const [{ routes, flags }, after, { routes: summaries }] = await Promise.all([
    adminGet(target, '/admin/routes') as Promise<{ routes: RouteView[]; flags: FlagSourceStatus | null }>,
    primaryCounts(target),
    adminGet(target, '/admin/divergences/summary') as Promise<{ routes: RouteSummary[] }>
  ])
  const rate = (name: string, side: 'legacy' | 'new'): number => ((after.get(name)?.[side] ?? 0) - (before.get(name)?.[side] ?? 0)) / (sampleMs / 1000)
  const divergence = new Map(summaries.map((s) => [s.route, s.divergenceRate]))
  if (json) {
    return JSON.stringify({
      routes: routes.map((r) => ({ ...r, requestsPerSecond: { legacy: rate(r.name, 'legacy'), new: rate(r.name, 'new') }, divergenceRate: divergence.get(r.name) ?? null })),
      flags
    }, null, 2) + '\n'
  }
  const rows = table(['ROUTE', 'NEW', 'SHADOW', 'SOURCE', 'LEGACY REQ/S', 'NEW REQ/S', 'DIVERGENCE', 'DIV 5M', 'LAST CHANGE'], routes.map((r) => [
    r.name,
    share(r.new),
    `${r.shadow.value} %`,
    source(r),
    rate(r.name, 'legacy').toFixed(1),
    rate(r.name, 'new').toFixed(1),
    percent(divergence.get(r.name) ?? null),
    percent(r.divergence5m ?? null),
    r.lastChange === null ? '-' : `${r.lastChange.time} ${r.lastChange.who}${r.lastChange.reason === null ? '' : `: ${r.lastChange.reason}`}`
  ]))
  return rows + flagsLine(flags)
}

/** `25 %`, or how a flag decides when it has no single share. */
function share(k: Knob): string {
  return k.value === null ? 'by strategy' : `${k.value} %`
}

/** Where the share of new comes from: routes.yaml, a runtime override, or the route's flag (bypassed by a rollback). */
function source(r: RouteView): string {
  // `?? null`: a Ficus from before flags sends no `flag` field (a rolling upgrade).
  const flag = r.flag ?? null
  if (flag !== null) return flag.bypassed ? `override (flag ${flag.name} bypassed)` : `flag ${flag.name}${flag.known ? (flag.enabled ? '' : ' (off)') : ' (unknown to Unleash)'}`
  return r.new.source === 'override' || r.shadow.source === 'override' ? 'override' : 'file'
}

/** One line on the flag source when it is not current, so a release manager knows the flags may be stale. */
function flagsLine(flags: FlagSourceStatus | null | undefined): string {
  if (flags === null || flags === undefined || (flags.synchronized && flags.healthy)) return ''
  return `\nflags: Unleash (${flags.url}) ${flags.synchronized ? 'unreachable: serving the last flags it sent' : `not reached yet: flags from ${flags.loadedFrom === 'none' ? 'nowhere (flagged routes on legacy)' : `the ${flags.loadedFrom} file`}`}${flags.lastError === null ? '' : ` (${flags.lastError})`}\n`
}

/** `ficus set <route> --new N [--shadow N] [--clear] [--reason …]`. */
export async function setCommand(target: AdminTarget, route: string, change: { new?: number | null; shadow?: number | null; reason?: string }, json: boolean): Promise<string> {
  const { route: r } = await adminCall(target, 'PATCH', `/admin/routes/${encodeURIComponent(route)}`, change) as { route: RouteView }
  if (json) return JSON.stringify(r, null, 2) + '\n'
  const flag = r.flag ?? null
  return `${r.name}: new ${share(r.new)} (${flag !== null && !flag.bypassed ? `flag ${flag.name}` : r.new.source}), shadow ${r.shadow.value} % (${r.shadow.source})\n`
}

/** `ficus rollback <route> | --all [--reason …]`. */
export async function rollbackCommand(target: AdminTarget, route: string | undefined, reason: string | undefined, json: boolean): Promise<string> {
  const { routes } = await adminCall(target, 'POST', '/admin/rollback', { ...(route === undefined ? {} : { route }), ...(reason === undefined ? {} : { reason }) }) as { routes: RouteView[] }
  if (json) return JSON.stringify({ routes }, null, 2) + '\n'
  return routes.map((r) => `${r.name}: rolled back, new ${r.new.value} %\n`).join('')
}

/** `ficus audit [--limit N]`. */
export async function auditCommand(target: AdminTarget, limit: number, json: boolean): Promise<string> {
  const { entries } = await adminGet(target, `/admin/audit?limit=${limit}`) as { entries: AuditEntry[] }
  if (json) return JSON.stringify({ entries }, null, 2) + '\n'
  if (entries.length === 0) return 'No change has been made or refused yet.\n'
  return table(['TIME', 'WHO', 'ACTION', 'ROUTE', 'CHANGE', 'REASON'], entries.map((e) => [
    e.time, e.who, e.action, e.route ?? '-',
    e.before !== undefined && e.after !== undefined ? `new ${e.before.new}→${e.after.new}, shadow ${e.before.shadow}→${e.after.shadow}` : e.detail ?? '-',
    e.reason ?? '-'
  ]))
}

/** Primary responses by route and backend, from /metrics (the counters, not a rate). */
async function primaryCounts(target: AdminTarget): Promise<Map<string, Counts>> {
  const text = await adminText(target, '/metrics')
  const out = new Map<string, { legacy: number; new: number }>()
  for (const m of text.matchAll(/^ficus_requests_total\{route="([^"]+)",backend="(legacy|new)",role="primary",code="\d+"\} (\d+)/gm)) {
    const c = out.get(m[1] as string) ?? { legacy: 0, new: 0 }
    c[m[2] as 'legacy' | 'new'] += Number(m[3])
    out.set(m[1] as string, c)
  }
  return out
}

