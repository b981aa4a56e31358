/**
 * Paths into a compared response, one grammar for rules (`compare.ignore`, `arrays`,
 * `redact`) and for reported differences:
 *
 *   status                     the status code
 *   header.<name>              a response header (lower-case)
 *   body                       the whole body
 *   body.items[2].price        a JSON field; `["odd key"]` for keys that are not identifiers
 *   body.items[sku=A-1].qty    an item of an array matched by key (`arrays: { body.items: { key: sku } }`)
 *
 * Rules may use `*` (any one key or item: `body.items[*].price`, `body.*.id`) and `**` (any
 * number of levels: `body.**.updatedAt`).
 */

/** One step into a JSON value: an object key, an array index, or an array item matched by key. */
export type Seg = string | number | { readonly field: string; readonly value: string }

type PatternSeg =
  | { readonly t: 'key'; readonly v: string }
  | { readonly t: 'index'; readonly v: number }
  | { readonly t: 'any' }
  | { readonly t: 'deep' }

export interface RulePath {
  readonly source: string
  readonly root: 'status' | 'header' | 'body'
  /** For `header.<name>`: the name, lower-cased. */
  readonly header?: string
  readonly segs: readonly PatternSeg[]
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$-]*$/

/**
 * Parses a rule path; returns a message saying what is wrong with it instead.
 * @example parseRulePath('body.items[*].price')
 */
export function parseRulePath(source: string): RulePath | string {
  if (source === 'status') return { source, root: 'status', segs: [] }
  if (source.startsWith('header.')) {
    const name = source.slice(7)
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return 'a header rule is header.<name>'
    return { source, root: 'header', header: name.toLowerCase(), segs: [] }
  }
  if (source !== 'body' && !source.startsWith('body.') && !source.startsWith('body[')) {
    return 'must start with body, header.<name> or be status'
  }
  const segs: PatternSeg[] = []
  let i = 4
  while (i < source.length) {
    const c = source[i]
    if (c === '.') {
      const m = /^(\*\*|\*|[A-Za-z_$][A-Za-z0-9_$-]*)/.exec(source.slice(i + 1))
      if (m === null) return `cannot read a key at "${source.slice(i)}"`
      const k = m[1] as string
      segs.push(k === '**' ? { t: 'deep' } : k === '*' ? { t: 'any' } : { t: 'key', v: k })
      i += 1 + k.length
    } else if (c === '[') {
      const end = source.indexOf(']', i)
      if (end === -1) return `unclosed "[" at "${source.slice(i)}"`
      const inner = source.slice(i + 1, end)
      if (inner === '*') segs.push({ t: 'any' })
      else if (/^\d+$/.test(inner)) segs.push({ t: 'index', v: Number(inner) })
      else if (/^"(?:[^"\\]|\\.)*"$/.test(inner)) segs.push({ t: 'key', v: JSON.parse(inner) as string })
      else return `"[${inner}]" must be [<index>], [*] or ["<key>"]`
      i = end + 1
    } else {
      return `unexpected "${c}" at "${source.slice(i)}"`
    }
  }
  return { source, root: 'body', segs }
}

/** Whether a body path (the segments under `body`) matches a body rule. */
export function matchesBody(rule: RulePath, path: readonly Seg[]): boolean {
  return rule.root === 'body' && matchFrom(rule.segs, 0, path, 0)
}

function matchFrom(p: readonly PatternSeg[], pi: number, path: readonly Seg[], si: number): boolean {
  for (; pi < p.length; pi++, si++) {
    const ps = p[pi] as PatternSeg
    if (ps.t === 'deep') {
      for (let k = si; k <= path.length; k++) if (matchFrom(p, pi + 1, path, k)) return true
      return false
    }
    if (si >= path.length) return false
    const s = path[si] as Seg
    if (ps.t === 'any') continue
    if (s !== ps.v) return false
  }
  return si === path.length
}

/** `body.items[2].price`; `generalize` folds indexes and matched items to `[*]` (bounded label-free stats). */
export function formatBodyPath(path: readonly Seg[], generalize = false): string {
  let out = 'body'
  for (const s of path) {
    if (typeof s === 'number') out += generalize ? '[*]' : `[${s}]`
    else if (typeof s === 'object') out += generalize ? '[*]' : `[${s.field}=${s.value}]`
    else out += IDENT.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`
  }
  return out
}
