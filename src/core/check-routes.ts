import { patternCovers } from './path-pattern.js'
import type { RouteRule } from './types.js'

/** What the checks read of a route. */
export type RouteShape = Pick<RouteRule, 'name' | 'methods' | 'pattern'>

/** A load-time problem with the route table, located by route index. */
export interface RouteProblem {
  readonly index: number
  readonly field: string
  readonly message: string
}

/**
 * Finds routes that can never match: an earlier route takes every request they would
 * (same or wider methods, and a path pattern that covers theirs). Envoy advises
 * exact/prefix rules precisely so that this can be checked at load time.
 */
export function checkRoutes(rules: readonly RouteShape[]): RouteProblem[] {
  const problems: RouteProblem[] = []
  const seen = new Map<string, number>()
  rules.forEach((rule, index) => {
    const first = seen.get(rule.name)
    if (first !== undefined) {
      problems.push({ index, field: 'name', message: `duplicate route name "${rule.name}" (also routes[${first}])` })
    } else {
      seen.set(rule.name, index)
    }
    for (let j = 0; j < index; j++) {
      const earlier = rules[j] as RouteShape
      if (methodsCover(earlier.methods, rule.methods) && patternCovers(earlier.pattern, rule.pattern)) {
        problems.push({
          index,
          field: 'match',
          message: `can never match: routes[${j}] ("${earlier.name}", ${earlier.pattern.source}) takes every request it would`
        })
        break
      }
    }
  })
  return problems
}

function methodsCover(a: ReadonlySet<string> | null, b: ReadonlySet<string> | null): boolean {
  if (a === null) return true
  if (b === null) return false
  for (const m of b) if (!a.has(m)) return false
  return true
}
