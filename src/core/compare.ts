import { idsIn, type IdPairs, type IdQuery } from './compare-ids.js'
import { statusIn, type CompareRules } from './compare-rules.js'
import { Collector, type Difference } from './difference.js'
import { diffJson, ignoredBody } from './json-diff.js'
import { mapPaths } from './path-map.js'

/**
 * Compares legacy's answer with new's, whichever of them the client got: status, the chosen
 * headers, and the body (JSON structurally, anything else byte for byte). Pure: no I/O, no
 * clock; bodies arrive decoded (pipeline/shadow/decode.ts un-gzips them). JSON bodies are
 * compared structurally by json-diff.ts.
 *
 * Differences are named from legacy to new, because that is what the engineers of new fix:
 * `missing` = legacy has it and new does not, `extra` = new has it and legacy does not.
 */

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

/**
 * The id map's answers for a comparison on a route with `compare.ids`: the pairs it knows
 * among the ids idsToLookUp listed, and legacy's body as idsToLookUp parsed it (not parsed twice).
 */
export interface Translation {
  readonly pairs: IdPairs
  readonly legacyDoc: unknown
}

/**
 * What a comparison on a route with `compare.ids` needs from the id map, before it runs:
 * `none` when it needs nothing (no rule, the same bytes, a body not compared as JSON, no id
 * at those paths), `lookup`: legacy's ids at those paths (new's ids are their pairs),
 * `too_many` past MAX_ID_LOOKUPS of them.
 */
export type IdsWanted =
  | { readonly kind: 'none' }
  | { readonly kind: 'too_many' }
  | { readonly kind: 'lookup'; readonly ids: readonly IdQuery[]; readonly legacyDoc: unknown }

const NONE: IdsWanted = { kind: 'none' }

export function idsToLookUp(fromLegacy: ComparedSide, fromNew: ComparedSide, routeRules: CompareRules): IdsWanted {
  if (routeRules.ids.length === 0) return NONE
  const rules = forStatus(routeRules, fromLegacy.status, fromNew.status)
  if (ignoredBody(rules, []) || fromLegacy.body === null || fromNew.body === null) return NONE
  if (sameBytes(fromLegacy.body, fromNew.body) || !isJson(fromLegacy.headers) || !isJson(fromNew.headers)) return NONE
  if (sameJsonText(joined(fromLegacy.body), joined(fromNew.body))) return NONE
  const doc = parse(joined(fromLegacy.body))
  if (!doc.ok) return NONE
  const ids = idsIn(doc.value, rules.ids)
  if (ids === null) return { kind: 'too_many' }
  return ids.length === 0 ? NONE : { kind: 'lookup', ids, legacyDoc: doc.value }
}

/**
 * `ids`: on a route with `compare.ids`, what the id map said of the ids idsToLookUp listed
 * (without it, ids compare as any other value).
 * @example compare(fromLegacy, fromNew, rules) // { outcome: 'diverged', differences: [{ path: 'body.amount', kind: 'type', … }] }
 */
export function compare(fromLegacy: ComparedSide, fromNew: ComparedSide, routeRules: CompareRules, ids?: Translation): Comparison {
  const rules = forStatus(routeRules, fromLegacy.status, fromNew.status)
  const out = new Collector(rules.maxDifferences)
  if (fromLegacy.status !== fromNew.status && !ignoredTop(rules, 'status')) {
    out.add({ path: 'status', field: 'status', area: 'status', kind: 'changed', legacy: fromLegacy.status, new: fromNew.status })
  }
  for (const name of rules.headers) {
    if (ignoredTop(rules, 'header', name)) continue
    const a = headerValue(fromLegacy.headers[name])
    const b = headerValue(fromNew.headers[name])
    if (a === b) continue
    if (name === 'content-type' && rules.contentType === 'media-type' && a !== undefined && b !== undefined && mediaType(a) === mediaType(b)) continue
    const path = `header.${name}`
    out.add({ path, field: path, area: 'header', kind: a === undefined ? 'extra' : b === undefined ? 'missing' : 'changed', legacy: a, new: b })
  }
  if (!ignoredBody(rules, [])) {
    if (fromLegacy.body === null || fromNew.body === null) {
      // The body could not be kept: what was compared still counts when it differs.
      return out.list.length > 0 ? out.result() : { outcome: 'skipped', reason: 'body_too_large' }
    }
    compareBodies(fromLegacy, fromNew, rules, out, ids)
  }
  return out.list.length === 0 ? { outcome: 'match' } : out.result()
}

/** The route's rules with the `compare.when` entries for these statuses added (the same object when none applies). */
function forStatus(rules: CompareRules, a: number, b: number): CompareRules {
  let ignore = rules.ignore
  for (const w of rules.when) if (statusIn(w.status, a, b)) ignore = [...ignore, ...w.ignore]
  return ignore === rules.ignore ? rules : { ...rules, ignore }
}

/** `Application/JSON; charset=utf-8` → `application/json`: type and subtype, parameters left out. */
export function mediaType(contentType: string): string {
  const semi = contentType.indexOf(';')
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v
}

function ignoredTop(rules: CompareRules, root: 'status' | 'header', name?: string): boolean {
  return rules.ignore.some((r) => r.root === root && (root === 'status' || r.header === name))
}

const JSON_TYPE = /[/+]json(?:\s*;|\s*$)/i

function isJson(headers: ComparedSide['headers']): boolean {
  const ct = headerValue(headers['content-type'])
  return ct !== undefined && JSON_TYPE.test(ct)
}

function compareBodies(fromLegacy: ComparedSide, fromNew: ComparedSide, rules: CompareRules, out: Collector, ids: Translation | undefined): void {
  const x = fromLegacy.body as Body
  const y = fromNew.body as Body
  // The same bytes are the same document, whatever the rules: no need to parse (the common case).
  if (sameBytes(x, y)) return
  const a = joined(x)
  const b = joined(y)
  if (isJson(fromLegacy.headers) && isJson(fromNew.headers)) {
    // The same document written with other whitespace: no need to parse either.
    if (sameJsonText(a, b)) return
    const pa: Parsed = ids === undefined ? parse(a) : { ok: true, value: ids.legacyDoc }
    const pb = parse(b)
    if (pa.ok && pb.ok) {
      diffJson(pa.value, rules.paths.length === 0 ? pb.value : mapPaths(pb.value, rules.paths), rules, out, ids?.pairs)
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

type Parsed = { ok: true; value: unknown } | { ok: false }

/**
 * Whether two JSON texts are the same tokens, whatever the whitespace between them
 * (`{"a": 1}` and `{"a":1}`): then they are the same document under any rules, and need not
 * be parsed. A byte loop with no allocation, about a third of JSON.parse of both (64 KB,
 * docs/benchmarks.md); it stops at the first byte that differs otherwise (key order, number
 * or escape spelling: the parse decides). Whitespace counts only next to `{}[],:"`, where
 * valid JSON has it: `1 2` is not `12`.
 */
export function sameJsonText(a: Buffer, b: Buffer): boolean {
  const la = a.length
  const lb = b.length
  // An empty body is no document, and whitespace alone is not JSON: not the same (two empty ones are the same bytes).
  if (la === 0 || lb === 0) return false
  let i = 0
  let j = 0
  let inString = false
  let prev = 0x2c // as after a ',': whitespace may lead
  for (;;) {
    if (!inString) {
      const si = i
      const sj = j
      while (i < la && isSpace(a[i] as number)) i++
      while (j < lb && isSpace(b[j] as number)) j++
      // Skipped whitespace must sit next to a structural byte, as JSON's does.
      if ((i !== si || j !== sj) && !structural(prev) && (i < la && !structural(a[i] as number))) return false
    }
    if (i === la || j === lb) return i === la && j === lb
    const c = a[i] as number
    if (c !== b[j]) return false
    if (inString) {
      if (c === 0x5c /* \ */) {
        i++
        j++
        if (i === la || j === lb || a[i] !== b[j]) return false
      } else if (c === 0x22 /* " */) inString = false
    } else if (c === 0x22) inString = true
    prev = c
    i++
    j++
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
}

function structural(c: number): boolean {
  return c === 0x7b || c === 0x7d || c === 0x5b || c === 0x5d || c === 0x2c || c === 0x3a || c === 0x22
}

/** Empty bodies parse as "no value", so an empty 204 equals another. */
function parse(buf: Buffer): Parsed {
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

