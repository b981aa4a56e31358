import { isPair, isScalar, isSeq, visit, type Document, type Scalar } from 'yaml'

/**
 * `${VAR}` and `${VAR:-default}` in routes.yaml (`$$` is a literal `$`).
 *
 * A reference is not valid YAML everywhere: inside a flow mapping such as
 * `admin: { token: ${FICUS_ADMIN_TOKEN:-} }` its braces are flow indicators. Expanding the
 * raw text first would fix that but let a variable's value inject YAML structure. So the
 * text is parsed with each reference swapped for a plain placeholder (protectRefs), and the
 * placeholders inside parsed string values are expanded afterwards (expandRefs). Positions
 * are mapped back to the original text for error messages.
 */

interface Ref {
  readonly placeholder: string
  /** What was written, `${…}` or `$$`. */
  readonly original: string
  readonly start: number
}

export interface ProtectedText {
  readonly text: string
  readonly refs: readonly Ref[]
  /** Offset in `text` → offset in the original. */
  toOriginal(offset: number): number
}

/** A reference that could not be expanded, with the node it is in. */
export interface EnvProblem {
  readonly node: Scalar
  readonly path: readonly (string | number)[]
  readonly message: string
}

const REF = /\$\$|\$\{[^}\n]*\}/g
const PLACEHOLDER = /__FICUS_ENV_(\d+)__/g
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

export function protectRefs(text: string): ProtectedText {
  const refs: Ref[] = []
  /** Where each placeholder sits in the new text, and the length change once past it. */
  const spans: { from: number; to: number; start: number; shift: number }[] = []
  let shift = 0
  const out = text.replace(REF, (original: string, start: number) => {
    const placeholder = `__FICUS_ENV_${refs.length}__`
    refs.push({ placeholder, original, start })
    const from = start + shift
    shift += placeholder.length - original.length
    spans.push({ from, to: from + placeholder.length, start, shift })
    return placeholder
  })
  return {
    text: out,
    refs,
    toOriginal (offset) {
      let before = 0
      for (const span of spans) {
        if (offset < span.from) break
        if (offset < span.to) return span.start // inside a placeholder: point at its reference
        before = span.shift
      }
      return offset - before
    }
  }
}

/**
 * Expands the placeholders in the document's string values, in place. An unquoted scalar
 * that is exactly one reference is re-typed, so `port: ${PORT:-8080}` is the number 8080.
 * Keys get their original text back (references are not expanded in keys).
 */
export function expandRefs(doc: Document, refs: readonly Ref[], env: Readonly<Record<string, string | undefined>>): EnvProblem[] {
  const problems: EnvProblem[] = []
  if (refs.length === 0) return problems
  visit(doc, {
    Scalar (key, node, ancestors) {
      if (typeof node.value !== 'string' || !node.value.includes('__FICUS_ENV_')) return
      const source = node.value
      if (key === 'key') {
        node.value = source.replace(PLACEHOLDER, (whole, i: string) => refs[Number(i)]?.original ?? whole)
        return
      }
      const path = jsPath(ancestors, node)
      let single = false
      const expanded = source.replace(PLACEHOLDER, (whole, i: string) => {
        const ref = refs[Number(i)]
        if (ref === undefined) return whole
        single = source === whole
        if (ref.original === '$$') return '$'
        const body = ref.original.slice(2, -1)
        const sep = body.indexOf(':-')
        const name = sep === -1 ? body : body.slice(0, sep)
        if (!VAR_NAME.test(name)) {
          problems.push({ node, path, message: `"${ref.original}" is not a variable reference (use \${NAME} or \${NAME:-default}; $$ is a literal $)` })
          return ref.original
        }
        const value = env[name]
        if (sep !== -1) return value === undefined || value === '' ? body.slice(sep + 2) : value
        if (value === undefined) {
          problems.push({ node, path, message: `environment variable ${name} is not set (use \${${name}:-default} to give a default)` })
          return ref.original
        }
        return value
      })
      node.value = single && node.type === 'PLAIN' ? retype(expanded) : expanded
    }
  })
  return problems
}

/** YAML 1.2 core-schema reading of an unquoted scalar, for the types config values use. */
function retype(s: string): string | number | boolean | null {
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s)
  if (s === 'true' || s === 'false') return s === 'true'
  if (s === 'null' || s === '~' || s === '') return s === '' ? '' : null
  return s
}

/** The JS path (`['routes', 2, 'new']`) of a node, from the ancestors `visit` reports. */
function jsPath(ancestors: readonly unknown[], node: unknown): (string | number)[] {
  const path: (string | number)[] = []
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i]
    const next = i + 1 < ancestors.length ? ancestors[i + 1] : node
    if (isPair(a) && isScalar(a.key)) path.push(String(a.key.value))
    else if (isSeq(a)) path.push(a.items.indexOf(next))
  }
  return path
}
