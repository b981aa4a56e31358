import { bucket } from './bucket.js'
import type { Decision, RouteRule } from './types.js'

/**
 * Methods whose copy can be sent to the other side without a second write (RFC 9110 §9.2.1).
 * Any other method is shadowed only on a route with `shadowWrites: true`.
 */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS'])

/** A source of uniform numbers in [0, 1): Math.random in production, a fixed sequence in tests. */
export type Random = () => number

/**
 * The per-request decision: which side answers, and whether the other side gets a copy.
 * Pure: the random source is an argument and is only called when it matters (a request
 * without a sticky key on a split route, or a shadow share strictly between 0 and 100).
 * On a route with a flag, `flagOn` is the flag's verdict for this request (evaluated by the
 * caller); off or unknown means legacy.
 * @example decide(rule, 'GET', 'user-42', Math.random) // { primary: 'new', bucket: 7, ... }
 */
export function decide(rule: RouteRule, method: string, key: string | undefined, random: Random, flagOn?: boolean): Decision {
  let primary: Decision['primary']
  let b: number | null = null
  let source: Decision['bucketSource'] = 'none'
  if (rule.flag !== null) {
    primary = flagOn === true ? 'new' : 'legacy'
    source = 'flag'
  } else if (rule.new >= 100) {
    primary = 'new'
  } else if (rule.new <= 0) {
    primary = 'legacy'
  } else {
    if (key !== undefined) {
      b = bucket(rule.name, key)
      source = 'key'
    } else {
      b = 1 + Math.floor(random() * 100)
      source = 'random'
    }
    primary = b <= rule.new ? 'new' : 'legacy'
  }
  const shadow = rule.shadow > 0 && (rule.shadowWrites || SAFE_METHODS.has(method)) &&
    (rule.shadow >= 100 || random() * 100 < rule.shadow)
  return decision(rule.name, primary, b, source, key, shadow)
}

/** The same decision with the sticky key read after it (a shadowed request on a route that does not bucket). */
export function withKey(d: Decision, key: string | undefined): Decision {
  return decision(d.route, d.primary, d.bucket, d.bucketSource, key, d.shadow)
}

/** Every Decision is built here, with its fields in one order (one object shape for V8). */
function decision(route: string, primary: Decision['primary'], bucket: number | null, bucketSource: Decision['bucketSource'], key: string | undefined, shadow: boolean): Decision {
  return { route, primary, bucket, bucketSource, key, shadow }
}
