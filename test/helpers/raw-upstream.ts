import { createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { waitFor, withDefaults, type Deadline } from './wait.js'

export interface RawUpstream {
  readonly url: string
  /** Resolves when the n-th accepted connection has closed; rejects past the deadline, or when there is no n-th connection. */
  closed(n: number, deadline?: Deadline): Promise<void>
}

/**
 * A TCP server that speaks whatever bytes `onRequest` writes: for upstreams that break
 * HTTP on purpose (bad framing, half responses, stalls). `onRequest` runs once the request
 * head has arrived.
 */
export async function startRawUpstream(t: { teardown(fn: () => unknown): void }, onRequest: (socket: Socket) => void): Promise<RawUpstream> {
  const sockets: Socket[] = []
  const closes: Promise<void>[] = []
  const state = {
    url: '',
    closed: async (n: number, deadline?: Deadline): Promise<void> => {
      const closing = closes[n - 1]
      if (closing === undefined) throw new Error(`no connection ${n} (${closes.length} accepted)`)
      await waitFor(closing, withDefaults(deadline, `raw upstream: connection ${n} was not closed`))
    }
  }
  const server = createServer((socket) => {
    sockets.push(socket)
    closes.push(new Promise((resolve) => socket.on('close', () => resolve())))
    let head = ''
    socket.on('data', (d: Buffer) => {
      const before = head.includes('\r\n\r\n')
      head += d.toString('latin1')
      if (!before && head.includes('\r\n\r\n')) onRequest(socket)
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return state
}
