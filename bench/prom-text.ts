import { request } from 'undici'

/**
 * Reading a Ficus's /metrics: the benches (bench:soak, and npm run bench's shadow runs) and
 * the tests (test/helpers/ficus.ts's sample()) use this one parser.
 */

export interface Series { name: string; labels: Record<string, string>; value: number }

/** A label value as written in the exposition (`\\`, `\"` and `\n` escaped), unescaped. */
const unescape = (v: string): string => v.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c))

/** Prometheus text format, enough of it for prom-client's output: one Series per sample line (comments skipped). */
export function parseMetrics(text: string): Series[] {
  const out: Series[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (m === null) continue
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = unescape(l[2] as string)
    out.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return out
}

/** The series of `name` whose labels are exactly `labels` (in any order), or undefined. */
export function find(series: readonly Series[], name: string, labels: Record<string, string> = {}): Series | undefined {
  const wanted = Object.entries(labels)
  return series.find((s) => s.name === name &&
    Object.keys(s.labels).length === wanted.length &&
    wanted.every(([k, v]) => s.labels[k] === v))
}

export const sum = (series: Series[], name: string, where: (l: Record<string, string>) => boolean = () => true): number =>
  series.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0)

/** GET `${adminUrl}/metrics`, parsed. */
export async function scrape(adminUrl: string): Promise<Series[]> {
  const r = await request(`${adminUrl}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
  const text = await r.body.text()
  if (r.statusCode !== 200) throw new Error(`/metrics answered ${r.statusCode}`)
  return parseMetrics(text)
}
