import type { ServerResponse } from 'node:http'
import type { Metrics } from '../adapters/metrics-registry.js'
import { errorBody, ficusError, type ErrorCode, type FicusError } from '../errors.js'
import type { Exchange } from './exchange.js'

/**
 * Answers with a catalogue error: `{ error, code, requestId }` as JSON. When the response
 * has already started there is nothing honest left to send, so the connection is aborted
 * (the client sees a truncated response, not a wrong one).
 * `close` ends the connection after the answer, for requests whose body was not read;
 * `extra` adds headers (Retry-After).
 */
export function sendError(res: ServerResponse, err: FicusError, requestId: string | undefined, close = false, extra?: Readonly<Record<string, string | number>>): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = errorBody(err, requestId)
  const headers: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store'
  }
  if (close) headers.connection = 'close'
  if (extra !== undefined) Object.assign(headers, extra)
  res.writeHead(err.statusCode, headers)
  res.end(body)
}

/**
 * Refuses a request before it is forwarded: answered with the catalogue error and counted
 * in `ficus_client_errors_total`; the connection closes (the body was not read). Returns
 * false, for stages that answer "may it go on?".
 */
export function refuse(ex: Exchange, code: ErrorCode, metrics: Metrics): false {
  const err = ficusError(code)
  ex.refused(err)
  metrics.clientErrors.inc({ reason: ex.outcome })
  sendError(ex.res, err, ex.requestId, true)
  return false
}
