import { MAX_FIELDS_PER_ROUTE, type Epoch, type RouteSummary, type WindowCounts } from '../adapters/divergence-store.js'
import { adminCall, adminGet, type AdminTarget } from './admin-client.js'

/**
 * `ficus divergences [route] [--since 15m]`: the divergence summary of a running Ficus, as
 * a table (one line per route), or for one route its most divergent fields; counts since
 * the route's epoch began, or since `since`. `--json` prints what the admin API returned.
 */
export async function divergencesCommand(target: AdminTarget, route: string | undefined, json: boolean, since?: string): Promise<string> {
  const params = new URLSearchParams()
  if (route !== undefined) params.set('route', route)
  if (since !== undefined) params.set('since', since)
  const query = params.size === 0 ? '' : `?${params.toString()}`
  const body = await adminGet(target, `/admin/divergences/summary${query}`) as { routes: RouteSummary[] }
  if (json) return JSON.stringify(body, null, 2) + '\n'
  return route === undefined ? formatRoutes(body.routes) : formatRoute(body.routes[0] as RouteSummary)
}

/** `ficus divergences reset [route] [--reason text]`: a route's (or every route's) divergence counts start a new epoch. */
export async function resetDivergencesCommand(target: AdminTarget, route: string | undefined, reason: string | undefined, json: boolean): Promise<string> {
  const body = await adminCall(target, 'POST', '/admin/divergences/reset', { ...(route === undefined ? {} : { route }), ...(reason === undefined ? {} : { reason }) }) as { routes: { route: string; epoch: Epoch }[] }
  if (json) return JSON.stringify(body, null, 2) + '\n'
  return body.routes.map((r) => `${r.route}: divergence counts reset, epoch ${r.epoch.n} from ${r.epoch.startedAt}\n`).join('')
}

/** One line per route. */
function formatRoutes(routes: readonly RouteSummary[]): string {
  if (routes.length === 0) return 'No route is shadowed, and nothing has been compared yet.\n'
  const rows = routes.map((r) => {
    const c = r.comparisons
    const top = r.topFields[0]
    return [r.route, String(c.match + c.diverged), String(c.match), String(c.diverged), rate(r.divergenceRate),
      rate(r.windows['5m'].divergenceRate), String(c.error), String(c.skipped), top === undefined ? '-' : `${top.field} (${top.count})`, r.since]
  })
  return table(['ROUTE', 'COMPARED', 'MATCH', 'DIVERGED', 'RATE', 'RATE 5M', 'ERROR', 'SKIPPED', 'TOP FIELD', 'SINCE'], rows)
}

/** One route: its counts, then the fields that differ most and how. */
function formatRoute(r: RouteSummary): string {
  const c = r.comparisons
  const lines = [
    `${r.route}: ${c.match + c.diverged} compared, ${c.diverged} diverged (${rate(r.divergenceRate)}), ${c.error} errors, ${c.skipped} skipped`,
    `  since ${r.since}${r.since === r.epoch.startedAt ? `: epoch ${r.epoch.n}, ${epochCause(r.epoch)}` : ` (epoch ${r.epoch.n} began ${r.epoch.startedAt}, ${epochCause(r.epoch)})`}`,
    `  diverged in: status ${r.kinds.status}, headers ${r.kinds.header}, body ${r.kinds.body}`,
    `  last 5 min: ${windowLine(r.windows['5m'])}; last hour: ${windowLine(r.windows['1h'])}`
  ]
  if (Object.keys(r.errors).length > 0) lines.push(`  errors: ${counts(r.errors)}`)
  if (Object.keys(r.skipped).length > 0) lines.push(`  skipped: ${counts(r.skipped)}`)
  if (r.lastDivergence !== null) lines.push(`  last divergence: ${r.lastDivergence}`)
  let out = lines.join('\n') + '\n'
  if (r.topFields.length > 0) {
    out += '\n' + table(['FIELD', 'COUNT', 'HOW'], r.topFields.map((f) => [f.field, String(f.count), counts(f.kinds)]))
    if (r.otherFields > 0) out += `(and ${r.otherFields} differences in fields beyond the ${MAX_FIELDS_PER_ROUTE} distinct fields counted per route)\n`
  }
  return out
}

function epochCause(e: Epoch): string {
  if (e.why === 'start') return 'since Ficus started'
  if (e.why === 'reload') return 'after a reload changed its compare rules'
  return `after a reset${e.reason === null ? '' : ` (${e.reason})`}`
}

function windowLine(w: WindowCounts): string {
  return `${w.comparisons.match + w.comparisons.diverged} compared, ${w.comparisons.diverged} diverged (${rate(w.divergenceRate)})`
}

/** A ratio as a percentage with one decimal, `-` when there is none. */
export function rate(r: number | null): string {
  return r === null ? '-' : `${(r * 100).toFixed(1)} %`
}

function counts(m: Readonly<Record<string, number | undefined>>): string {
  return Object.entries(m).sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0)).map(([k, n]) => `${k} ${n ?? 0}`).join(', ')
}

export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  return [line(head), ...rows.map(line)].join('\n') + '\n'
}
