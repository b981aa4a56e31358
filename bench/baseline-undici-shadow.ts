import { createServer, type IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import { HOP, strip } from './hop.js'

/**
 * The hand-tuned limit of shadowing in one Node process: bench/baseline-undici.ts (raw
 * node:http + undici Pool.stream) that also sends a copy of every GET to NEW_URL and compares
 * the answers, with nothing else: no routing, bounds, timeouts, log, metrics or samples.
 * Equal bytes are equal; other bodies are both parsed and compared as JSON. Its ratio to
 * baseline-undici in the same run is what any undici-based shadow can reach on the machine;
 * Ficus's ficus-shadow100 ÷ ficus is measured against it.
 *
 * COPY=undici (default): the copy goes through its own undici Pool, as Ficus's does.
 * COPY=raw: through a minimal hand-written HTTP/1.1 client (keep-alive sockets,
 * Content-Length bodies only, no validation): not a client anyone should ship, the floor of
 * what a copy costs from Node at all (one write and one read on a socket).
 *
 * Env: PORT, LEGACY_URL, NEW_URL, COPY. Counts are printed to stderr on SIGTERM.
 */
const legacy = new Pool(process.env.LEGACY_URL as string, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const NEW_URL = new URL(process.env.NEW_URL ?? (process.env.LEGACY_URL as string))
const COPY = process.env.COPY ?? 'undici'
if (COPY !== 'undici' && COPY !== 'raw') throw new Error('COPY is undici or raw')
const stats = { shadowed: 0, equal: 0, diverged: 0, failed: 0 }

/** Both answers of one request: compared when the second one is complete. */
class Pair {
  status = [0, 0]
  body: Buffer[][] = [[], []]
  left = 2

  done(side: 0 | 1, status: number, chunks: Buffer[] | null): void {
    if (chunks === null) {
      stats.failed++
      this.left = -1
      return
    }
    this.status[side] = status
    this.body[side] = chunks
    if (--this.left !== 0) return
    const [a, b] = [Buffer.concat(this.body[0] as Buffer[]), Buffer.concat(this.body[1] as Buffer[])]
    const same = this.status[0] === this.status[1] && (a.equals(b) || isDeepStrictEqual(JSON.parse(a.toString()), JSON.parse(b.toString())))
    if (same) stats.equal++
    else stats.diverged++
  }
}

/** The copy through undici, with the handler API Ficus uses. */
const copies = new Pool(NEW_URL.origin, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
class CopyHandler implements Dispatcher.DispatchHandler {
  private status = 0
  private readonly chunks: Buffer[] = []
  constructor(private readonly pair: Pair) {}
  onRequestStart(): void { /* undici tells the handler APIs apart by this method */ }
  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number): void { this.status = statusCode }
  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void { this.chunks.push(chunk) }
  onResponseEnd(): void { this.pair.done(1, this.status, this.chunks) }
  onResponseError(): void { this.pair.done(1, 0, null) }
}

/** One keep-alive connection of the raw client: one request at a time, Content-Length bodies. */
class RawConnection {
  private readonly socket: Socket
  private pending: Buffer | null = null
  private status = 0
  private need = -1
  private got = 0
  private chunks: Buffer[] = []
  private pair: Pair | null = null

  constructor() {
    this.socket = connect(Number(NEW_URL.port), NEW_URL.hostname)
    this.socket.setNoDelay(true)
    this.socket.on('data', (d: Buffer) => this.read(d))
    this.socket.on('error', () => this.fail())
    this.socket.on('close', () => this.fail())
  }

  send(req: IncomingMessage, pair: Pair): void {
    this.pair = pair
    let head = `GET ${req.url as string} HTTP/1.1\r\nhost: ${NEW_URL.host}\r\nx-ficus-shadow: 1\r\n`
    const raw = req.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (!HOP.has((raw[i] as string).toLowerCase())) head += `${raw[i] as string}: ${raw[i + 1] as string}\r\n`
    this.socket.write(head + '\r\n', 'latin1')
  }

  private read(d: Buffer): void {
    if (this.need < 0) {
      const all = this.pending === null ? d : Buffer.concat([this.pending, d])
      const end = all.indexOf('\r\n\r\n')
      if (end < 0) {
        this.pending = all
        return
      }
      this.pending = null
      const head = all.toString('latin1', 0, end)
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head)
      if (length === null) return this.fail() // chunked: not this client's business
      this.status = Number(head.slice(9, 12))
      this.need = Number(length[1])
      d = all.subarray(end + 4)
    }
    if (d.length > 0) this.chunks.push(d)
    this.got += d.length
    if (this.got < this.need) return
    const pair = this.pair as Pair
    const chunks = this.chunks
    this.pair = null
    this.need = -1
    this.got = 0
    this.chunks = []
    idle.push(this)
    pair.done(1, this.status, chunks)
  }

  private fail(): void {
    const pair = this.pair
    this.pair = null
    if (pair !== null) pair.done(1, 0, null)
    this.socket.destroy()
  }
}
const idle: RawConnection[] = []

function copy(req: IncomingMessage, pair: Pair): void {
  stats.shadowed++
  if (COPY === 'raw') {
    (idle.pop() ?? new RawConnection()).send(req, pair)
    return
  }
  copies.dispatch({ path: req.url as string, method: 'GET', headers: { ...strip(req.headers), 'x-ficus-shadow': '1' } }, new CopyHandler(pair))
}

const server = createServer((req, res) => {
  const pair = req.method === 'GET' ? new Pair() : null
  if (pair !== null) copy(req, pair)
  const chunks: Buffer[] = []
  let status = 0
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
  legacy.stream({ path: req.url as string, method: req.method as 'GET', headers: strip(req.headers), body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      status = statusCode
      res.writeHead(statusCode, strip(headers))
      if (pair !== null) {
        // Pool.stream writes the body into `res`: keep each chunk on its way.
        const write = res.write.bind(res) as (chunk: Buffer) => boolean
        res.write = ((chunk: Buffer) => {
          chunks.push(chunk)
          return write(chunk)
        }) as typeof res.write
      }
      return res
    },
    (err) => {
      if (err === null) {
        pair?.done(0, status, chunks)
        return
      }
      pair?.done(0, 0, null)
      if (!res.headersSent) res.writeHead(502, { 'content-length': 0 }).end()
      else res.destroy(err)
    })
})
server.keepAliveTimeout = 65_000
server.listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => {
  process.stderr.write(`undici-shadow ${JSON.stringify({ copy: COPY, ...stats })}\n`)
  process.exit(0)
})
