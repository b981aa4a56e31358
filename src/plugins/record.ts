import type { ServerResponse } from 'node:http'
import { lineWriter, type Logger } from '../adapters/logger.js'
import { exchangeCounter, type Metrics } from '../adapters/metrics-registry.js'
import { pathOf } from '../core/normalize-path.js'
import { ClientGone, exchangeOf, type Exchange } from '../exchange.js'

/** nginx's status for "the client closed the connection before the response": well known to SREs. */
export const CLIENT_CLOSED = 499

/**
 * The last stage: once a response is over (finished or aborted: `close` always fires, where
 * fastify's onResponse misses aborts), count it and write the one access-log line.
 * The query string is left out of the log: it often carries tokens.
 */
export function exchangeRecorder(metrics: Metrics, log: Logger, now: () => number) {
  const write = lineWriter(log, 'request')
  const count = exchangeCounter(metrics, 'primary')
  /** The response's `close` listener: one function for every response (openExchange attaches it). */
  return function recordExchange(this: ServerResponse): void {
    const ex = exchangeOf(this)
    if (ex === null) return
    record(ex, this)
  }

  function record(ex: Exchange, res: ServerResponse): void {
    ex.attempt?.abort(new ClientGone())
    // A shadowed request whose primary did not complete has nothing to compare.
    if (ex.shadow !== null) {
      const failed = ex.error !== null || (ex.outcome !== 'ok' && ex.outcome !== 'client_aborted')
      ex.shadow.abandon(failed ? 'primary_failed' : 'client_aborted')
    }
    if (!res.writableFinished && (ex.outcome === 'ok' || ex.outcome === 'fallback')) ex.outcome = 'client_aborted'
    const status = ex.answered ?? (res.headersSent ? res.statusCode : CLIENT_CLOSED)
    const ms = now() - ex.start
    const rule = ex.rule
    if (rule !== null) count(rule.name, ex.backend ?? 'none', status, ms / 1000)
    // Written by hand (fields in a fixed order, strings through JSON.stringify): pino's
    // generic serialisation of this object was ~4 µs of every request.
    let f = `"reqId":${JSON.stringify(ex.requestId)},"method":${JSON.stringify(ex.method)}`
    if (rule !== null) f += `,"route":${JSON.stringify(rule.name)}`
    if (ex.backend !== null) f += `,"backend":"${ex.backend}"`
    const bucket = ex.decision?.bucket
    if (bucket !== undefined && bucket !== null) f += `,"bucket":${bucket}`
    f += `,"status":${status},"ms":${Math.round(ms * 10) / 10},"outcome":"${ex.outcome}"`
    if (ex.fallback !== null) f += `,"fallback":${JSON.stringify(ex.fallback)}`
    if (ex.error !== null) {
      const cause = causeOf(ex.error)
      f += `,"error":{"code":"${ex.error.code}"${cause === undefined ? '' : `,"cause":${JSON.stringify(cause)}`}}`
    }
    if (ex.target !== '') f += `,"path":${JSON.stringify(pathOf(ex.target))}`
    if (ex.clientIp !== '') f += `,"ip":${JSON.stringify(ex.clientIp)}`
    write(ex.error === null ? 'info' : 'warn', f)
  }
}

function causeOf(err: Error): string | undefined {
  const cause = (err as { cause?: unknown }).cause
  if (cause === undefined || cause === null) return undefined
  const c = cause as { code?: unknown; message?: unknown }
  return [c.code, c.message].filter((x) => typeof x === 'string').join(': ')
}
