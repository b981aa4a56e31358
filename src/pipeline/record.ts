import { lineWriter, type Logger } from '../adapters/logger.js'
import { exchangeCounter, type Metrics } from '../adapters/metrics-registry.js'
import { LineBudget } from '../core/line-budget.js'
import { pathOf } from '../core/normalize-path.js'
import { reasonOf, type FicusError } from '../errors.js'
import type { Exchange } from './exchange.js'

/**
 * Access-log lines of refused requests (refused before routing: at the edge, by admit, TRACE)
 * per second at most. Such a request costs its sender a few bytes, so a flood of them must
 * not fill the disk; the lines past it are counted in one summary line a second later, and
 * every refusal is still counted in ficus_client_errors_total.
 */
export const REFUSAL_LINES_PER_SECOND = 100

/** Request header names listed in an access-log line at most, and characters of each. */
const DROPPED_LISTED = 8
const DROPPED_NAME_CHARS = 64

/** A request the edge refused on the socket before Node made a request of it (a parser error, a head timeout). */
export interface SocketRefusal {
  readonly requestId: string
  readonly error: FicusError
  readonly status: number
  /** The peer's address. */
  readonly ip: string
}

export interface Recorder {
  /** An exchange whose response is over (Exchanges calls it). */
  readonly exchange: (ex: Exchange) => void
  /** A refusal the edge wrote on a socket, with no exchange: its access-log line (no method or path: none was read). */
  readonly socketRefusal: (r: SocketRefusal) => void
}

/**
 * Stage 5, record: once a response is over (finished or aborted: the response's `close`
 * always fires, where fastify's onResponse misses aborts), the exchange is closed, counted
 * (ficus_requests_total, ficus_request_duration_seconds) and written as the one access-log
 * line. The query string is left out of the log: it often carries tokens. An upgraded
 * connection is recorded when its tunnel closes: status 101, its whole life in `ms`, the
 * bytes each way, and who closed it.
 * Cost: two map reads for the series, one hand-built JSON line, batched writes (log-output.ts).
 */
export function recorder(metrics: Metrics, log: Logger, now: () => number): Recorder {
  const write = lineWriter(log, 'request')
  const count = exchangeCounter(metrics, 'primary')
  const refusals = refusalBudget(log, now)
  function exchange(ex: Exchange): void {
    const status = ex.close()
    const ms = now() - ex.start
    const rule = ex.rule
    const tunnel = ex.tunnel
    // An upgraded connection's duration is its handshake: the tunnel's life (hours) is not a latency.
    if (rule !== null) count(rule.name, ex.backend ?? 'none', status, (tunnel === null ? ms : tunnel.handshakeMs) / 1000)
    const error = ex.error
    // Refused before routing: within the refusal budget.
    if (rule === null && error !== null && !refusals(ex.outcome)) return
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
    if (error !== null) f += errorField(error)
    if (ex.target !== '') f += `,"path":${JSON.stringify(pathOf(ex.target))}`
    if (ex.clientIp !== '') f += `,"ip":${JSON.stringify(ex.clientIp)}`
    if (ex.droppedHeaders.length > 0) f += `,"droppedHeaders":${droppedField(ex.droppedHeaders)}`
    write(error === null ? 'info' : 'warn', f)
  }
  function socketRefusal(r: SocketRefusal): void {
    const outcome = reasonOf(r.error.code)
    if (!refusals(outcome)) return
    let f = `"reqId":${JSON.stringify(r.requestId)},"status":${r.status},"outcome":"${outcome}"${errorField(r.error)}`
    if (r.ip !== '') f += `,"ip":${JSON.stringify(r.ip)}`
    write('warn', f)
  }
  return { exchange, socketRefusal }
}

/**
 * The refusal budget: `take(outcome)` says whether a refusal's line is written. Lines past
 * REFUSAL_LINES_PER_SECOND are counted, and one `warn` line a second after the first of them
 * says how many, by outcome.
 */
function refusalBudget(log: Logger, now: () => number): (outcome: string) => boolean {
  const budget = new LineBudget(REFUSAL_LINES_PER_SECOND, 1000)
  let summary: NodeJS.Timeout | null = null
  return (outcome) => {
    if (budget.take(now(), outcome)) return true
    summary ??= setTimeout(() => {
      summary = null
      const { total, byOutcome } = budget.drain()
      log.warn({ notLogged: total, outcomes: byOutcome }, 'refused requests over the access-log budget')
    }, budget.windowMs).unref()
    return false
  }
}

function errorField(error: FicusError): string {
  const cause = causeOf(error)
  return `,"error":{"code":"${error.code}"${cause === undefined ? '' : `,"cause":${JSON.stringify(cause)}`}}`
}

function droppedField(names: readonly string[]): string {
  return JSON.stringify(names.slice(0, DROPPED_LISTED).map((n) => n.slice(0, DROPPED_NAME_CHARS)))
}

function causeOf(err: Error): string | undefined {
  const cause = (err as { cause?: unknown }).cause
  if (cause === undefined || cause === null) return undefined
  const c = cause as { code?: unknown; message?: unknown }
  return [c.code, c.message].filter((x) => typeof x === 'string').join(': ')
}
