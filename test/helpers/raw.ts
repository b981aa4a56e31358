import { connect } from 'node:net'

export interface RawResult {
  /** Everything the server sent before closing (or before `until` matched). */
  readonly text: string
  /** Whether the server closed the connection. */
  readonly closed: boolean
  readonly status: number | undefined
}

/**
 * Sends bytes exactly as given over a new TCP connection (for requests no HTTP client will
 * produce) and collects the answer until the server closes or `until` matches it.
 */
export function rawRequest(url: string, payload: string | Buffer, until?: (text: string) => boolean): Promise<RawResult> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let text = ''
    let done = false
    const finish = (closed: boolean): void => {
      if (done) return
      done = true
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text)
      resolve({ text, closed, status: m === null ? undefined : Number(m[1]) })
      socket.destroy()
    }
    socket.on('connect', () => socket.write(payload))
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      if (until?.(text) === true) finish(false)
    })
    socket.on('close', () => finish(true))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') finish(true)
      else reject(err)
    })
  })
}
