import { idsIn, IdPairs, type IdQuery } from './compare-ids.js'
import type { CompareRules } from './compare-rules.js'
import { Collector, type Difference } from './difference.js'
import { diffJson } from './json-diff.js'
import { mapPaths } from './path-map.js'
import { matchesBody, type RulePath, type Seg } from './rule-path.js'
import { percent, upperBound } from './stats.js'
import { idText } from './sync.js'

/**
 * `ficus verify` (docs/verify.md; DESIGN.md "Verify"), its pure part: what one record is
 * under a route's compare rules (its canonical text, whose hash is the record's checksum),
 * how two records differ (the same field paths and kinds as the shadow comparison), the
 * outcome of each record, and the statements a run ends with. No I/O: the id map's answers,
 * the records and the sample's random numbers come in.
 */

export type Outcome = 'matched' | 'mismatched' | 'missing_in_legacy' | 'missing_in_new' | 'unmapped' | 'in_flight'
export const OUTCOMES: readonly Outcome[] = ['matched', 'mismatched', 'missing_in_legacy', 'missing_in_new', 'unmapped', 'in_flight']

export type Mode = 'count' | 'checksum' | 'sample' | 'full'
export const MODES: readonly Mode[] = ['count', 'checksum', 'sample', 'full']

/** Nesting deeper than this is kept as it is (hostile records cannot exhaust the stack). */
const MAX_DEPTH = 64

/**
 * How canonical() writes the ids at `compare.ids` paths (a dual route's id map): legacy's as
 * `id:<text>`, new's as `id:<legacy's id>` when the map pairs it (`legacyIdOf`). Two such
 * values are then equal exactly when the comparison pairs them. An id of new the map does not
 * know is written as its JSON, which never equals legacy's form: the comparison decides.
 */
export type IdForm = { readonly side: 'legacy' } | { readonly side: 'new'; readonly legacyIdOf: (entity: string, id: string) => string | undefined }

/**
 * The canonical text of a record, a fast path of the comparison: keys sorted, ignored fields
 * left out, `null` fields left out with `treatAsEqual: null-missing`, and ids through the id
 * map (`ids`: IdForm). It only ever makes equal what the comparison (recordDifferences) also
 * finds equal; what it cannot judge that way stays as it is, and the comparison decides:
 * numbers within a tolerance, `string-number` ("12.50" against 12.5), arrays the rules call
 * unordered or keyed (written in order, whole, no rule applied inside them). `doc` is new's
 * record already moved to legacy's paths (`compare.paths`: toLegacyPaths).
 */
export function canonical (doc: unknown, rules: CompareRules, ids?: IdForm): string {
  const { ignore, ids: idRules, arrays } = prepared(rules)
  const path: Seg[] = []
  const walk = (v: unknown, depth: number): string | undefined => {
    if (path.length > 0 && ignore.some((r) => fits(r, path) && matchesBody(r, path))) return undefined
    const idRule = ids !== undefined && path.length > 0 ? idRules.find((r) => fits(r.path, path) && matchesBody(r.path, path)) : undefined
    if (idRule !== undefined) {
      const id = idText(v)
      const legacy = id === null ? undefined : ids?.side === 'legacy' ? id : ids?.legacyIdOf(idRule.entity, id)
      if (legacy !== undefined) return JSON.stringify(`id:${legacy}`)
    }
    if (v === null || typeof v !== 'object' || depth >= MAX_DEPTH) return v === undefined ? undefined : strict(v)
    if (Array.isArray(v)) {
      // Paired by the rules (unordered, keyed): exactly as it is, or the comparison decides.
      if (arrays.some((a) => fits(a.path, path) && matchesBody(a.path, path))) return strict(v)
      const items: string[] = []
      for (let i = 0; i < v.length; i++) {
        path.push(i)
        items.push(walk(v[i], depth + 1) ?? 'null')
        path.pop()
      }
      return `[${items.join(',')}]`
    }
    const o = v as Record<string, unknown>
    const parts: string[] = []
    for (const k of Object.keys(o).sort()) {
      if (rules.nullMissing && o[k] === null) continue
      path.push(k)
      const c = walk(o[k], depth + 1)
      path.pop()
      if (c !== undefined) parts.push(`${JSON.stringify(k)}:${c}`)
    }
    return `{${parts.join(',')}}`
  }
  return walk(doc, 0) ?? ''
}

/** A value as JSON with its keys sorted, no rule applied. */
function strict (v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null'
  return JSON.stringify(v, (_k, x: unknown) => (x !== null && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, (x as Record<string, unknown>)[k]]))
    : x))
}

/** A body rule can match a path of this depth: as deep as its segments, or (each `**` taking zero or more) at least as deep as the rest. */
function fits (rule: RulePath, path: readonly Seg[]): boolean {
  let deep = 0
  for (const x of rule.segs) if (x.t === 'deep') deep++
  return deep === 0 ? rule.segs.length === path.length : path.length >= rule.segs.length - deep
}

/** The rules canonical() reads, body rules only (the others never match a record's field). */
const PREPARED = new WeakMap<CompareRules, { ignore: RulePath[]; ids: CompareRules['ids'][number][]; arrays: CompareRules['arrays'][number][] }>()
function prepared (rules: CompareRules): { ignore: RulePath[]; ids: CompareRules['ids'][number][]; arrays: CompareRules['arrays'][number][] } {
  let p = PREPARED.get(rules)
  if (p === undefined) {
    p = { ignore: rules.ignore.filter((r) => r.root === 'body'), ids: rules.ids.filter((r) => r.path.root === 'body'), arrays: rules.arrays.filter((a) => a.path.root === 'body') }
    PREPARED.set(rules, p)
  }
  return p
}

/** New's record with its fields moved to where legacy has them (`compare.paths`); a copy, `doc` is not changed. */
export function toLegacyPaths (doc: unknown, rules: CompareRules): unknown {
  return rules.paths.length === 0 ? doc : mapPaths(structuredClone(doc), rules.paths)
}

/** The ids at the rules' `compare.ids` paths of a record (at legacy's paths), to ask the id map about. */
export function idsOf (doc: unknown, rules: CompareRules): IdQuery[] {
  return idsIn(doc, rules.ids, Number.MAX_SAFE_INTEGER) ?? []
}

/**
 * How legacy's record and new's differ under the rules (new's already at legacy's paths),
 * ids paired through `pairs` (legacy's id → new's, per entity): the differences of a shadow
 * comparison of the two as bodies, with the same paths and kinds. Empty: they are equal.
 */
export function recordDifferences (legacy: unknown, next: unknown, rules: CompareRules, pairs?: IdPairs): { readonly differences: readonly Difference[]; readonly truncated: boolean } {
  const out = new Collector(rules.maxDifferences)
  diffJson(legacy, next, rules, out, pairs)
  return { differences: out.list, truncated: out.truncated }
}

/** IdPairs from what the id map said of legacy's ids: entity → legacy id → new id. */
export function pairsOf (found: Iterable<readonly [entity: string, legacyId: string, newId: string]>): IdPairs {
  const pairs = new IdPairs()
  for (const [entity, l, n] of found) pairs.add(entity, l, n)
  return pairs
}

/** Records per outcome. */
export type Counts = Record<Outcome, number>

export const zeroCounts = (): Counts => ({ matched: 0, mismatched: 0, missing_in_legacy: 0, missing_in_new: 0, unmapped: 0, in_flight: 0 })

/** Records found to differ: mismatched, or on one side only. */
export function differing (c: Counts): number {
  return c.mismatched + c.missing_in_legacy + c.missing_in_new
}

/** Records compared to a conclusion (matched or differing; unmapped and in-flight ones are not). */
export function concluded (c: Counts): number {
  return c.matched + differing(c)
}

/**
 * What a sample allows one to say of the whole: "0 of 3,000 differ: below 0.1 % at 95 %"
 * (the one-sided Clopper–Pearson bound of the share that differs).
 */
export function sampleStatement (c: Counts, confidence = 0.95): { readonly upper: number; readonly text: string } {
  const k = differing(c)
  const n = concluded(c)
  if (n === 0) return { upper: 1, text: 'no record was compared: nothing can be said of the rest' }
  const upper = upperBound(k, n, confidence)
  return { upper, text: `${k.toLocaleString('en-US')} of ${n.toLocaleString('en-US')} differ: below ${percent(upper)} at ${Math.round(confidence * 100)} %` }
}

/** The exit code of `ficus verify`: 0 parity, 1 differences, 2 incomplete (3, usage, is the CLI's). */
export const EXIT = { parity: 0, differences: 1, incomplete: 2, usage: 3 } as const

/**
 * The verdict of a finished run. `complete`: every record was listed and every check ended.
 * `maxRate` (`--max-mismatch-rate`): differences are tolerated up to that share of the
 * records compared (for a sample, of its upper bound at 95 %); unmapped records and records
 * whose writes were still in flight after `settle` make the run incomplete, not different:
 * nothing was shown about them.
 */
export function verdict (c: Counts, mode: Mode, complete: boolean, maxRate = 0, totals?: { readonly legacy: number | null; readonly new: number | null }): 'parity' | 'differences' | 'incomplete' {
  if (mode === 'count') {
    if (totals === undefined || totals.legacy === null || totals.new === null) return 'incomplete'
    const big = Math.max(totals.legacy, totals.new)
    const off = Math.abs(totals.legacy - totals.new)
    return off === 0 || (big > 0 && off / big <= maxRate) ? 'parity' : 'differences'
  }
  const n = concluded(c)
  const rate = mode === 'sample' ? sampleStatement(c).upper : n === 0 ? 0 : differing(c) / n
  if (differing(c) > 0 && rate > maxRate) return 'differences'
  if (!complete || c.unmapped > 0 || c.in_flight > 0) return 'incomplete'
  return 'parity'
}

/**
 * Seeded reservoir sampling (Algorithm R): `n` records chosen uniformly from a listing of
 * unknown length in one pass, the same ones for the same seed and listing. `next(i)` is a
 * uniform integer in [0, i] from the caller's seeded generator.
 */
export class Reservoir<T> {
  readonly kept: T[] = []
  seen = 0
  constructor (private readonly n: number, private readonly next: (max: number) => number) {}

  offer (item: T): void {
    const i = this.seen++
    if (i < this.n) {
      this.kept.push(item)
      return
    }
    const j = this.next(i)
    if (j < this.n) this.kept[j] = item
  }
}
