import type { PathMap } from './compare-rules.js'
import type { RulePath } from './rule-path.js'

/**
 * `compare.paths` (pure): new's document with each mapped value moved to where legacy has it,
 * before the two are compared, so an envelope (`{ legacy: body, new: body.data }`) or a
 * renamed field (`{ legacy: body.customer_name, new: body.customerName }`) compares equal and
 * differences are reported at legacy's paths. `doc` is new's freshly parsed body: it is
 * changed in place (the returned value replaces it when the whole body moves).
 */
export function mapPaths(doc: unknown, maps: readonly PathMap[]): unknown {
  let out = doc
  for (const m of maps) out = m.new.segs.some((s) => s.t === 'any') ? renameAll(out, m) : move(out, m)
  return out
}

type Container = Record<string, unknown> | unknown[]
type Step = string | number

/** The keys and indexes of a path without wildcards (compileCompare allows no other here). */
function steps(p: RulePath): Step[] {
  return p.segs.map((s) => (s.t === 'key' || s.t === 'index' ? s.v : ''))
}

function isContainer(v: unknown): v is Container {
  return v !== null && typeof v === 'object'
}

function has(c: Container, k: Step): boolean {
  return Array.isArray(c) ? typeof k === 'number' && k < c.length : typeof k === 'string' && Object.hasOwn(c, k)
}

/** A concrete move: the value at `new` (when there is one) goes to `legacy`, unless new already has something there. */
function move(doc: unknown, m: PathMap): unknown {
  const from = steps(m.new)
  const to = steps(m.legacy)
  if (from.length === 0) return to.length === 0 ? doc : place({}, to, doc)
  const parent = walk(doc, from.slice(0, -1))
  const k = from[from.length - 1] as string
  if (parent === undefined || Array.isArray(parent) || !Object.hasOwn(parent, k)) return doc
  const value = parent[k]
  if (to.length === 0) return value
  if (!free(doc, to)) return doc
  delete parent[k]
  return place(doc, to, value)
}

/** Whether `to` can be set in `doc` without overwriting a value or going through one that is not an object. */
function free(doc: unknown, to: readonly Step[]): boolean {
  let v = doc
  for (const k of to) {
    if (v === undefined) return true
    if (!isContainer(v) || Array.isArray(v)) return false
    v = v[k as string]
  }
  return v === undefined
}

/** `doc` with `value` at `to`, objects made on the way (`doc` itself unless it is not an object). */
function place(doc: unknown, to: readonly Step[], value: unknown): unknown {
  const root = isContainer(doc) && !Array.isArray(doc) ? doc : {}
  let c: Record<string, unknown> = root
  for (const k of to.slice(0, -1)) {
    if (!isContainer(c[k as string])) c[k as string] = {}
    c = c[k as string] as Record<string, unknown>
  }
  c[to[to.length - 1] as string] = value
  return root
}

/** `body.items[*].quantity` → `body.items[*].qty`: in every object the parent pattern reaches, the key is renamed. */
function renameAll(doc: unknown, m: PathMap): unknown {
  const parentSegs = m.new.segs.slice(0, -1)
  const fromKey = (m.new.segs[m.new.segs.length - 1] as { v: string }).v
  const toKey = (m.legacy.segs[m.legacy.segs.length - 1] as { v: string }).v
  const visit = (v: unknown, i: number): void => {
    if (!isContainer(v)) return
    if (i === parentSegs.length) {
      if (Array.isArray(v) || !Object.hasOwn(v, fromKey) || Object.hasOwn(v, toKey)) return
      v[toKey] = v[fromKey]
      delete v[fromKey]
      return
    }
    const s = parentSegs[i] as RulePath['segs'][number]
    if (s.t === 'any') {
      for (const child of Array.isArray(v) ? v : Object.values(v)) visit(child, i + 1)
    } else if ((s.t === 'key' || s.t === 'index') && has(v, s.v)) {
      visit((v as Record<Step, unknown>)[s.v], i + 1)
    }
  }
  visit(doc, 0)
  return doc
}

function walk(doc: unknown, path: readonly Step[]): Container | undefined {
  let v = doc
  for (const k of path) {
    if (!isContainer(v) || !has(v, k)) return undefined
    v = (v as Record<Step, unknown>)[k]
  }
  return isContainer(v) ? v : undefined
}
