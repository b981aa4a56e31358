import type { AuditEntry } from '../adapters/audit-log.js'
import type { BreakerView } from '../adapters/breakers.js'
import type { RouteSummary } from '../adapters/divergence-store.js'
import type { FlagSourceStatus } from '../core/flags.js'
import type { Knob, RouteView } from '../control/route-view.js'
import { adminCall, adminGet, adminText, type AdminTarget } from './admin-client.js'
import { rate as percent, table } from './divergences.js'
import { writesInFlight } from './sync.js'

/**
 * The release manager's commands: `ficus status`, `ficus set`, `ficus rollback`,
 * `ficus audit`. Each is one or two admin API calls and a table (or `--json`).
 */

/** Primary responses of a route by backend, answered (below 500) and failed (5xx, Ficus's own 502/504 included), and its fallbacks. */
interface Counts {
  legacy: number
  new: number
  legacyErrors: number
  newErrors: number
  fallbacks: number
}

type RouteWithBreaker = RouteView & { readonly breaker?: BreakerView | null }

/**
 * `ficus status`: routes with their percentages and where they come from; over `sampleMs`
 * (two reads of /metrics), requests/s answered by each backend, its 5xx/s apart (new's 502s
 * during an outage are not "new traffic"), fallbacks/s; new's breaker; the divergence rate.
 */
export async function statusCommand(target: AdminTarget, json: boolean, sampleMs: number, wait: (ms: number) => Promise<void>): Promise<string> {
  const before = await primaryCounts(target)
  await wait(sampleMs)
  const [{ routes, flags }, after, { routes: summaries }] = await Promise.all([
    adminGet(target, '/admin/routes') as Promise<{ routes: RouteWithBreaker[]; flags: FlagSourceStatus | null }>,
    primaryCounts(target),
    adminGet(target, '/admin/divergences/summary') as Promise<{ routes: RouteSummary[] }>
  ])
  const rate = (name: string, k: keyof Counts): number => ((after.get(name)?.[k] ?? 0) - (before.get(name)?.[k] ?? 0)) / (sampleMs / 1000)
  const divergence = new Map(summaries.map((s) => [s.route, s.divergenceRate]))
  if (json) {
    return JSON.stringify({
      routes: routes.map((r) => ({
        ...r,
        breaker: r.breaker ?? null,
        requestsPerSecond: { legacy: rate(r.name, 'legacy'), new: rate(r.name, 'new') },
        errorsPerSecond: { legacy: rate(r.name, 'legacyErrors'), new: rate(r.name, 'newErrors') },
        fallbacksPerSecond: rate(r.name, 'fallbacks'),
        divergenceRate: divergence.get(r.name) ?? null
      })),
      flags
    }, null, 2) + '\n'
  }
  const rows = table(['ROUTE', 'NEW', 'SHADOW', 'SOURCE', 'LEGACY REQ/S', '5XX/S', 'NEW REQ/S', '5XX/S', 'FALLBACK/S', 'NEW BREAKER', 'DIVERGENCE', 'DIV 5M', 'LAST CHANGE'], routes.map((r) => [
    r.name,
    share(r.new),
    `${r.shadow.value} %`,
    source(r),
    rate(r.name, 'legacy').toFixed(1),
    rate(r.name, 'legacyErrors').toFixed(1),
    rate(r.name, 'new').toFixed(1),
    rate(r.name, 'newErrors').toFixed(1),
    rate(r.name, 'fallbacks').toFixed(1),
    breakerCell(r.breaker ?? null),
    percent(divergence.get(r.name) ?? null),
    percent(r.divergence5m ?? null),
    r.lastChange === null ? '-' : `${r.lastChange.time} ${r.lastChange.who}${r.lastChange.reason === null ? '' : `: ${r.lastChange.reason}`}`
  ]))
  return rows + flagsLine(flags)
}

/** `closed`, `OPEN 12s (refused)`, `half-open`; in a cluster, in how many workers. `-`: new never tried on this route. */
function breakerCell(b: BreakerView | null): string {
  if (b === null) return '-'
  if (b.state === 'closed') return 'closed'
  const where = b.processes > 1 ? ` in ${b.ejectedIn}/${b.processes}` : ''
  const left = b.openForMs === null ? '' : ` ${Math.ceil(b.openForMs / 1000)}s`
  return `${b.state === 'open' ? 'OPEN' : 'half-open'}${left}${where}${b.lastFailure === null ? '' : ` (${b.lastFailure})`}`
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

/**
 * `ficus rollback <route> | --all [--reason …]`; when a rolled-back route has dual writes,
 * how many are still on their way to each side and how far behind it is (`sync` in --json).
 */
export async function rollbackCommand(target: AdminTarget, route: string | undefined, reason: string | undefined, json: boolean): Promise<string> {
  const { routes } = await adminCall(target, 'POST', '/admin/rollback', { ...(route === undefined ? {} : { route }), ...(reason === undefined ? {} : { reason }) }) as { routes: RouteView[] }
  const inFlight = await writesInFlight(target, routes.map((r) => r.name))
  if (json) return JSON.stringify({ routes, ...(inFlight.status === null ? {} : { sync: inFlight.status }) }, null, 2) + '\n'
  return routes.map((r) => `${r.name}: rolled back, new ${r.new.value} %\n`).join('') + inFlight.text
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

/** Primary responses by route and backend, and fallbacks by route, from /metrics (the counters, not a rate). */
async function primaryCounts(target: AdminTarget): Promise<Map<string, Counts>> {
  const text = await adminText(target, '/metrics')
  const out = new Map<string, Counts>()
  const of = (route: string): Counts => {
    let c = out.get(route)
    if (c === undefined) out.set(route, c = { legacy: 0, new: 0, legacyErrors: 0, newErrors: 0, fallbacks: 0 })
    return c
  }
  for (const m of text.matchAll(/^ficus_requests_total\{route="([^"]+)",backend="(legacy|new)",role="primary",code="(\d+)"\} (\d+)/gm)) {
    const side = m[2] as 'legacy' | 'new'
    const key: keyof Counts = Number(m[3]) >= 500 ? (side === 'new' ? 'newErrors' : 'legacyErrors') : side
    of(m[1] as string)[key] += Number(m[4])
  }
  for (const m of text.matchAll(/^ficus_fallbacks_total\{route="([^"]+)",reason="[^"]+"\} (\d+)/gm)) of(m[1] as string).fallbacks += Number(m[2])
  return out
}

