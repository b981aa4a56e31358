import { Pool, type Dispatcher } from 'undici'

/**
 * Ficus's use of undici, in one place: how a Pool is built (for the primary's upstreams and
 * for the shadow copies alike) and the abort handling every dispatch handler needs.
 */

export interface PoolOptions {
  /** Open connections at most. */
  readonly connections: number
  readonly connectTimeoutMs: number
  /** Time to the response head once the request is sent. */
  readonly headersTimeoutMs: number
  /** Longest silence between two chunks of the response body. */
  readonly bodyTimeoutMs: number
}

/**
 * A keep-alive Pool to `origin`: one request per connection at a time (no pipelining, so a
 * slow answer holds up no other), a response whose length does not match its
 * Content-Length is an error, TLS verification on (undici's default), and no retries (a Pool
 * never retries).
 */
export function createPool(origin: string, o: PoolOptions): Pool {
  return new Pool(origin, {
    connections: o.connections,
    pipelining: 1,
    connect: { timeout: o.connectTimeoutMs },
    headersTimeout: o.headersTimeoutMs,
    bodyTimeout: o.bodyTimeoutMs,
    strictContentLength: true
  })
}

/**
 * Base of Ficus's undici dispatch handlers: `abortRequest` gives the request up whether or
 * not undici has started it yet (a request still waiting for a connection has no controller:
 * the abort is kept and applied when it starts).
 */
export abstract class AbortableHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null
  private pendingAbort: Error | null = null

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.pendingAbort !== null) controller.abort(this.pendingAbort)
  }

  /** undici has started the request on a connection: bytes of it may have reached the upstream. */
  protected get started (): boolean {
    return this.controller !== null
  }

  protected abortRequest (err: Error): void {
    if (this.controller === null) this.pendingAbort = err
    else this.controller.abort(err)
  }
}
