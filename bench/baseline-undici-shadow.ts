import { createServer, type IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import { joined, sameBytes } from '../src/core/compare.js'
import { HOP, strip } from './hop.js'

/**
 * The hand-tuned limit of shadowing in one Node process: bench/baseline-undici.ts (raw
 * node:http + undici Pool.stream) that also sends a copy of every GET to NEW_URL and compares
 * the answers, with nothing else: no routing, bounds, timeouts, log, metrics or samples.
 * Equal bytes are equal (compared chunk by chunk, as Ficus does); other bodies are joined,
 * parsed and compared as JSON. What it adds to baseline-undici in the same run is what a copy
 * and a comparison cost a Node proxy built on undici; Ficus's shadow is measured against it.
 * The primary path (Pool options, 502) is baseline-undici's, and must stay so.
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
/** `lost` (printed): copies sent that ended in none of the other three, which should never happen. */
const stats = { shadowed: 0, equal: 0, diverged: 0, failed: 0 }

/** Both answers of one request: compared when the second one is complete. */
class Pair {
  status = [0, 0]
  body: Buffer[][] = [[], []]
  left = 2

  done(side: 0 | 1, status: number, chunks: Buffer[] | null): void {
    if (this.left < 0) return // the other side failed: already counted
    if (chunks === null) {
      stats.failed++
      this.left = -1
      return
    }
    this.status[side] = status
    this.body[side] = chunks
    if (--this.left !== 0) return
    const [a, b] = this.body as [Buffer[], Buffer[]]
    if (this.status[0] === this.status[1] && (sameBytes(a, b) || sameJson(a, b))) stats.equal++
    else stats.diverged++
  }
}

function sameJson(a: Buffer[], b: Buffer[]): boolean {
  try {
    return isDeepStrictEqual(JSON.parse(joined(a).toString()), JSON.parse(joined(b).toString()))
  } catch {
    return false // not JSON, and not the same bytes
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
  /** Closed (the upstream closed it while idle, or it failed): not to be reused. */
  dead = false
  private pending: Buffer | null = null
  private status = 0
  private need = -1
  private got = 0
  private chunks: Buffer[] = []
  private pair: Pair | null = null
  private closing = false

  constructor() {
    this.socket = connect(Number(NEW_URL.port || 80), NEW_URL.hostname)
    this.socket.setNoDelay(true)
    this.socket.on('data', (d: Buffer) => this.read(d))
    this.socket.on('error', () => this.fail())
    this.socket.on('close', () => this.fail())
  }

  send(req: IncomingMessage, pair: Pair): void {
    this.pair = pair
    let head = `GET ${req.url as string} HTTP/1.1\r\nhost: ${NEW_URL.host}\r\nx-ficus-shadow: 1\r\n`
    const raw = req.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (!COPY_SKIPS.has((raw[i] as string).toLowerCase())) head += `${raw[i] as string}: ${raw[i + 1] as string}\r\n`
    this.socket.write(head + '\r\n', 'latin1')
  }

  private read(d: Buffer): void {
    if (this.pair === null) return this.fail() // bytes while idle (a 408?): not a connection to reuse
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
      this.closing = /\r\nconnection:[ \t]*close/i.test(head)
      d = all.subarray(end + 4)
    }
    if (d.length > 0) this.chunks.push(d)
    this.got += d.length
    if (this.got < this.need) return
    const pair = this.pair
    const chunks = this.chunks
    this.pair = null
    this.need = -1
    this.got = 0
    this.chunks = []
    if (this.closing) this.fail() // the upstream closes it: not reusable
    else idle.push(this)
    pair.done(1, this.status, chunks)
  }

  private fail(): void {
    this.dead = true
    const pair = this.pair
    this.pair = null
    if (pair !== null) pair.done(1, 0, null)
    this.socket.destroy()
  }
}
/** Idle connections; a closed one is skipped when popped. */
const idle: RawConnection[] = []
/** Not copied by the raw client: hop-by-hop, and Content-Length (a copied GET goes without a body). */
const COPY_SKIPS = new Set([...HOP, 'content-length'])

function rawConnection(): RawConnection {
  for (let c = idle.pop(); c !== undefined; c = idle.pop()) if (!c.dead) return c
  return new RawConnection()
}

/** `headers`: the request's, stripped (the primary's too). */
function copy(req: IncomingMessage, headers: Record<string, string | string[]>, pair: Pair): void {
  stats.shadowed++
  if (COPY === 'raw') {
    rawConnection().send(req, pair)
    return
  }
  const own: Record<string, string | string[]> = { ...headers, 'x-ficus-shadow': '1' }
  delete own['content-length'] // a copied GET goes without a body
  copies.dispatch({ path: req.url as string, method: 'GET', headers: own }, new CopyHandler(pair))
}

const server = createServer((req, res) => {
  const headers = strip(req.headers)
  const pair = req.method === 'GET' ? new Pair() : null
  if (pair !== null) copy(req, headers, pair)
  const chunks: Buffer[] = []
  let status = 0
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
  legacy.stream({ path: req.url as string, method: req.method as 'GET', headers, body: hasBody ? req : null },
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
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  // PORT=0 (tests): say which port was taken.
  if (process.env.PORT === '0') process.stderr.write(`listening on ${(server.address() as { port: number }).port}\n`)
})
process.on('SIGTERM', () => {
  const lost = stats.shadowed - stats.equal - stats.diverged - stats.failed
  process.stderr.write(`undici-shadow ${JSON.stringify({ copy: COPY, ...stats, lost })}\n`)
  process.exit(0)
})
