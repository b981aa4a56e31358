import { Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { SeriesCounter, SeriesHistogram, type CounterSeries, type HistogramSeries } from './series-metrics.js'
import type { Area } from '../core/difference.js'
import type { Backend } from '../core/types.js'
import type { Reason } from '../errors.js'
import type { ComparisonOutcome } from './divergence-store.js'

/**
 * Every metric (README "Metrics", docs/observability.md), defined once: name, help, labels,
 * buckets. Labels carry configured route names and fixed vocabularies only (never a raw
 * path, header or address), so cardinality stays bounded.
 */

/** Seconds. Proxy-scale latencies: 1 ms to 30 s (the default upstream timeout). */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export type Role = 'primary' | 'shadow'
/** `none`: Ficus answered without reaching a backend (e.g. 413 before forwarding). */
export type BackendLabel = Backend | 'none'

export function createMetrics(register: Registry = new Registry()) {
  collectDefaultMetrics({ register })
  const registers = [register]
  // Every counter is a series counter: cheaper per event than prom-client's, same exposition.
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): SeriesCounter<L> =>
    new SeriesCounter(name, help, labelNames, registers)
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> =>
    new Gauge({ name, help, labelNames, registers })
  const m = {
    register,
    // Updated on every request: series metrics (cheaper than prom-client's, same exposition).
    requests: new SeriesCounter('ficus_requests_total',
      'Responses to clients (role=primary) and shadow exchanges (role=shadow), by route, backend and HTTP status; 499 = client went away first',
      ['route', 'backend', 'role', 'code'], registers),
    duration: new SeriesHistogram('ficus_request_duration_seconds',
      'Time from request received to response finished, by route, backend and role',
      ['route', 'backend', 'role'], DURATION_BUCKETS, registers),
    upstreamErrors: counter('ficus_upstream_errors_total',
      'Failed primary exchanges with a backend, by route and reason (refused, reset, timeout, saturated, bad_response, …)',
      ['route', 'backend', 'reason']),
    fallbacks: counter('ficus_fallbacks_total',
      'Requests legacy answered because new failed before answering (reason: the failure, status_5xx, or ejected: new\'s breaker was open); counted once legacy answered',
      ['route', 'reason']),
    breakerState: gauge('ficus_breaker_state',
      'State of new\'s circuit breaker per route: 1 for the current state (closed, open, half_open); in a cluster, the number of workers in each state',
      ['route', 'state']),
    breakerEjections: counter('ficus_breaker_ejections_total',
      'Times new was ejected from a route by its circuit breaker (its requests then go to legacy, writes are refused or sent to legacy)',
      ['route']),
    writesRefused: counter('ficus_writes_refused_total',
      'Writes refused before forwarding, by route and reason (new_ejected: new\'s breaker was open and the route refuses writes then)',
      ['route', 'reason']),
    stickyMissing: counter('ficus_sticky_key_missing_total',
      'Requests on a split route that had no sticky key and got a random bucket',
      ['route']),
    clientErrors: counter('ficus_client_errors_total',
      'Requests refused before routing (malformed, too large, too slow), by reason',
      ['reason']),
    comparisons: counter('ficus_comparisons_total',
      'Shadowed requests by outcome: match, diverged, error (the shadow failed, or comparing did), skipped (nothing to compare; reasons in /admin/divergences/summary)',
      ['route', 'outcome']),
    divergences: counter('ficus_divergences_total',
      'Diverged comparisons by the part of the response that differed (status, header, body); one comparison counts once per part',
      ['route', 'kind']),
    shadowPairs: counter('ficus_shadow_pairs_total',
      'Compared shadowed requests with both sides\' times, by whether new answered slower than legacy by more than the route\'s ramp latency.slowerBy (20 ms without one): new="slower" or "not_slower"',
      ['route', 'new']),
    shadowDropped: counter('ficus_shadow_dropped_total',
      'Shadow exchanges cut by a bound (concurrency, timeout, body_too_large); the primary response is never affected',
      ['route', 'reason']),
    rollbacks: counter('ficus_rollbacks_total',
      'Rollbacks to new: 0, per route, by trigger (manual: admin API or CLI; flag: the route\'s Unleash flag went to 0 % or off; ramp: the route\'s ramp failed a gate, tripped or was aborted)',
      ['route', 'trigger']),
    configReloads: counter('ficus_config_reloads_total',
      'routes.yaml reloads (SIGHUP or file change) by outcome: success, or failure (the running config stayed)',
      ['outcome']),
    newPercent: gauge('ficus_route_new_percent',
      'Configured share of users served by new, per route (0-100)',
      ['route']),
    shadowPercent: gauge('ficus_route_shadow_percent',
      'Configured share of requests copied to the other backend, per route (0-100)',
      ['route']),
    // Exposed only once a flag source opens (flagSource()): a Ficus without Unleash has no source to be "not ready".
    flagSourceReady: new Gauge({
      name: 'ficus_flag_source_ready',
      help: '1 when the flag source (Unleash) answered the last fetch; 0 before the first one and during an outage (flags then stay as last fetched)',
      registers: []
    }),
    flagErrors: counter('ficus_flag_errors_total',
      'Failures talking to Unleash, by kind: fetch (flag definitions; readiness drops), metrics (usage reports), other',
      ['kind']),
    upgrades: counter('ficus_upgrades_total',
      'Upgrade requests (WebSocket, …) routed to a backend, by outcome: switched (101, tunnel open), declined (the backend answered another status), failed (not reached: 502/504)',
      ['route', 'backend', 'outcome']),
    upgradedConnections: gauge('ficus_upgraded_connections',
      'Upgraded connections (WebSocket tunnels) open now, by route and backend',
      ['route', 'backend']),
    upgradeBytes: counter('ficus_upgrade_bytes_total',
      'Bytes relayed through upgraded connections after the 101, by direction: from_client (to the backend), to_client',
      ['route', 'backend', 'direction']),
    upgradesClosed: counter('ficus_upgrades_closed_total',
      'Upgraded connections closed, by who or what closed them: client, upstream, idle (limits.upgradeIdleTimeout), max_lifetime (limits.upgradeMaxLifetime), drain (shutdown), error',
      ['route', 'backend', 'reason']),
    // Dual writes (docs/sync.md). The store's gauges are read from the store, the same in every process.
    syncDeliveries: counter('ficus_sync_deliveries_total',
      'Delivery attempts of dual writes to the other side, by route, target and outcome: delivered, retry (tried again after a backoff), dead (a dead letter: its key waits for an operator)',
      ['route', 'target', 'outcome']),
    syncPending: gauge('ficus_sync_pending',
      'Dual writes waiting for delivery to the other side (dead letters not included), by route and target',
      ['route', 'target']),
    syncDeadLetters: gauge('ficus_sync_dead_letters',
      'Dual writes that could not be delivered and wait for an operator (ficus sync dead-letters), each blocking its entity key, by route and target',
      ['route', 'target']),
    syncLag: gauge('ficus_sync_lag_seconds',
      'Age of the oldest dual write not yet delivered, by route and target: how far behind the other side is (0: caught up)',
      ['route', 'target']),
    syncReplication: new Histogram({
      name: 'ficus_sync_replication_seconds',
      help: 'Time from a dual write\'s record in the outbox to its delivery to the other side, by route and target',
      labelNames: ['route', 'target'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers
    }),
    syncUnrecorded: counter('ficus_sync_unrecorded_total',
      'Dual writes the primary applied that Ficus could not record for the other side (the client got 502 FICUS_ERR_SYNC_UNRECORDED; the write is in the error log)',
      ['route']),
    syncUnsynced: counter('ficus_sync_unsynced_total',
      'Dual writes forwarded without being recorded for the other side, by reason (full: sync.onFull passthrough while the outbox was full)',
      ['route', 'reason']),
    syncFences: counter('ficus_sync_fences_total',
      'Requests on a dual route that found their record\'s earlier writes not yet on the side answering them, by outcome: waited (they arrived within sync.fenceTimeout), timeout (a read served anyway; a write refused), dead_letter (one of them is a dead letter: a read served, a write refused)',
      ['route', 'outcome']),
    syncStoreUp: gauge('ficus_sync_store_up',
      '1 when the sync store answered its last read (every second) and no write to it failed since; 0 while it does not (dual writes are refused; the store\'s gauges keep their last values)',
      []),
    idmapEntries: gauge('ficus_idmap_entries',
      'Pairs of ids (legacy ↔ new) in the id map, by entity',
      ['entity']),
    idmapMisses: counter('ficus_idmap_misses_total',
      'Ids the map did not know when it was asked, by route and where: delivery (the delivery waits, then is a dead letter), shadow (the shadow read is skipped), ambiguous (a 409 to the client)',
      ['route', 'where']),
    // ficus verify jobs run by Ficus (docs/verify.md): set when a run ends.
    verifyRecords: counter('ficus_verify_records_total',
      'Records checked by verify jobs run by Ficus, by job and outcome: matched, mismatched, missing_in_legacy, missing_in_new, unmapped, in_flight',
      ['job', 'outcome']),
    verifyLastResult: gauge('ficus_verify_last_result',
      'The last run of a verify job, as ficus verify exits: 0 parity, 1 differences, 2 incomplete (a side kept failing, stopped, or records unmapped or in flight)',
      ['job']),
    verifyLastCompleted: gauge('ficus_verify_last_completed_timestamp_seconds',
      'When the last run of a verify job ended, whatever its result (seconds since the epoch)',
      ['job']),
    // The ramp (docs/ramp.md): set by the ramp controller of each replica from the shared store; gates by the replica that drives.
    rampStepPercent: gauge('ficus_ramp_step_percent',
      'The share of new the route\'s ramp asks for now (its step\'s; 0 after a rollback or abort), per route with a ramp',
      ['route']),
    rampState: gauge('ficus_ramp_state',
      'The phase of the route\'s ramp: 1 for the current one (running, holding, paused, completed, rolled_back, aborted, none)',
      ['route', 'state']),
    rampGateObserved: gauge('ficus_ramp_gate_observed',
      'What each gate of the route\'s ramp saw at its last evaluation (shares as fractions, latency in ms, lag in s, dead letters); absent while it has no data',
      ['route', 'gate']),
    rampGateThreshold: gauge('ficus_ramp_gate_threshold',
      'Each gate\'s threshold, in the unit of ficus_ramp_gate_observed',
      ['route', 'gate']),
    rampGateVerdict: gauge('ficus_ramp_gate_verdict',
      'Each gate\'s verdict at its last evaluation: 1 pass, 0 hold, -1 fail',
      ['route', 'gate']),
    rampTransitions: counter('ficus_ramp_transitions_total',
      'Transitions of ramps, by route, the phase they led to (running, holding, paused, completed, rolled_back, aborted) and why (start, advance, fail, trip, manual, pause, resume, hold, abort)',
      ['route', 'to', 'reason']),
    buildInfo: gauge('ficus_build_info',
      'Always 1; the version label says which Ficus is running',
      ['version'])
  }
  for (const outcome of ['success', 'failure']) m.configReloads.inc({ outcome }, 0)
  for (const reason of CLIENT_REASONS) m.clientErrors.inc({ reason }, 0)
  return m
}

export type Metrics = ReturnType<typeof createMetrics>

/**
 * Creates a route's event series at 0. A counter that appears at 1 has no earlier sample, so
 * `rate()`/`increase()` (and every alert built on them) miss its first event; and a panel of
 * a route that has had no rollback should say 0, not "no data". Idempotent (adds 0): called
 * for every route whenever the route table is built.
 */
export function primeRoute(m: Metrics, route: string, flagged: boolean, ramped = false): void {
  m.rollbacks.inc({ route, trigger: 'manual' }, 0)
  if (ramped) {
    m.rollbacks.inc({ route, trigger: 'ramp' }, 0)
    for (const [to, reason] of RAMP_TRANSITIONS) m.rampTransitions.inc({ route, to, reason }, 0)
  }
  if (flagged) m.rollbacks.inc({ route, trigger: 'flag' }, 0)
  for (const outcome of COMPARISON_OUTCOMES) m.comparisons.inc({ route, outcome }, 0)
  for (const n of ['slower', 'not_slower']) m.shadowPairs.inc({ route, new: n }, 0)
  for (const kind of DIVERGENCE_KINDS) m.divergences.inc({ route, kind }, 0)
  for (const reason of SHADOW_DROP_REASONS) m.shadowDropped.inc({ route, reason }, 0)
  for (const reason of FALLBACK_REASONS) m.fallbacks.inc({ route, reason }, 0)
  for (const backend of BACKENDS) for (const reason of UPSTREAM_REASONS) m.upstreamErrors.inc({ route, backend, reason }, 0)
  m.breakerEjections.inc({ route }, 0)
  m.stickyMissing.inc({ route }, 0)
  // A gauge, created at 0 without changing a value already set (a reload primes again).
  for (const state of ['closed', 'open', 'half_open']) m.breakerState.inc({ route, state }, 0)
  for (const backend of BACKENDS) {
    for (const outcome of ['switched', 'declined', 'failed']) m.upgrades.inc({ route, backend, outcome }, 0)
    for (const reason of ['client', 'upstream', 'idle', 'max_lifetime', 'drain', 'error']) m.upgradesClosed.inc({ route, backend, reason }, 0)
    for (const direction of ['from_client', 'to_client']) m.upgradeBytes.inc({ route, backend, direction }, 0)
    m.upgradedConnections.inc({ route, backend }, 0)
  }
  m.writesRefused.inc({ route, reason: 'new_ejected' }, 0)
}

/** A dual route's series at 0 (alerts see the first event; panels say 0, not "no data"). */
export function primeSyncRoute(m: Metrics, route: string): void {
  for (const reason of ['sync_full', 'sync_unavailable', 'sync_behind']) m.writesRefused.inc({ route, reason }, 0)
  for (const outcome of ['waited', 'timeout', 'dead_letter']) m.syncFences.inc({ route, outcome }, 0)
  m.syncUnrecorded.inc({ route }, 0)
  m.syncUnsynced.inc({ route, reason: 'full' }, 0)
  for (const target of BACKENDS) {
    for (const outcome of ['delivered', 'retry', 'dead']) m.syncDeliveries.inc({ route, target, outcome }, 0)
  }
  for (const where of ['delivery', 'shadow', 'ambiguous']) m.idmapMisses.inc({ route, where }, 0)
}

/** A flag source opened: its readiness gauge (at 0 until the first fetch) and error kinds join /metrics. */
export function flagSource(m: Metrics): void {
  m.register.registerMetric(m.flagSourceReady)
  m.flagSourceReady.set(0)
  for (const kind of ['fetch', 'metrics', 'other']) m.flagErrors.inc({ kind }, 0)
}

/** The transitions a ramp can make (phase after, why): its series exist at 0 on a route with a plan. */
const RAMP_TRANSITIONS = [['running', 'start'], ['running', 'advance'], ['running', 'resume'], ['holding', 'hold'], ['paused', 'pause'], ['paused', 'manual'],
  ['paused', 'fail'], ['completed', 'advance'], ['rolled_back', 'fail'], ['rolled_back', 'trip'], ['aborted', 'abort']] as const
const COMPARISON_OUTCOMES = ['match', 'diverged', 'error', 'skipped'] as const satisfies readonly ComparisonOutcome[]
const DIVERGENCE_KINDS = ['status', 'header', 'body'] as const satisfies readonly Area[]
const SHADOW_DROP_REASONS = ['concurrency', 'timeout', 'body_too_large'] as const
const BACKENDS = ['legacy', 'new'] as const satisfies readonly Backend[]
/** The reasons of ficus_upstream_errors_total (the upstream faults of the catalogue). */
const UPSTREAM_REASONS = ['refused', 'unreachable', 'reset', 'bad_response', 'other', 'connect_timeout', 'timeout', 'saturated', 'closing', 'body_timeout', 'aborted'] as const satisfies readonly Reason[]
/** The reasons of ficus_client_errors_total (the client faults of the catalogue). */
const CLIENT_REASONS = ['bad_request', 'bad_target', 'duplicate_host', 'missing_host', 'invalid_host', 'duplicate_header', 'header_name', 'transfer_coding',
  'method_not_allowed', 'expectation', 'upgrade_body', 'http_version', 'connect', 'request_timeout', 'body_too_large', 'headers_too_large', 'send_timeout'] as const satisfies readonly Reason[]
/** The reasons of ficus_fallbacks_total: new's failures before answering, its 5xx answers, and its breaker. */
const FALLBACK_REASONS = ['refused', 'unreachable', 'reset', 'bad_response', 'other', 'connect_timeout', 'timeout', 'saturated', 'closing', 'status_502', 'status_503', 'status_504', 'ejected'] as const

interface KeptSeries {
  readonly duration: HistogramSeries
  readonly byStatus: Map<number, CounterSeries>
}

/**
 * Records exchanges of one role in ficus_requests_total and ficus_request_duration_seconds.
 * The series of a route, backend and status are looked up once and kept, by the route's
 * name (a string whose hash V8 keeps), the backend and the status: a few map reads per
 * request, no label object and no key string built.
 */
/** Counts one exchange (a response to a client, or a shadow copy) and observes its duration. */
export type ExchangeCounter = (route: string, backend: BackendLabel, status: number, seconds: number) => void

export function exchangeCounter(m: Metrics, role: Role): ExchangeCounter {
  const kept = new Map<string, Map<BackendLabel, KeptSeries>>()
  return (route, backend, status, seconds) => {
    let byBackend = kept.get(route)
    if (byBackend === undefined) kept.set(route, byBackend = new Map<BackendLabel, KeptSeries>())
    let s = byBackend.get(backend)
    if (s === undefined) byBackend.set(backend, s = { duration: m.duration.series({ route, backend, role }), byStatus: new Map() })
    let count = s.byStatus.get(status)
    if (count === undefined) s.byStatus.set(status, count = m.requests.series({ route, backend, role, code: status }))
    count.inc()
    s.duration.observe(seconds)
  }
}
