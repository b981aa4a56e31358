import type { DestinationStream } from 'pino'

/** What LogOutput writes through: sonic-boom in sync mode (it retries EAGAIN on a full pipe). */
export interface Sink {
  write(data: string): unknown
  flushSync(): void
}

/**
 * Buffered access lines go out before they would pass this many characters: PIPE_BUF, the
 * most a write(2) to a pipe keeps whole. Workers (`--workers N`) share one stdout, and a
 * longer write could be interleaved with another process's lines mid-line.
 */
export const ACCESS_BUFFER_CHARS = 4096
/** …or this long after the first of them, whichever comes first (nginx: `access_log … buffer= flush=`). */
export const ACCESS_FLUSH_MS = 100

/**
 * Ficus's log destination. Access lines (one per request) are buffered and written in
 * batches of up to 4 KiB, so a busy proxy makes one `write(2)` per ~15 requests rather than
 * one per request; every other line (warnings, errors, start-up, control changes) goes out at
 * once, after the access lines buffered before it, so the order of lines is the order of
 * events. Buffered lines wait at most ACCESS_FLUSH_MS; they are flushed on exit, and lost
 * only if the process is killed with SIGKILL (as nginx's buffered access log).
 */
export class LogOutput implements DestinationStream {
  private buffered = ''
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly sink: Sink) {}

  /** pino's lines: written now. */
  write (line: string): void {
    if (this.buffered.length > 0) {
      if (this.buffered.length + line.length > ACCESS_BUFFER_CHARS) this.drain()
      else {
        line = this.buffered + line
        this.buffered = ''
      }
    }
    this.sink.write(line)
  }

  /** An access line: buffered. */
  access (line: string): void {
    if (this.buffered.length + line.length > ACCESS_BUFFER_CHARS) this.drain()
    this.buffered += line
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null
        this.drain()
      }, ACCESS_FLUSH_MS)
      this.timer.unref()
    }
  }

  /** pino's `logger.flush()`. */
  flush (cb?: (err?: Error) => void): void {
    this.flushSync()
    cb?.()
  }

  flushSync (): void {
    this.drain()
    this.sink.flushSync()
  }

  private drain (): void {
    if (this.buffered.length === 0) return
    const text = this.buffered
    this.buffered = ''
    this.sink.write(text)
  }
}
