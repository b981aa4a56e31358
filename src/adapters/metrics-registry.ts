import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Backend } from '../core/types.js'

/**
 * Every metric of DESIGN.md "Metrics" that exists so far, defined once: name, help, labels,
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
  const m = {
    register,
    requests: new Counter({
      name: 'ficus_requests_total',
      help: 'Responses to clients (role=primary) and shadow exchanges (role=shadow), by route, backend and HTTP status; 499 = client went away first',
      labelNames: ['route', 'backend', 'role', 'code'] as const,
      registers
    }),
    duration: new Histogram({
      name: 'ficus_request_duration_seconds',
      help: 'Time from request received to response finished, by route, backend and role',
      labelNames: ['route', 'backend', 'role'] as const,
      buckets: DURATION_BUCKETS,
      registers
    }),
    upstreamErrors: new Counter({
      name: 'ficus_upstream_errors_total',
      help: 'Failed exchanges with a backend, by reason (refused, reset, timeout, saturated, bad_response, …)',
      labelNames: ['backend', 'reason'] as const,
      registers
    }),
    fallbacks: new Counter({
      name: 'ficus_fallbacks_total',
      help: 'Requests served by legacy because new failed before answering (reason: the failure, or status_5xx)',
      labelNames: ['route', 'reason'] as const,
      registers
    }),
    stickyMissing: new Counter({
      name: 'ficus_sticky_key_missing_total',
      help: 'Requests on a split route that had no sticky key and got a random bucket',
      labelNames: ['route'] as const,
      registers
    }),
    clientErrors: new Counter({
      name: 'ficus_client_errors_total',
      help: 'Requests refused before routing (malformed, too large, too slow), by reason',
      labelNames: ['reason'] as const,
      registers
    }),
    comparisons: new Counter({
      name: 'ficus_comparisons_total',
      help: 'Shadowed requests by outcome: match, diverged, error (the shadow failed, or comparing did), skipped (nothing to compare; reasons in /admin/divergences/summary)',
      labelNames: ['route', 'outcome'] as const,
      registers
    }),
    divergences: new Counter({
      name: 'ficus_divergences_total',
      help: 'Diverged comparisons by the part of the response that differed (status, header, body); one comparison counts once per part',
      labelNames: ['route', 'kind'] as const,
      registers
    }),
    shadowDropped: new Counter({
      name: 'ficus_shadow_dropped_total',
      help: 'Shadow exchanges cut by a bound (concurrency, timeout, body_too_large); the primary response is never affected',
      labelNames: ['route', 'reason'] as const,
      registers
    }),
    rollbacks: new Counter({
      name: 'ficus_rollbacks_total',
      help: 'Rollbacks to new: 0, per route, by trigger (manual: admin API or CLI)',
      labelNames: ['route', 'trigger'] as const,
      registers
    }),
    configReloads: new Counter({
      name: 'ficus_config_reloads_total',
      help: 'routes.yaml reloads (SIGHUP or file change) by outcome: success, or failure (the running config stayed)',
      labelNames: ['outcome'] as const,
      registers
    }),
    newPercent: new Gauge({
      name: 'ficus_route_new_percent',
      help: 'Configured share of users served by new, per route (0-100)',
      labelNames: ['route'] as const,
      registers
    }),
    shadowPercent: new Gauge({
      name: 'ficus_route_shadow_percent',
      help: 'Configured share of requests copied to the other backend, per route (0-100)',
      labelNames: ['route'] as const,
      registers
    }),
    buildInfo: new Gauge({
      name: 'ficus_build_info',
      help: 'Always 1; the version label says which Ficus is running',
      labelNames: ['version'] as const,
      registers
    })
  }
  return m
}

export type Metrics = ReturnType<typeof createMetrics>
