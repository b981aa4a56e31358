import { parseRulePath, type RulePath } from './rule-path.js'

export type ArrayMode = 'unordered' | { readonly key: string }

/** Statuses a `compare.when` entry applies to: exact codes and classes (`4xx` is 4). */
export interface StatusMatch {
  readonly codes: readonly number[]
  readonly classes: readonly number[]
}

/**
 * `compare.paths`: new's value at `new` is compared with legacy's at `legacy` (an envelope,
 * a renamed field). With wildcards both paths differ only in their last key (a rename in
 * every item).
 */
export interface PathMap {
  readonly legacy: RulePath
  readonly new: RulePath
}

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
  /** `media-type`: `content-type` compared by type/subtype, parameters (charset) left out; `exact`: as text. */
  readonly contentType: 'media-type' | 'exact'
  /** More paths ignored when either answer has one of the statuses (`compare.when`). */
  readonly when: readonly { readonly status: StatusMatch; readonly ignore: readonly RulePath[] }[]
  /** Body paths of new moved to where legacy has them before comparing (`compare.paths`). */
  readonly paths: readonly PathMap[]
  /** Body paths that hold ids of an entity: two ids the id map pairs are equal (`compare.ids`, compare-ids.ts). */
  readonly ids: readonly IdRule[]
  /** Differences reported at most per comparison; the rest is counted as truncated. */
  readonly maxDifferences: number
}

/** A `compare.ids` entry: the values at `path` are ids of `entity` (legacy's ids at legacy's paths). */
export interface IdRule {
  readonly path: RulePath
  readonly entity: string
}

/** One `compare.when` entry as written. */
export interface WhenConfig {
  readonly status: number | string | readonly (number | string)[]
  readonly ignore?: readonly string[]
}

/** A route's `compare:` block as written in routes.yaml. */
export interface CompareConfig {
  readonly headers?: readonly string[]
  readonly ignore?: readonly string[]
  readonly arrays?: Readonly<Record<string, 'unordered' | { readonly key: string }>>
  readonly numbers?: { readonly tolerance?: number }
  readonly treatAsEqual?: readonly ('string-number' | 'null-missing')[]
  readonly contentType?: 'media-type' | 'exact'
  readonly when?: readonly WhenConfig[]
  readonly paths?: readonly { readonly legacy: string; readonly new: string }[]
  readonly ids?: Readonly<Record<string, string>>
  readonly redact?: readonly string[]
}

/** Headers compared when a route names none: the media type decides how a body is read. */
export const DEFAULT_COMPARED_HEADERS = ['content-type']
/** Differences kept per comparison (samples stay small; the rest is counted as truncated). */
export const MAX_DIFFERENCES = 50

/**
 * Query parameters whose values never appear in a sample's path, whatever the route says
 * (compared in lower case): the usual names of credentials and signatures.
 */
export const SECRET_QUERY_PARAMS: readonly string[] = [
  'access_token', 'api_key', 'apikey', 'auth', 'client_secret', 'code', 'id_token', 'key', 'password',
  'refresh_token', 'secret', 'session', 'sig', 'signature', 'token'
]

export interface CompiledCompare {
  readonly rules: CompareRules
  /** Body paths whose values never appear in divergence samples. */
  readonly redact: readonly RulePath[]
  /** Query parameters (`compare.redact: ['query.<name>']`) shown as `[redacted]` in a sample's path; `*`: all of them. */
  readonly redactQuery: readonly string[]
  /** The block as written, as text: a reload that changes it starts a new divergence epoch. */
  readonly source: string
}

/**
 * Compiles a `compare:` block; `problems` gets `[path-within-compare, message]` for each
 * rule that cannot be read (load-config reports them with their place in the file).
 */
export function compileCompare(c: CompareConfig | undefined, problems: [(string | number)[], string][] = []): CompiledCompare {
  const paths = (list: readonly string[] | undefined, where: (string | number)[]): RulePath[] =>
    (list ?? []).flatMap((source, i) => {
      const p = parseRulePath(source)
      if (typeof p === 'string') {
        problems.push([[...where, i], p])
        return []
      }
      return [p]
    })
  const arrays: { path: RulePath; mode: ArrayMode }[] = []
  for (const [source, mode] of Object.entries(c?.arrays ?? {})) {
    const p = parseRulePath(source)
    if (typeof p === 'string' || p.root !== 'body') {
      problems.push([['arrays', source], typeof p === 'string' ? p : 'must be a body path (body.…)'])
      continue
    }
    arrays.push({ path: p, mode })
  }
  const ignore = paths(c?.ignore, ['ignore'])
  const when = (c?.when ?? []).flatMap((w, i) => {
    const status = statusMatch(w.status)
    if (typeof status === 'string') {
      problems.push([['when', i, 'status'], status])
      return []
    }
    return [{ status, ignore: paths(w.ignore, ['when', i, 'ignore']) }]
  })
  const maps = (c?.paths ?? []).flatMap((m, i) => {
    const map = pathMap(m)
    if (typeof map === 'string') {
      problems.push([['paths', i], map])
      return []
    }
    return [map]
  })
  const ids: IdRule[] = []
  for (const [source, entity] of Object.entries(c?.ids ?? {})) {
    const p = parseRulePath(source)
    if (typeof p === 'string' || p.root !== 'body') {
      problems.push([['ids', source], typeof p === 'string' ? p : 'must be a body path (body.id, body.items[*].orderId)'])
      continue
    }
    ids.push({ path: p, entity })
  }
  // `redact` holds body paths and query parameters; problems keep their place in the list.
  const redactQuery: string[] = []
  const redact: RulePath[] = []
  ;(c?.redact ?? []).forEach((source, i) => {
    if (source.startsWith('query.')) {
      const name = source.slice('query.'.length)
      if (name === '') problems.push([['redact', i], 'a query rule is query.<name> (or query.* for every parameter)'])
      else redactQuery.push(name)
      return
    }
    const p = parseRulePath(source)
    if (typeof p === 'string') problems.push([['redact', i], p])
    else if (p.root !== 'body') problems.push([['redact', i], 'must be a body path (body.…) or a query parameter (query.<name>)'])
    else redact.push(p)
  })
  const equal = new Set(c?.treatAsEqual ?? [])
  return {
    rules: {
      headers: (c?.headers ?? DEFAULT_COMPARED_HEADERS).map((h) => h.toLowerCase()),
      ignore,
      arrays,
      tolerance: c?.numbers?.tolerance ?? 0,
      stringNumbers: equal.has('string-number'),
      nullMissing: equal.has('null-missing'),
      contentType: c?.contentType ?? 'media-type',
      when,
      paths: maps,
      ids,
      maxDifferences: MAX_DIFFERENCES
    },
    redact,
    redactQuery,
    source: JSON.stringify(c ?? null)
  }
}

/** `404`, `'4xx'` or a list of them. */
function statusMatch(spec: WhenConfig['status']): StatusMatch | string {
  const codes: number[] = []
  const classes: number[] = []
  for (const s of Array.isArray(spec) ? spec as readonly (number | string)[] : [spec as number | string]) {
    if (typeof s === 'number' && Number.isInteger(s) && s >= 100 && s <= 599) codes.push(s)
    else if (typeof s === 'string' && /^[1-5]xx$/.test(s)) classes.push(Number(s[0]))
    else if (typeof s === 'string' && /^[1-5]\d\d$/.test(s)) codes.push(Number(s))
    else return `${JSON.stringify(s)} is not a status: write a code (404) or a class ('4xx')`
  }
  return { codes, classes }
}

/** Whether either status is one of `m`'s. */
export function statusIn(m: StatusMatch, a: number, b: number): boolean {
  return m.codes.includes(a) || m.codes.includes(b) || m.classes.includes(Math.floor(a / 100)) || m.classes.includes(Math.floor(b / 100))
}

/** A `compare.paths` entry, checked: body paths; wildcards only for a rename (the same path but its last key). */
function pathMap(m: { readonly legacy: string; readonly new: string }): PathMap | string {
  const legacy = parseRulePath(m.legacy)
  const next = parseRulePath(m.new)
  if (typeof legacy === 'string') return `legacy: ${legacy}`
  if (typeof next === 'string') return `new: ${next}`
  if (legacy.root !== 'body' || next.root !== 'body') return 'both sides must be body paths (body, body.data, …)'
  if (legacy.source === next.source) return 'legacy and new name the same path: nothing to map'
  if ([...legacy.segs, ...next.segs].some((s) => s.t === 'index')) return 'a mapped path names keys (body.data.items), not positions'
  const wild = (p: RulePath): boolean => p.segs.some((s) => s.t === 'any' || s.t === 'deep')
  if (legacy.segs.some((s) => s.t === 'deep') || next.segs.some((s) => s.t === 'deep')) return '** cannot be mapped: name the path, or use * for each item'
  if (wild(legacy) || wild(next)) {
    const same = legacy.segs.length === next.segs.length && legacy.segs.length > 0 &&
      JSON.stringify(legacy.segs.slice(0, -1)) === JSON.stringify(next.segs.slice(0, -1))
    const last = (p: RulePath): boolean => p.segs[p.segs.length - 1]?.t === 'key'
    if (!same || !last(legacy) || !last(next)) return 'with * both paths must be the same but for their last key (a renamed field: body.items[*].qty and body.items[*].quantity)'
  }
  return { legacy, new: next }
}
