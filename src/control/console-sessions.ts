import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { AdminToken } from '../config/schema.js'

/**
 * Sessions of the console (docs/console.md; DESIGN.md "Console"): signing in with an admin
 * token gives a session id (the cookie, HttpOnly, SameSite=Strict) and a CSRF token the page
 * sends with every change. A session is as good as its token: a reload that removes or
 * changes the token ends it at the next call. In memory, per process: a restart signs
 * everyone out.
 */

export const COOKIE = 'ficus_console'
/** A session lasts this long after sign-in, whatever is done with it. */
export const SESSION_MS = 12 * 60 * 60 * 1000
/** Sessions kept at most (the oldest go first). */
const MAX_SESSIONS = 1000

export interface Caller {
  readonly name: string
  readonly role: AdminToken['role']
}

interface Session extends Caller {
  /** sha256 of the token signed in with: the session ends when that token is no longer accepted. */
  readonly digest: Buffer
  readonly csrf: string
  readonly expires: number
}

export function digest (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** The token presented, compared with every accepted one in constant time; null when none matches. */
export function tokenOf (presented: string, tokens: readonly AdminToken[]): AdminToken | null {
  const d = digest(presented)
  let found: AdminToken | null = null
  for (const t of tokens) if (timingSafeEqual(d, digest(t.token))) found ??= t
  return found
}

export class ConsoleSessions {
  private readonly sessions = new Map<string, Session>()

  constructor (private readonly now: () => number = Date.now) {}

  /** A new session for a token's holder: its id (the cookie) and CSRF token. */
  open (token: AdminToken | null): { id: string; csrf: string; caller: Caller } {
    const id = randomBytes(32).toString('base64url')
    const csrf = randomBytes(32).toString('base64url')
    const caller: Caller = token === null ? { name: 'local', role: 'operator' } : { name: token.name, role: token.role }
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string)
    this.sessions.set(id, { ...caller, digest: token === null ? Buffer.alloc(0) : digest(token.token), csrf, expires: this.now() + SESSION_MS })
    return { id, csrf, caller }
  }

  /**
   * The session of a Cookie header, while its token is still accepted (`tokens`; none
   * configured: the console is open, as the admin API is); null otherwise.
   */
  find (cookieHeader: string | undefined, tokens: readonly AdminToken[]): (Caller & { readonly csrf: string; readonly id: string }) | null {
    const id = cookieOf(cookieHeader, COOKIE)
    if (id === null) return null
    const s = this.sessions.get(id)
    if (s === undefined) return null
    const valid = s.expires > this.now() && (tokens.length === 0 ? s.digest.length === 0 : tokens.some((t) => t.name === s.name && t.role === s.role && timingSafeEqual(digest(t.token), s.digest)))
    if (!valid) {
      this.sessions.delete(id)
      return null
    }
    return { name: s.name, role: s.role, csrf: s.csrf, id }
  }

  close (id: string): void {
    this.sessions.delete(id)
  }
}

/** Whether the header carries the session's CSRF token (constant time). */
export function csrfMatches (header: string | string[] | undefined, csrf: string): boolean {
  if (typeof header !== 'string') return false
  const a = Buffer.from(header)
  const b = Buffer.from(csrf)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** One cookie's value from a Cookie header, or null. */
export function cookieOf (header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return null
}
