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

const PLACEHOLDER = /__FICUS_ENV_(\d+)__/g
const NOT_A_REFERENCE = '"${" starts no variable reference: write ${NAME} or ${NAME:-default}, or $$ for a literal $'

export function protectRefs(text: string): ProtectedText {
  const refs: Ref[] = []
  /** Where each placeholder sits in the new text, and the length change once past it. */
  const spans: { from: number; to: number; start: number; shift: number }[] = []
  let shift = 0
  let out = ''
  let copied = 0
  for (const { start, end } of scanRefs(text)) {
    const original = text.slice(start, end)
    const placeholder = `__FICUS_ENV_${refs.length}__`
    refs.push({ placeholder, original, start })
    out += text.slice(copied, start) + placeholder
    copied = end
    const from = start + shift
    shift += placeholder.length - original.length
    spans.push({ from, to: from + placeholder.length, start, shift })
  }
  out += text.slice(copied)
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
 * `$$` and `${NAME}` / `${NAME:-default}` spans of the text, where a default may itself hold
 * references (`${NEW_URL:-${LEGACY_URL}}`). Anything else after `${` is not a reference and
 * is left in place (expandRefs then reports it).
 */
function scanRefs(text: string): { start: number; end: number }[] {
  const found: { start: number; end: number }[] = []
  let i = text.indexOf('$')
  while (i !== -1) {
    const end = text[i + 1] === '$' ? i + 2 : refEnd(text, i)
    if (end === -1) {
      i = text.indexOf('$', i + 1)
    } else {
      found.push({ start: i, end })
      i = text.indexOf('$', end)
    }
  }
  return found
}

/** End (exclusive) of the reference starting at `i`, or -1 when there is none. */
function refEnd(text: string, i: number): number {
  const m = /^\$\{[A-Za-z_][A-Za-z0-9_]*(\}|:-)/.exec(text.slice(i, i + 260))
  if (m === null) return -1
  if (m[1] === '}') return i + m[0].length
  for (let j = i + m[0].length; j < text.length && text[j] !== '\n';) {
    if (text[j] === '}') return j + 1
    if (text[j] === '$') {
      const inner = text[j + 1] === '$' ? j + 2 : refEnd(text, j)
      j = inner === -1 ? j + 1 : inner
    } else {
      j++
    }
  }
  return -1
}

/**
 * Expands the placeholders in the document's string values, in place. Values stay strings:
 * the schema converts them where it expects a number or a boolean (validate.ts), so
 * `port: ${PORT:-8080}` is 8080 while `token: ${TOKEN}` stays "12345678" when TOKEN is all digits.
 * Keys get their original text back (references are not expanded in keys).
 */
export function expandRefs(doc: Document, refs: readonly Ref[], env: Readonly<Record<string, string | undefined>>): EnvProblem[] {
  const problems: EnvProblem[] = []
  visit(doc, {
    Scalar (key, node, ancestors) {
      if (typeof node.value !== 'string') return
      const source = node.value
      if (key !== 'key' && source.replace(PLACEHOLDER, '').includes('${')) {
        problems.push({ node, path: jsPath(ancestors, node), message: NOT_A_REFERENCE })
        return
      }
      if (!source.includes('__FICUS_ENV_')) return
      if (key === 'key') {
        node.value = source.replace(PLACEHOLDER, (whole, i: string) => refs[Number(i)]?.original ?? whole)
        return
      }
      const path = jsPath(ancestors, node)
      node.value = source.replace(PLACEHOLDER, (whole, i: string) => {
        const ref = refs[Number(i)]
        if (ref === undefined) return whole
        if (ref.original === '$$') return '$'
        return expandRef(ref.original, env, (message) => problems.push({ node, path, message }))
      })
    }
  })
  return problems
}

/** The value of one `${NAME}` / `${NAME:-default}` (the default may hold references itself). */
function expandRef(ref: string, env: Readonly<Record<string, string | undefined>>, report: (message: string) => void): string {
  const body = ref.slice(2, -1)
  const sep = body.indexOf(':-')
  const name = sep === -1 ? body : body.slice(0, sep)
  const value = env[name]
  if (sep !== -1) {
    if (value !== undefined && value !== '') return value
    const fallback = body.slice(sep + 2)
    let out = ''
    let copied = 0
    for (const { start, end } of scanRefs(fallback)) {
      const inner = fallback.slice(start, end)
      out += fallback.slice(copied, start) + (inner === '$$' ? '$' : expandRef(inner, env, report))
      copied = end
    }
    return out + fallback.slice(copied)
  }
  if (value === undefined) {
    report(`environment variable ${name} is not set (use \${${name}:-default} to give a default)`)
    return ref
  }
  return value
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
