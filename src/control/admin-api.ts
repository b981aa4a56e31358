import { timingSafeEqual } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { AuditLog } from '../adapters/audit-log.js'
import type { BreakerView } from '../adapters/breakers.js'
import { emptySummary, WINDOW_MINUTES, type DivergenceSample, type Epoch, type EpochCause, type RouteSummary, type Since } from '../adapters/divergence-store.js'
import type { LiveConfig } from '../config/live.js'
import type { AdminToken } from '../config/schema.js'
import { parseDuration } from '../config/units.js'
import { csrfMatches, digest, type Caller, type ConsoleSessions } from './console-sessions.js'
import { ControlError, type ControlPlane } from './control-plane.js'
import { withDivergence } from './route-view.js'
import { syncRoutes } from './sync-api.js'
import type { TrafficWatch } from './traffic-watch.js'
import type { SyncControl } from './sync-control.js'
import { rampRoutes } from './ramp-api.js'
import type { RampControl } from './ramp-control.js'
import { verifyRoutes } from './verify-api.js'
import type { VerifyControl } from './verify-control.js'
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
  /** Dual writes: the outbox and the id map (`/admin/sync…`, `/admin/ids…`). */
  readonly sync: SyncControl
  /** Verify jobs run by Ficus (`/admin/verify…`). */
  readonly verify: VerifyControl
  /** Ramps (`/admin/ramp…`). */
  readonly ramp: RampControl
  /** The console's sessions: a browser signed in calls the admin API with its cookie and CSRF token. */
  readonly sessions: ConsoleSessions
  /** Each route's traffic per side over the last 5 minutes (`/admin/traffic`). */
  readonly traffic: TrafficWatch
}

/**
 * Where /admin/divergences reads from: the DivergenceStore, or in cluster mode the merge of
 * every worker's (src/cluster/divergences.ts).
 */
export interface Divergences {
  samples(route: string | undefined, limit: number, since?: Since): DivergenceSample[] | Promise<DivergenceSample[]>
  summary(route?: string, since?: Since): RouteSummary[] | Promise<RouteSummary[]>
  /** Starts the next epoch of each route (its counts start over); resolves once in effect. */
  newEpoch(routes: readonly string[], why: EpochCause, reason: string | null): Epoch[] | Promise<Epoch[]>
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
  limit: Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: 20 }),
  since: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })
const SummaryQuery = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1 })),
  since: Type.Optional(Type.String({ minLength: 1 }))
}, { additionalProperties: false })
/** Longest reason kept with a reset (characters). */
const MAX_REASON = 500
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
  let tokens: { name: string; role: AdminToken['role']; digest: Buffer }[] = []
  const current = (): { name: string; role: AdminToken['role']; digest: Buffer }[] => {
    if (opts.live.current.admin.tokens !== tokensOf) {
      tokensOf = opts.live.current.admin.tokens
      tokens = tokensOf.map((t) => ({ name: t.name, role: t.role, digest: digest(t.token) }))
    }
    return tokens
  }
  fastify.decorateRequest('adminCaller', 'local')

  await fastify.register(async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      const accepted = current()
      const change = !READ_METHODS.has(request.method)
      const what = `${request.method} ${request.url.split('?')[0] ?? ''} from ${request.ip}`
      // A bearer token (the CLI, scripts), or the console's session cookie (a browser).
      const bearer = request.headers.authorization === undefined ? null : callerOf(request.headers.authorization, accepted)
      const session = request.headers.authorization === undefined ? opts.sessions.find(request.headers.cookie, opts.live.current.admin.tokens) : null
      if (accepted.length > 0 && bearer === null && session === null) {
        reply.header('www-authenticate', 'Bearer realm="ficus-admin"')
        if (change) await control.refused(what)
        return fail(reply, 'FICUS_ERR_UNAUTHORIZED')
      }
      const caller = bearer ?? session ?? { name: 'local', role: 'operator' as const }
      // A browser sends the cookie on any request to this origin: a change also carries the session's CSRF token, which only the console's page has.
      if (change && session !== null && !csrfMatches(request.headers['x-ficus-csrf'], session.csrf)) {
        await control.refused(`${what}: console session without its CSRF token (x-ficus-csrf)`)
        return fail(reply, 'FICUS_ERR_CSRF')
      }
      if (change && caller.role === 'viewer') {
        await control.refused(`${what}: token ${caller.name} is a viewer`)
        return fail(reply, 'FICUS_ERR_FORBIDDEN', `token "${caller.name}" is a viewer (admin.tokens.${caller.name}.role): it reads, it does not change`)
      }
      request.adminCaller = caller.name
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
      const [breakers, summaries] = await Promise.all([opts.breakers.snapshots(), divergences.summary()])
      const recent = new Map(summaries.map((x) => [x.route, x.windows['5m'].divergenceRate]))
      return { routes: control.routes().map((r) => ({ ...withDivergence(r, recent.get(r.name) ?? null), breaker: breakers[r.name] ?? null })), flags: control.flagSource() }
    })

    /** Per route and side over the last 5 minutes: requests, errors, p50/p99; the actual share of new; the sync lag and dead letters now. */
    api.get('/traffic', async () => opts.traffic.view())

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

    /** Recent divergence samples, newest first; `since`: of the current epoch, or from a time on. */
    api.get('/divergences', { schema: { querystring: SamplesQuery } }, async (request: FastifyRequest) => {
      const q = request.query as Static<typeof SamplesQuery>
      if (q.route !== undefined) control.known(q.route)
      return { samples: await divergences.samples(q.route, q.limit, q.since === undefined ? undefined : parseSince(q.since, Date.now())) }
    })

    /** Per route: comparisons by outcome, divergence rate, the fields that differ most, since the epoch (or `since`), and the recent windows. */
    api.get('/divergences/summary', { schema: { querystring: SummaryQuery } }, async (request: FastifyRequest) => {
      const q = request.query as Static<typeof SummaryQuery>
      const since = q.since === undefined ? 'epoch' : parseSince(q.since, Date.now())
      if (q.route !== undefined) {
        control.known(q.route)
        return { routes: await divergences.summary(q.route, since) }
      }
      // Every shadowed route, also before its first comparison, and any route with records.
      const names = new Set(table.current.routes.filter((r) => r.shadow > 0).map((r) => r.name))
      const all = await divergences.summary(undefined, since)
      for (const s of all) names.add(s.route)
      const byName = new Map(all.map((s) => [s.route, s]))
      const routes: RouteSummary[] = []
      for (const n of [...names].sort()) routes.push(byName.get(n) ?? emptySummary(n))
      return { routes }
    })

    /** A new epoch for one route (`{ route }`) or every route (`{}`): their divergence counts start over. Audited. */
    api.post('/divergences/reset', async (request: FastifyRequest) => {
      const { route, reason } = parseReset(request.body)
      const names = await control.resetDivergences(route, reason, request.adminCaller)
      const epochs = await divergences.newEpoch(names, 'reset', reason)
      return { routes: names.map((name, i) => ({ route: name, epoch: epochs[i] })) }
    })

    // Dual writes: the outbox and the id map (sync-api.ts).
    syncRoutes(api, opts.sync)
    // Verify jobs run by Ficus (verify-api.ts).
    verifyRoutes(api, opts.verify)
    // Ramps (ramp-api.ts).
    rampRoutes(api, opts.ramp)
  }, { prefix: '/admin' })
}

/**
 * `since` of /admin/divergences: `epoch`, a duration back from now (`15m`, at most an hour),
 * or an ISO 8601 time within the last hour. Windows are kept per minute for an hour.
 */
export function parseSince(text: string, now: number): Since {
  if (text === 'epoch') return 'epoch'
  const back = parseDuration(text)
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text) ? Date.parse(text) : NaN
  const at = back !== undefined ? now - back : iso
  if (Number.isNaN(at)) throw new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', `since: must be epoch, a duration like 15m or 1h, or an ISO 8601 time like 2026-01-01T10:00:00Z (got ${JSON.stringify(text.slice(0, 64))})`)
  if (at < now - WINDOW_MINUTES * 60_000) throw new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', `since: counts are kept per minute for the last ${WINDOW_MINUTES} minutes; for more, since=epoch counts everything since the route's compare rules last changed or were reset`)
  return at
}

/** The body of POST /admin/divergences/reset: `{ route?, reason? }` (or none). */
function parseReset(body: unknown): { route: string | undefined; reason: string | null } {
  if (body === undefined || body === null) return { route: undefined, reason: null }
  if (typeof body !== 'object' || Array.isArray(body)) throw new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', 'the body must be a JSON object: { "route"?: name, "reason"?: text }')
  const b = body as Record<string, unknown>
  const problems: string[] = []
  for (const k of Object.keys(b)) if (k !== 'route' && k !== 'reason') problems.push(`unknown field "${k}"`)
  if (b.route !== undefined && (typeof b.route !== 'string' || b.route === '')) problems.push('route: must be a route name')
  if (b.reason !== undefined && b.reason !== null && (typeof b.reason !== 'string' || b.reason.length > MAX_REASON)) problems.push(`reason: must be text of at most ${MAX_REASON} characters`)
  if (problems.length > 0) throw new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', problems.join('; '))
  return { route: b.route as string | undefined, reason: (b.reason as string | null | undefined) ?? null }
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

/** The token the caller presented (its name and role), or null. Every token is compared (constant time, no early exit). */
function callerOf(header: string | undefined, tokens: readonly { name: string; role: AdminToken['role']; digest: Buffer }[]): Caller | null {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '')
  if (m === null) return null
  const presented = digest(m[1] as string)
  let found: Caller | null = null
  for (const t of tokens) if (timingSafeEqual(presented, t.digest)) found ??= { name: t.name, role: t.role }
  return found
}

/** An error answer from the catalogue (the admin API's and the console's). */
export async function fail(reply: FastifyReply, code: ErrorCode, detail?: string): Promise<FastifyReply> {
  const e = CATALOGUE[code]
  return reply.code(e.status).header('cache-control', 'no-store')
    .send(detail === undefined ? { error: e.message, code } : { error: e.message, code, detail })
}

export default fp(admin, { name: 'ficus-admin', fastify: '5.x' })
