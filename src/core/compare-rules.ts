import { parseRulePath, type RulePath } from './rule-path.js'

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

/** A route's `compare:` block as written in routes.yaml. */
export interface CompareConfig {
  readonly headers?: readonly string[]
  readonly ignore?: readonly string[]
  readonly arrays?: Readonly<Record<string, 'unordered' | { readonly key: string }>>
  readonly numbers?: { readonly tolerance?: number }
  readonly treatAsEqual?: readonly ('string-number' | 'null-missing')[]
  readonly redact?: readonly string[]
}

/** Headers compared when a route names none: the media type decides how a body is read. */
export const DEFAULT_COMPARED_HEADERS = ['content-type']
/** Differences kept per comparison (samples stay small; the rest is counted as truncated). */
export const MAX_DIFFERENCES = 50

export interface CompiledCompare {
  readonly rules: CompareRules
  /** Body paths whose values never appear in divergence samples. */
  readonly redact: readonly RulePath[]
}

/**
 * Compiles a `compare:` block; `problems` gets `[path-within-compare, message]` for each
 * rule that cannot be read (load-config reports them with their place in the file).
 */
export function compileCompare(c: CompareConfig | undefined, problems: [(string | number)[], string][] = []): CompiledCompare {
  const paths = (list: readonly string[] | undefined, where: string, allow: 'any' | 'body'): RulePath[] =>
    (list ?? []).flatMap((source, i) => {
      const p = parseRulePath(source)
      if (typeof p === 'string') {
        problems.push([[where, i], p])
        return []
      }
      if (allow === 'body' && p.root !== 'body') {
        problems.push([[where, i], 'must be a body path (body.…)'])
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
  const equal = new Set(c?.treatAsEqual ?? [])
  return {
    rules: {
      headers: (c?.headers ?? DEFAULT_COMPARED_HEADERS).map((h) => h.toLowerCase()),
      ignore: paths(c?.ignore, 'ignore', 'any'),
      arrays,
      tolerance: c?.numbers?.tolerance ?? 0,
      stringNumbers: equal.has('string-number'),
      nullMissing: equal.has('null-missing'),
      maxDifferences: MAX_DIFFERENCES
    },
    redact: paths(c?.redact, 'redact', 'body')
  }
}
