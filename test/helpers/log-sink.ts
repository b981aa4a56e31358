import { Writable } from 'node:stream'
import { waitFor, withDefaults, type Deadline } from './wait.js'

export type LogLine = Record<string, unknown> & { level: string; msg?: string }

/**
 * A pino destination that keeps every line as an object (pino's own tests do the same with
 * `sink()`), and lets a test wait for a line instead of sleeping.
 */
export class LogSink extends Writable {
  readonly lines: LogLine[] = []
  private waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = []
  private buffered = ''

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.buffered += chunk.toString()
    let nl: number
    while ((nl = this.buffered.indexOf('\n')) !== -1) {
      const text = this.buffered.slice(0, nl)
      this.buffered = this.buffered.slice(nl + 1)
      if (text.trim() === '') continue
      const line = JSON.parse(text) as LogLine
      this.lines.push(line)
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(line)) return true
        w.resolve(line)
        return false
      })
    }
    cb()
  }

  /**
   * Resolves with the first line (already written or still to come) that matches; rejects
   * past the deadline (default: DEADLINE_MS, naming the matcher and the last lines logged).
   */
  async waitFor(match: (l: LogLine) => boolean, deadline?: Deadline): Promise<LogLine> {
    const found = this.lines.find(match)
    if (found !== undefined) return found
    const waiter = { match, resolve: (_l: LogLine): void => {} }
    const line = new Promise<LogLine>((resolve) => { waiter.resolve = resolve })
    this.waiters.push(waiter)
    try {
      return await waitFor(line, withDefaults(deadline, () => `no log line matched ${match.toString()}; the last ones: ${this.lines.slice(-5).map((l) => l.msg).join(' | ')}`))
    } finally {
      this.waiters = this.waiters.filter((w) => w !== waiter)
    }
  }

  /** Access-log lines (one per request). */
  requests(): LogLine[] {
    return this.lines.filter((l) => l.msg === 'request')
  }
}
