import { createHash } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import { WebSocket } from 'undici'
import { waitFor, withDefaults, type Deadline } from './wait.js'

/**
 * A real WebSocket endpoint (RFC 6455) on an upstream's HTTP server: the handshake, and an
 * echo of every text message as `<name>:<text>`, with pings answered and a close frame
 * returned. Small and explicit, so a test sees exactly what crosses the wire; the client side
 * of tests is undici's WebSocket (a real, independent implementation).
 */

export interface WsUpstream {
  /** Upgrade requests that reached this server (their heads). */
  readonly upgrades: IncomingMessage[]
  /** Sockets of open WebSocket connections. */
  readonly open: Set<Socket>
  /** Resolves once no WebSocket connection to this server is open. */
  allClosed(deadline?: Deadline): Promise<void>
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** Accepts WebSocket upgrades on `server`; `name` prefixes every echo. */
export function acceptWebSockets(server: Server, name: string): WsUpstream {
  const upgrades: IncomingMessage[] = []
  const open = new Set<Socket>()
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    upgrades.push(req)
    const key = req.headers['sec-websocket-key']
    if (String(req.headers.upgrade).toLowerCase() !== 'websocket' || typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      return
    }
    const accept = createHash('sha1').update(key + GUID).digest('base64')
    const protocol = req.headers['sec-websocket-protocol']?.split(',')[0]?.trim()
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n${protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`}x-served-by: ${name}\r\n\r\n`)
    open.add(socket)
    socket.on('close', () => open.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.on('end', () => socket.end()) // the peer closed its side: close ours, as WebSocket servers do
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const frame = readFrame(buf)
        if (frame === null) return
        buf = buf.subarray(frame.size)
        if (frame.opcode === 0x1) socket.write(encodeFrame(0x1, Buffer.from(`${name}:${frame.payload.toString()}`)))
        else if (frame.opcode === 0x2) socket.write(encodeFrame(0x2, frame.payload))
        else if (frame.opcode === 0x9) socket.write(encodeFrame(0xa, frame.payload))
        else if (frame.opcode === 0x8) {
          socket.end(encodeFrame(0x8, frame.payload))
          return
        }
      }
    })
  })
  const allClosed = (deadline?: Deadline): Promise<void> =>
    waitFor(() => open.size === 0, withDefaults(deadline, () => `${open.size} WebSocket connection(s) to ${name} are still open`)).then(() => {})
  return { upgrades, open, allClosed }
}

/** One client frame (masked, RFC 6455 §5.2), or null until it is whole. */
function readFrame(buf: Buffer): { opcode: number; payload: Buffer; size: number } | null {
  if (buf.length < 2) return null
  const opcode = (buf[0] as number) & 0x0f
  const masked = ((buf[1] as number) & 0x80) !== 0
  let len = (buf[1] as number) & 0x7f
  let at = 2
  if (len === 126) {
    if (buf.length < 4) return null
    len = buf.readUInt16BE(2)
    at = 4
  } else if (len === 127) {
    if (buf.length < 10) return null
    len = Number(buf.readBigUInt64BE(2))
    at = 10
  }
  const maskAt = at
  if (masked) at += 4
  if (buf.length < at + len) return null
  const payload = Buffer.from(buf.subarray(at, at + len))
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (buf[maskAt + (i % 4)] as number)
  return { opcode, payload, size: at + len }
}

/** A server frame (unmasked, final). */
function encodeFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
  if (n >= 126 && n < 65536) {
    head[0] = 0x80 | opcode
    head[1] = 126
    head.writeUInt16BE(n, 2)
  } else if (n >= 65536) {
    head[0] = 0x80 | opcode
    head[1] = 127
    head.writeBigUInt64BE(BigInt(n), 2)
  }
  return Buffer.concat([head, payload])
}

/** A WebSocket client (undici's) connected through `url`; rejects with the reason when the connection fails. */
export async function openWebSocket(url: string, headers: Record<string, string> = {}, deadline?: Deadline): Promise<WebSocket & { next(): Promise<string> }> {
  const ws = new WebSocket(url, { headers }) as WebSocket & { next(): Promise<string> }
  const inbox: string[] = []
  const waiting: ((s: string) => void)[] = []
  ws.addEventListener('message', (e) => {
    const text = String(e.data)
    const w = waiting.shift()
    if (w !== undefined) w(text)
    else inbox.push(text)
  })
  ws.next = () => waitFor(new Promise<string>((resolve) => {
    const m = inbox.shift()
    if (m !== undefined) resolve(m)
    else waiting.push(resolve)
  }), { message: 'no WebSocket message arrived' })
  await waitFor(new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true })
    ws.addEventListener('error', (e) => reject(new Error(`the WebSocket did not open: ${String((e as { message?: string }).message ?? e.type)}`)), { once: true })
  }), withDefaults(deadline, `the WebSocket to ${url} did not open`))
  return ws
}

/** Resolves with the close event's code once `ws` is closed. */
export function closed(ws: WebSocket, deadline?: Deadline): Promise<number> {
  return waitFor(new Promise<number>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve(-1)
    ws.addEventListener('close', (e) => resolve(e.code), { once: true })
  }), withDefaults(deadline, 'the WebSocket did not close'))
}
