import { createHash, timingSafeEqual } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { DivergenceStore } from '../adapters/divergence-store.js'
import { CATALOGUE, type ErrorCode } from '../errors.js'
import type { RouteTableRef } from './route-table.js'

export interface AdminOptions {
  /** Bearer token every `/admin/*` call must carry; undefined = none configured. */
  readonly token: string | undefined
  readonly table: RouteTableRef
  readonly divergences: DivergenceStore
}

/** Samples a single call returns at most. */
export const MAX_LIMIT = 1000

const SamplesQuery = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1 })),
  limit: Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: 20 })
}, { additionalProperties: false })
const SummaryQuery = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })

/**
 * The admin API under `/admin` (DESIGN.md "Admin port"): JSON only, errors from the
 * catalogue, and, when `admin.token` is set, a bearer token on every call (compared in
 * constant time). /metrics, /healthz and /readyz stay open for scrapers and probes.
 */
async function admin(fastify: FastifyInstance, opts: AdminOptions): Promise<void> {
  const { table, divergences } = opts
  const expected = opts.token === undefined ? null : digest(opts.token)

  await fastify.register(async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      if (expected === null) return
      const m = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')
      if (m === null || !timingSafeEqual(digest(m[1] as string), expected)) {
        reply.header('www-authenticate', 'Bearer realm="ficus-admin"')
        return fail(reply, 'FICUS_ERR_UNAUTHORIZED')
      }
    })
    api.setErrorHandler((err: FastifyError, _request, reply) => {
      if (err.validation !== undefined) return fail(reply, 'FICUS_ERR_BAD_ADMIN_REQUEST', validationDetail(err))
      api.log.error({ err }, 'admin request failed')
      return fail(reply, 'FICUS_ERR_INTERNAL')
    })
    api.setNotFoundHandler((request, reply) => fail(reply, 'FICUS_ERR_ADMIN_NOT_FOUND', `${request.method} ${request.url.split('?')[0]}`))

    const knownRoute = (route: string | undefined, reply: FastifyReply): boolean => {
      if (route === undefined) return true
      const t = table.current
      if (route === t.defaultRoute.name || t.routes.some((r) => r.name === route)) return true
      void fail(reply, 'FICUS_ERR_UNKNOWN_ROUTE', `no route named "${route}" (routes: ${t.routes.map((r) => r.name).join(', ')})`)
      return false
    }

    /** Recent divergence samples, newest first. */
    api.get('/divergences', { schema: { querystring: SamplesQuery } }, async (request: FastifyRequest, reply) => {
      const q = request.query as Static<typeof SamplesQuery>
      if (!knownRoute(q.route, reply)) return reply
      return { samples: divergences.samples(q.route, q.limit) }
    })

    /** Per route: comparisons by outcome, divergence rate, the fields that differ most. */
    api.get('/divergences/summary', { schema: { querystring: SummaryQuery } }, async (request: FastifyRequest, reply) => {
      const q = request.query as Static<typeof SummaryQuery>
      if (!knownRoute(q.route, reply)) return reply
      if (q.route !== undefined) return { routes: divergences.summary(q.route) }
      // Every shadowed route, also before its first comparison, and any route with records.
      const names = new Set(table.current.routes.filter((r) => r.shadow > 0).map((r) => r.name))
      const all = divergences.summary()
      for (const s of all) names.add(s.route)
      const byName = new Map(all.map((s) => [s.route, s]))
      return { routes: [...names].sort().map((n) => byName.get(n) ?? divergences.summary(n)[0]) }
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

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

async function fail(reply: FastifyReply, code: ErrorCode, detail?: string): Promise<FastifyReply> {
  const e = CATALOGUE[code]
  return reply.code(e.status).header('cache-control', 'no-store')
    .send(detail === undefined ? { error: e.message, code } : { error: e.message, code, detail })
}

export default fp(admin, { name: 'ficus-admin', fastify: '5.x' })
