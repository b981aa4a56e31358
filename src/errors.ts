import createError, { type FastifyErrorConstructor } from '@fastify/error'

/**
 * The error catalogue: every error Ficus answers with, its HTTP status, the message the
 * client sees (never an upstream address or a stack) and the short `reason` used in metric
 * labels and log lines. docs/errors.md documents each code; test/unit/errors.test.ts checks
 * that the two agree.
 */
interface Entry {
  readonly status: number
  /** Label value for ficus_upstream_errors_total / ficus_client_errors_total / ficus_fallbacks_total. */
  readonly reason: string
  readonly message: string
}

export const CATALOGUE = {
  // ---- upstream faults: 502/503/504, never 500 ----
  FICUS_ERR_UPSTREAM_REFUSED: { status: 502, reason: 'refused', message: 'The backend refused the connection' },
  FICUS_ERR_UPSTREAM_UNREACHABLE: { status: 502, reason: 'unreachable', message: 'The backend could not be reached' },
  FICUS_ERR_UPSTREAM_RESET: { status: 502, reason: 'reset', message: 'The backend closed the connection before it answered' },
  FICUS_ERR_UPSTREAM_BAD_RESPONSE: { status: 502, reason: 'bad_response', message: 'The backend sent an invalid response' },
  FICUS_ERR_UPSTREAM_FAILED: { status: 502, reason: 'other', message: 'The request to the backend failed' },
  FICUS_ERR_UPSTREAM_CONNECT_TIMEOUT: { status: 504, reason: 'connect_timeout', message: 'The backend did not accept a connection in time' },
  FICUS_ERR_UPSTREAM_TIMEOUT: { status: 504, reason: 'timeout', message: 'The backend did not answer in time' },
  FICUS_ERR_UPSTREAM_SATURATED: { status: 503, reason: 'saturated', message: 'The backend has too many requests in progress' },
  FICUS_ERR_NEW_EJECTED: { status: 503, reason: 'new_ejected', message: 'This route\'s new backend is out of service for a moment; retry after the time in Retry-After' },
  FICUS_ERR_UPSTREAM_CLOSING: { status: 503, reason: 'closing', message: 'The connection to the backend is shutting down' },
  // ---- dual writes (docs/sync.md) ----
  FICUS_ERR_SYNC_FULL: { status: 503, reason: 'sync_full', message: 'Too many writes are waiting to reach the other backend; retry after the time in Retry-After' },
  FICUS_ERR_SYNC_UNAVAILABLE: { status: 503, reason: 'sync_unavailable', message: 'Writes on this route cannot be recorded for the other backend right now, so none is taken; retry later' },
  FICUS_ERR_SYNC_UNRECORDED: { status: 502, reason: 'sync_unrecorded', message: 'The backend took the write, but it could not be recorded for the other backend; do not assume it failed' },
  FICUS_ERR_SYNC_BEHIND: { status: 503, reason: 'sync_behind', message: 'Earlier writes to this record have not reached the backend that now answers for it; retry after the time in Retry-After' },
  FICUS_ERR_ID_AMBIGUOUS: { status: 409, reason: 'id_ambiguous', message: 'The id in the path names one record on each backend; Ficus cannot tell which one is meant' },
  // The response had started: the client connection is aborted, these only reach logs and metrics.
  FICUS_ERR_UPSTREAM_BODY_TIMEOUT: { status: 504, reason: 'body_timeout', message: 'The backend stopped sending the response body' },
  FICUS_ERR_UPSTREAM_ABORTED: { status: 502, reason: 'aborted', message: 'The backend broke off the response' },

  // ---- client faults ----
  FICUS_ERR_BAD_REQUEST: { status: 400, reason: 'bad_request', message: 'The request is malformed' },
  FICUS_ERR_BAD_TARGET: { status: 400, reason: 'bad_target', message: 'The request target is not a valid path' },
  FICUS_ERR_DUPLICATE_HOST: { status: 400, reason: 'duplicate_host', message: 'The request has more than one Host header' },
  FICUS_ERR_MISSING_HOST: { status: 400, reason: 'missing_host', message: 'The request has no Host header' },
  FICUS_ERR_INVALID_HOST: { status: 400, reason: 'invalid_host', message: 'The Host header is not a valid host and port' },
  FICUS_ERR_DUPLICATE_HEADER: { status: 400, reason: 'duplicate_header', message: 'The request repeats a header that may appear only once' },
  FICUS_ERR_HEADER_NAME: { status: 400, reason: 'header_name', message: 'The request has a header name with characters other than letters, digits and "-"' },
  FICUS_ERR_TRANSFER_CODING: { status: 501, reason: 'transfer_coding', message: 'The request body\'s Transfer-Encoding is not supported: only chunked is' },
  FICUS_ERR_METHOD_NOT_ALLOWED: { status: 405, reason: 'method_not_allowed', message: 'TRACE is not allowed on this path' },
  FICUS_ERR_EXPECTATION: { status: 417, reason: 'expectation', message: 'The request\'s Expect header asks for something other than 100-continue' },
  FICUS_ERR_UPGRADE_BODY: { status: 501, reason: 'upgrade_body', message: 'An Upgrade request with a body is not supported: send the request without Upgrade' },
  FICUS_ERR_HTTP_VERSION: { status: 505, reason: 'http_version', message: 'Only HTTP/1.0 and HTTP/1.1 are served on this port' },
  FICUS_ERR_CONNECT: { status: 501, reason: 'connect', message: 'CONNECT is not supported: Ficus is a reverse proxy' },
  FICUS_ERR_REQUEST_TIMEOUT: { status: 408, reason: 'request_timeout', message: 'The request was not received in time' },
  FICUS_ERR_BODY_TOO_LARGE: { status: 413, reason: 'body_too_large', message: 'The request body is larger than the limit' },
  FICUS_ERR_HEADERS_TOO_LARGE: { status: 431, reason: 'headers_too_large', message: 'The request headers are larger than the limit' },
  // The response had started: logs and metrics only.
  FICUS_ERR_SEND_TIMEOUT: { status: 408, reason: 'send_timeout', message: 'The client did not read the response in time' },

  // ---- admin API (admin port) ----
  FICUS_ERR_UNAUTHORIZED: { status: 401, reason: 'unauthorized', message: 'A valid admin token is required (Authorization: Bearer <token>)' },
  FICUS_ERR_FORBIDDEN: { status: 403, reason: 'forbidden', message: 'This token can read, not change (a viewer)' },
  FICUS_ERR_CSRF: { status: 403, reason: 'csrf', message: 'A change from the console must carry its CSRF token (x-ficus-csrf)' },
  FICUS_ERR_UNKNOWN_ROUTE: { status: 404, reason: 'unknown_route', message: 'No route has that name' },
  FICUS_ERR_BAD_ADMIN_REQUEST: { status: 400, reason: 'bad_admin_request', message: 'The admin request is invalid' },
  FICUS_ERR_ADMIN_NOT_FOUND: { status: 404, reason: 'not_found', message: 'No such admin endpoint' },
  FICUS_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, reason: 'unsupported_media_type', message: 'Admin changes take a JSON body (Content-Type: application/json)' },
  FICUS_ERR_STATE_WRITE: { status: 503, reason: 'state_write', message: 'The change could not be saved, so it was not made' },
  FICUS_ERR_FLAG_MANAGED: { status: 409, reason: 'flag_managed', message: 'The route\'s share of new is decided by an Unleash flag' },
  FICUS_ERR_FLAG_UPDATE: { status: 502, reason: 'flag_update', message: 'Unleash did not take the change, so it was not made' },
  // ---- admin API: dual writes (docs/sync.md "Operating dual writes") ----
  FICUS_ERR_SYNC_OFF: { status: 409, reason: 'sync_off', message: 'Dual writes are not in use there: no route (or not the one named) has sync.mode: dual' },
  FICUS_ERR_SYNC_STORE: { status: 503, reason: 'sync_store', message: 'The sync store did not answer' },
  FICUS_ERR_SYNC_NO_ENTRY: { status: 404, reason: 'sync_no_entry', message: 'The outbox has no entry with that seq' },
  FICUS_ERR_SYNC_ENTRY_STATE: { status: 409, reason: 'sync_entry_state', message: 'The outbox entry is not in a state that allows this' },
  FICUS_ERR_ID_UNKNOWN: { status: 404, reason: 'id_unknown', message: 'The id map has no pair for that id' },
  FICUS_ERR_ID_CONFLICT: { status: 409, reason: 'id_conflict', message: 'The pair contradicts one already in the id map, where a pair never changes once set' },
  FICUS_ERR_VERIFY_UNKNOWN_JOB: { status: 404, reason: 'verify_unknown_job', message: 'routes.yaml has no verify job by that name' },
  FICUS_ERR_VERIFY_RUNNING: { status: 409, reason: 'verify_running', message: 'A run of that verify job is in progress' },
  FICUS_ERR_VERIFY_NOT_RUNNING: { status: 409, reason: 'verify_not_running', message: 'No run of that verify job is in progress' },
  // ---- admin API: the ramp (docs/ramp.md) ----
  FICUS_ERR_RAMP_NO_PLAN: { status: 409, reason: 'ramp_no_plan', message: 'The route has no ramp plan in routes.yaml (ramp: <plan>)' },
  FICUS_ERR_RAMP_STATE: { status: 409, reason: 'ramp_state', message: 'The ramp is not in a state that allows this' },
  FICUS_ERR_RAMP_STORE: { status: 503, reason: 'ramp_store', message: 'The store that holds the ramps did not answer, so nothing was changed' },

  // ---- Ficus itself ----
  FICUS_ERR_DRAINING: { status: 503, reason: 'draining', message: 'Ficus is shutting down: open the connection again' },
  FICUS_ERR_INTERNAL: { status: 500, reason: 'internal', message: 'Ficus failed to handle the request' }
} as const satisfies Record<string, Entry>

export type ErrorCode = keyof typeof CATALOGUE
export type Reason = (typeof CATALOGUE)[ErrorCode]['reason']

/** An error from the catalogue; `cause` keeps what the dependency threw. */
export interface FicusError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
}

const constructors = Object.fromEntries(
  Object.entries(CATALOGUE).map(([code, e]) => [code, createError(code, e.message, e.status)])
) as Record<ErrorCode, FastifyErrorConstructor>

/** Makes a catalogue error. @example ficusError('FICUS_ERR_UPSTREAM_TIMEOUT', { cause: err }) */
export function ficusError(code: ErrorCode, options?: { cause?: unknown }): FicusError {
  const Ctor = constructors[code]
  const err = new Ctor() as FicusError
  if (options?.cause !== undefined) (err as { cause?: unknown }).cause = options.cause
  return err
}

export function reasonOf(code: ErrorCode): Reason {
  return CATALOGUE[code].reason
}

/**
 * Maps what undici (or the socket under it) threw to the catalogue, on its stable `code`
 * (undici docs/api/Errors.md advise matching on `code`, not on classes). `headersSent`
 * tells whether the response had started, which turns a failure into a broken body.
 */
export function toUpstreamError(err: unknown, headersSent: boolean): FicusError {
  const code = (err as { code?: unknown } | null)?.code
  const cause = { cause: err }
  if (headersSent) {
    return ficusError(code === 'UND_ERR_BODY_TIMEOUT' ? 'FICUS_ERR_UPSTREAM_BODY_TIMEOUT' : 'FICUS_ERR_UPSTREAM_ABORTED', cause)
  }
  switch (code) {
    case 'ECONNREFUSED':
      return ficusError('FICUS_ERR_UPSTREAM_REFUSED', cause)
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EHOSTUNREACH': case 'ENETUNREACH': case 'EADDRNOTAVAIL':
      return ficusError('FICUS_ERR_UPSTREAM_UNREACHABLE', cause)
    case 'ECONNRESET': case 'EPIPE': case 'UND_ERR_SOCKET':
      return ficusError('FICUS_ERR_UPSTREAM_RESET', cause)
    case 'UND_ERR_CONNECT_TIMEOUT': case 'ETIMEDOUT':
      return ficusError('FICUS_ERR_UPSTREAM_CONNECT_TIMEOUT', cause)
    case 'UND_ERR_HEADERS_TIMEOUT':
      return ficusError('FICUS_ERR_UPSTREAM_TIMEOUT', cause)
    case 'UND_ERR_BODY_TIMEOUT':
      return ficusError('FICUS_ERR_UPSTREAM_BODY_TIMEOUT', cause)
    case 'UND_ERR_CLOSED': case 'UND_ERR_DESTROYED':
      return ficusError('FICUS_ERR_UPSTREAM_CLOSING', cause)
    case 'UND_ERR_HEADERS_OVERFLOW': case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH': case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return ficusError('FICUS_ERR_UPSTREAM_BAD_RESPONSE', cause)
    default:
      // llhttp's parse errors (HPE_* codes; undici's HTTPParserError has no code for a bad chunk): invalid framing from the backend
      if ((typeof code === 'string' && code.startsWith('HPE_')) || (err as Error | null)?.name === 'HTTPParserError') return ficusError('FICUS_ERR_UPSTREAM_BAD_RESPONSE', cause)
      return ficusError('FICUS_ERR_UPSTREAM_FAILED', cause)
  }
}

/** The JSON body of every error Ficus answers: `{ error, code, requestId }`. */
export function errorBody(err: FicusError, requestId: string | undefined): string {
  return JSON.stringify(requestId === undefined
    ? { error: err.message, code: err.code }
    : { error: err.message, code: err.code, requestId })
}
