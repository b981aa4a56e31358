import type { ServerResponse } from 'node:http'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
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
    if (rule !== null) {
      const backend = ex.backend ?? 'none'
      metrics.requests.inc({ route: rule.name, backend, role: 'primary', code: status })
      metrics.duration.observe({ route: rule.name, backend, role: 'primary' }, ms / 1000)
    }
    const line = {
      reqId: ex.requestId,
      method: ex.method,
      route: rule?.name,
      backend: ex.backend ?? undefined,
      bucket: ex.decision?.bucket ?? undefined,
      status,
      ms: Math.round(ms * 10) / 10,
      outcome: ex.outcome,
      fallback: ex.fallback ?? undefined,
      error: ex.error === null ? undefined : { code: ex.error.code, cause: causeOf(ex.error) },
      path: ex.target === '' ? undefined : pathOf(ex.target),
      ip: ex.clientIp === '' ? undefined : ex.clientIp
    }
    if (ex.error === null) log.info(line, 'request')
    else log.warn(line, 'request')
  }
}

function causeOf(err: Error): string | undefined {
  const cause = (err as { cause?: unknown }).cause
  if (cause === undefined || cause === null) return undefined
  const c = cause as { code?: unknown; message?: unknown }
  return [c.code, c.message].filter((x) => typeof x === 'string').join(': ')
}
