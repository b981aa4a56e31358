import type { IdRule } from './compare-rules.js'
import { matchesBody, type RulePath, type Seg } from './rule-path.js'
import { idText } from './sync.js'

/**
 * `compare.ids` (docs/shadow.md), pure: on a dual route the two sides give the same record
 * different ids (`"1000"` and `"n-3e9"`), so answers that agree differ at every id. The
 * verdict stage asks the id map about the ids `idsIn` finds in legacy's answer and hands the
 * pairs it knows to the comparison as an IdPairs; there, a value at an id path equals the
 * other side's when the two are a pair (json-diff.ts). No I/O: the map's answers come in.
 */

/** Distinct ids one comparison may look up; past it the comparison is skipped (`too_many_ids`), never half translated. */
export const MAX_ID_LOOKUPS = 1000

/** Nesting deeper than this is not searched for ids (json-diff compares it as text). */
const MAX_DEPTH = 64

/** The pairs of the id map among the ids of one comparison: legacy's id ↔ new's, per entity. */
export class IdPairs {
  private readonly toNew = new Map<string, string>()
  private readonly toLegacy = new Map<string, string>()

  /** legacy's `legacyId` and new's `newId` are one record of `entity`. */
  add (entity: string, legacyId: string, newId: string): void {
    this.toNew.set(`${entity}\0${legacyId}`, newId)
    this.toLegacy.set(`${entity}\0${newId}`, legacyId)
  }

  get size (): number {
    return this.toNew.size
  }

  /** Whether legacy's id `a` and new's id `b` (as text) are a pair of the map. */
  paired (entity: string, a: string, b: string): boolean {
    return this.toNew.get(`${entity}\0${a}`) === b
  }

  /** legacy's id for new's `id`, when the pair is known. */
  legacyOf (entity: string, id: string): string | undefined {
    return this.toLegacy.get(`${entity}\0${id}`)
  }

  /** Whether legacy's `id` has a pair here. */
  knowsLegacy (entity: string, id: string): boolean {
    return this.toNew.has(`${entity}\0${id}`)
  }
}

/** An id to ask the map about: legacy's `id` (as text) of `entity`. */
export interface IdQuery {
  readonly entity: string
  readonly id: string
}

/** Ids to look up, grouped by entity (one id map read per entity), each id once. */
export function groupByEntity (ids: Iterable<IdQuery>): Map<string, string[]> {
  const sets = new Map<string, Set<string>>()
  for (const q of ids) {
    const set = sets.get(q.entity)
    if (set === undefined) sets.set(q.entity, new Set([q.id]))
    else set.add(q.id)
  }
  return new Map([...sets].map(([entity, set]) => [entity, [...set]]))
}

/**
 * The ids at the rules' paths in a parsed body (strings and numbers, as text), each once
 * per entity, in the order found; null when there are more than `max`.
 */
export function idsIn (doc: unknown, rules: readonly IdRule[], max = MAX_ID_LOOKUPS): IdQuery[] | null {
  const seen = new Set<string>()
  const out: IdQuery[] = []
  for (const r of rules) {
    const stack: [unknown, number, number][] = [[doc, 0, 0]]
    const segs = r.path.segs
    while (stack.length > 0) {
      const [v, i, depth] = stack.pop() as [unknown, number, number]
      if (i === segs.length) {
        const id = idText(v)
        if (id !== null && !seen.has(`${r.entity}\0${id}`)) {
          seen.add(`${r.entity}\0${id}`)
          if (out.length === max) return null
          out.push({ entity: r.entity, id })
        }
        continue
      }
      if (v === null || typeof v !== 'object' || depth >= MAX_DEPTH) continue
      const s = segs[i] as RulePath['segs'][number]
      const children = (): unknown[] => (Array.isArray(v) ? v : Object.values(v as Record<string, unknown>))
      if (s.t === 'key') {
        if (!Array.isArray(v) && Object.hasOwn(v, s.v)) stack.push([(v as Record<string, unknown>)[s.v], i + 1, depth + 1])
      } else if (s.t === 'index') {
        if (Array.isArray(v) && s.v < v.length) stack.push([v[s.v], i + 1, depth + 1])
      } else if (s.t === 'any') {
        // Pushed in reverse: popped in body order.
        const c = children()
        for (let k = c.length - 1; k >= 0; k--) stack.push([c[k], i + 1, depth + 1])
      } else {
        // `**`: zero levels here, or one more level and `**` again.
        const c = children()
        for (let k = c.length - 1; k >= 0; k--) stack.push([c[k], i, depth + 1])
        stack.push([v, i + 1, depth])
      }
    }
  }
  return out
}

/** The entity whose ids sit at body path `path`, or undefined when no `compare.ids` rule names it. */
export function idEntityAt (rules: readonly IdRule[], path: readonly Seg[]): string | undefined {
  for (const r of rules) if (matchesBody(r.path, path)) return r.entity
  return undefined
}
