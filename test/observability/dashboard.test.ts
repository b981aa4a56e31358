import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { dashboardJson } from '../../grafana/dashboard.js'
import { ROOT } from '../helpers/spawn.js'

/**
 * The dashboard as SREs import it: the committed JSON is what grafana/dashboard.ts generates,
 * and every panel tells what it shows (description), in what unit, against what thresholds.
 * Its queries are evaluated on a real Prometheus in prometheus.test.ts.
 */

const FILE = join(ROOT, 'grafana', 'dashboards', 'ficus.json')
const committed = readFileSync(FILE, 'utf8')
const d = JSON.parse(committed) as {
  uid: string
  schemaVersion: number
  panels: {
    id: number
    type: string
    title: string
    description?: string
    datasource?: { type: string; uid: string }
    gridPos: { x: number; y: number; w: number; h: number }
    fieldConfig?: { defaults: { unit?: string; thresholds?: { steps: { value: number | null; color: string }[] } } }
    targets?: { expr: string; legendFormat?: string; datasource?: { uid: string } }[]
  }[]
  templating: { list: { name: string; type: string; multi?: boolean; includeAll?: boolean; allValue?: string; query?: unknown }[] }
  annotations: { list: { name: string; expr?: string; builtIn?: number }[] }
}

t.test('the committed JSON is the generated one (npm run dashboard writes it)', async (t) => {
  t.equal(committed, dashboardJson())
})

t.test('rows of the migration, and a route variable that takes several routes or all', async (t) => {
  const rows = d.panels.filter((p) => p.type === 'row').map((p) => p.title)
  t.same(rows, ['Migration progress', 'Ramp', 'Traffic', 'Latency', 'Divergence', 'Data sync', 'Verify', 'Upgrades (WebSocket)', 'Control plane', 'Process'])
  const v = Object.fromEntries(d.templating.list.map((x) => [x.name, x]))
  t.match(v.datasource, { type: 'datasource', query: 'prometheus' })
  t.match(v.route, { type: 'query', multi: true, includeAll: true, allValue: '.*' })
  t.match(v.instance, { type: 'query', multi: true, includeAll: true, allValue: '.*' })
  t.ok(d.schemaVersion >= 36, 'a schema Grafana 10 and 11 load')
})

t.test('every panel: description, unit, thresholds, the datasource variable, a legend per query, on the grid', async (t) => {
  const panels = d.panels.filter((p) => p.type !== 'row')
  t.ok(panels.length >= 20, `${panels.length} panels`)
  t.equal(new Set(d.panels.map((p) => p.id)).size, d.panels.length, 'unique ids')
  const cells = new Set<string>()
  for (const p of panels) {
    t.ok((p.description ?? '').length > 40, `${p.title}: described`)
    t.ok((p.fieldConfig?.defaults.unit ?? '') !== '', `${p.title}: unit`)
    t.ok((p.fieldConfig?.defaults.thresholds?.steps.length ?? 0) >= 1, `${p.title}: thresholds`)
    t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title}: datasource variable`)
    t.ok((p.targets ?? []).length > 0, `${p.title}: queries`)
    for (const q of p.targets ?? []) {
      t.ok((q.legendFormat ?? '') !== '', `${p.title}: legend`)
      t.equal(q.datasource?.uid, '${datasource}')
      if (q.expr.startsWith('ficus_') || q.expr.includes('(ficus_')) t.match(q.expr, /route=~"\$route"|instance=~"\$instance"/, `${p.title}: filtered by the variables`)
    }
    const { x, y, w, h } = p.gridPos
    t.ok(x >= 0 && x + w <= 24, `${p.title}: within the grid width`)
    for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
      if (cells.has(`${i},${j}`)) t.fail(`${p.title} overlaps another panel at ${i},${j}`)
      cells.add(`${i},${j}`)
    }
  }
})

t.test('latency panels put legacy and new side by side, p50/p95/p99, primary and shadowed', async (t) => {
  const latency = d.panels.filter((p) => p.fieldConfig?.defaults.unit === 's' && p.title.includes('legacy vs new'))
  t.equal(latency.length, 2)
  for (const p of latency) {
    t.same(p.targets?.map((q) => q.expr.match(/^histogram_quantile\((0\.\d+),/)?.[1]), ['0.5', '0.95', '0.99'], p.title)
    for (const q of p.targets ?? []) {
      t.match(q.expr, /sum by \(le, backend\)/, 'one series per backend')
      t.match(q.expr, /backend=~"legacy\|new"/)
    }
  }
  t.match(latency[1]?.targets?.[0]?.expr, /and on \(instance, route\) \(ficus_route_shadow_percent\{[^}]*\} > 0\)/, 'shadowed: routes with shadow > 0 only')
})

t.test('data sync: the store\'s gauges are the highest over the replicas, never a sum; each dual route and target shows 0 before its first wait', async (t) => {
  // Every replica (and every --workers process) reads the same store: a sum would count a fleet's backlog once per replica.
  const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((q) => q.expr))
  const gauges = ['ficus_sync_lag_seconds', 'ficus_sync_pending', 'ficus_sync_dead_letters', 'ficus_idmap_entries']
  for (const g of gauges) {
    const using = exprs.filter((e) => e.includes(`${g}{`))
    t.ok(using.length > 0, `${g} is on the dashboard`)
    for (const e of using) {
      t.match(e, new RegExp(`^max by \\([a-z, ]+\\) \\(${g}\\{`), `${g}: max over the replicas`)
      t.notMatch(e, /sum/, `${g}: never summed`)
    }
  }
  const lag = exprs.find((e) => e.includes('ficus_sync_lag_seconds{'))
  t.match(lag, / or max by \(route, target\) \(ficus_sync_deliveries_total\{[^}]*\}\) \* 0$/, 'lag 0, not "no data", for a route whose writes never waited')
  const replication = d.panels.find((p) => p.title === 'Replication latency')
  t.same(replication?.targets?.map((q) => q.expr.match(/^histogram_quantile\((0\.\d+),/)?.[1]), ['0.5', '0.99'], 'p50 and p99')
})

t.test('control plane events are annotations too', async (t) => {
  const names = d.annotations.list.filter((a) => a.builtIn === undefined).map((a) => a.name)
  t.same(names, ['Rollbacks', 'Config reloads', 'Ramp transitions'])
  // A ramp's first transition is in a counter series that appears at 1 (increase() misses it): the mark reads the phase and step gauges.
  const ramp = d.annotations.list.find((a) => a.name === 'Ramp transitions')
  t.match(ramp?.expr, /changes\(ficus_ramp_state\{/, 'a change of phase')
  t.match(ramp?.expr, /changes\(ficus_ramp_step_percent\{/, 'a change of step')
  t.notMatch(ramp?.expr, /ficus_ramp_transitions_total/)
})

t.test('ramp: the step and phase are the store\'s, never summed; gates only while the ramp runs or holds; the phase timeline names every phase', async (t) => {
  const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((q) => q.expr))
  // Every replica sets the same step and phase from the store: a sum would count them once per replica.
  for (const g of ['ficus_ramp_step_percent', 'ficus_ramp_state', 'ficus_ramp_gate_observed', 'ficus_ramp_gate_threshold', 'ficus_ramp_gate_verdict']) {
    const using = exprs.filter((e) => e.includes(`${g}{`))
    t.ok(using.length > 0, `${g} is on the dashboard`)
    for (const e of using) t.notMatch(e, /sum/, `${g}: never summed`)
  }
  // Gate gauges keep their last value after the ramp stops running or holding.
  for (const e of exprs.filter((x) => /ficus_ramp_gate_(observed|threshold|verdict)\{/.test(x))) {
    t.match(e, /and on \(instance, route\) \(ficus_ramp_state\{[^}]*state=~"running\|holding"\} == 1\)\)$/, 'only while the ramp runs or holds')
  }
  const gates = exprs.filter((e) => e.includes('ficus_ramp_gate_observed{')).flatMap((e) => e.match(/gate=~"([^"]+)"/)?.[1]?.split('|') ?? [])
  t.same(gates.sort(), ['divergence', 'errors', 'latency_p99', 'latency_slower', 'sync_dead_letters', 'sync_lag', 'verify'], 'every gate, once')
  const phase = d.panels.find((p) => p.title === 'Ramp: phase') as unknown as { type: string; targets: { expr: string }[]; fieldConfig: { defaults: { mappings: { options: Record<string, { text: string }> }[] } } }
  t.equal(phase.type, 'state-timeline')
  const named = Object.entries(phase.fieldConfig.defaults.mappings[0]?.options ?? {})
  for (const [code, { text }] of named) {
    if (code === '0') t.equal(text, 'none', 'no phase active: none')
    else t.match(phase.targets[0]?.expr, new RegExp(`${code} \\* ficus_ramp_state\\{[^}]*state="${text.replace(' ', '_')}"\\}`), `${code}: ${text}`)
  }
  t.equal(named.length, 7, 'the seven phases of ficus_ramp_state')
})

t.test('provisioning: the default Prometheus data source, sized to the scrape interval; the dashboards folder', async (t) => {
  const ds = parse(readFileSync(join(ROOT, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')) as { datasources: { type: string; isDefault: boolean; url: string; jsonData: { timeInterval: string } }[] }
  const prom = parse(readFileSync(join(ROOT, 'prometheus', 'prometheus.yml'), 'utf8')) as { global: { scrape_interval: string } }
  t.match(ds.datasources, [{ type: 'prometheus', isDefault: true, url: 'http://prometheus:9090' }])
  t.equal(ds.datasources[0]?.jsonData.timeInterval, prom.global.scrape_interval, '$__rate_interval follows the real scrape interval')
  const dash = parse(readFileSync(join(ROOT, 'grafana', 'provisioning', 'dashboards', 'ficus.yml'), 'utf8')) as { providers: { type: string; options: { path: string } }[] }
  t.match(dash.providers, [{ type: 'file', options: { path: '/var/lib/grafana/dashboards' } }])
})
