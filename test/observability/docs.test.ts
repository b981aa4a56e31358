import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { createMetrics, flagSource } from '../../src/adapters/metrics-registry.js'
import { ROOT } from '../helpers/spawn.js'

/**
 * What SREs read agrees with what Ficus exposes: README's Metrics table and the registry
 * (src/adapters/metrics-registry.ts) list the same metrics with the same labels; every metric
 * the docs, the dashboard and the rules name exists; every metric the dashboard reads is
 * described in docs/observability.md; every alert has a severity, a summary, a runbook that
 * points at its section of docs/observability.md, that section, and a unit test that fires it.
 */

const read = (...path: string[]): string => readFileSync(join(ROOT, ...path), 'utf8')
const README = read('README.md')
const OBSERVABILITY = read('docs', 'observability.md')
const DASHBOARD = read('grafana', 'dashboards', 'ficus.json')
const RULES = read('prometheus', 'alerts.yml')
const RULE_TESTS = read('prometheus', 'alerts.test.yml')

/** The registry's own metrics (ficus_*), each with its labels in order; the flag source's gauge too (registered once a source opens). */
function registry(): Map<string, string[]> {
  const m = createMetrics()
  flagSource(m)
  const out = new Map<string, string[]>()
  for (const metric of m.register.getMetricsAsArray() as unknown as { name: string; labelNames?: readonly string[] }[]) {
    if (metric.name.startsWith('ficus_')) out.set(metric.name, [...metric.labelNames ?? []])
  }
  return out
}
const METRICS = registry()

/** `## title` up to the next heading of the same level. */
function section(text: string, title: string): string {
  const start = text.indexOf(`\n## ${title}\n`)
  if (start < 0) throw new Error(`no "## ${title}" section`)
  const end = text.indexOf('\n## ', start + 1)
  return text.slice(start, end < 0 ? undefined : end)
}

/** Metric names in a text: `ficus_…` not inside a recording rule's name (`route:ficus_x:rate5m`); a histogram's series as the histogram. */
function named(text: string): Set<string> {
  const names = new Set<string>()
  for (const [name] of text.matchAll(/(?<![\w:])ficus_[a-z0-9_]+(?![\w:])/g)) {
    const base = name.replace(/_(bucket|sum|count)$/, '')
    names.add(METRICS.has(base) ? base : name)
  }
  return names
}

t.test('README\'s Metrics table lists every metric of the registry, with its labels, and nothing else', async (t) => {
  const rows = [...section(README, 'Metrics').matchAll(/^\| `(ficus_[a-z0-9_]+)` \| *([^|]*?) *\|/gm)]
    .map(([, name = '', labels = '']) => [name, labels === '' ? [] : labels.replaceAll('`', '').split(',').map((l) => l.trim())] as const)
  t.ok(rows.length >= 30, `the table was read (${rows.length} rows)`)
  t.same(rows.map(([name]) => name).sort(), [...METRICS.keys()].sort(), 'the same metrics')
  for (const [name, labels] of rows) t.same(labels, METRICS.get(name), `${name}: its labels, in the registry's order`)
})

t.test('every metric the docs, the dashboard and the rules name is one of the registry', async (t) => {
  // README's Metrics section only: elsewhere it names other things ficus_ (PostgreSQL tables of the sync store).
  const sources: [string, string][] = [['README.md "Metrics"', section(README, 'Metrics')], ['docs/observability.md', OBSERVABILITY], ['grafana/dashboards/ficus.json', DASHBOARD],
    ['prometheus/alerts.yml', RULES], ['prometheus/alerts.test.yml', RULE_TESTS]]
  for (const [file, text] of sources) {
    const names = named(text)
    t.ok(names.size > 0, `${file} names metrics`)
    for (const name of names) t.ok(METRICS.has(name), `${file}: ${name} is in the registry`)
  }
})

t.test('every metric the dashboard reads is described in docs/observability.md "The dashboard"', async (t) => {
  const dashboard = JSON.parse(DASHBOARD) as { panels: { targets?: { expr: string }[] }[] }
  const read = named(dashboard.panels.flatMap((p) => (p.targets ?? []).map((q) => q.expr)).join('\n'))
  const described = named(section(OBSERVABILITY, 'The dashboard'))
  t.ok(read.size >= 25, `${read.size} metrics read`)
  for (const name of read) t.ok(described.has(name), `${name} is described`)
})

t.test('every alert: a severity, a summary, a runbook pointing at its section, the section, and a unit test that fires it', async (t) => {
  interface Rule { alert?: string; labels?: { severity?: string }; annotations?: { summary?: string; runbook?: string } }
  const alerts = (parse(RULES) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined)
  const tests = (parse(RULE_TESTS) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests.flatMap((x) => x.alert_rule_test ?? [])
  const alertsDoc = section(OBSERVABILITY, 'Alerts')
  const sections = [...alertsDoc.matchAll(/^### (Ficus\w+)$/gm)].map((m) => m[1])
  t.ok(alerts.length >= 13, `${alerts.length} alerts`)
  t.same([...sections].sort(), alerts.map((a) => a.alert).sort(), 'one section per alert, none for an alert that is gone')
  for (const a of alerts) {
    const name = a.alert as string
    t.match(a.labels?.severity, /^(warning|critical)$/, `${name}: severity`)
    t.ok((a.annotations?.summary ?? '').length > 20, `${name}: summary`)
    t.ok((a.annotations?.runbook ?? '').endsWith(`docs/observability.md#${name.toLowerCase()}`), `${name}: the runbook points at its section`)
    t.ok(tests.some((x) => x.alertname === name && x.exp_alerts.length > 0), `${name}: a unit test where it fires`)
    t.ok(tests.some((x) => x.alertname === name && x.exp_alerts.length === 0), `${name}: a unit test where it does not`)
  }
})
