import { Pool, type Dispatcher } from 'undici'
import type { UpstreamConfig } from '../config/schema.js'

/**
 * One undici Pool per upstream, owned by Ficus (not by a plugin's defaults): keep-alive,
 * bounded connections, timeouts from routes.yaml, TLS verification on (undici's default),
 * and no retries (a Pool never retries; reply-from's 10 retries on 503 do not exist here).
 */
export class Upstream {
  readonly pool: Pool
  /** Requests dispatched and not finished; bounded by connections + maxQueue. */
  inflight = 0
  private readonly capacity: number

  constructor (readonly config: UpstreamConfig) {
    this.capacity = config.connections + config.maxQueue
    this.pool = new Pool(config.origin, {
      connections: config.connections,
      pipelining: 1,
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      strictContentLength: true
    })
  }

  /** True when one more request would exceed connections + maxQueue (Envoy-style circuit breaking). */
  get saturated (): boolean {
    return this.inflight >= this.capacity
  }

  /** Sends a request; the caller must call `release()` exactly once when it is over. */
  dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.inflight++
    this.pool.dispatch(opts, handler)
  }

  release (): void {
    this.inflight--
  }

  /** Lets in-flight requests finish, then closes the connections. */
  close (): Promise<void> {
    return this.pool.close()
  }
}

export type Upstreams = ReadonlyMap<string, Upstream>

export function createUpstreams(configs: Readonly<Record<string, UpstreamConfig>>): Map<string, Upstream> {
  return new Map(Object.values(configs).map((c) => [c.name, new Upstream(c)]))
}

export async function closeUpstreams(upstreams: Upstreams): Promise<void> {
  await Promise.all([...upstreams.values()].map((u) => u.close()))
}
