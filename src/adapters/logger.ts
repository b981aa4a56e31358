import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger }

/**
 * Log fields that may carry credentials. Ficus's own lines never include request headers,
 * but an error object or a debug line might; these are censored wherever they appear.
 */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]', 'headers.authorization', 'headers.cookie', 'token', '*.token'
]

/**
 * JSON lines to stdout (or `destination`), level as a word, ISO time. Stdout is written
 * asynchronously so a slow terminal or pipe never stalls requests; main.ts flushes it
 * before exit.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({
    level,
    base: { service: 'ficus' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' }
  }, destination ?? pino.destination({ dest: 1, sync: false }))
}
