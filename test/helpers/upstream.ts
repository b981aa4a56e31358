import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { waitFor, withDefaults, type Deadline } from './wait.js'

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
  /** Resolves once `n` request heads have arrived; rejects past the deadline (default: DEADLINE_MS, saying how many did). */
  arrived(n: number, deadline?: Deadline): Promise<void>
  /** TCP connections accepted so far. */
  readonly connections: () => number
  /** Resolves once no connection to this upstream is open (say, after its idle ones timed out); rejects past the deadline. */
  allClosed(deadline?: Deadline): Promise<void>
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
  const closedWaiters: (() => void)[] = []
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
  let connections = 0
  server.on('connection', (s: Socket) => {
    connections++
    sockets.add(s)
    s.on('close', () => {
      sockets.delete(s)
      if (sockets.size === 0) for (const resolve of closedWaiters.splice(0)) resolve()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const close = (): Promise<void> => new Promise((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  })
  t.teardown(close)
  const arrived = async (n: number, deadline?: Deadline): Promise<void> => {
    if (n <= started) return
    const w = { n, resolve: () => {} }
    const event = new Promise<void>((resolve) => { w.resolve = resolve })
    waiting.push(w)
    try {
      await waitFor(event, withDefaults(deadline, () => `upstream ${name}: ${n} request(s) did not arrive (${started} did)`))
    } finally {
      if (waiting.includes(w)) waiting.splice(waiting.indexOf(w), 1)
    }
  }
  const allClosed = async (deadline?: Deadline): Promise<void> => {
    if (sockets.size === 0) return
    await waitFor(new Promise<void>((resolve) => closedWaiters.push(resolve)),
      withDefaults(deadline, () => `upstream ${name}: ${sockets.size} connection(s) still open`))
  }
  return { url: `http://127.0.0.1:${port}`, port, requests, started: () => started, arrived, connections: () => connections, allClosed, server, close }
}

export interface Held {
  readonly handler: Handler
  /** Answers every held request, and from now on every request at once. */
  release(): void
}

/**
 * A handler that holds requests until `release()`, then answers them with `then`: every
 * request, or only those `hold` picks (the others are answered at once).
 * @example const slow = held((_req, res) => res.end('done'), (req) => req.url === '/slow')
 */
export function held(then: Handler, hold: (req: IncomingMessage) => boolean = () => true): Held {
  const queue: (() => void)[] = []
  let released = false
  return {
    handler: (req, res, body) => {
      if (released || !hold(req)) then(req, res, body)
      else queue.push(() => { then(req, res, body) })
    },
    release: () => {
      released = true
      for (const go of queue.splice(0)) go()
    }
  }
}

/**
 * A port nothing listens on, and nothing can start listening on while the tests run: the
 * local port of an open client connection. A port merely bound and released could be handed
 * to another test's listener by the kernel meanwhile (seen under a loaded full run: the
 * "refused" upstream then accepted and never answered).
 */
export async function closedPort(): Promise<number> {
  const anchor = createNetServer((s) => { s.unref() })
  await new Promise<void>((resolve) => anchor.listen(0, '127.0.0.1', resolve))
  anchor.unref()
  const holder = netConnect((anchor.address() as AddressInfo).port, '127.0.0.1')
  await once(holder, 'connect')
  holder.unref()
  return holder.localPort as number
}

/** n distinct ports that were free on 127.0.0.1 a moment ago (all held open until all are known). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    const ports: number[] = []
    for (let i = 0; i < n; i++) {
      const s = createServer()
      servers.push(s)
      ports.push(await new Promise<number>((resolve, reject) => {
        s.once('error', reject)
        s.listen(0, '127.0.0.1', () => {
          const a = s.address()
          if (a !== null && typeof a === 'object') resolve(a.port)
          else reject(new Error('no port'))
        })
      }))
    }
    return ports
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  }
}


/**
 * An address whose TCP connects hang: a child process listens with a backlog of 1 (Node reads 0 as "default") and then
 * blocks its event loop, so it never accepts; once the kernel's accept queue is full (we
 * fill it here), further SYNs are dropped and a connect times out, as with a dead host.
 */
export async function unresponsiveAddress(t: Teardown): Promise<string> {
  const { spawn } = await import('node:child_process')
  const { connect } = await import('node:net')
  const child = spawn(process.execPath, ['-e', `
    const s = require('net').createServer()
    s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(s.address().port + '\\n')
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000)
    })`], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const port = await waitFor(new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))),
    { message: 'the unresponsive listener did not print its port' })
  // Fill the accept queue: open connections until one of them stays pending.
  const fillers: import('node:net').Socket[] = []
  t.teardown(() => { for (const s of fillers) s.destroy() })
  for (let i = 0; i < 16; i++) {
    const s = connect(port, '127.0.0.1')
    fillers.push(s)
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 200)
      s.once('connect', () => { clearTimeout(timer); resolve(true) })
    })
    if (!connected) return `http://127.0.0.1:${port}`
  }
  throw new Error('could not fill the accept queue')
}
