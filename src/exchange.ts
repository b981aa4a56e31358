import type { ServerResponse } from 'node:http'
import type { Backend, Decision, RouteRule } from './core/types.js'
import type { FicusError, Reason } from './errors.js'
import type { PrimaryTap } from './plugins/shadow.js'

/**
 * What happened to one client request, filled in along the pipeline and read once when the
 * response is over (metrics, access log). One `outcome` per response, used by both, like
 * Envoy's response flags.
 */
export type Outcome =
  | 'ok'
  /** new failed before answering; legacy answered. */
  | 'fallback'
  /** The client closed the connection before the response was complete. */
  | 'client_aborted'
  /** A catalogue error's reason (refused, timeout, body_too_large, …). */
  | Reason

export class Exchange {
  rule: RouteRule | null = null
  decision: Decision | null = null
  /** Headers for the upstream request (forward-headers.ts). */
  upstreamHeaders: string[] = []
  clientIp = ''
  /** Path and query sent upstream (origin-form, byte-for-byte what the client sent). */
  target = ''
  /** The side that answered, or was being tried when it failed. */
  backend: Backend | null = null
  outcome: Outcome = 'ok'
  error: FicusError | null = null
  /** Why new was abandoned for legacy, when it was. */
  fallback: string | null = null
  /** The upstream request in progress, if any (set by the proxy while one is queued or runs): `abort` gives it up. */
  attempt: { abort: (err: Error) => void } | null = null
  /** The shadow stage's tap on the primary response, when this request is shadowed. */
  shadow: PrimaryTap | null = null
  /** A status Ficus wrote on the socket itself, outside the response object (a 408 from Node's request timeout). */
  answered: number | null = null

  constructor (readonly requestId: string, readonly method: string, readonly start: number) {}
}

/** Why an upstream request was aborted when its client went away first. */
export class ClientGone extends Error {
  override name = 'ClientGone'
  constructor () { super('client closed the connection') }
}

const kExchange = Symbol('ficus.exchange')

/** Links a response to its exchange, for the edge handlers that only see the socket. */
export function attachExchange(res: ServerResponse, ex: Exchange): void {
  (res as ServerResponse & { [kExchange]?: Exchange })[kExchange] = ex
}

export function exchangeOf(res: ServerResponse): Exchange | null {
  return (res as ServerResponse & { [kExchange]?: Exchange })[kExchange] ?? null
}
