/**
 * The Ficus Grafana dashboard, generated with Grafana's foundation SDK (types of Grafana
 * 10.4; Grafana 11 imports it as is). `npm run dashboard` writes grafana/dashboards/ficus.json;
 * a test fails when the committed JSON and this file disagree, and another evaluates every
 * query below on a real Prometheus scraping a real Ficus (test/observability/).
 *
 * Queries filter on `$route` and `$instance` (multi-value, "All" = `.*`). Latency panels
 * show legacy and new side by side in one panel: on primary traffic (different users), and
 * on shadowed routes (the fair comparison: each backend over the same requests).
 */
import {
  DashboardBuilder, DashboardCursorSync, DatasourceVariableBuilder, QueryVariableBuilder, RowBuilder,
  ThresholdsConfigBuilder, ThresholdsMode, VariableHide, VariableRefresh, VariableSort,
  type Dashboard, type DataSourceRef, type DynamicConfigValue, type MatcherConfig, type Threshold, type ValueMapping, MappingType
} from '@grafana/grafana-foundation-sdk/dashboard'
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus'
import { PanelBuilder as StatPanel } from '@grafana/grafana-foundation-sdk/stat'
import { PanelBuilder as StateTimelinePanel } from '@grafana/grafana-foundation-sdk/statetimeline'
import { PanelBuilder as TimeseriesPanel } from '@grafana/grafana-foundation-sdk/timeseries'
import { BigValueGraphMode, LegendDisplayMode, LegendPlacement, ReduceDataOptionsBuilder, SortOrder, TooltipDisplayMode, VisibilityMode, VizLegendOptionsBuilder, VizTooltipOptionsBuilder } from '@grafana/grafana-foundation-sdk/common'

export const DASHBOARD_UID = 'ficus-migration'

const DS: DataSourceRef = { type: 'prometheus', uid: '${datasource}' }
/** Every Ficus series of the selected routes and replicas. */
const SEL = 'route=~"$route", instance=~"$instance"'
/** Process series of the selected replicas. */
const INST = 'instance=~"$instance"'
const RATE = '[$__rate_interval]'

interface Query { expr: string; legend: string }
interface PanelSpec {
  title: string
  description: string
  unit: string
  queries: Query[]
  /** Threshold steps after the base (green): [value, color]. */
  steps?: [number, string][]
  min?: number
  max?: number
  width?: number
  /** Grid units; by default 8 for a time series, 5 for a stat. */
  height?: number
  stacked?: boolean
}

function thresholds(steps: [number, string][] = []): ThresholdsConfigBuilder {
  const all: Threshold[] = [{ value: null, color: 'green' }, ...steps.map(([value, color]) => ({ value, color }))]
  return new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(all)
}

function targets(queries: Query[]): DataqueryBuilder[] {
  return queries.map((q, i) => new DataqueryBuilder()
    .expr(q.expr)
    .legendFormat(q.legend)
    .range()
    .refId(String.fromCharCode(65 + i))
    .datasource(DS))
}

/** What every panel has, whatever its kind: the builders of both kinds share these methods. */
interface PanelBase {
  title(title: string): this
  description(description: string): this
  datasource(ref: DataSourceRef): this
  unit(unit: string): this
  thresholds(thresholds: ThresholdsConfigBuilder): this
  span(width: number): this
  height(height: number): this
  min(min: number): this
  max(max: number): this
  withTarget(target: DataqueryBuilder): this
}

function panel<B extends PanelBase>(b: B, p: PanelSpec, width: number, height: number): B {
  b = b.title(p.title).description(p.description).datasource(DS).unit(p.unit)
    .thresholds(thresholds(p.steps)).span(p.width ?? width).height(p.height ?? height)
  if (p.min !== undefined) b = b.min(p.min)
  if (p.max !== undefined) b = b.max(p.max)
  for (const t of targets(p.queries)) b = b.withTarget(t)
  return b
}

interface Override { matcher: MatcherConfig; properties: DynamicConfigValue[] }

function timeseries(p: PanelSpec & { overrides?: Override[] }): TimeseriesPanel {
  let b = panel(new TimeseriesPanel(), p, 8, 8)
    .lineWidth(1)
    .fillOpacity(p.stacked === true ? 30 : 10)
    .tooltip(new VizTooltipOptionsBuilder().mode(TooltipDisplayMode.Multi).sort(SortOrder.Descending))
    .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.Table).placement(LegendPlacement.Bottom).showLegend(true).calcs(['mean', 'max', 'lastNotNull']))
  for (const o of p.overrides ?? []) b = b.withOverride(o)
  return b
}

/** Series whose legend ends with `suffix` (e.g. "threshold"): a dashed line without fill, drawn over what it bounds. */
const dashed = (suffix: string): Override => ({
  matcher: { id: 'byRegexp', options: `/${suffix}$/` },
  properties: [{ id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } }, { id: 'custom.fillOpacity', value: 0 }]
})

/** A state per series over time (a phase, a verdict): each value named and coloured by `mappings`. */
function timeline(p: PanelSpec & { mappings: ValueMapping[] }): StateTimelinePanel {
  return panel(new StateTimelinePanel(), p, 8, 8)
    .mappings(p.mappings)
    .showValue(VisibilityMode.Auto)
    .mergeValues(true)
    .rowHeight(0.8)
    .fillOpacity(80)
    .lineWidth(0)
    .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom).showLegend(true))
}

function stat(p: PanelSpec & { mappings?: ValueMapping[]; noValue?: string; overrides?: Override[] }): StatPanel {
  let b = panel(new StatPanel(), p, 6, 5)
    .graphMode(BigValueGraphMode.None)
    .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
  if (p.mappings !== undefined) b = b.mappings(p.mappings)
  if (p.noValue !== undefined) b = b.noValue(p.noValue)
  for (const o of p.overrides ?? []) b = b.withOverride(o)
  return b
}

const quantiles = (q: number, selector: string, by: string, suffix = ''): Query => ({
  expr: `histogram_quantile(${q}, sum by (le, ${by}) (rate(ficus_request_duration_seconds_bucket{${selector}}${RATE})${suffix}))`,
  legend: `{{${by}}} p${Math.round(q * 100)}`
})

/** `sum by (route) (rate(X))`, or 0 for a route that has the denominator's traffic but no X (a missing series is not 0). */
const orZero = (num: string, den: string): string => `(${num} or (${den}) * 0)`

/** The phases of ficus_ramp_state as the phase timeline codes them (0, 1, …), with their colours. */
const RAMP_PHASES: readonly (readonly [string, string])[] = [
  ['none', 'text'], ['running', 'blue'], ['holding', 'yellow'], ['paused', 'orange'], ['completed', 'green'], ['rolled back', 'red'], ['aborted', 'purple']
]

export function dashboard(): Dashboard {
  const primary = `${SEL}, role="primary"`
  const compared = `sum by (route) (rate(ficus_comparisons_total{${SEL}, outcome=~"match|diverged"}${RATE}))`
  /** Responses to clients from `backends` per second, summed by `by`; `only` narrows further (e.g. `, code=~"5.."`). */
  const served = (by: string, backends = 'legacy|new', only = ''): string => `sum by (${by}) (rate(ficus_requests_total{${primary}, backend=~"${backends}"${only}}${RATE}))`

  const b = new DashboardBuilder('Ficus — strangler-fig migration')
    .uid(DASHBOARD_UID)
    .description('Per route: how far the move from legacy to new has gone, how the two backends compare (errors, latency, divergences), whether dual writes keep both sides in step, what the control plane did, and the health of each Ficus replica.')
    .tags(['ficus', 'migration', 'proxy'])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .refresh('30s')
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    .withVariable(new DatasourceVariableBuilder('datasource').label('Prometheus').type('prometheus'))
    .withVariable(new QueryVariableBuilder('instance')
      .label('Replica')
      .description('Ficus replicas (Prometheus instance label)')
      .datasource(DS)
      .query('label_values(ficus_build_info, instance)')
      .refresh(VariableRefresh.OnTimeRangeChanged)
      .sort(VariableSort.AlphabeticalAsc)
      .multi(true).includeAll(true).allValue('.*'))
    .withVariable(new QueryVariableBuilder('route')
      .label('Route')
      .description('Routes of routes.yaml (every route has a shadow gauge, flagged ones too)')
      .datasource(DS)
      .query('label_values(ficus_route_shadow_percent{instance=~"$instance"}, route)')
      .refresh(VariableRefresh.OnTimeRangeChanged)
      .sort(VariableSort.AlphabeticalAsc)
      .multi(true).includeAll(true).allValue('.*')
      .hide(VariableHide.DontHide))

  // ---- Migration progress
  b.withRow(new RowBuilder('Migration progress'))
  b.withPanel(timeseries({
    title: 'New: configured share of users',
    description: 'The share of users served by new in effect per route: routes.yaml, a runtime override (`ficus set`), or the route\'s Unleash flag. A drop to 0 is a rollback. Highest and lowest over the replicas: two lines apart mean the replicas disagree (a `ficus rollback` run against one replica, or one that has not fetched a flag change). No series for a flag whose strategies decide per user.',
    unit: 'percent', min: 0, max: 100, width: 6,
    queries: [
      { expr: `max by (route) (ficus_route_new_percent{${SEL}})`, legend: '{{route}} (highest)' },
      { expr: `min by (route) (ficus_route_new_percent{${SEL}})`, legend: '{{route}} (lowest)' }
    ]
  }))
  b.withPanel(timeseries({
    title: 'Shadow: configured share of requests',
    description: 'The share of requests copied to the other backend and compared, per route.',
    unit: 'percent', min: 0, max: 100, width: 6,
    queries: [{ expr: `max by (route) (ficus_route_shadow_percent{${SEL}})`, legend: '{{route}}' }]
  }))
  b.withPanel(timeseries({
    title: 'New: actual share of requests served',
    description: 'Responses new gave to clients over all responses of the route. Below the configured share when new fails and legacy falls back, or when the sticky users of the share send fewer requests.',
    unit: 'percentunit', min: 0, max: 1, width: 6,
    queries: [{ expr: `${orZero(served('route', 'new'), served('route'))} / ${served('route')}`, legend: '{{route}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Divergence rate',
    description: 'Share of compared requests (match + diverged) whose answers differed. `ficus divergences <route>` shows which fields and how. Empty when nothing was compared.',
    unit: 'percentunit', min: 0, width: 6, steps: [[0.01, 'orange'], [0.05, 'red']],
    queries: [{ expr: `sum by (route) (rate(ficus_comparisons_total{${SEL}, outcome="diverged"}${RATE})) / ${compared}`, legend: '{{route}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Comparisons per second',
    description: 'Shadowed requests whose two answers were compared (match or diverged), per route. Skipped and failed copies are in the Divergence row.',
    unit: 'reqps', min: 0, width: 24,
    queries: [{ expr: compared, legend: '{{route}}' }]
  }))

  // ---- Ramp (docs/ramp.md): every replica sets the step and phase from the ramps' records in
  // the shared store (the same on each: highest over the replicas, never summed); the replica
  // that drives judges the gates. Gate gauges keep their last value once the ramp stops
  // running or holding, and on a replica that stopped driving: the gate panels show them only
  // while the ramp runs or holds.
  const driven = `and on (instance, route) (ficus_ramp_state{${SEL}, state=~"running|holding"} == 1)`
  /** Each gate of `gates` as last judged, observed and threshold, while its ramp runs or holds. */
  const gate = (gates: string, label: string): Query[] => [
    { expr: `max by (route, gate) (ficus_ramp_gate_observed{${SEL}, gate=~"${gates}"} ${driven})`, legend: `{{route}} ${label}` },
    { expr: `max by (route, gate) (ficus_ramp_gate_threshold{${SEL}, gate=~"${gates}"} ${driven})`, legend: `{{route}} ${label} threshold` }
  ]
  b.withRow(new RowBuilder('Ramp'))
  b.withPanel(timeseries({
    title: 'Ramp: step vs new in effect',
    description: 'Per route with a ramp: the share of new its ramp asks for now (dashed: the step\'s, 0 after a rollback or abort) and the share in effect (lowest over the replicas). They differ while a replica has not applied the step yet, after a person changed the route by hand (`ficus set`, `ficus rollback`, the flag in Unleash: the ramp paused, the step stays), and on a flagged route whose strategies decide per user (no "in effect" series). Marks on every graph: the ramp\'s transitions.',
    unit: 'percent', min: 0, max: 100, width: 8,
    overrides: [dashed('ramp step')],
    queries: [
      { expr: `max by (route) (ficus_ramp_step_percent{${SEL}})`, legend: '{{route}}: ramp step' },
      { expr: `min by (route) (ficus_route_new_percent{${SEL}} and on (instance, route) ficus_ramp_state{${SEL}, state="none"})`, legend: '{{route}}: new in effect' }
    ]
  }))
  b.withPanel(timeline({
    title: 'Ramp: phase',
    description: 'The phase of each route\'s ramp: running (advances when its gates pass), holding (`ficus ramp hold`: judged, may fail, does not advance), paused (a person\'s change, a failed gate with onFail: pause, or a changed plan: someone must decide; alert FicusRampPaused), completed (new 100 %), rolled back (a gate failed or the trip-wire fired: new 0 %; alert FicusRampRolledBack), aborted (`ficus ramp abort`), none (a plan, not started). `ficus ramp status <route>` says why.',
    unit: 'none', width: 8, steps: [],
    mappings: [{
      type: MappingType.ValueToText,
      options: Object.fromEntries(RAMP_PHASES.map(([text, color], i) => [String(i), { text, color, index: i }]))
    }],
    queries: [{
      expr: `max by (route) (${RAMP_PHASES.slice(1).map(([phase], i) => `${i + 1} * ficus_ramp_state{${SEL}, state="${phase.replace(' ', '_')}"}`).join(' or ')})`,
      legend: '{{route}}'
    }]
  }))
  b.withPanel(timeline({
    title: 'Ramp: gate verdicts',
    description: 'Each gate\'s verdict at the driver\'s last evaluation, while the ramp runs or holds: pass, hold (not enough data for its confidence bound, or between pass and fail: no data is never a pass), fail (the ramp rolls back, or pauses with onFail: pause). The step advances when every gate passes and its hold and minRequests are met. The lowest over the replicas.',
    unit: 'none', width: 8, steps: [],
    mappings: [{ type: MappingType.ValueToText, options: { '-1': { text: 'fail', color: 'red', index: 0 }, 0: { text: 'hold', color: 'yellow', index: 1 }, 1: { text: 'pass', color: 'green', index: 2 } } }],
    queries: [{ expr: `min by (route, gate) (ficus_ramp_gate_verdict{${SEL}} ${driven})`, legend: '{{route}} {{gate}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Ramp gates: shares, observed vs threshold',
    description: 'What each gate of a share saw over the ramp\'s window, against its threshold (dashed): divergence (diverged among compared shadowed requests; divergence.max), errors (new\'s error rate minus legacy\'s, fallbacks counting as new\'s; errors.maxIncrease), latency_slower (paired requests where new was slower by more than latency.slowerBy; latency.maxShare), verify (records that differed in the last verify run, judged only before a step that requires it; verify.maxMismatchRate). A gate passes on the bound of its confidence interval, not on the value: a value under the line may still hold for want of data. No line: no data yet.',
    unit: 'percentunit', width: 8, steps: [],
    overrides: [dashed('threshold')],
    queries: gate('divergence|errors|latency_slower|verify', '{{gate}}')
  }))
  b.withPanel(timeseries({
    title: 'Ramp gates: latency p99, new minus legacy',
    description: 'new\'s p99 minus legacy\'s over the ramp\'s window, on the answers each gave to clients, against latency.p99Delta (dashed). No line until each side has 100 answers in the window (a p99 needs them); at new 100 % legacy has none.',
    unit: 'ms', width: 8, steps: [],
    overrides: [dashed('threshold')],
    queries: gate('latency_p99', 'p99 delta')
  }))
  b.withPanel(timeseries({
    title: 'Ramp gates: dual writes',
    description: 'On a dual route: the sync lag (the oldest write not delivered to either side, in seconds) and its dead letters (right axis), against sync.maxLag and sync.maxDeadLetters (dashed). Over the threshold the gate fails at once (no statistics). The Data sync row has the detail.',
    unit: 's', min: 0, width: 8, steps: [],
    overrides: [dashed('threshold'), {
      matcher: { id: 'byRegexp', options: '/dead letters/' },
      properties: [{ id: 'unit', value: 'short' }, { id: 'custom.axisPlacement', value: 'right' }]
    }],
    queries: [...gate('sync_lag', 'lag'), ...gate('sync_dead_letters', 'dead letters')]
  }))
  b.withPanel(timeseries({
    title: 'Paired requests where new was slower',
    description: 'Per shadowed route, the share of compared requests (both sides answered) where new took longer than legacy by more than the route\'s ramp latency.slowerBy (20 ms without one): the same request on both sides, whatever the load. What the latency_slower gate judges; on a route without a ramp, the same evidence before one starts.',
    unit: 'percentunit', min: 0, max: 1, width: 12, steps: [[0.05, 'orange'], [0.2, 'red']],
    queries: [{
      expr: `sum by (route) (rate(ficus_shadow_pairs_total{${SEL}, new="slower"}${RATE})) / sum by (route) (rate(ficus_shadow_pairs_total{${SEL}}${RATE}))`,
      legend: '{{route}}'
    }]
  }))
  b.withPanel(stat({
    title: 'Ramp transitions in the time range',
    description: 'Transitions of the ramps, by route, the phase they led to and why: start, advance (the gates passed, or `ficus ramp advance --force`), fail (a gate failed: rolled back, or paused with onFail: pause), trip (new failed most of a few requests on a replica: rolled back at once), manual (a person changed the route by hand, or its plan changed: paused), pause, resume, hold, abort. Counted by the replica that made them. The audit log has each, with its gates.',
    unit: 'short', width: 12, height: 8, steps: [],
    noValue: 'no ramp transition in the range',
    overrides: [{ matcher: { id: 'byRegexp', options: '/rolled_back/' }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'red' } }] }],
    queries: [{ expr: `sum by (route, to, reason) (round(increase(ficus_ramp_transitions_total{${SEL}}[$__range])))`, legend: '{{route}} → {{to}} ({{reason}})' }]
  }))

  // ---- Traffic
  b.withRow(new RowBuilder('Traffic'))
  b.withPanel(timeseries({
    title: 'Requests per second by backend and role',
    description: 'Primary: responses to clients (backend none: Ficus answered itself, e.g. 413). Shadow: copies sent to the other backend.',
    unit: 'reqps', min: 0, width: 8, stacked: true,
    queries: [{ expr: `sum by (role, backend) (rate(ficus_requests_total{${SEL}}${RATE}))`, legend: '{{role}} → {{backend}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Responses by status class',
    description: 'Responses to clients by status class (499: the client left before the answer).',
    unit: 'reqps', min: 0, width: 8, stacked: true,
    queries: [{ expr: `sum by (class) (label_replace(rate(ficus_requests_total{${primary}}${RATE}), "class", "\${1}xx", "code", "([0-9])[0-9][0-9]"))`, legend: '{{class}}' }]
  }))
  b.withPanel(timeseries({
    title: '5xx ratio by backend',
    description: 'Share of client responses with a 5xx status, per backend that answered. new failing before it answers shows as fallbacks instead (legacy answered), or as 502/504 when no fallback was possible.',
    unit: 'percentunit', min: 0, width: 8, steps: [[0.01, 'orange'], [0.05, 'red']],
    queries: [{ expr: `${orZero(served('backend', 'legacy|new', ', code=~"5.."'), served('backend'))} / ${served('backend')}`, legend: '{{backend}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Fallbacks to legacy',
    description: 'Requests legacy answered because new failed before answering (refused, reset, timeout, saturated, status_5xx) or was ejected by its breaker (ejected), by route and reason. Counted once legacy answered.',
    unit: 'reqps', min: 0, width: 12, steps: [[0.1, 'orange']],
    queries: [{ expr: `sum by (route, reason) (rate(ficus_fallbacks_total{${SEL}}${RATE}))`, legend: '{{route}}: {{reason}}' }]
  }))
  b.withPanel(timeseries({
    title: 'New ejected by its circuit breaker',
    description: 'Per route, the replicas (or cluster workers) whose breaker keeps requests off new: open (cool-down: reads served by legacy, writes refused or sent to legacy per fallback.ejectedWrites) or half_open (probing new). Bars are ejections. 0 while new is healthy. docs/reliability.md "When new breaks".',
    unit: 'short', min: 0, width: 12, steps: [[1, 'red']],
    queries: [
      { expr: `sum by (route, state) (ficus_breaker_state{${SEL}, state=~"open|half_open"})`, legend: '{{route}}: {{state}}' },
      { expr: `sum by (route) (increase(ficus_breaker_ejections_total{${SEL}}${RATE}))`, legend: '{{route}}: ejections' },
      { expr: `sum by (route) (rate(ficus_writes_refused_total{${SEL}}${RATE}))`, legend: '{{route}}: writes refused/s' }
    ]
  }))
  b.withPanel(timeseries({
    title: 'Upstream errors',
    description: 'Failed primary exchanges by backend and reason (refused, reset, timeout, connect_timeout, saturated, bad_response, body_timeout, …). A failure of new that legacy covered is here and in Fallbacks.',
    unit: 'reqps', min: 0, width: 12, steps: [[0.1, 'orange'], [1, 'red']],
    queries: [{ expr: `sum by (backend, reason) (rate(ficus_upstream_errors_total{${SEL}}${RATE}))`, legend: '{{backend}}: {{reason}}' }]
  }))

  // ---- Latency
  const shadowed = ` and on (instance, route) (ficus_route_shadow_percent{${SEL}} > 0)`
  b.withRow(new RowBuilder('Latency'))
  b.withPanel(timeseries({
    title: 'Primary latency: legacy vs new',
    description: 'Request received → response finished, for the responses each backend gave to clients (different users on each side while a route is split). p50, p95 and p99.',
    unit: 's', min: 0, width: 12, steps: [[0.5, 'orange'], [1, 'red']],
    queries: [0.5, 0.95, 0.99].map((q) => quantiles(q, `${primary}, backend=~"legacy|new"`, 'backend'))
  }))
  b.withPanel(timeseries({
    title: 'Shadowed routes: legacy vs new on the same requests',
    description: 'The fair comparison: on routes with shadow > 0, each backend over every exchange it had, as primary or as shadow copy. At shadow 100 % both backends saw exactly the same requests. (Primary times include Ficus and the client; shadow times run from the copy sent to its answer read.)',
    unit: 's', min: 0, width: 12, steps: [[0.5, 'orange'], [1, 'red']],
    queries: [0.5, 0.95, 0.99].map((q) => quantiles(q, `${SEL}, backend=~"legacy|new"`, 'backend', shadowed))
  }))

  // ---- Divergence
  b.withRow(new RowBuilder('Divergence'))
  b.withPanel(timeseries({
    title: 'Divergence by kind',
    description: 'Share of compared requests that differed in each part of the response; one comparison can differ in several parts.',
    unit: 'percentunit', min: 0, width: 8, steps: [[0.01, 'orange'], [0.05, 'red']],
    queries: [{
      expr: `sum by (kind) (rate(ficus_divergences_total{${SEL}}${RATE})) / ignoring (kind) group_left sum(rate(ficus_comparisons_total{${SEL}, outcome=~"match|diverged"}${RATE}))`,
      legend: '{{kind}}'
    }]
  }))
  b.withPanel(timeseries({
    title: 'Comparisons by outcome',
    description: 'Shadowed requests by outcome: match, diverged, error (the copy failed, or comparing did), skipped (nothing to compare: dropped copy, client left, body over the limit). Reasons in `ficus divergences`.',
    unit: 'reqps', min: 0, width: 8, stacked: true,
    queries: [{ expr: `sum by (outcome) (rate(ficus_comparisons_total{${SEL}}${RATE}))`, legend: '{{outcome}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Shadow copies dropped',
    description: 'Copies cut by a bound rather than allowed to slow anything: concurrency (shadow.maxInFlight), timeout, body_too_large. The user\'s response is never affected; sustained drops mean the comparison sees only part of the traffic.',
    unit: 'reqps', min: 0, width: 8, steps: [[1, 'orange']],
    queries: [{ expr: `sum by (route, reason) (rate(ficus_shadow_dropped_total{${SEL}}${RATE}))`, legend: '{{route}}: {{reason}}' }]
  }))

  // ---- Data sync: dual writes (docs/sync.md). The store's gauges (lag, pending, dead letters,
  // id map) are the same on every replica sharing the store: highest over the replicas, never
  // summed. A route and target that never had a write waiting has no gauge yet: 0 from its
  // delivery counter, which every dual route has from the start, for both targets.
  const syncGauge = (metric: string): string =>
    `max by (route, target) (${metric}{${SEL}}) or max by (route, target) (ficus_sync_deliveries_total{${SEL}}) * 0`
  b.withRow(new RowBuilder('Data sync'))
  b.withPanel(timeseries({
    title: 'Sync lag: how far behind each side is',
    description: 'Per dual route and target (the side that gets copies of the writes the other side answered): the age of the oldest write not yet delivered to it; 0 = caught up. It grows while the target is down, slow or refusing (retries back off up to sync.retry.max) and while a dead letter blocks a record (the writes behind it wait). Before a `ficus rollback` of a route whose target legacy lags, let it reach 0 (`ficus sync drain <route>`): after the rollback, requests for those records wait at the fence (sync.fenceTimeout), then reads are served stale and writes refused (503 FICUS_ERR_SYNC_BEHIND) until the writes arrive. Highest over the replicas (they share the store). Alert: FicusSyncLagHigh (over 5 min for 5 min).',
    unit: 's', min: 0, width: 8, steps: [[60, 'orange'], [300, 'red']],
    queries: [{ expr: syncGauge('ficus_sync_lag_seconds'), legend: '{{route}} → {{target}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Writes waiting for the other side',
    description: 'Dual writes recorded in the outbox and not yet delivered (pending), and dead letters (delivered never, until an operator replays or skips them), per route and target. Pending follows the write rate and drains within the replication latency; a steady climb means the target is not taking deliveries (Deliveries by outcome says how it answers). At sync.maxPending, writes are refused with 503 FICUS_ERR_SYNC_FULL. Highest over the replicas.',
    unit: 'short', min: 0, width: 8, steps: [],
    queries: [
      { expr: syncGauge('ficus_sync_pending'), legend: '{{route}} → {{target}} pending' },
      { expr: syncGauge('ficus_sync_dead_letters'), legend: '{{route}} → {{target}} dead letters' }
    ]
  }))
  b.withPanel(stat({
    title: 'Dead letters now',
    description: 'Writes that will not be delivered until an operator acts, per route and target; each blocks every later write to its record on that target, and once that target answers for the record its writes are refused (503 FICUS_ERR_SYNC_BEHIND). `ficus sync dead-letters <route>` lists them with the reason (a 4xx of the target, retries used up, id_unmapped, outcome_unknown after a crash); fix the cause, then `ficus sync replay` or `ficus sync skip`. Alert: FicusSyncDeadLetters.',
    unit: 'short', width: 4, height: 8, steps: [[1, 'red']],
    noValue: 'no dual route',
    queries: [{ expr: syncGauge('ficus_sync_dead_letters'), legend: '{{route}} → {{target}}' }]
  }))
  b.withPanel(stat({
    title: 'Applied, not recorded (time range)',
    description: 'Dual writes the primary applied that Ficus could not record for the other side (the client got 502 FICUS_ERR_SYNC_UNRECORDED): the other side never gets them unless someone replays them by hand. Each is in the error log in full: "sync: write applied but not recorded" (method, path, body, the side that applied it). Any is a page: FicusSyncWriteUnrecorded.',
    unit: 'short', width: 4, height: 8, steps: [[1, 'red']],
    noValue: 'no dual route',
    queries: [{ expr: `sum by (route) (round(increase(ficus_sync_unrecorded_total{${SEL}}[$__range])))`, legend: '{{route}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Deliveries by outcome',
    description: 'Delivery attempts per second to the other side, per route, target and outcome: delivered (2xx), retry (5xx, 408, 425, 429 or not reached, tried again after a backoff; also a write waiting for its record\'s id, see Id map misses), dead (became a dead letter). Retries and no deliveries: the target is down or refusing; the log has its answers (lines starting "sync:").',
    unit: 'reqps', min: 0, width: 8, steps: [],
    queries: [{ expr: `sum by (route, target, outcome) (rate(ficus_sync_deliveries_total{${SEL}}${RATE}))`, legend: '{{route}} → {{target}}: {{outcome}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Replication latency',
    description: 'Time from a dual write recorded in the outbox to its delivery to the other side, p50 and p99 per route and target, over the writes delivered in the window. Normally the target\'s own latency (milliseconds); seconds to minutes mean retries (a write retried for a minute counts a minute). Empty while nothing is delivered: then the lag shows how old the waiting writes are.',
    unit: 's', min: 0, width: 8, steps: [[5, 'orange'], [300, 'red']],
    queries: [0.5, 0.99].map((q) => ({
      expr: `histogram_quantile(${q}, sum by (le, route, target) (rate(ficus_sync_replication_seconds_bucket{${SEL}}${RATE})))`,
      legend: `{{route}} → {{target}} p${Math.round(q * 100)}`
    }))
  }))
  b.withPanel(timeseries({
    title: 'Dual writes refused or not recorded',
    description: 'Per second, by route: writes refused with 503 before anything was sent, because the outbox was full (sync_full: sync.maxPending writes wait, the target is not taking them; alert FicusSyncOutboxFull), the store could not record (sync_unavailable: disk full, read-only, PostgreSQL down; reads are unaffected; alert FicusSyncStoreUnavailable), or the record\'s earlier writes had not reached the side answering it (sync_behind: see Fences; alert FicusSyncWritesBehind); writes forwarded unrecorded because the outbox was full and sync.onFull is passthrough (the other side misses them); writes applied but not recorded (502; alert FicusSyncWriteUnrecorded). 0 on a healthy route.',
    unit: 'reqps', min: 0, width: 8, steps: [[0.001, 'red']],
    queries: [
      { expr: `sum by (route, reason) (rate(ficus_writes_refused_total{${SEL}, reason=~"sync_full|sync_unavailable|sync_behind"}${RATE}))`, legend: '{{route}}: refused ({{reason}})' },
      { expr: `sum by (route, reason) (rate(ficus_sync_unsynced_total{${SEL}}${RATE}))`, legend: '{{route}}: forwarded unrecorded ({{reason}})' },
      { expr: `sum by (route) (rate(ficus_sync_unrecorded_total{${SEL}}${RATE}))`, legend: '{{route}}: applied, not recorded' }
    ]
  }))
  b.withPanel(timeseries({
    title: 'Id map entries',
    description: 'Pairs of ids (legacy ↔ new) in the id map, per entity: one per record created on a dual route, once its copy was created on the other side and that side\'s id learned from its answer. It follows the creates; flat while creates are delivered means the other side\'s answers have no id where `learn:` says (dead letters id_not_learned). Highest over the replicas (one store).',
    unit: 'short', min: 0, width: 8, steps: [],
    queries: [{ expr: `max by (entity) (ficus_idmap_entries{${INST}})`, legend: '{{entity}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Id map misses',
    description: 'Ids the map did not know, per second by route and where: delivery (a write to a record whose create has not reached the target yet waits, and after sync.maxIdWait is a dead letter id_unmapped), shadow (a shadow read skipped, not counted as a divergence), ambiguous (409 FICUS_ERR_ID_AMBIGUOUS to the client: the id is a legacy id of one record and a new id of another, see docs/errors.md). Delivery misses right after creates are normal; sustained ones mean creates are not delivered (dead letters) or `learn:` is wrong.',
    unit: 'reqps', min: 0, width: 8, steps: [[0.1, 'orange']],
    queries: [{ expr: `sum by (route, where) (rate(ficus_idmap_misses_total{${SEL}}${RATE}))`, legend: '{{route}}: {{where}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Fences',
    description: 'Requests per second that found their record\'s earlier writes not yet on the side answering them, by route and outcome: waited (they arrived within sync.fenceTimeout: the request went on, that much later), timeout (a read served anyway, possibly stale; a write refused with 503 FICUS_ERR_SYNC_BEHIND), dead_letter (one of them is a dead letter: reads served, writes refused until it is replayed or skipped). A few waits while a route is split are normal; timeouts after a rollback mean legacy was behind (see the lag): let it catch up, or undo the move until it has.',
    unit: 'reqps', min: 0, width: 8, steps: [[0.1, 'orange']],
    queries: [{ expr: `sum by (route, outcome) (rate(ficus_sync_fences_total{${SEL}}${RATE}))`, legend: '{{route}}: {{outcome}}' }]
  }))

  // ---- Verify: jobs run by Ficus (docs/verify.md). Set by the process that runs the admin API
  // when a run ends; the last result is the exit code of `ficus verify`.
  b.withRow(new RowBuilder('Verify'))
  b.withPanel(stat({
    title: 'Verify: last result',
    description: 'The last run of each verify job run by Ficus (on its schedule, or POST /admin/verify/<job>/run): parity (every record equal under the route\'s rules), differences (records mismatched or missing on a side: GET /admin/verify/<job> has the report; alert FicusVerifyDifferences), incomplete (a side kept failing, the run was stopped, or records were unmapped or still being written: alert FicusVerifyIncomplete). A ramp to 100 % wants a recent parity.',
    unit: 'short', width: 8, height: 6, steps: [[1, 'red'], [2, 'orange']],
    noValue: 'no verify run yet',
    mappings: [{ type: MappingType.ValueToText, options: { 0: { text: 'parity', color: 'green', index: 0 }, 1: { text: 'differences', color: 'red', index: 1 }, 2: { text: 'incomplete', color: 'orange', index: 2 } } }],
    queries: [{ expr: `max by (job) (ficus_verify_last_result{${INST}})`, legend: '{{job}}' }]
  }))
  b.withPanel(stat({
    title: 'Verify: since the last run ended',
    description: 'Time since each job\'s last run ended, whatever its result. Longer than its schedule means runs do not finish (a run of millions of records at the job\'s rate takes hours: see the progress at GET /admin/verify/<job>).',
    unit: 's', width: 8, height: 6, steps: [],
    noValue: 'no verify run yet',
    queries: [{ expr: `time() - max by (job) (ficus_verify_last_completed_timestamp_seconds{${INST}})`, legend: '{{job}}' }]
  }))
  b.withPanel(stat({
    title: 'Verify: records by outcome (time range)',
    description: 'Records the runs that ended in the time range checked, per job and outcome: matched, mismatched, missing_in_legacy, missing_in_new, unmapped (no pair in the id map: nothing can be said yet), in_flight (dual writes still on their way after the job\'s settle).',
    unit: 'short', width: 8, height: 6, steps: [],
    noValue: 'no verify run in the range',
    queries: [{ expr: `sum by (job, outcome) (round(increase(ficus_verify_records_total{${INST}}[$__range])))`, legend: '{{job}}: {{outcome}}' }]
  }))

  // ---- Upgrades (WebSocket): tunnels live for minutes to hours, so they are counted apart from requests
  b.withRow(new RowBuilder('Upgrades (WebSocket)'))
  b.withPanel(timeseries({
    title: 'Open tunnels, legacy vs new',
    description: 'Upgraded connections (WebSocket) open now, per backend. A user keeps the side of its upgrade until it reconnects: after a change of new, this follows as clients reconnect.',
    unit: 'short', min: 0, width: 6, steps: [[10000, 'orange']],
    queries: [{ expr: `sum by (backend) (ficus_upgraded_connections{${SEL}})`, legend: '{{backend}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Upgrades by outcome',
    description: 'Upgrade requests per second by backend and outcome: switched (101, tunnel open), declined (the backend answered another status), failed (not reached: 502/504). Failed on new falls back to legacy.',
    unit: 'reqps', min: 0, width: 6, steps: [],
    queries: [{ expr: `sum by (backend, outcome) (rate(ficus_upgrades_total{${SEL}}${RATE}))`, legend: '{{backend}} {{outcome}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Tunnels closed by reason',
    description: 'Tunnels closed per second by who closed them: client, upstream, idle (limits.upgradeIdleTimeout), max_lifetime, drain. A burst of upstream closes on one backend is that backend dropping its WebSockets.',
    unit: 'ops', min: 0, width: 6, steps: [],
    queries: [{ expr: `sum by (backend, reason) (rate(ficus_upgrades_closed_total{${SEL}}${RATE}))`, legend: '{{backend}} {{reason}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Tunnel throughput',
    description: 'Bytes per second relayed through tunnels after the 101, per backend and direction (from_client: to the backend; to_client).',
    unit: 'Bps', min: 0, width: 6, steps: [],
    queries: [{ expr: `sum by (backend, direction) (rate(ficus_upgrade_bytes_total{${SEL}}${RATE}))`, legend: '{{backend}} {{direction}}' }]
  }))

  // ---- Control plane
  b.withRow(new RowBuilder('Control plane'))
  b.withPanel(stat({
    title: 'Rollbacks in the time range',
    description: 'Rollbacks to new: 0, by route and trigger (manual: `ficus rollback` or the admin API; flag: the route\'s Unleash flag went to 0 % or off; ramp: the route\'s ramp failed a gate, tripped or was aborted). Also drawn as annotations on every time series.',
    unit: 'short', width: 6, steps: [[1, 'orange']],
    queries: [{ expr: `sum by (route, trigger) (round(increase(ficus_rollbacks_total{${SEL}}[$__range])))`, legend: '{{route}} ({{trigger}})' }]
  }))
  b.withPanel(stat({
    title: 'Config reloads in the time range',
    description: 'routes.yaml reloads (file change or SIGHUP) by outcome. A failure leaves the running config in place; the log names the line that is wrong.',
    unit: 'short', width: 6, steps: [[1, 'red']],
    overrides: [{ matcher: { id: 'byName', options: 'success' }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }] }],
    queries: [{ expr: `sum by (outcome) (round(increase(ficus_config_reloads_total{${INST}}[$__range])))`, legend: '{{outcome}}' }]
  }))
  b.withPanel(stat({
    title: 'Flag source (Unleash) ready',
    description: 'Per replica: 1 when the last fetch of flag definitions from Unleash succeeded. While 0, flags stay as last fetched (no user moves) and a runtime `ficus rollback` still works. No value: this Ficus has no `unleash` block.',
    unit: 'none', width: 6, steps: [[1, 'green']],
    mappings: [{ type: MappingType.ValueToText, options: { 0: { text: 'not ready', color: 'red', index: 0 }, 1: { text: 'ready', color: 'green', index: 1 } } }],
    noValue: 'no flag source',
    queries: [{ expr: `min by (instance) (ficus_flag_source_ready{${INST}})`, legend: '{{instance}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Flag source errors',
    description: 'Failures talking to Unleash by kind: fetch (flag definitions; readiness drops), metrics (usage reports), other.',
    unit: 'short', min: 0, width: 6, steps: [[0.1, 'orange']],
    queries: [{ expr: `sum by (kind) (rate(ficus_flag_errors_total{${INST}}${RATE}))`, legend: '{{kind}}' }]
  }))

  // ---- Process
  b.withRow(new RowBuilder('Process'))
  b.withPanel(timeseries({
    title: 'CPU',
    description: 'CPU time per second per replica (1 = one core). Node serves requests on one core: near 1, the replica is saturated.',
    unit: 'percentunit', min: 0, width: 6, steps: [[0.8, 'orange'], [0.95, 'red']],
    queries: [{ expr: `sum by (instance) (rate(process_cpu_seconds_total{${INST}}${RATE}))`, legend: '{{instance}}' }]
  }))
  b.withPanel(timeseries({
    title: 'Memory',
    description: 'Resident memory and V8 heap in use per replica.',
    unit: 'bytes', min: 0, width: 6, steps: [[400 * 1024 * 1024, 'orange']],
    queries: [
      { expr: `sum by (instance) (process_resident_memory_bytes{${INST}})`, legend: '{{instance}} RSS' },
      { expr: `sum by (instance) (nodejs_heap_size_used_bytes{${INST}})`, legend: '{{instance}} heap used' }
    ]
  }))
  b.withPanel(timeseries({
    title: 'Event-loop lag',
    description: 'How late the event loop runs timers (p50 and p99 over prom-client\'s sampling). Every request waits this long on top of the backends.',
    unit: 's', min: 0, width: 6, steps: [[0.05, 'orange'], [0.2, 'red']],
    queries: [
      { expr: `max by (instance) (nodejs_eventloop_lag_p50_seconds{${INST}})`, legend: '{{instance}} p50' },
      { expr: `max by (instance) (nodejs_eventloop_lag_p99_seconds{${INST}})`, legend: '{{instance}} p99' }
    ]
  }))
  b.withPanel(timeseries({
    title: 'Open handles',
    description: 'Active libuv handles (sockets, timers, servers) and open file descriptors per replica. Steady growth under steady traffic is a leak.',
    unit: 'short', min: 0, width: 6, steps: [[10000, 'orange']],
    queries: [
      { expr: `sum by (instance) (nodejs_active_handles_total{${INST}})`, legend: '{{instance}} handles' },
      { expr: `sum by (instance) (process_open_fds{${INST}})`, legend: '{{instance}} fds' }
    ]
  }))

  const built = b.build()
  // Stable panel ids (links and "view panel" URLs use them), numbered in order.
  let id = 0
  for (const panel of built.panels ?? []) panel.id = ++id
  return {
    ...built,
    annotations: {
      list: [
        { builtIn: 1, datasource: { type: 'grafana', uid: '-- Grafana --' }, enable: true, hide: true, iconColor: 'rgba(0, 211, 255, 1)', name: 'Annotations & Alerts', type: 'dashboard' },
        annotation('Rollbacks', 'red', `sum by (route, trigger) (increase(ficus_rollbacks_total{${SEL}}${RATE})) > 0`, 'Rollback: {{route}} ({{trigger}})', 'route,trigger'),
        annotation('Config reloads', 'blue', `sum by (outcome) (increase(ficus_config_reloads_total{${INST}}${RATE})) > 0`, 'Config reload: {{outcome}}', 'outcome'),
        // From the gauges every replica sets from the store (a ramp's first transition flips its
        // phase from none, which increase() of a counter that appears at 1 would miss): a change
        // of phase or of step, titled with the phase it led to.
        annotation('Ramp transitions', 'orange',
          `max by (route, state) (ficus_ramp_state{${SEL}} == 1 and on (instance, route) (changes(ficus_ramp_state{${SEL}}${RATE}) > 0 or changes(ficus_ramp_step_percent{${SEL}}${RATE}) > 0))`,
          'Ramp: {{route}} {{state}}', 'route,state')
      ]
    }
  }
}

/**
 * A Prometheus annotation: a mark wherever the expression has a value (Grafana's fields for it
 * are not in the SDK's type). The window is $__rate_interval, wider than the step, so windows
 * overlap and no counter step falls between two of them (with [$__interval] half would).
 */
function annotation(name: string, iconColor: string, expr: string, titleFormat: string, tagKeys: string) {
  return { name, iconColor, enable: true, datasource: DS, expr, step: '$__interval', titleFormat, tagKeys, textFormat: '', useValueForTime: false }
}

/** The JSON as committed: stable key order from the builder, two-space indent, trailing newline. */
export function dashboardJson(): string {
  return JSON.stringify(dashboard(), null, 2) + '\n'
}
