import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/**
 * A loopback HTTP server that speaks the client side of Unleash's API as unleash-client
 * uses it: GET /api/client/features (with ETag / 304), POST /api/client/register and
 * /api/client/metrics. The flag definitions are whatever the test sets, so a test can put
 * the proxy in any state the client specification describes. (The real Unleash server is
 * driven in test/unleash/, with `npm run test:unleash`.)
 */

/** A /api/client/features document. */
export interface FeaturesDoc {
  readonly version?: number
  readonly features: readonly unknown[]
  readonly segments?: readonly unknown[]
}

export interface FeaturesServer {
  /** The `unleash.url` to configure: `http://127.0.0.1:PORT/api`. */
  readonly url: string
  readonly token: string
  /** Replaces the definitions served from the next fetch on. */
  set(doc: FeaturesDoc): void
  /** Answer fetches with this status instead (503 to simulate an outage); null to serve again. */
  failWith(status: number | null): void
  /** Stops listening and cuts open connections: from now on the client's fetches are refused. */
  close(): Promise<void>
}

interface Teardown { teardown(fn: () => unknown): void }

/** A flexibleRollout flag as Unleash serves it. */
export function rolloutFlag(name: string, rollout: number, opts: { enabled?: boolean; groupId?: string; stickiness?: string; constraints?: unknown[] } = {}): unknown {
  return {
    name,
    enabled: opts.enabled ?? true,
    strategies: [{
      name: 'flexibleRollout',
      parameters: { rollout: String(rollout), stickiness: opts.stickiness ?? 'default', groupId: opts.groupId ?? name },
      constraints: opts.constraints ?? []
    }]
  }
}

export async function startFeaturesServer(t: Teardown, initial: FeaturesDoc, token = 'default:development.test-client-token'): Promise<FeaturesServer> {
  let body = ''
  let etag = ''
  const set = (doc: FeaturesDoc): void => {
    body = JSON.stringify({ version: 2, ...doc })
    etag = `"${createHash('sha1').update(body).digest('hex')}"`
  }
  set(initial)
  let failure: number | null = null
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    req.resume()
    const done = (status: number, headers: Record<string, string> = {}, text = ''): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(text)
    }
    if (req.headers.authorization !== token) return done(401, {}, '{"message":"bad token"}')
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'POST' && (path === '/api/client/register' || path === '/api/client/metrics')) return done(202)
    if (req.method !== 'GET' || path !== '/api/client/features') return done(404)
    if (failure !== null) return done(failure, {}, '{"message":"failing on purpose"}')
    if (req.headers['if-none-match'] === etag) return done(304, { etag })
    return done(200, { etag }, body)
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    const done = new Promise<void>((resolve) => server.close(() => { resolve() }))
    for (const s of sockets) s.destroy()
    await done
  }
  t.teardown(close)
  return {
    url: `http://127.0.0.1:${port}/api`,
    token,
    set,
    failWith: (status) => { failure = status },
    close
  }
}
