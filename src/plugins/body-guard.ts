import type { IncomingMessage } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import { ficusError, type FicusError } from '../errors.js'

/**
 * The request body on its way upstream, guarded: past `limit` bytes it fails with 413
 * (chunked bodies are only known to be too large while they stream), and when the client
 * sends nothing for `idleMs` it fails with 408, so a stalled upload cannot hold an upstream
 * connection until the whole-request timeout. It always has an error listener (`onError`):
 * a failure after Ficus has answered must never become an uncaught exception.
 */
export class BodyGuard extends Transform {
  /** Why the body failed, once it has (read by the proxy to choose its answer). */
  failure: FicusError | null = null
  private seen = 0
  private readonly idle: NodeJS.Timeout

  constructor (private readonly req: IncomingMessage, private readonly limit: number, idleMs: number) {
    super()
    this.idle = setTimeout(() => this.fail(ficusError('FICUS_ERR_REQUEST_TIMEOUT')), idleMs)
    this.idle.unref()
    this.on('error', () => {}) // the proxy reads `failure`; the error itself needs no listener of its own
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
    cb(null, chunk)
  }

  override _flush (cb: TransformCallback): void {
    clearTimeout(this.idle)
    cb()
  }

  override _destroy (err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.idle)
    cb(err)
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
