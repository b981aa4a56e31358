import { matchesPattern } from './path-pattern.js'
import type { RouteRule } from './types.js'

/** A compiled route table: returns the first rule that matches, or null. */
export type RouteMatcher = (method: string, path: string) => RouteRule | null

/**
 * Compiles the route table once (at load and on reload); lookups are a linear scan in
 * file order, because "first match wins" is the contract and tables are tens of routes.
 * `path` must already be normalized (normalize-path.ts).
 * @example
 * const match = compileRoutes(rules)
 * match('GET', '/api/orders/42')?.name // 'orders'
 */
export function compileRoutes(rules: readonly RouteRule[]): RouteMatcher {
  const table = rules.slice()
  return function matchRoute(method, path) {
    for (let i = 0; i < table.length; i++) {
      const rule = table[i] as RouteRule
      if (rule.methods !== null && !rule.methods.has(method)) continue
      if (matchesPattern(rule.pattern, path)) return rule
    }
    return null
  }
}
