import { Writable } from 'node:stream'

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

  /** Resolves with the first line (already written or still to come) that matches. */
  waitFor(match: (l: LogLine) => boolean): Promise<LogLine> {
    const found = this.lines.find(match)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve) => this.waiters.push({ match, resolve }))
  }

  /** Access-log lines (one per request). */
  requests(): LogLine[] {
    return this.lines.filter((l) => l.msg === 'request')
  }
}
