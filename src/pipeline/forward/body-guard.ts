import type { IncomingMessage } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import { ficusError, type FicusError } from '../../errors.js'
import type { BodyCapture, Captured } from '../exchange.js'


/**
 * The request body on its way upstream, guarded: past `limit` bytes it fails with 413
 * (chunked bodies are only known to be too large while they stream), and when the client
 * sends nothing for `idleMs` it fails with 408, so a stalled upload cannot hold an upstream
 * connection until the whole-request timeout. It always has an error listener (`onError`):
 * a failure after Ficus has answered must never become an uncaught exception.
 */
export class BodyGuard extends Transform implements BodyCapture {
  /** Why the body failed, once it has (read by the forward stage to choose its answer). */
  failure: FicusError | null = null
  private seen = 0
  /** Chunks kept for a shadow copy (`capture`), by reference: nothing is copied until the end. */
  private kept: Buffer[] | null = null
  private keepMax = 0
  private onCaptured: ((body: Captured) => void) | null = null
  private readonly idle: NodeJS.Timeout
  /** Chunks read before `buffered` fired (held anyway by the readable buffer; kept here for `capture`). */
  private early: Buffer[] | null = []
  private onBuffered: (() => void) | null = null

  /**
   * `bufferBytes`: how much of the body is read before `buffered` fires (the whole body when
   * it is smaller), so a slow upload holds no upstream connection while it trickles in.
   */
  constructor (private readonly req: IncomingMessage, private readonly limit: number, idleMs: number, private readonly bufferBytes = 0) {
    super({ readableHighWaterMark: Math.max(bufferBytes, 16 * 1024) })
    this.idle = setTimeout(() => this.fail(ficusError('FICUS_ERR_REQUEST_TIMEOUT')), idleMs)
    this.idle.unref()
    this.on('error', () => {}) // the forward stage reads `failure`; the error itself needs no listener of its own
    req.on('error', (err) => this.destroy(err))
    req.on('aborted', () => this.destroy(new Error('client aborted the request body')))
    req.pipe(this)
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.idle.refresh()
    this.seen += chunk.length
    if (this.seen > this.limit) {
      this.fail(ficusError('FICUS_ERR_BODY_TOO_LARGE'))
      cb()
      return
    }
    if (this.kept !== null) {
      if (this.seen <= this.keepMax) this.kept.push(chunk)
      else this.captured('too_large')
    }
    if (this.early !== null) {
      this.early.push(chunk)
      if (this.seen >= this.bufferBytes) this.bufferedNow()
    }
    cb(null, chunk)
  }

  override _flush (cb: TransformCallback): void {
    clearTimeout(this.idle)
    this.bufferedNow()
    if (this.kept !== null) this.captured(Buffer.concat(this.kept))
    cb()
  }

  override _destroy (err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.idle)
    this.bufferedNow()
    if (this.kept !== null) this.captured('failed')
    cb(err)
  }

  /**
   * Calls `ready` once `bufferBytes` of the body, or all of it, has been read — or once the
   * body failed (`failure`, or the client left): then nothing is to be forwarded.
   */
  buffered (ready: () => void): void {
    if (this.early === null || this.bufferBytes === 0) {
      this.early = null
      ready()
    } else {
      this.onBuffered = ready
    }
  }

  private bufferedNow (): void {
    const ready = this.onBuffered
    this.onBuffered = null
    ready?.() // may call capture(), which takes the early chunks
    this.early = null
  }

  /**
   * Keeps a copy of the body, up to `max` bytes, for the shadow request; `done` is called
   * once: with the whole body when it has been read, or with why it was not kept.
   * Call before `buffered` fires, or from its callback.
   */
  capture (max: number, done: (body: Captured) => void): void {
    this.keepMax = max
    this.onCaptured = done
    // What was read while buffering is kept too (the chunks are shared, not copied).
    this.kept = [...(this.early ?? [])]
    if (this.seen > max) this.captured('too_large')
  }

  private captured (body: Captured): void {
    const done = this.onCaptured
    this.kept = null
    this.onCaptured = null
    done?.(body)
  }

  /** Stops reading the client's body (the answer no longer needs it). */
  detach (): void {
    this.req.unpipe(this)
    this.destroy()
  }

  private fail (err: FicusError): void {
    this.failure ??= err
    this.destroy(err)
  }
}
