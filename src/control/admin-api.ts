import { createHash, timingSafeEqual } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { AuditLog } from '../adapters/audit-log.js'
import type { BreakerView } from '../adapters/breakers.js'
import { emptySummary, type DivergenceSample, type RouteSummary } from '../adapters/divergence-store.js'
import type { LiveConfig } from '../config/live.js'
import type { AdminToken } from '../config/schema.js'
import { ControlError, type ControlPlane } from './control-plane.js'
import { declaresBody } from '../core/forward-headers.js'
import { parsePatch, parseRollback } from '../core/overrides.js'
import { CATALOGUE, type ErrorCode } from '../errors.js'
import type { RouteTableRef } from '../core/route-table.js'

export interface AdminOptions {
  /** admin.tokens (accepted on `/admin/*`; the name is who the audit log names), read per call: a reload may change them. */
  readonly live: LiveConfig
  readonly table: RouteTableRef
  readonly divergences: Divergences
  /** new's circuit breakers, shown with each route. */
  readonly breakers: BreakerSource
  readonly control: ControlPlane
  readonly audit: AuditLog
}

/**
 * Where /admin/divergences reads from: the DivergenceStore, or in cluster mode the merge of
 * every worker's (src/cluster/divergences.ts).
 */
export interface Divergences {
  samples(route: string | undefined, limit: number): DivergenceSample[] | Promise<DivergenceSample[]>
  summary(route?: string): RouteSummary[] | Promise<RouteSummary[]>
}

/** Where GET /admin/routes reads the breakers: this process's, or in cluster mode every worker's, merged. */
export interface BreakerSource {
  snapshots(): Record<string, BreakerView> | Promise<Record<string, BreakerView>>
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling the admin API: a token's name, or `local` when none is configured. */
    adminCaller: string
  }
}

/** Samples a single call returns at most. */
const MAX_LIMIT = 1000

const SamplesQuery = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1 })),
  limit: Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: 20 })
}, { additionalProperties: false })
const SummaryQuery = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })
const AuditQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: 50 })
}, { additionalProperties: false })
const RouteParams = Type.Object({ name: Type.String() })

/** Methods that change something: JSON bodies only, refusals audited. */
const READ_METHODS = new Set(['GET', 'HEAD'])

/**
 * The admin API under `/admin` (README "Admin port", docs/control.md): JSON only, errors from the
 * catalogue, and, when tokens are configured, a bearer token on every call (compared in
 * constant time; a refused change is audited). /metrics, /healthz and /readyz stay open
 * for scrapers and probes.
 */
async function admin(fastify: FastifyInstance, opts: AdminOptions): Promise<void> {
  const { table, divergences, control, audit } = opts
  let tokensOf: readonly AdminToken[] = []
  let tokens: { name: string; digest: Buffer }[] = []
  const current = (): { name: string; digest: Buffer }[] => {
    if (opts.live.current.admin.tokens !== tokensOf) {
      tokensOf = opts.live.current.admin.tokens
      tokens = tokensOf.map((t) => ({ name: t.name, digest: digest(t.token) }))
    }
    return tokens
  }
  fastify.decorateRequest('adminCaller', 'local')

  await fastify.register(async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      const accepted = current()
      if (accepted.length > 0) {
        const caller = callerOf(request.headers.authorization, accepted)
        if (caller === null) {
          reply.header('www-authenticate', 'Bearer realm="ficus-admin"')
          if (!READ_METHODS.has(request.method)) await control.refused(`${request.method} ${request.url.split('?')[0] ?? ''} from ${request.ip}`)
          return fail(reply, 'FICUS_ERR_UNAUTHORIZED')
        }
        request.adminCaller = caller
      }
      // A browser form or a text body never changes traffic (and cannot be sent cross-site
      // without a CORS preflight as JSON). That holds for empty bodies too: a form with no
      // fields posts an empty body with its type, and fetch(…, { mode: 'no-cors' }) or
      // sendBeacon() post no body and no type, but a browser always marks them (Origin,
      // Sec-Fetch-Site). Only curl-like clients may send a change with neither body nor type.
      const type = request.headers['content-type']
      const fromBrowser = request.headers.origin !== undefined || request.headers['sec-fetch-site'] !== undefined
      if (!READ_METHODS.has(request.method) && (declaresBody(request.headers) || type !== undefined || fromBrowser) && !/^application\/json\s*(;|$)/i.test(type ?? '')) {
        return fail(reply, 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE', `got ${type === undefined ? 'no Content-Type' : `Content-Type: ${type}`}${fromBrowser && type === undefined ? ' from a browser' : ''}`)
      }
    })
    api.setErrorHandler((err: FastifyError, _request, reply) => {
      if (err instanceof ControlError) return fail(reply, err.code, err.detail)
      if (err.validation !== undefined) return fail(reply, 'FICUS_ERR_BAD_ADMIN_REQUEST', validationDetail(err))
      if (err.statusCode === 415) return fail(reply, 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE', err.message)
      if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return fail(reply, 'FICUS_ERR_BAD_ADMIN_REQUEST', err.message)
      api.log.error({ err }, 'admin request failed')
      return fail(reply, 'FICUS_ERR_INTERNAL')
    })
    api.setNotFoundHandler((request, reply) => fail(reply, 'FICUS_ERR_ADMIN_NOT_FOUND', `${request.method} ${request.url.split('?')[0]}`))

    /** Every route with its effective new/shadow, where each comes from, and its last change. */
    api.get('/routes', async () => {
      const breakers = await opts.breakers.snapshots()
      return { routes: control.routes().map((r) => ({ ...r, breaker: breakers[r.name] ?? null })), flags: control.flagSource() }
    })

    /** Sets or clears (null) a route's overrides: `{ new?, shadow?, reason? }`. */
    api.patch('/routes/:name', { schema: { params: RouteParams } }, async (request: FastifyRequest) => {
      const { name } = request.params as Static<typeof RouteParams>
      const parsed = parsePatch(request.body)
      if ('problems' in parsed) throw new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', parsed.problems.join('; '))
      return { route: await control.patch(name, parsed.patch, request.adminCaller) }
    })

    /** `new: 0` for one route (`{ route }`) or every route (`{}`), effective for the next request. */
    api.post('/rollback', async (request: FastifyRequest) => {
      const parsed = parseRollback(request.body)
      if ('problems' in parsed) throw new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', parsed.problems.join('; '))
      const routes = await control.rollback(parsed.rollback.route, parsed.rollback.reason ?? null, request.adminCaller)
      return { routes }
    })

    /** The audit log, newest first. */
    api.get('/audit', { schema: { querystring: AuditQuery } }, async (request: FastifyRequest) => {
      const q = request.query as Static<typeof AuditQuery>
      return { entries: audit.latest(q.limit) }
    })

    /** Recent divergence samples, newest first. */
    api.get('/divergences', { schema: { querystring: SamplesQuery } }, async (request: FastifyRequest) => {
      const q = request.query as Static<typeof SamplesQuery>
      if (q.route !== undefined) control.known(q.route)
      return { samples: await divergences.samples(q.route, q.limit) }
    })

    /** Per route: comparisons by outcome, divergence rate, the fields that differ most. */
    api.get('/divergences/summary', { schema: { querystring: SummaryQuery } }, async (request: FastifyRequest) => {
      const q = request.query as Static<typeof SummaryQuery>
      if (q.route !== undefined) {
        control.known(q.route)
        return { routes: await divergences.summary(q.route) }
      }
      // Every shadowed route, also before its first comparison, and any route with records.
      const names = new Set(table.current.routes.filter((r) => r.shadow > 0).map((r) => r.name))
      const all = await divergences.summary()
      for (const s of all) names.add(s.route)
      const byName = new Map(all.map((s) => [s.route, s]))
      const routes: RouteSummary[] = []
      for (const n of [...names].sort()) routes.push(byName.get(n) ?? emptySummary(n))
      return { routes }
    })
  }, { prefix: '/admin' })
}

/** `limit: must be <= 1000; unknown parameter "x"` from ajv's errors. */
function validationDetail(err: FastifyError): string {
  return (err.validation ?? []).map((v) => {
    const extra = (v.params as { additionalProperty?: string }).additionalProperty
    if (extra !== undefined) return `unknown parameter "${extra}"`
    const name = v.instancePath.replace(/^\//, '').replace(/\//g, '.')
    return name === '' ? `${v.message ?? 'is invalid'}` : `${name}: ${v.message ?? 'is invalid'}`
  }).join('; ')
}

/** The name of the token the caller presented, or null. Every token is compared (constant time, no early exit). */
function callerOf(header: string | undefined, tokens: readonly { name: string; digest: Buffer }[]): string | null {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '')
  if (m === null) return null
  const presented = digest(m[1] as string)
  let found: string | null = null
  for (const t of tokens) if (timingSafeEqual(presented, t.digest)) found ??= t.name
  return found
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

async function fail(reply: FastifyReply, code: ErrorCode, detail?: string): Promise<FastifyReply> {
  const e = CATALOGUE[code]
  return reply.code(e.status).header('cache-control', 'no-store')
    .send(detail === undefined ? { error: e.message, code } : { error: e.message, code, detail })
}

export default fp(admin, { name: 'ficus-admin', fastify: '5.x' })
