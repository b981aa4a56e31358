import { pino, type DestinationStream, type Logger } from 'pino'
import { LogOutput } from './log-output.js'

export type { Logger }

/**
 * Log fields that may carry credentials. Ficus's own lines never include request headers,
 * but an error object or a debug line might. Only fixed paths: a wildcard path made every
 * log call walk every key (2.5 µs a line, measured), on a proxy's hottest log.
 */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]', 'headers.authorization', 'headers.cookie', 'headers["set-cookie"]'
]

/**
 * JSON lines to stdout (or `destination`): level as a word, time in epoch milliseconds.
 *
 * Written synchronously, as pino does by default. Asynchronous writes go through libuv's
 * thread pool, and on a proxy pinned to one core that hand-off cost more than the write
 * itself: bench/run.ts measured ~12 µs more CPU per request than a synchronous write.
 * Access lines are batched (LogOutput), other lines are written at once. If stdout's reader
 * stalls, requests stall with it, as with nginx's access log: point stdout at a collector
 * that keeps up.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  let out = destination
  if (out === undefined) {
    const output = new LogOutput(pino.destination({ dest: 1, sync: true }))
    process.on('exit', () => { output.flushSync() })
    out = output
  }
  return pino({
    level,
    base: { service: 'ficus' },
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' }
  }, out)
}

/**
 * Writes lines shaped as `logger` writes them (level, time, the logger's bindings, the
 * fields, msg), from fields already serialised: the access log, one line per request, skips
 * pino's generic serialisation (~4 µs a line, measured) and goes to the logger's destination,
 * batched when that is a LogOutput. `fields` is a JSON object's members without braces.
 */
export type LineWriter = (level: 'info' | 'warn', fields: string) => void

export function lineWriter(logger: Logger, msg: string): LineWriter {
  const stream = (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym] as DestinationStream
  const bindings = JSON.stringify(logger.bindings()).slice(1, -1)
  const middle = bindings === '' ? ',' : `,${bindings},`
  const end = `,"msg":${JSON.stringify(msg)}}\n`
  const write = stream instanceof LogOutput ? (line: string) => { stream.access(line) } : (line: string) => { stream.write(line) }
  return (level, fields) => {
    if (!logger.isLevelEnabled(level)) return
    write(`{"level":"${level}","time":${Date.now()}${middle}${fields}${end}`)
  }
}
