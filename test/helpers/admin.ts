import type { IncomingHttpHeaders } from 'node:http'
import { request } from 'undici'
import type { AuditEntry } from '../../src/adapters/audit-log.js'
import type { DivergenceSample, RouteSummary } from '../../src/adapters/divergence-store.js'
import type { RouteView } from '../../src/control/route-view.js'

/**
 * Calls to a Ficus admin port, as an operator's tool makes them: the one way tests talk to
 * /admin/* (and, when a test needs their answer's details, /metrics, /healthz and /readyz).
 */

/** An admin base URL (`http://127.0.0.1:PORT`), or what has one (a TestFicus). */
export type AdminTarget = string | { readonly adminUrl: string }

export interface AdminOptions {
  /** Sent as JSON, with `Content-Type: application/json` (unless `headers` sets one). */
  readonly json?: unknown
  /** Sent as given, with no Content-Type unless `headers` has one (a form post, malformed JSON…). */
  readonly body?: string
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string
  /** Extra request headers; they win over what `json` and `token` add. */
  readonly headers?: Record<string, string>
}

export type Json = Record<string, unknown>

export interface AdminAnswer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly text: string
  /** The answer parsed as JSON; `{}` when it is empty or not JSON (`text` has it as sent). */
  readonly body: Json
}

/** Bounds each call: a hung admin port fails the call, not the test file's timeout. */
const CALL_TIMEOUT_MS = 15_000

const baseOf = (target: AdminTarget): string => (typeof target === 'string' ? target : target.adminUrl)

/** One call to the admin port. */
export async function admin(target: AdminTarget, method: string, path: string, opts: AdminOptions = {}): Promise<AdminAnswer> {
  const headers: Record<string, string> = {
    ...(opts.json === undefined ? {} : { 'content-type': 'application/json' }),
    ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }),
    ...opts.headers
  }
  const body = opts.json === undefined ? opts.body : JSON.stringify(opts.json)
  const r = await request(baseOf(target) + path, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
    headersTimeout: CALL_TIMEOUT_MS,
    bodyTimeout: CALL_TIMEOUT_MS
  })
  const text = await r.body.text()
  let parsed: Json = {}
  try {
    if (text !== '') parsed = JSON.parse(text) as Json
  } catch { /* /metrics and other text answers: see `text` */ }
  return { status: r.statusCode, headers: r.headers, text, body: parsed }
}

/** Who is calling, for the typed reads below. */
export type Caller = Pick<AdminOptions, 'token' | 'headers'>

/** A GET that must answer 200: anything else fails with the status and the answer. */
async function read(target: AdminTarget, path: string, caller: Caller): Promise<Json> {
  const r = await admin(target, 'GET', path, caller)
  if (r.status !== 200) throw new Error(`GET ${path} answered ${r.status}: ${r.text}`)
  return r.body
}

/** GET /admin/routes: every route with its effective shares and where they come from. */
export async function routes(target: AdminTarget, caller: Caller = {}): Promise<RouteView[]> {
  return (await read(target, '/admin/routes', caller)).routes as RouteView[]
}

/** GET /admin/audit (newest first); `query` as in `?limit=2`. */
export async function audit(target: AdminTarget, query = '', caller: Caller = {}): Promise<AuditEntry[]> {
  return (await read(target, `/admin/audit${query}`, caller)).entries as AuditEntry[]
}

/** GET /admin/divergences (newest first); `query` as in `?route=orders&limit=1`. */
export async function samples(target: AdminTarget, query = '', caller: Caller = {}): Promise<DivergenceSample[]> {
  return (await read(target, `/admin/divergences${query}`, caller)).samples as DivergenceSample[]
}

/** GET /admin/divergences/summary?route=<route>: that route's summary. */
export async function summary(target: AdminTarget, route: string, caller: Caller = {}): Promise<RouteSummary> {
  const all = (await read(target, `/admin/divergences/summary?route=${encodeURIComponent(route)}`, caller)).routes as RouteSummary[]
  const one = all.find((s) => s.route === route)
  if (one === undefined) throw new Error(`/admin/divergences/summary has no route ${route}: ${JSON.stringify(all)}`)
  return one
}
