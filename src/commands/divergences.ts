import { MAX_FIELDS_PER_ROUTE, type RouteSummary } from '../adapters/divergence-store.js'
import { adminGet, type AdminTarget } from './admin-client.js'

/**
 * `ficus divergences [route]`: the divergence summary of a running Ficus, as a table
 * (one line per route), or for one route its most divergent fields; `--json` prints what
 * the admin API returned.
 */
export async function divergencesCommand(target: AdminTarget, route: string | undefined, json: boolean): Promise<string> {
  const query = route === undefined ? '' : `?route=${encodeURIComponent(route)}`
  const body = await adminGet(target, `/admin/divergences/summary${query}`) as { routes: RouteSummary[] }
  if (json) return JSON.stringify(body, null, 2) + '\n'
  return route === undefined ? formatRoutes(body.routes) : formatRoute(body.routes[0] as RouteSummary)
}

/** One line per route. */
function formatRoutes(routes: readonly RouteSummary[]): string {
  if (routes.length === 0) return 'No route is shadowed, and nothing has been compared yet.\n'
  const rows = routes.map((r) => {
    const c = r.comparisons
    const top = r.topFields[0]
    return [r.route, String(c.match + c.diverged), String(c.match), String(c.diverged), rate(r.divergenceRate),
      String(c.error), String(c.skipped), top === undefined ? '-' : `${top.field} (${top.count})`]
  })
  return table(['ROUTE', 'COMPARED', 'MATCH', 'DIVERGED', 'RATE', 'ERROR', 'SKIPPED', 'TOP FIELD'], rows)
}

/** One route: its counts, then the fields that differ most and how. */
function formatRoute(r: RouteSummary): string {
  const c = r.comparisons
  const lines = [
    `${r.route}: ${c.match + c.diverged} compared, ${c.diverged} diverged (${rate(r.divergenceRate)}), ${c.error} errors, ${c.skipped} skipped`,
    `  diverged in: status ${r.kinds.status}, headers ${r.kinds.header}, body ${r.kinds.body}`
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
