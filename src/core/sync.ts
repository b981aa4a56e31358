/**
 * A route's `sync:` (DESIGN.md "Data-safe writes"), compiled, and the pure steps of a dual
 * write: which ids a request carries, what they are on each side (given what the id map
 * knows), the entity key that orders its deliveries, the id a create's answer gives, and
 * a path or body with ids replaced. No I/O: the id map's answers are handed in.
 */

import type { Backend, LearnSpec, PathId, PathPattern, SyncRule } from './types.js'

export type { LearnSpec, PathId, SyncRule }

/** A route's `sync:` as written in routes.yaml. */
export interface RawSync {
  readonly mode?: 'off' | 'mirror' | 'dual'
  readonly entity?: string
  readonly key?: string
  readonly learn?: string
  readonly rewrite?: { readonly path?: Readonly<Record<string, string>>; readonly body?: Readonly<Record<string, string>> }
}

/** The `:param` names of a pattern, with their segment index. */
export function patternParams(p: PathPattern): Map<string, number> {
  const out = new Map<string, number>()
  const parts = p.source.slice(1).split('/')
  parts.forEach((part, i) => { if (part.startsWith(':')) out.set(part.slice(1), i) })
  return out
}

/** `response.body.id` → { from: 'body', field: 'id' }; `response.header.location` → { from: 'location' }; null when neither. */
export function parseLearn(text: string): LearnSpec | null {
  if (text === 'response.header.location') return { from: 'location' }
  const m = /^response\.body\.([A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*)$/.exec(text)
  return m === null ? null : { from: 'body', field: m[1] as string }
}

/**
 * Compiles a route's `sync:`; null when it is off, or a list of problems (path in the
 * block → message). `mode: mirror` needs nothing else; `dual` needs an entity, and a key or
 * a learn unless the route takes only reads (`readOnly`: its reads still use the id map).
 */
export function compileSync(raw: RawSync | undefined, pattern: PathPattern, readOnly = false): SyncRule | null | { problems: [string, string][] } {
  if (raw === undefined || raw.mode === undefined || raw.mode === 'off') return null
  const problems: [string, string][] = []
  const params = patternParams(pattern)
  const entity = raw.entity ?? ''
  if (raw.mode === 'dual' && entity === '') problems.push(['entity', 'is required with mode: dual (the kind of record the route writes, like order)'])
  const pathId = (param: string, ent: string, where: string): PathId | null => {
    const segment = params.get(param)
    if (segment === undefined) {
      problems.push([where, `names :${param}, which match.path (${pattern.source}) does not have${params.size > 0 ? ` (it has ${[...params.keys()].map((x) => `:${x}`).join(', ')})` : ''}`])
      return null
    }
    return { param, segment, entity: ent }
  }
  let key: PathId | null = null
  if (raw.key !== undefined) {
    const m = /^path\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(raw.key)
    if (m === null) problems.push(['key', 'must be path.<param>, a parameter of match.path, like path.id'])
    else key = pathId(m[1] as string, entity, 'key')
  }
  let learn: LearnSpec | null = null
  if (raw.learn !== undefined) {
    learn = parseLearn(raw.learn)
    if (learn === null) problems.push(['learn', 'must be response.body.<field> (a dotted path in the JSON answer) or response.header.location'])
  }
  if (raw.mode === 'dual' && raw.key === undefined && raw.learn === undefined && !readOnly) {
    problems.push(['key', 'a dual route needs key: path.<param> (the entity its writes change) or learn: (where a create\'s answer gives the new id)'])
  }
  // The key first: pipeline/sync/dual.ts reads the key's id as the first path id.
  const pathIds: PathId[] = key === null ? [] : [key]
  for (const [param, ent] of Object.entries(raw.rewrite?.path ?? {})) {
    if (key !== null && param === key.param) {
      if (ent !== entity) problems.push([`rewrite.path.${param}`, `is the key, whose entity is ${entity}`])
      continue
    }
    const p = pathId(param, ent, `rewrite.path.${param}`)
    if (p !== null) pathIds.push(p)
  }
  const bodyIds = Object.entries(raw.rewrite?.body ?? {}).map(([field, ent]) => ({ field, entity: ent }))
  if (raw.mode === 'mirror' && (raw.key !== undefined || raw.learn !== undefined || raw.rewrite !== undefined)) {
    problems.push(['mode', 'mirror copies writes as they are: key, learn and rewrite need mode: dual'])
  }
  if (problems.length > 0) return { problems }
  return { mode: raw.mode, entity, key, learn, pathIds, bodyIds, learnText: raw.learn ?? null }
}

/** The path's segments (without the leading `/` and the query), as sent. */
export function pathSegments(target: string): string[] {
  const q = target.indexOf('?')
  return (q === -1 ? target : target.slice(0, q)).slice(1).split('/')
}

/** `target` with some path segments replaced (the query kept as it is). */
export function replaceSegments(target: string, replace: ReadonlyMap<number, string>): string {
  if (replace.size === 0) return target
  const q = target.indexOf('?')
  const segs = pathSegments(target)
  for (const [i, v] of replace) if (i < segs.length) segs[i] = encodeURIComponent(v)
  return `/${segs.join('/')}${q === -1 ? '' : target.slice(q)}`
}

/** A path segment as an id (percent-decoded; the segment itself when it does not decode). */
export function segmentId(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

/** What the id map knows of one id (IdPair of the store), as handed in. */
export interface KnownId {
  readonly other: string
  readonly origin: Backend
}

/** An id of a request, as each side knows it. */
export type ResolvedId =
  | { readonly kind: 'known'; readonly legacy: string; readonly new: string; readonly origin: Backend }
  /** The map knows nothing of it: the same on both sides, or not learned yet. */
  | { readonly kind: 'unmapped'; readonly id: string }
  /** It is a legacy id of one entity and a new id of another: Ficus cannot tell which the client means. */
  | { readonly kind: 'ambiguous'; readonly id: string }

/**
 * What a client's id `x` is on each side, given what the map knows of it as a legacy id
 * (`asLegacy`) and as a new id (`asNew`). A client keeps the id it was given by the side that
 * created the entity, or by whichever side it read it from: either may come in.
 */
export function resolveId(x: string, asLegacy: KnownId | null, asNew: KnownId | null): ResolvedId {
  if (asLegacy !== null && asNew !== null) {
    // x ↔ x, an id the two sides share, is known both ways: anything else is two entities.
    if (asLegacy.other === x && asNew.other === x) return { kind: 'known', legacy: x, new: x, origin: asLegacy.origin }
    return { kind: 'ambiguous', id: x }
  }
  if (asLegacy !== null) return { kind: 'known', legacy: x, new: asLegacy.other, origin: asLegacy.origin }
  if (asNew !== null) return { kind: 'known', legacy: asNew.other, new: x, origin: asNew.origin }
  return { kind: 'unmapped', id: x }
}

/** The id on `side`. */
export function idOn(r: ResolvedId, side: Backend): string {
  return r.kind === 'known' ? r[side] : r.id
}

/** The entity's one name whichever side's id came in (the id its creator gave): its writes are ordered under it. */
export function canonicalId(r: ResolvedId): string {
  return r.kind === 'known' ? r[r.origin] : r.id
}

/** The entity key deliveries of one entity are ordered by: `order:26`. */
export function entityKey(entity: string, id: string): string {
  return `${entity}:${id}`
}

/** A value at a dotted path of parsed JSON; undefined when absent. */
export function fieldOf(json: unknown, field: string): unknown {
  let v: unknown = json
  for (const part of field.split('.')) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<string, unknown>)[part]
  }
  return v
}

/** An id as JSON holds it (a string or a finite number), as text; null otherwise. */
export function idText(v: unknown): string | null {
  if (typeof v === 'string' && v !== '') return v
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  return null
}

/**
 * The id a create's answer gives: a JSON body field (`body` parsed by the caller, or
 * undefined when it is not JSON), or the last segment of `Location`. null when it is not there.
 */
export function learnedId(spec: LearnSpec, location: string | undefined, body: unknown): string | null {
  if (spec.from === 'location') {
    if (location === undefined || location === '') return null
    const path = location.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '').split(/[?#]/)[0] ?? ''
    const last = path.split('/').filter((s) => s !== '').pop()
    return last === undefined ? null : segmentId(last)
  }
  return idText(fieldOf(body, spec.field))
}

/**
 * A JSON body with the values at `fields` replaced (each keeps its type when the new id is
 * numeric and the old one was a number). Returns null when the body is not JSON.
 */
export function replaceFields(json: unknown, replace: ReadonlyMap<string, string>): unknown {
  if (json === null || typeof json !== 'object') return json
  const copy = structuredClone(json) as Record<string, unknown>
  for (const [field, id] of replace) {
    const parts = field.split('.')
    let v: Record<string, unknown> | undefined = copy
    for (const part of parts.slice(0, -1)) {
      const next: unknown = v?.[part]
      v = next !== null && typeof next === 'object' ? next as Record<string, unknown> : undefined
    }
    const last = parts[parts.length - 1] as string
    if (v === undefined || !(last in v)) continue
    v[last] = typeof v[last] === 'number' && /^-?\d+(\.\d+)?$/.test(id) ? Number(id) : id
  }
  return copy
}
