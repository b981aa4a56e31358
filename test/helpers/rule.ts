import { compileCompare } from '../../src/core/compare-rules.js'
import type { RouteRule } from '../../src/core/types.js'

/** A route rule as the core sees it: `orders`, every method and path, legacy only; override what a test needs. */
export function rule(over: Partial<RouteRule> = {}): RouteRule {
  return {
    name: 'orders',
    methods: null,
    pattern: { source: '/*', segments: [], prefix: true },
    new: 0,
    flag: null,
    shadow: 0,
    shadowWrites: false,
    sync: null,
    compare: compileCompare(undefined),
    sticky: [{ kind: 'header', name: 'x-user-id' }],
    backends: { legacy: 'legacy', new: 'new' },
    fallback: { newTimeout: { share: 0.5 }, ejectedWrites: 'refuse', breaker: null },
    slowerByMs: 20,
    ...over
  }
}
