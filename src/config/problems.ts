import { isMap, LineCounter, type Document, type Node } from 'yaml'
import type { ProtectedText } from './expand-env.js'

/** A key path in routes.yaml: `['routes', 2, 'new']`. */
export type Path = readonly (string | number)[]

/** One problem in the file: where (line, column, key path) and what. */
export interface ConfigProblem {
  readonly line: number
  readonly col: number
  readonly path: string
  readonly message: string
}

/** Thrown when routes.yaml cannot be used; `problems` lists every problem found, in file order. */
export class ConfigError extends Error {
  readonly code = 'FICUS_ERR_CONFIG_INVALID'
  constructor (readonly file: string, readonly problems: readonly ConfigProblem[]) {
    super(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
      problems.map((p) => `  ${formatProblem(file, p)}`).join('\n'))
    this.name = 'ConfigError'
  }
}

export function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}:${p.col}` : file
  return p.path === '' ? `${where}: ${p.message}` : `${where}: ${p.path}: ${p.message}`
}

/** `['routes', 2, 'new']` → `routes[2].new`. */
export function formatPath(path: Path): string {
  let s = ''
  for (const k of path) {
    if (typeof k === 'number') s += `[${k}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k)) s += s === '' ? k : `.${k}`
    else s += `[${JSON.stringify(k)}]`
  }
  return s
}

/**
 * Line and column in the original text of an offset in the parsed one. They differ: the
 * parsed text has a placeholder for each `${…}` (expand-env.ts). No offset: line 0.
 */
export function positions(text: string, src: ProtectedText): (offset: number | undefined) => { line: number; col: number } {
  const lines = new LineCounter()
  lines.addNewLine(0)
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines.addNewLine(i + 1)
  return (offset) => (offset === undefined ? { line: 0, col: 0 } : lines.linePos(src.toOriginal(offset)))
}

/** Offset of the value at `path` (or of `key` inside it), falling back to the nearest ancestor. */
export function locate(doc: Document, path: Path, key?: string): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as Node | undefined
    if (node === undefined || node === null) continue
    if (n === path.length && key !== undefined && isMap(node)) {
      const pair = node.items.find((it) => (it.key as { value?: unknown } | null)?.value === key)
      const keyRange = (pair?.key as Node | undefined)?.range
      if (keyRange !== undefined && keyRange !== null) return keyRange[0]
    }
    if (node.range !== undefined && node.range !== null) return node.range[0]
  }
  return undefined
}

/** In file order; problems without a place (line 0) first. */
export function sorted(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.col - b.col)
}
