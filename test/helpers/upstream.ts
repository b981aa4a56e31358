import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface Recorded {
  readonly method: string
  readonly url: string
  readonly headers: IncomingMessage['headers']
  readonly rawHeaders: string[]
  readonly body: Buffer
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void

export interface Upstream {
  readonly url: string
  readonly port: number
  /** Every request that reached this upstream, in arrival order (recorded when its body ended). */
  readonly requests: Recorded[]
  /** Requests whose head arrived (counted before the body is read). */
  readonly started: () => number
  /** Resolves once `n` request heads have arrived. */
  arrived(n: number): Promise<void>
  readonly server: Server
  close(): Promise<void>
}

interface Teardown { teardown(fn: () => unknown): void }

/**
 * A real HTTP server on 127.0.0.1:0 that records what it receives. The default handler
 * answers JSON `{ served: name, method, url, headers, body }`.
 */
export async function startUpstream(t: Teardown, name: string, handler?: Handler): Promise<Upstream> {
  const requests: Recorded[] = []
  let started = 0
  const waiting: { n: number; resolve: () => void }[] = []
  const sockets = new Set<Socket>()
  const answer: Handler = handler ?? ((req, res, body) => {
    const payload = JSON.stringify({ served: name, method: req.method, url: req.url, headers: req.headers, body: body.toString() })
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name })
    res.end(payload)
  })
  const server = createServer((req, res) => {
    started++
    for (const w of waiting.filter((x) => x.n <= started)) {
      waiting.splice(waiting.indexOf(w), 1)
      w.resolve()
    }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      requests.push({ method: req.method as string, url: req.url as string, headers: req.headers, rawHeaders: req.rawHeaders, body })
      answer(req, res, body)
    })
    req.on('error', () => {})
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const close = (): Promise<void> => new Promise((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  })
  t.teardown(close)
  const arrived = (n: number): Promise<void> => n <= started
    ? Promise.resolve()
    : new Promise((resolve) => waiting.push({ n, resolve }))
  return { url: `http://127.0.0.1:${port}`, port, requests, started: () => started, arrived, server, close }
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}
