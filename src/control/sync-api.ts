import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { parseDuration } from '../config/units.js'
import type { Backend } from '../core/types.js'
import { bad, fields, reasonOf, type Body } from './admin-body.js'
import type { SyncControl } from './sync-control.js'

/**
 * The admin API of dual writes (docs/sync.md "Operating dual writes"), registered by
 * admin-api.ts inside `/admin`, so its token, JSON-only rule, audit of refusals and error
 * answers apply: `/admin/sync…` (the outbox) and `/admin/ids…` (the id map). Parameters are
 * checked here, each problem said; what they do is SyncControl's.
 */

/** Longest id accepted (characters). */
const MAX_ID = 512
/** Entries one call lists at most. */
const MAX_LIMIT = 1000
/** A drain waits this long unless told (`timeout`), and never longer than MAX_DRAIN_MS. */
const DRAIN_DEFAULT_MS = 30_000
const MAX_DRAIN_MS = 15 * 60_000
const ENTITY = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/

export function syncRoutes(api: FastifyInstance, sync: SyncControl): void {
  // A drain in progress must not hold the admin listener open at shutdown: it answers with what is left.
  api.addHook('preClose', async () => { sync.abortWaits() })

  /** Per route and side: pending writes, dead letters, lag; intents, paused routes, id map counts. */
  api.get('/sync', async () => sync.status())

  /** Dead letters, oldest first (`limit`: 1–1000, default 50). */
  api.get('/sync/dead-letters', async (request: FastifyRequest) => {
    const q = request.query as Record<string, unknown>
    for (const k of Object.keys(q)) if (k !== 'limit') throw bad(`unknown parameter "${k}"`)
    const limit = q.limit === undefined ? 50 : Number(q.limit)
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw bad(`limit: must be an integer from 1 to ${MAX_LIMIT} (got ${JSON.stringify(q.limit)})`)
    return { deadLetters: await sync.deadLetters(limit) }
  })

  /** One entry, whole: headers, body (JSON as text, else base64), ids. */
  api.get('/sync/entries/:seq', async (request: FastifyRequest) => {
    const { seq } = request.params as { seq: string }
    return { entry: await sync.entry(seqOf(/^[1-9]\d{0,14}$/.test(seq) ? Number(seq) : seq)) }
  })

  /** `{ seq, reason? }`: a dead letter is delivered again (audited). */
  api.post('/sync/replay', async (request: FastifyRequest) => {
    const b = fields(request.body, ['seq', 'reason'], '{ "seq": number, "reason"?: text }')
    return { entry: await sync.replay(seqOf(b.seq), request.adminCaller, reasonOf(b)) }
  })

  /** `{ seq, reason? }`: an entry is never delivered (audited). */
  api.post('/sync/skip', async (request: FastifyRequest) => {
    const b = fields(request.body, ['seq', 'reason'], '{ "seq": number, "reason"?: text }')
    return { skipped: await sync.skip(seqOf(b.seq), request.adminCaller, reasonOf(b)) }
  })

  /** `{ route?, reason? }`: delivery of a route (or all) waits; writes are still recorded (audited). */
  api.post('/sync/pause', async (request: FastifyRequest) => {
    const b = fields(request.body ?? {}, ['route', 'reason'], '{ "route"?: name, "reason"?: text }')
    return { paused: await sync.setPaused(routeOf(b), true, request.adminCaller, reasonOf(b)) }
  })

  api.post('/sync/resume', async (request: FastifyRequest) => {
    const b = fields(request.body ?? {}, ['route', 'reason'], '{ "route"?: name, "reason"?: text }')
    return { paused: await sync.setPaused(routeOf(b), false, request.adminCaller, reasonOf(b)) }
  })

  /** `{ route?, timeout? }`: answers once nothing of the route (or any) is pending, or at the timeout, with what is left. */
  api.post('/sync/drain', async (request: FastifyRequest, reply: FastifyReply) => {
    const b = fields(request.body ?? {}, ['route', 'timeout'], '{ "route"?: name, "timeout"?: "30s" }')
    let timeoutMs = DRAIN_DEFAULT_MS
    if (b.timeout !== undefined) {
      const ms = typeof b.timeout === 'string' ? parseDuration(b.timeout) : undefined
      if (ms === undefined || ms > MAX_DRAIN_MS) throw bad(`timeout: must be a duration up to 15m, like "30s" or "2m" (got ${JSON.stringify(b.timeout)})`)
      timeoutMs = ms
    }
    // The caller went away: stop waiting.
    const gone = new AbortController()
    reply.raw.once('close', () => { if (!reply.raw.writableFinished) gone.abort() })
    return sync.drain(routeOf(b), timeoutMs, gone.signal)
  })

  /** The pair of one id: `/admin/ids/order/legacy/26`. */
  api.get('/ids/:entity/:side/:id', async (request: FastifyRequest) => {
    const p = request.params as { entity: string; side: string; id: string }
    if (!ENTITY.test(p.entity)) throw bad(`entity: must be an entity name like order (got ${JSON.stringify(p.entity)})`)
    return { pair: await sync.lookup(p.entity, sideOf(p.side, 'side'), p.id) }
  })

  /** `{ entity, legacy, new, origin?, reason? }`: sets a pair by hand (audited); one that contradicts the map is 409. */
  api.put('/ids', async (request: FastifyRequest) => {
    const b = fields(request.body, ['entity', 'legacy', 'new', 'origin', 'reason'], '{ "entity": name, "legacy": id, "new": id, "origin"?: "legacy" | "new", "reason"?: text }')
    const problems: string[] = []
    if (typeof b.entity !== 'string' || !ENTITY.test(b.entity)) problems.push('entity: must be an entity name like order')
    for (const side of ['legacy', 'new'] as const) {
      const v = b[side]
      if (typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v))) problems.push(`${side}: must be the record's id on ${side} (text or a number)`)
      else if (String(v) === '' || String(v).length > MAX_ID) problems.push(`${side}: must be 1 to ${MAX_ID} characters`)
    }
    if (b.origin !== undefined && b.origin !== 'legacy' && b.origin !== 'new') problems.push('origin: must be legacy or new (the side that created the record; default legacy)')
    const reason = reasonOf(b, problems)
    if (problems.length > 0) throw bad(problems.join('; '))
    return sync.setIds(b.entity as string, String(b.legacy), String(b.new), (b.origin as Backend | undefined) ?? 'legacy', request.adminCaller, reason)
  })
}

/** An outbox entry's seq: a positive integer (a JSON number, or the digits of a path segment). */
function seqOf(v: unknown): number {
  const n = typeof v === 'number' ? v : NaN
  if (!Number.isSafeInteger(n) || n < 1) {
    throw bad(`seq: ${v === undefined ? 'is required' : `must be a positive integer (got ${JSON.stringify(v)})`}: an outbox entry's number, as ficus sync dead-letters lists them`)
  }
  return n
}

function routeOf(b: Body): string | undefined {
  if (b.route === undefined) return undefined
  if (typeof b.route !== 'string' || b.route === '' || b.route === '*') throw bad('route: must be a route name (leave it out for every route)')
  return b.route
}

function sideOf(v: string, name: string): Backend {
  if (v === 'legacy' || v === 'new') return v
  throw bad(`${name}: must be legacy or new (got ${JSON.stringify(v)})`)
}
