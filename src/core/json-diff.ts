import { idEntityAt, type IdPairs } from './compare-ids.js'
import type { CompareRules, ArrayMode } from './compare-rules.js'
import { Collector, type DifferenceKind } from './difference.js'
import { formatBodyPath, matchesBody, type Seg } from './rule-path.js'
import { idText } from './sync.js'

/**
 * The structural comparison of two JSON documents (pure): field paths, key order ignored,
 * arrays in order, unordered or keyed by a field, numeric tolerance and the other opt-in
 * equivalences of a route's compare rules. Differences go to a Collector.
 */

/** Nesting deeper than this is compared as text, so hostile bodies cannot exhaust the stack. */
const MAX_DEPTH = 64

/** A route's rules for one comparison, with the id map's pairs among its ids (`compare.ids`), when it has any. */
interface Rules extends CompareRules {
  readonly pairs?: IdPairs
}

/** Whether the body field at `path` is ignored by a rule. */
export function ignoredBody(rules: CompareRules, path: readonly Seg[]): boolean {
  for (const r of rules.ignore) if (matchesBody(r, path)) return true
  return false
}

/**
 * Adds the differences between `a` and `b` (parsed JSON) to `out`. `pairs`: the id map's
 * pairs among the ids at the rules' `compare.ids` paths (compare-ids.ts); two ids of a pair
 * are equal there, whatever their JSON types.
 */
export function diffJson(a: unknown, b: unknown, rules: CompareRules, out: Collector, pairs?: IdPairs): void {
  diff(a, b, [], pairs === undefined || pairs.size === 0 ? rules : { ...rules, pairs }, out, 0)
}

/** Whether `a` (legacy's) and `b` (new's) at `path` are two ids the id map pairs. */
function pairedIds(rules: Rules, path: readonly Seg[], a: unknown, b: unknown): boolean {
  // Scalars first: objects and arrays are never ids, and are not matched against the paths.
  const x = idText(a)
  const y = x === null ? null : idText(b)
  if (y === null) return false
  const entity = idEntityAt(rules.ids, path)
  return entity !== undefined && (rules.pairs as IdPairs).paired(entity, x as string, y)
}

type Kind = 'null' | 'array' | 'object' | 'string' | 'number' | 'boolean' | 'undefined'

function kindOf(v: unknown): Kind {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v as Kind
}

function diff(a: unknown, b: unknown, path: Seg[], rules: Rules, out: Collector, depth: number): void {
  // The same scalar: no difference, whatever the rules say of this path (rules only take differences away).
  if (a === b && (a === null || typeof a !== 'object')) return
  if (out.truncated || ignoredBody(rules, path)) return
  if (rules.pairs !== undefined && a !== b && pairedIds(rules, path, a, b)) return
  const ka = kindOf(a)
  const kb = kindOf(b)
  if (ka !== kb) {
    const across = acrossTypes(a, b, rules)
    if (across !== 'equal') add(out, path, across, a, b)
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
      let shared = 0
      for (const k of Object.keys(oa)) {
        path.push(k)
        if (!Object.hasOwn(ob, k)) {
          if (!(rules.nullMissing && oa[k] === null) && !ignoredBody(rules, path)) add(out, path, 'missing', oa[k], undefined)
        } else {
          shared++
          diff(oa[k], ob[k], path, rules, out, depth + 1)
        }
        path.pop()
      }
      const keysOfB = Object.keys(ob)
      // Every key of b's was one of a's: none is extra (the common case: no second pass).
      if (keysOfB.length === shared) return
      for (const k of keysOfB) {
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

/**
 * string ↔ number, when a route opts in: `"12.50"` and `12.5` are the same amount (within
 * the tolerance), `"12.50"` and `13` a `changed` amount; anything else is a `type` change.
 */
function acrossTypes(a: unknown, b: unknown, rules: Rules): 'equal' | 'changed' | 'type' {
  if (!rules.stringNumbers) return 'type'
  const [s, n] = typeof a === 'string' && typeof b === 'number' ? [a, b] : typeof b === 'string' && typeof a === 'number' ? [b, a] : [null, null]
  if (s === null || n === null || !/^\s*-?\d+(\.\d+)?([eE][+-]?\d+)?\s*$/.test(s)) return 'type'
  return Math.abs(Number(s) - n) <= rules.tolerance ? 'equal' : 'changed'
}

function arrayMode(rules: Rules, path: readonly Seg[]): ArrayMode | null {
  for (const r of rules.arrays) if (matchesBody(r.path, path)) return r.mode
  return null
}

function diffArrays(a: unknown[], b: unknown[], path: Seg[], rules: Rules, out: Collector, depth: number): void {
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
    diffUnordered(a, b, path, rules, out, depth)
    return
  }
  // Keyed: items are paired by the value of their key field (new's keys that are ids of a
  // pair stand for legacy's: `body.items[*].id` under compare.ids).
  const field = mode.key
  const keyIds = rules.pairs === undefined ? undefined : idEntityAt(rules.ids, [...path, { field, value: '' }, field])
  const pairedKey = (k: string | undefined): string | undefined =>
    k === undefined || keyIds === undefined ? k : (rules.pairs as IdPairs).legacyOf(keyIds, k) ?? k
  const byKey = new Map<string, unknown>()
  for (const item of b) {
    const k = pairedKey(keyOf(item, field))
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
    const own = keyOf(item, field)
    const k = pairedKey(own)
    if (k !== undefined && seen.has(k) && byKey.get(k) === item) return
    path.push(own === undefined ? j : { field, value: own })
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
function canonicalAt(v: unknown, path: Seg[], seg: Seg, rules: Rules, side: Side): string {
  path.push(seg)
  try {
    return canonical(v, path, rules, side)
  } finally {
    path.pop()
  }
}

type Side = 'legacy' | 'new'

/**
 * A text form that is equal for equal values (keys sorted, ignored fields left out, the items
 * of an unordered or keyed array sorted); `path` is where `v` is, pushed onto and popped.
 * Without tolerance, string-number or null-missing, two values are equal under the rules
 * exactly when their canonical forms are. With id pairs, an id of a pair is written as
 * legacy's (`side` says whose value `v` is), so the two ids of a pair have one form; equal
 * forms are still equal values, but an id seen as it is on both sides may now differ in form.
 */
function canonical(v: unknown, path: Seg[], rules: Rules, side: Side): string {
  if (v === null || typeof v !== 'object') return rules.pairs === undefined ? JSON.stringify(v) ?? 'undefined' : scalarForm(v, path, rules, side)
  if (Array.isArray(v)) {
    const items = v.map((x, i) => canonicalAt(x, path, i, rules, side))
    if (arrayMode(rules, path) !== null) items.sort()
    return `[${items.join(',')}]`
  }
  const o = v as Record<string, unknown>
  const parts: string[] = []
  for (const k of Object.keys(o).sort()) {
    path.push(k)
    if (!ignoredBody(rules, path)) parts.push(`${JSON.stringify(k)}:${canonical(o[k], path, rules, side)}`)
    path.pop()
  }
  return `{${parts.join(',')}}`
}

/**
 * A scalar's canonical form when ids are paired: an id of a pair as `#id:` and legacy's id
 * (no JSON text starts with `#`), anything else as JSON.
 */
function scalarForm(v: unknown, path: readonly Seg[], rules: Rules, side: Side): string {
  const entity = idEntityAt(rules.ids, path)
  const id = entity === undefined ? null : idText(v)
  if (id !== null) {
    const pairs = rules.pairs as IdPairs
    const legacy = side === 'legacy' ? (pairs.knowsLegacy(entity as string, id) ? id : undefined) : pairs.legacyOf(entity as string, id)
    if (legacy !== undefined) return `#id:${JSON.stringify(legacy)}`
  }
  return JSON.stringify(v) ?? 'undefined'
}

/**
 * Rules under which equal means equal canonical forms: no tolerance, string-number or
 * null-missing, and no id pairs (with them equal forms are equal, but not the other way round).
 */
function exact(rules: Rules): boolean {
  return rules.tolerance === 0 && !rules.stringNumbers && !rules.nullMissing && rules.pairs === undefined
}

/** Whether `a` and `b` (at `path`) are equal under the route's rules: a diff that stops at the first difference, on `out`'s budget of tries. */
function equalUnder(a: unknown, b: unknown, path: Seg[], rules: Rules, depth: number, out: Collector): boolean {
  const probe = new Collector(0, out.tries)
  diff(a, b, path, rules, probe, depth)
  return !probe.truncated
}

/**
 * A multiset: each item of one side is paired with an item of the other that is equal under
 * the rules (tolerance, string-number, null-missing and ignore apply as in order). Arrays
 * already in the same order pair item by item; otherwise items with the same canonical text
 * pair first (cheap), then each one left is tried against those left on the other side, at
 * most MAX_PAIRING_TRIES times over the whole comparison (nested arrays included). Unpaired
 * items are `missing` and `extra`.
 */
function diffUnordered(a: unknown[], b: unknown[], path: Seg[], rules: Rules, out: Collector, depth: number): void {
  if (a.length === b.length) {
    let inOrder = true
    for (let i = 0; i < a.length && inOrder; i++) {
      path.push(i)
      inOrder = equalUnder(a[i], b[i], path, rules, depth + 1, out)
      path.pop()
    }
    if (inOrder) return
  }
  // A probe (equalUnder) needs only whether the arrays are equal: lengths that differ say no.
  if (out.probing && a.length !== b.length) {
    out.room()
    return
  }
  const pending = new Map<string, number[]>()
  b.forEach((item, j) => {
    const key = canonicalAt(item, path, j, rules, 'new')
    const list = pending.get(key)
    if (list === undefined) pending.set(key, [j])
    else list.push(j)
  })
  const paired = new Set<number>()
  const leftA: number[] = []
  a.forEach((item, i) => {
    const list = pending.get(canonicalAt(item, path, i, rules, 'legacy'))
    const j = list?.shift()
    if (j === undefined) leftA.push(i)
    else paired.add(j)
  })
  const leftB = b.map((_, j) => j).filter((j) => !paired.has(j))
  const { tries } = out
  // Exact rules: items whose canonical forms differ are not equal under them; no search needed.
  const search = !exact(rules)
  for (const i of leftA) {
    let found = -1
    for (let k = 0; search && k < leftB.length && tries.left > 0; k++) {
      tries.left--
      path.push(i)
      const equal = equalUnder(a[i], b[leftB[k] as number], path, rules, depth + 1, out)
      path.pop()
      if (equal) {
        found = k
        break
      }
    }
    if (found === -1) {
      if (out.probing) { // one item without a pair: not equal, nothing more to learn
        out.room()
        return
      }
      path.push(i)
      add(out, path, 'missing', a[i], undefined)
      path.pop()
    } else {
      leftB.splice(found, 1)
    }
  }
  for (const j of leftB) {
    path.push(j)
    add(out, path, 'extra', undefined, b[j])
    path.pop()
  }
}
