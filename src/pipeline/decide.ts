import type { Metrics } from '../adapters/metrics-registry.js'
import { decide, withKey, type Random } from '../core/decide.js'
import type { FlagSource } from '../core/flags.js'
import { normalizePath, pathOf, queryOf } from '../core/normalize-path.js'
import type { RouteTableRef } from '../core/route-table.js'
import { stickyKey } from '../core/sticky-key.js'
import { refusedMethod } from '../core/strictness.js'
import type { RouteRule } from '../core/types.js'
import type { Exchange } from './exchange.js'
import { refuse } from './respond.js'

/**
 * Stage 2, decide: matches the route (on the normalised path, first match wins; unmatched
 * requests take the `default` route), reads the user's sticky key, asks Unleash on a
 * flagged route, and makes the one Decision (core/decide.ts) every later stage reads. A TRACE
 * on a route that does not list it is refused here (405, core/strictness.ts refusedMethod).
 * Cost: the route scan; a header lookup and one hash on a split route.
 */
export class Decide {
  constructor (
    private readonly table: RouteTableRef,
    /** Unleash, when routes.yaml has an unleash: block; a flagged route without it is legacy. */
    private readonly flags: FlagSource | undefined,
    private readonly random: Random,
    private readonly metrics: Metrics
  ) {}

  /** True when the request goes on with its Decision; false when it was refused (answered and recorded). */
  decide (ex: Exchange): boolean {
    const { target, method } = ex
    const current = this.table.current
    const path = normalizePath(pathOf(target))
    const rule = current.match(method, path) ?? current.defaultRoute
    if (refusedMethod(rule, method)) return refuse(ex, 'FICUS_ERR_METHOD_NOT_ALLOWED', this.metrics)
    // The sticky key is read where it is used: to bucket a user (a split or a flag) or, below,
    // to tell the divergence samples of one user apart (a shadowed request). Elsewhere never.
    const bucketed = buckets(rule)
    const key = bucketed ? keyOf(ex, rule) : undefined
    let flagOn: boolean | undefined
    if (rule.flag !== null && this.flags !== undefined) {
      flagOn = this.flags.isEnabled(rule.flag, { userId: key, remoteAddress: ex.clientIp, properties: { route: rule.name, method, path } })
    }
    let d = decide(rule, method, key, this.random, flagOn)
    if (d.bucketSource === 'random') this.metrics.stickyMissing.inc({ route: rule.name })
    if (d.shadow && !bucketed) d = withKey(d, keyOf(ex, rule))
    ex.routed(rule, d)
    return true
  }
}

function keyOf(ex: Exchange, rule: RouteRule): string | undefined {
  return stickyKey(rule.sticky, { headers: ex.req.headers, query: queryOf(ex.target), clientIp: ex.clientIp })
}

/** Whether the route puts users in buckets (a split, or a flag that may): then every request needs its key. */
function buckets(rule: RouteRule): boolean {
  return rule.flag !== null || (rule.new > 0 && rule.new < 100)
}
