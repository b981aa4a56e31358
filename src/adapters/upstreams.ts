import type { Dispatcher, Pool } from 'undici'
import type { UpstreamConfig } from '../config/schema.js'
import { createPool } from './undici.js'

/** A request waiting for a connection slot; `start` is called when it gets one. */
export interface Waiter {
  start(): void
}

/**
 * What the forward stage uses of an upstream: a slot, the request's headers as this upstream
 * takes them, and dispatch. Upstream implements it; a test can hand in another.
 */
export interface UpstreamSlots {
  readonly config: UpstreamConfig
  admit(w: Waiter): 'now' | 'queued' | 'full'
  cancel(w: Waiter): boolean
  release(): void
  headersFor(headers: string[]): string[]
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void
}

/**
 * One undici Pool per upstream, owned by Ficus (createPool): keep-alive, bounded
 * connections, timeouts from routes.yaml, no retries (reply-from's 10 retries on 503 do not
 * exist here).
 *
 * Admission is Ficus's own, in front of the Pool: at most `connections` requests run, at
 * most `maxQueue` wait (first come, first served), and past that a request fails at once
 * (503), as Envoy's circuit breakers do. Undici's own queue would also wait, but a client
 * that leaves could not be taken out of it: its slot stayed counted, and aborting it later
 * destroyed a pooled connection.
 */
export class Upstream implements UpstreamSlots {
  readonly pool: Pool
  /** Requests holding a slot (dispatched to the Pool, or about to be). */
  running = 0
  private readonly waiting = new Set<Waiter>()

  constructor (readonly config: UpstreamConfig) {
    this.pool = createPool(config.origin, {
      connections: config.connections,
      connectTimeoutMs: config.connectTimeoutMs,
      headersTimeoutMs: config.timeoutMs,
      bodyTimeoutMs: config.bodyTimeoutMs
    })
  }

  /** Requests running or waiting. */
  get load (): number {
    return this.running + this.waiting.size
  }

  /**
   * Asks for a slot: `now` (the caller dispatches at once), `queued` (`w.start()` is called
   * when a slot frees up; `cancel(w)` gives up) or `full` (refuse the request).
   */
  admit (w: Waiter): 'now' | 'queued' | 'full' {
    if (this.running < this.config.connections) {
      this.running++
      return 'now'
    }
    if (this.waiting.size < this.config.maxQueue) {
      this.waiting.add(w)
      return 'queued'
    }
    return 'full'
  }

  /** Takes a waiting request out of the queue (its client left); false if it was not waiting. */
  cancel (w: Waiter): boolean {
    return this.waiting.delete(w)
  }

  /** Gives a slot back: straight to the longest-waiting request, if any. */
  release (): void {
    const next = this.waiting.values().next()
    if (next.done === true) {
      this.running--
      if (this.running === 0) this.idle?.()
      return
    }
    this.waiting.delete(next.value)
    next.value.start()
  }

  /**
   * The request's header list as this upstream gets it: with Host replaced by the
   * upstream's own when `hostHeader: upstream` (a copy), else the list itself.
   */
  headersFor (headers: string[]): string[] {
    if (this.config.hostHeader !== 'upstream') return headers
    const out = headers.slice()
    for (let i = 0; i < out.length; i += 2) {
      if (out[i] === 'host') out[i + 1] = this.config.authority
    }
    return out
  }

  dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.pool.dispatch(opts, handler)
  }

  /** Lets in-flight requests finish, then closes the connections. */
  close (): Promise<void> {
    return this.pool.close()
  }

  private idle: (() => void) | null = null

  /**
   * A reload replaced or removed this upstream: requests running or queued here finish (a
   * queued one still gets its slot), then the pool closes. New requests go to the new one.
   */
  async retire (): Promise<void> {
    if (this.load > 0) await new Promise<void>((resolve) => { this.idle = resolve })
    await this.pool.close()
  }
}

type Upstreams = ReadonlyMap<string, Upstream>

export function createUpstreams(configs: Readonly<Record<string, UpstreamConfig>>): Map<string, Upstream> {
  return new Map(Object.values(configs).map((c) => [c.name, new Upstream(c)]))
}

export async function closeUpstreams(upstreams: Upstreams): Promise<void> {
  await Promise.all([...upstreams.values()].map((u) => u.close()))
}
