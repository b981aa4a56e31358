/**
 * The path Ficus routes on. The request is forwarded byte-for-byte, but it is matched
 * on the form the backend will resolve it to (RFC 3986 §6.2.2): percent-encoded
 * unreserved characters decoded, dot segments removed. `%2F` stays encoded, so it can
 * never act as a separator and move a request into another route.
 */

const UNRESERVED = /^[A-Za-z0-9\-._~]$/

/** Path part of an origin-form target (`/a/b?x=1` → `/a/b`). */
export function pathOf(target: string): string {
  const q = target.indexOf('?')
  return q === -1 ? target : target.slice(0, q)
}

/** Query part without `?`, or '' when there is none. */
export function queryOf(target: string): string {
  const q = target.indexOf('?')
  return q === -1 ? '' : target.slice(q + 1)
}

export function normalizePath(path: string): string {
  // Fast path: nothing to decode and no dot segment can be present.
  if (!path.includes('%') && !path.includes('/.')) return path
  return removeDotSegments(decodeUnreserved(path))
}

/** Decodes `%XX` of unreserved characters and upper-cases the hex of every other escape. */
export function decodeUnreserved(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (whole, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16))
    return UNRESERVED.test(ch) ? ch : whole.toUpperCase()
  })
}

/** RFC 3986 §5.2.4, on the segments of an absolute path. */
function removeDotSegments(path: string): string {
  const input = path.split('/')
  const out: string[] = []
  for (let i = 1; i < input.length; i++) {
    const seg = input[i] as string
    const last = i === input.length - 1
    if (seg === '.') {
      if (last) out.push('')
    } else if (seg === '..') {
      out.pop()
      if (last) out.push('')
    } else {
      out.push(seg)
    }
  }
  return '/' + out.join('/')
}
