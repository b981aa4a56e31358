import type { StickySpec } from './types.js'

/** What a sticky key can be read from; the caller fills it from the request. */
export interface StickyFacts {
  /** Node's lower-cased header object. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Raw query string, without the `?`. */
  readonly query: string
  /** Client address after trusted-hop handling (forward-headers.ts). */
  readonly clientIp: string
}

/**
 * The sticky key of a request: read from the first source in `sources` that the request
 * has (`sticky: [header:x-user-id, cookie:sid, ip]`), or undefined when it has none of them
 * (empty counts as none).
 * @example stickyKey([{ kind: 'header', name: 'x-user-id' }, { kind: 'ip' }], facts) // the header, else the client's address
 */
export function stickyKey(sources: readonly StickySpec[], facts: StickyFacts): string | undefined {
  for (const spec of sources) {
    const key = keyFrom(spec, facts)
    if (key !== undefined) return key
  }
  return undefined
}

/**
 * The key one source gives, or undefined when the request does not have it.
 * @example keyFrom({ kind: 'cookie', name: 'sid' }, facts) // 'abc' for `Cookie: a=1; sid=abc`
 */
export function keyFrom(spec: StickySpec, facts: StickyFacts): string | undefined {
  switch (spec.kind) {
    case 'header': {
      const v = facts.headers[spec.name]
      const s = Array.isArray(v) ? v[0] : v
      return s === undefined || s === '' ? undefined : utf8(s)
    }
    case 'cookie': {
      const v = facts.headers.cookie
      const s = v === undefined ? undefined : cookieValue(Array.isArray(v) ? v.join('; ') : v, spec.name)
      return s === undefined ? undefined : utf8(s)
    }
    case 'query': {
      if (facts.query === '') return undefined
      const v = new URLSearchParams(facts.query).get(spec.name)
      return v === null || v === '' ? undefined : v
    }
    case 'ip':
      return facts.clientIp === '' ? undefined : facts.clientIp
  }
}

/**
 * Node reads header bytes as latin1; the apps' Unleash SDKs hash the user id as the text it
 * is. A UTF-8 id ("José") is decoded back to that text so both land in the same bucket.
 */
function utf8(s: string): string {
  return /[\x80-\xff]/.test(s) ? Buffer.from(s, 'latin1').toString('utf8') : s
}

/** RFC 6265 §5.4 cookie-string lookup; the first pair with the name wins, quotes removed. */
function cookieValue(header: string, name: string): string | undefined {
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=')
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue
    let value = pair.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    return value === '' ? undefined : value
  }
  return undefined
}
