import { formatBodyPath, matchesBody, type RulePath, type Seg } from './rule-path.js'

/**
 * Compares legacy's answer with new's, whichever of them the client got: status, the chosen
 * headers, and the body (JSON structurally, anything else byte for byte). Pure: no I/O, no
 * clock; bodies arrive decoded (shadow.ts un-gzips them).
 *
 * Differences are named from legacy to new, because that is what the engineers of new fix:
 * `missing` = legacy has it and new does not, `extra` = new has it and legacy does not.
 */

export type DifferenceKind = 'changed' | 'type' | 'missing' | 'extra' | 'length'
/** The part of the response a difference is in (the `kind` label of ficus_divergences_total). */
export type Area = 'status' | 'header' | 'body'

export interface Difference {
  /** Where: `status`, `header.content-type`, `body.items[2].price`. */
  readonly path: string
  /** The same with array positions folded (`body.items[*].price`), for per-field counts. */
  readonly field: string
  readonly area: Area
  readonly kind: DifferenceKind
  readonly legacy?: unknown
  readonly new?: unknown
  /** For a JSON body difference: where, as segments (redaction matches on it). */
  readonly at?: readonly Seg[]
}

/**
 * A body as it was received: one buffer or its chunks in order. Chunks are joined only when
 * the two bodies differ, so the common case (the same bytes) copies nothing.
 */
export type Body = Buffer | readonly Buffer[]

/** One side's answer. `body` is null when it was too large to keep. */
export interface ComparedSide {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Body | null
}

export type Comparison =
  | { readonly outcome: 'match' }
  | { readonly outcome: 'diverged'; readonly differences: readonly Difference[]; readonly truncated: boolean }
  | { readonly outcome: 'skipped'; readonly reason: string }

export type ArrayMode = 'unordered' | { readonly key: string }

/** A route's `compare:` rules, compiled (compare-rules.ts). */
export interface CompareRules {
  /** Lower-case header names to compare. */
  readonly headers: readonly string[]
  readonly ignore: readonly RulePath[]
  readonly arrays: readonly { readonly path: RulePath; readonly mode: ArrayMode }[]
  /** Largest absolute difference between two numbers that still counts as equal. */
  readonly tolerance: number
  /** `"12.50"` equals `12.5` (opt-in: treatAsEqual string-number). */
  readonly stringNumbers: boolean
  /** A `null` field equals an absent one (opt-in: treatAsEqual null-missing). */
  readonly nullMissing: boolean
  /** Differences reported at most per comparison; the rest is counted as truncated. */
  readonly maxDifferences: number
}

/** Nesting deeper than this is compared as text, so hostile bodies cannot exhaust the stack. */
const MAX_DEPTH = 64

/**
 * @example compare(fromLegacy, fromNew, rules) // { outcome: 'diverged', differences: [{ path: 'body.amount', kind: 'type', … }] }
 */
export function compare(fromLegacy: ComparedSide, fromNew: ComparedSide, rules: CompareRules): Comparison {
  const out = new Collector(rules.maxDifferences)
  if (fromLegacy.status !== fromNew.status && !ignoredTop(rules, 'status')) {
    out.add({ path: 'status', field: 'status', area: 'status', kind: 'changed', legacy: fromLegacy.status, new: fromNew.status })
  }
  for (const name of rules.headers) {
    if (ignoredTop(rules, 'header', name)) continue
    const a = headerValue(fromLegacy.headers[name])
    const b = headerValue(fromNew.headers[name])
    if (a === b) continue
    const path = `header.${name}`
    out.add({ path, field: path, area: 'header', kind: a === undefined ? 'extra' : b === undefined ? 'missing' : 'changed', legacy: a, new: b })
  }
  if (!ignoredBody(rules, [])) {
    if (fromLegacy.body === null || fromNew.body === null) {
      // The body could not be kept: what was compared still counts when it differs.
      return out.list.length > 0 ? out.result() : { outcome: 'skipped', reason: 'body_too_large' }
    }
    compareBodies(fromLegacy, fromNew, rules, out)
  }
  return out.list.length === 0 ? { outcome: 'match' } : out.result()
}

class Collector {
  readonly list: Difference[] = []
  truncated = false
  constructor (private readonly max: number) {}
  add (d: Difference): void {
    if (this.room()) this.list.push(d)
  }

  /** Whether one more difference is kept; once `max` are, the result is marked truncated instead. */
  room (): boolean {
    if (this.list.length < this.max) return true
    this.truncated = true
    return false
  }

  result (): Comparison {
    return { outcome: 'diverged', differences: this.list, truncated: this.truncated }
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

function ignoredTop(rules: CompareRules, root: 'status' | 'header', name?: string): boolean {
  return rules.ignore.some((r) => r.root === root && (root === 'status' || r.header === name))
}

function ignoredBody(rules: CompareRules, path: readonly Seg[]): boolean {
  for (const r of rules.ignore) if (matchesBody(r, path)) return true
  return false
}

const JSON_TYPE = /[/+]json(?:\s*;|\s*$)/i

function isJson(headers: ComparedSide['headers']): boolean {
  const ct = headerValue(headers['content-type'])
  return ct !== undefined && JSON_TYPE.test(ct)
}

function compareBodies(fromLegacy: ComparedSide, fromNew: ComparedSide, rules: CompareRules, out: Collector): void {
  const x = fromLegacy.body as Body
  const y = fromNew.body as Body
  // The same bytes are the same document, whatever the rules: no need to parse (the common case).
  if (sameBytes(x, y)) return
  const a = joined(x)
  const b = joined(y)
  if (isJson(fromLegacy.headers) && isJson(fromNew.headers)) {
    const pa = parse(a)
    const pb = parse(b)
    if (pa.ok && pb.ok) {
      diff(pa.value, pb.value, [], rules, out, 0)
      return
    }
    if (pa.ok !== pb.ok) {
      out.add({ path: 'body', field: 'body', area: 'body', kind: 'type', legacy: pa.ok ? 'JSON' : 'invalid JSON', new: pb.ok ? 'JSON' : 'invalid JSON', at: [] })
      return
    }
  }
  let at = 0
  while (at < a.length && at < b.length && a[at] === b[at]) at++
  out.add({
    path: 'body', field: 'body', area: 'body', kind: 'changed',
    legacy: excerpt(a, at), new: excerpt(b, at)
  })
}

/** A body as one buffer (a copy only when it came in several chunks). */
export function joined(body: Body): Buffer {
  if (Buffer.isBuffer(body)) return body
  return body.length === 1 ? body[0] as Buffer : Buffer.concat(body)
}

/** Whether two bodies hold the same bytes, however they were cut into chunks (no copy). */
export function sameBytes(x: Body, y: Body): boolean {
  const a = Buffer.isBuffer(x) ? [x] : x
  const b = Buffer.isBuffer(y) ? [y] : y
  let total = 0
  for (const c of a) total += c.length
  for (const c of b) total -= c.length
  if (total !== 0) return false
  let i = 0
  let j = 0
  let ai = 0 // offset inside a[i]
  let bj = 0 // offset inside b[j]
  while (i < a.length && j < b.length) {
    const ca = a[i] as Buffer
    const cb = b[j] as Buffer
    const n = Math.min(ca.length - ai, cb.length - bj)
    if (n > 0 && ca.compare(cb, bj, bj + n, ai, ai + n) !== 0) return false
    ai += n
    bj += n
    if (ai === ca.length) { i++; ai = 0 }
    if (bj === cb.length) { j++; bj = 0 }
  }
  return true
}

/** Empty bodies parse as "no value", so an empty 204 equals another. */
function parse(buf: Buffer): { ok: true; value: unknown } | { ok: false } {
  if (buf.length === 0) return { ok: true, value: undefined }
  try {
    return { ok: true, value: JSON.parse(buf.toString('utf8')) as unknown }
  } catch {
    return { ok: false }
  }
}

/** A short view of where two byte bodies start to differ. */
function excerpt(buf: Buffer, at: number): string {
  const from = Math.max(0, at - 16)
  return `${buf.length} bytes; at byte ${at}: ${JSON.stringify(buf.subarray(from, at + 48).toString('utf8'))}`
}

type Kind = 'null' | 'array' | 'object' | 'string' | 'number' | 'boolean' | 'undefined'

function kindOf(v: unknown): Kind {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v as Kind
}

function diff(a: unknown, b: unknown, path: Seg[], rules: CompareRules, out: Collector, depth: number): void {
  if (out.truncated || ignoredBody(rules, path)) return
  const ka = kindOf(a)
  const kb = kindOf(b)
  if (ka !== kb) {
    if (equalAcrossTypes(a, b, rules)) return
    add(out, path, 'type', a, b)
    return
  }
  if (depth >= MAX_DEPTH) {
    if (!deepEqual(a, b)) add(out, path, 'changed', '(nested too deep to show)', '(nested too deep to show)')
    return
  }
  switch (ka) {
    case 'object': {
      const oa = a as Record<string, unknown>
      const ob = b as Record<string, unknown>
      for (const k of Object.keys(oa)) {
        path.push(k)
        if (!Object.hasOwn(ob, k)) {
          if (!(rules.nullMissing && oa[k] === null) && !ignoredBody(rules, path)) add(out, path, 'missing', oa[k], undefined)
        } else {
          diff(oa[k], ob[k], path, rules, out, depth + 1)
        }
        path.pop()
      }
      for (const k of Object.keys(ob)) {
        if (Object.hasOwn(oa, k)) continue
        path.push(k)
        if (!(rules.nullMissing && ob[k] === null) && !ignoredBody(rules, path)) add(out, path, 'extra', undefined, ob[k])
        path.pop()
      }
      return
    }
    case 'array':
      diffArrays(a as unknown[], b as unknown[], path, rules, out, depth)
      return
    case 'number':
      if (a !== b && !(Math.abs((a as number) - (b as number)) <= rules.tolerance)) add(out, path, 'changed', a, b)
      return
    default:
      if (a !== b) add(out, path, 'changed', a, b)
  }
}

/** Structural equality without recursion (for what lies below MAX_DEPTH). */
function deepEqual(a: unknown, b: unknown): boolean {
  const stack: [unknown, unknown][] = [[a, b]]
  while (stack.length > 0) {
    const [x, y] = stack.pop() as [unknown, unknown]
    if (x === y) continue
    const kx = kindOf(x)
    if (kx !== kindOf(y) || (kx !== 'object' && kx !== 'array')) return false
    const ox = x as Record<string, unknown>
    const oy = y as Record<string, unknown>
    const keys = Object.keys(ox)
    if (keys.length !== Object.keys(oy).length) return false
    for (const k of keys) {
      if (!Object.hasOwn(oy, k)) return false
      stack.push([ox[k], oy[k]])
    }
  }
  return true
}

function add(out: Collector, path: readonly Seg[], kind: DifferenceKind, legacy: unknown, newValue: unknown): void {
  // Checked first: past the limit, the paths are not formatted for nothing.
  if (out.room()) out.list.push({ path: formatBodyPath(path), field: formatBodyPath(path, true), area: 'body', kind, legacy, new: newValue, at: path.slice() })
}

/** string ↔ number, when a route opts in: `"12.50"` and `12.5` are the same amount. */
function equalAcrossTypes(a: unknown, b: unknown, rules: CompareRules): boolean {
  if (!rules.stringNumbers) return false
  const [s, n] = typeof a === 'string' && typeof b === 'number' ? [a, b] : typeof b === 'string' && typeof a === 'number' ? [b, a] : [null, null]
  if (s === null || n === null || !/^\s*-?\d+(\.\d+)?([eE][+-]?\d+)?\s*$/.test(s)) return false
  return Math.abs(Number(s) - n) <= rules.tolerance
}

function arrayMode(rules: CompareRules, path: readonly Seg[]): ArrayMode | null {
  for (const r of rules.arrays) if (matchesBody(r.path, path)) return r.mode
  return null
}

function diffArrays(a: unknown[], b: unknown[], path: Seg[], rules: CompareRules, out: Collector, depth: number): void {
  const mode = arrayMode(rules, path)
  if (mode === null) {
    if (a.length !== b.length) add(out, path, 'length', a.length, b.length)
    const n = Math.min(a.length, b.length)
    for (let i = 0; i < n; i++) {
      path.push(i)
      diff(a[i], b[i], path, rules, out, depth + 1)
      path.pop()
    }
    return
  }
  if (mode === 'unordered') {
    // A multiset: each item of one side is paired with an equal item of the other.
    const pending = new Map<string, number[]>()
    b.forEach((item, j) => {
      const key = canonicalAt(item, path, j, rules)
      const list = pending.get(key)
      if (list === undefined) pending.set(key, [j])
      else list.push(j)
    })
    a.forEach((item, i) => {
      const list = pending.get(canonicalAt(item, path, i, rules))
      if (list !== undefined && list.length > 0) {
        list.shift()
      } else {
        path.push(i)
        add(out, path, 'missing', item, undefined)
        path.pop()
      }
    })
    for (const list of pending.values()) {
      for (const j of list) {
        path.push(j)
        add(out, path, 'extra', undefined, b[j])
        path.pop()
      }
    }
    return
  }
  // Keyed: items are paired by the value of their key field.
  const field = mode.key
  const byKey = new Map<string, unknown>()
  for (const item of b) {
    const k = keyOf(item, field)
    if (k !== undefined && !byKey.has(k)) byKey.set(k, item)
  }
  const seen = new Set<string>()
  a.forEach((item, i) => {
    const k = keyOf(item, field)
    const seg: Seg = k === undefined ? i : { field, value: k }
    path.push(seg)
    if (k !== undefined && byKey.has(k) && !seen.has(k)) {
      seen.add(k)
      diff(item, byKey.get(k), path, rules, out, depth + 1)
    } else {
      add(out, path, 'missing', item, undefined)
    }
    path.pop()
  })
  b.forEach((item, j) => {
    const k = keyOf(item, field)
    if (k !== undefined && seen.has(k) && byKey.get(k) === item) return
    path.push(k === undefined ? j : { field, value: k })
    add(out, path, 'extra', undefined, item)
    path.pop()
  })
}

function keyOf(item: unknown, field: string): string | undefined {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return undefined
  const v = (item as Record<string, unknown>)[field]
  return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined
}

/** canonical() of the item at `path` + `seg` (`path` is given back as it was). */
function canonicalAt(v: unknown, path: Seg[], seg: Seg, rules: CompareRules): string {
  path.push(seg)
  try {
    return canonical(v, path, rules)
  } finally {
    path.pop()
  }
}

/** A text form that is equal for equal values (keys sorted, ignored fields left out); `path` is where `v` is, pushed onto and popped. */
function canonical(v: unknown, path: Seg[], rules: CompareRules): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'undefined'
  if (Array.isArray(v)) {
    return `[${v.map((x, i) => canonicalAt(x, path, i, rules)).join(',')}]`
  }
  const o = v as Record<string, unknown>
  const parts: string[] = []
  for (const k of Object.keys(o).sort()) {
    path.push(k)
    if (!ignoredBody(rules, path)) parts.push(`${JSON.stringify(k)}:${canonical(o[k], path, rules)}`)
    path.pop()
  }
  return `{${parts.join(',')}}`
}
