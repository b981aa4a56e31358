import { SECRET_QUERY_PARAMS } from './compare-rules.js'
import type { Difference } from './difference.js'
import { formatBodyPath, matchesBody, type RulePath, type Seg } from './rule-path.js'

/**
 * What a divergence sample may show of a difference (pure). Samples are read by people and
 * kept in memory, so secrets never reach them: credential headers always, and the body
 * paths a route lists under `compare.redact` (matched at the difference or anywhere inside
 * its value). Long values are cut.
 */

const REDACTED = '[redacted]'
/** Credential headers: their values never appear in a sample, whatever the route says. */
const SECRET_HEADERS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie'])
/** Longest text shown for one value (characters). */
const MAX_VALUE_CHARS = 200
/** Longest path shown (characters): keys are data too, and may be long. */
const MAX_PATH_CHARS = 300

/** Longest request target shown in a sample (characters). */
const MAX_TARGET_CHARS = 500
const SECRET_QUERY: ReadonlySet<string> = new Set(SECRET_QUERY_PARAMS)

/**
 * A request target as a sample shows it: path and query string, the values of secret
 * query parameters `[redacted]`: those of SECRET_QUERY_PARAMS (any case), the route's
 * `query.<name>` rules (`*`: every one) and `sticky`, the parameters that carry the
 * user's sticky key. Parameter names and the rest stay as sent.
 * @example showTarget('/posts?_page=2&token=abc', []) // '/posts?_page=2&token=[redacted]'
 */
export function showTarget(target: string, redactQuery: readonly string[], sticky: readonly string[] = []): string {
  const q = target.indexOf('?')
  if (q === -1) return cut(target, MAX_TARGET_CHARS)
  const all = redactQuery.includes('*')
  const params = target.slice(q + 1).split('&').map((p) => {
    const eq = p.indexOf('=')
    if (eq === -1) return p
    const raw = p.slice(0, eq)
    const name = decodeName(raw)
    return all || sticky.includes(name) || redactQuery.includes(name) || SECRET_QUERY.has(name.toLowerCase()) ? `${raw}=${REDACTED}` : p
  })
  return cut(`${target.slice(0, q)}?${params.join('&')}`, MAX_TARGET_CHARS)
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    return raw
  }
}

/** A difference as a sample shows it. */
export interface ShownDifference {
  readonly path: string
  readonly area: Difference['area']
  readonly kind: Difference['kind']
  readonly legacy?: unknown
  readonly new?: unknown
}

export function showDifference(d: Difference, redact: readonly RulePath[]): ShownDifference {
  const out: { -readonly [K in keyof ShownDifference]: ShownDifference[K] } = { path: cut(shownPath(d, redact), MAX_PATH_CHARS), area: d.area, kind: d.kind }
  const hidden = (d.area === 'header' && SECRET_HEADERS.has(d.path.slice('header.'.length))) ||
    (d.area === 'body' && redact.length > 0 && (d.at === undefined || redact.some((r) => coversPrefix(r, d.at as readonly Seg[]))))
  for (const side of ['legacy', 'new'] as const) {
    const v = d[side]
    if (v === undefined) continue
    out[side] = hidden ? REDACTED : shorten(d.at === undefined ? v : redactInside(v, d.at as Seg[], redact))
  }
  return out
}

/**
 * The path as shown: an array item matched by a redacted key field (`arrays: { body.users:
 * { key: email } }` with `redact: [body.**.email]`) is named `[email=[redacted]]`.
 */
function shownPath(d: Difference, redact: readonly RulePath[]): string {
  const at = d.at
  if (at === undefined || redact.length === 0 || !at.some((s) => typeof s === 'object')) return d.path
  return formatBodyPath(at.map((s, i) =>
    typeof s === 'object' && redact.some((r) => matchesBody(r, [...at.slice(0, i + 1), s.field])) ? { field: s.field, value: REDACTED } : s))
}

/** Whether a rule matches the path or one of its ancestors (a redacted object hides all it holds). */
function coversPrefix(rule: RulePath, path: readonly Seg[]): boolean {
  for (let n = path.length; n >= 0; n--) if (matchesBody(rule, path.slice(0, n))) return true
  return false
}

/** A copy of `value` with redacted paths below `at` replaced (`at` is restored on return). */
function redactInside(value: unknown, at: Seg[], redact: readonly RulePath[], depth = 0): unknown {
  if (redact.length === 0 || value === null || typeof value !== 'object') return value
  if (depth > 32) return REDACTED // deeper than any sample shows: hide rather than walk
  if (Array.isArray(value)) {
    return value.map((item, i) => {
      at.push(i)
      const v = redact.some((r) => matchesBody(r, at)) ? REDACTED : redactInside(item, at, redact, depth + 1)
      at.pop()
      return v
    })
  }
  const out: Record<string, unknown> = {}
  for (const [k, item] of Object.entries(value as Record<string, unknown>)) {
    at.push(k)
    out[k] = redact.some((r) => matchesBody(r, at)) ? REDACTED : redactInside(item, at, redact, depth + 1)
    at.pop()
  }
  return out
}

/** Short values stay as they are; long strings and structures become cut text. */
function shorten(v: unknown): unknown {
  if (typeof v === 'string') return cut(v)
  if (v === null || typeof v !== 'object') return v
  let text: string
  try {
    text = JSON.stringify(v)
  } catch {
    return '(too deeply nested to show)' // JSON.stringify recurses: absurd nesting exhausts the stack
  }
  return text.length <= MAX_VALUE_CHARS ? v : cut(text)
}

function cut(s: string, max = MAX_VALUE_CHARS): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} chars)`
}
