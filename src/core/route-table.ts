import { compileRoutes, type RouteMatcher } from './match-route.js'
import { effectiveRule, type Overrides } from './overrides.js'
import type { RouteRule } from './types.js'

/** The routes in effect, compiled. Swapped whole (never edited) so a request sees one table. */
export interface RouteTable {
  readonly routes: readonly RouteRule[]
  readonly defaultRoute: RouteRule
  readonly match: RouteMatcher
}

function compileTable(routes: readonly RouteRule[], defaultRoute: RouteRule): RouteTable {
  return { routes, defaultRoute, match: compileRoutes(routes) }
}

/** Holder read once per request; a runtime change replaces `current` in one assignment. */
export interface RouteTableRef {
  current: RouteTable
}

/**
 * The routes requests see: routes.yaml's rules with the runtime overrides on top, compiled.
 * A cluster worker builds its table from the same two inputs the primary's holds.
 */
export function tableOf(rules: { readonly routes: readonly RouteRule[]; readonly defaultRoute: RouteRule }, overrides: Overrides): RouteTable {
  const routes = rules.routes.map((r) => effectiveRule(r, overrides[r.name]))
  return compileTable(routes, effectiveRule(rules.defaultRoute, overrides[rules.defaultRoute.name]))
}
