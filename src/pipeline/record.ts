import { lineWriter, type Logger } from '../adapters/logger.js'
import { exchangeCounter, type Metrics } from '../adapters/metrics-registry.js'
import { pathOf } from '../core/normalize-path.js'
import type { Exchange } from './exchange.js'

/**
 * Stage 5, record: once a response is over (finished or aborted: the response's `close`
 * always fires, where fastify's onResponse misses aborts), the exchange is closed, counted
 * (ficus_requests_total, ficus_request_duration_seconds) and written as the one access-log
 * line. The query string is left out of the log: it often carries tokens. An upgraded
 * connection is recorded when its tunnel closes: status 101, its whole life in `ms`, the
 * bytes each way, and who closed it.
 * Cost: two map reads for the series, one hand-built JSON line, batched writes (log-output.ts).
 */
export function recorder(metrics: Metrics, log: Logger, now: () => number): (ex: Exchange) => void {
  const write = lineWriter(log, 'request')
  const count = exchangeCounter(metrics, 'primary')
  return function record(ex: Exchange): void {
    const status = ex.close()
    const ms = now() - ex.start
    const rule = ex.rule
    const tunnel = ex.tunnel
    // An upgraded connection's duration is its handshake: the tunnel's life (hours) is not a latency.
    if (rule !== null) count(rule.name, ex.backend ?? 'none', status, (tunnel === null ? ms : tunnel.handshakeMs) / 1000)
    // Written by hand (fields in a fixed order, strings through JSON.stringify): pino's
    // generic serialisation of this object was ~4 µs of every request.
    let f = `"reqId":${JSON.stringify(ex.requestId)},"method":${JSON.stringify(ex.method)}`
    if (rule !== null) f += `,"route":${JSON.stringify(rule.name)}`
    if (ex.backend !== null) f += `,"backend":"${ex.backend}"`
    const bucket = ex.decision?.bucket
    if (bucket !== undefined && bucket !== null) f += `,"bucket":${bucket}`
    f += `,"status":${status},"ms":${Math.round(ms * 10) / 10},"outcome":"${ex.outcome}"`
    if (ex.fallback !== null) f += `,"fallback":${JSON.stringify(ex.fallback)}`
    if (tunnel !== null) {
      f += `,"upgrade":${JSON.stringify(tunnel.protocol)},"handshakeMs":${Math.round(tunnel.handshakeMs * 10) / 10}` +
        `,"bytesIn":${tunnel.fromClient},"bytesOut":${tunnel.toClient},"closedBy":"${tunnel.end ?? 'client'}"`
    }
    const error = ex.error
    if (error !== null) {
      const cause = causeOf(error)
      f += `,"error":{"code":"${error.code}"${cause === undefined ? '' : `,"cause":${JSON.stringify(cause)}`}}`
    }
    if (ex.target !== '') f += `,"path":${JSON.stringify(pathOf(ex.target))}`
    if (ex.clientIp !== '') f += `,"ip":${JSON.stringify(ex.clientIp)}`
    write(error === null ? 'info' : 'warn', f)
  }
}

function causeOf(err: Error): string | undefined {
  const cause = (err as { cause?: unknown }).cause
  if (cause === undefined || cause === null) return undefined
  const c = cause as { code?: unknown; message?: unknown }
  return [c.code, c.message].filter((x) => typeof x === 'string').join(': ')
}
