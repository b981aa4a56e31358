import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { LiveConfig } from '../config/live.js'
import { fail } from './admin-api.js'
import { CONSOLE_CSS, CONSOLE_HTML, CONSOLE_JS } from './console-page.js'
import { COOKIE, csrfMatches, SESSION_MS, tokenOf, type ConsoleSessions } from './console-sessions.js'
import type { ControlPlane } from './control-plane.js'

/**
 * The migration console (docs/console.md; DESIGN.md "Console"), on the admin listener only:
 * `/console` (the page), its two assets, and `/console/session` (sign in with an admin token,
 * who is signed in, sign out). The page reads and acts through the admin API, with the
 * session's cookie and CSRF token: the same checks, the same audit. Everything it loads
 * comes from here (Content-Security-Policy: 'self' only).
 */

export interface ConsoleOptions {
  readonly live: LiveConfig
  readonly sessions: ConsoleSessions
  readonly control: ControlPlane
}

/** Only this origin, no inline code, no frames: the page makes no request elsewhere. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

async function consolePlugin (fastify: FastifyInstance, opts: ConsoleOptions): Promise<void> {
  const { sessions, live, control } = opts
  const asset = (type: string, body: string) => async (_request: FastifyRequest, reply: FastifyReply) =>
    reply.type(type).header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store').header('x-frame-options', 'DENY').send(body)
  fastify.get('/console', asset('text/html; charset=utf-8', CONSOLE_HTML))
  fastify.get('/console/app.js', asset('text/javascript; charset=utf-8', CONSOLE_JS))
  fastify.get('/console/app.css', asset('text/css; charset=utf-8', CONSOLE_CSS))

  /** Who is signed in (and the CSRF token the page sends with changes), or 401. */
  fastify.get('/console/session', async (request, reply) => {
    const s = sessions.find(request.headers.cookie, live.current.admin.tokens)
    if (s === null) return fail(reply, 'FICUS_ERR_UNAUTHORIZED')
    return reply.header('cache-control', 'no-store').send({ who: s.name, role: s.role, csrf: s.csrf })
  })

  /** `{ token }`: signs in (a cookie, HttpOnly, SameSite=Strict); a wrong token is refused and audited. */
  fastify.post('/console/session', async (request, reply) => {
    if (!/^application\/json\s*(;|$)/i.test(request.headers['content-type'] ?? '')) return fail(reply, 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE')
    const body = request.body as Record<string, unknown> | null
    const presented = typeof body?.token === 'string' ? body.token : null
    if (presented === null) return fail(reply, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'the body must be { "token": "<an admin token>" }')
    const tokens = live.current.admin.tokens
    const token = tokens.length === 0 ? null : tokenOf(presented, tokens)
    if (tokens.length > 0 && token === null) {
      await control.refused(`console sign-in from ${request.ip}`)
      return fail(reply, 'FICUS_ERR_UNAUTHORIZED')
    }
    const s = sessions.open(token)
    const secure = request.protocol === 'https' ? '; Secure' : ''
    return reply.header('set-cookie', `${COOKIE}=${s.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}${secure}`)
      .header('cache-control', 'no-store').send({ who: s.caller.name, role: s.caller.role, csrf: s.csrf })
  })

  /** Signs out (with the CSRF token, as every change). */
  fastify.delete('/console/session', async (request, reply) => {
    const s = sessions.find(request.headers.cookie, live.current.admin.tokens)
    if (s !== null) {
      if (!csrfMatches(request.headers['x-ficus-csrf'], s.csrf)) return fail(reply, 'FICUS_ERR_CSRF')
      sessions.close(s.id)
    }
    return reply.header('set-cookie', `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`).code(204).send()
  })
}

export default fp(consolePlugin, { name: 'ficus-console', fastify: '5.x' })
