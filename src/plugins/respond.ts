import type { ServerResponse } from 'node:http'
import { errorBody, type FicusError } from '../errors.js'

/**
 * Answers with a catalogue error: `{ error, code, requestId }` as JSON. When the response
 * has already started there is nothing honest left to send, so the connection is aborted
 * (the client sees a truncated response, not a wrong one).
 * `close` ends the connection after the answer, for requests whose body was not read.
 */
export function sendError(res: ServerResponse, err: FicusError, requestId: string | undefined, close = false): void {
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
  res.writeHead(err.statusCode, headers)
  res.end(body)
}
