import { compileRoutes, type RouteMatcher } from './match-route.js'
import type { RouteRule } from './types.js'

/** The routes in effect, compiled. Swapped whole (never edited) so a request sees one table. */
export interface RouteTable {
  readonly routes: readonly RouteRule[]
  readonly defaultRoute: RouteRule
  readonly match: RouteMatcher
}

export function compileTable(routes: readonly RouteRule[], defaultRoute: RouteRule): RouteTable {
  return { routes, defaultRoute, match: compileRoutes(routes) }
}

/** Holder read once per request; a runtime change replaces `current` in one assignment. */
export interface RouteTableRef {
  current: RouteTable
}
