import { decodeUnreserved } from './normalize-path.js'
import type { PathPattern } from './types.js'

const PARAM = /^:[A-Za-z_][A-Za-z0-9_]*$/
const LITERAL = /^[A-Za-z0-9\-._~!$&'()+,;=@%]*$/

/**
 * Parses `match.path`. Returns the pattern, or a message saying what is wrong with it.
 * @example parsePattern('/api/orders/:id') // { segments: ['api', 'orders', null], prefix: false }
 */
export function parsePattern(source: string): PathPattern | string {
  if (!source.startsWith('/')) return 'must start with "/"'
  if (/[?#]/.test(source)) return 'must be a path without "?" or "#"'
  const parts = source.slice(1).split('/')
  let prefix = false
  if (parts[parts.length - 1] === '*') {
    prefix = true
    parts.pop()
  }
  const segments: (string | null)[] = []
  for (const part of parts) {
    // Requests are matched after dot segments are resolved (normalize-path.ts): such a
    // pattern could never match anything.
    if (part === '.' || part === '..') return `"${part}" segments never match: requests are matched with dot segments resolved`
    if (part.includes('*')) return '"*" is only allowed as the whole last segment ("/prefix/*")'
    if (part.startsWith(':')) {
      if (!PARAM.test(part)) return `bad parameter "${part}" (use :name with letters, digits, _)`
      segments.push(null)
    } else {
      if (!LITERAL.test(part)) return `segment "${part}" has characters that are not allowed in a path`
      // Same normal form as request paths (normalize-path.ts), so `%7E` and `~` are one route.
      segments.push(decodeUnreserved(part))
    }
  }
  // `/` alone is the exact root; `/*` (segments empty, prefix) is everything.
  if (!prefix && segments.length === 1 && segments[0] === '') return { source, segments: [''], prefix }
  return { source, segments, prefix }
}

/**
 * Whether a normalized request path matches. `path` always starts with `/`.
 * Parameters match one non-empty segment; a prefix pattern also matches its own root.
 */
export function matchesPattern(p: PathPattern, path: string): boolean {
  const segs = p.segments
  const n = segs.length
  let pos = 1 // after the leading '/'
  for (let i = 0; i < n; i++) {
    const seg = segs[i] as string | null
    if (pos > path.length) return false
    let end = path.indexOf('/', pos)
    if (end === -1) end = path.length
    if (seg === null) {
      if (end === pos) return false
    } else if (end - pos !== seg.length || !path.startsWith(seg, pos)) {
      return false
    }
    pos = end + 1
  }
  if (p.prefix) return true
  // exact: the last segment must have ended the path
  return pos === path.length + 1
}

/**
 * Whether every path `b` can match is also matched by `a` (so `b`, listed after `a`
 * with no more methods, can never be reached).
 */
export function patternCovers(a: PathPattern, b: PathPattern): boolean {
  const as = a.segments
  const bs = b.segments
  if (a.prefix) {
    if (bs.length < as.length) return false
  } else if (b.prefix || bs.length !== as.length) {
    return false
  }
  for (let i = 0; i < as.length; i++) {
    const x = as[i]
    const y = bs[i]
    if (x === null) {
      if (y === '') return false // a parameter never matches an empty segment
      continue
    }
    if (y === null || x !== y) return false
  }
  return true
}
