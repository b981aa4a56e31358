import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import type { UpstreamConfig } from '../config/schema.js'

/**
 * An Upgrade request (WebSocket, …) to a backend, on a connection of its own: an upgraded
 * connection leaves HTTP for good, so it is never taken from, or given back to, the
 * upstream's undici pool (its `connections` bound is for requests). Node's HTTP client
 * sends the head and parses the answer: a 101 hands over the socket, any other status is an
 * ordinary response.
 *
 * Not undici's `upgrade()`: it turns every answer but a 101 into an error, and a backend that
 * refuses an upgrade (401, 426, a plain 200) must be answered as it said.
 */

/** What the backend did with the Upgrade request. */
export type Dialled =
  /** It switched protocols: its 101 (raw header pairs), the socket, and what it sent after the head. */
  | { readonly kind: 'switched'; readonly rawHeaders: string[]; readonly socket: Socket; readonly head: Buffer }
  /** It answered with another status: the response to relay (its body still to read). */
  | { readonly kind: 'answered'; readonly response: IncomingMessage }

export interface Dial {
  /** Resolves with the backend's answer; rejects with the socket's error (`code`: ECONNREFUSED, ETIMEDOUT for the connection, UND_ERR_HEADERS_TIMEOUT for the answer). */
  readonly answer: Promise<Dialled>
  /** Gives up before the answer (the client left): `answer` rejects with code ABORTED. */
  abort(): void
}

/** A timeout of the dial, with the code of undici's own (errors.ts maps both alike). */
function timeout(code: string, message: string): Error {
  return Object.assign(new Error(message), { code })
}

/**
 * Sends `method target` with `headers` (a flat name/value list, Connection and Upgrade
 * included) to `upstream`, within its connectTimeout to connect and its timeout to answer.
 */
export function dialUpgrade(upstream: UpstreamConfig, method: string, target: string, headers: string[], answerMs = upstream.timeoutMs): Dial {
  const url = new URL(upstream.origin)
  const tls = url.protocol === 'https:'
  const request = tls ? httpsRequest : httpRequest
  let req: ClientRequest | undefined
  let timer: NodeJS.Timeout | undefined
  let settled = false
  let fail: (err: Error) => void = () => {}
  const answer = new Promise<Dialled>((resolve, reject) => {
    fail = (err: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req?.destroy()
      reject(err)
    }
    const r = req = request({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? (tls ? 443 : 80) : Number(url.port),
      method,
      path: target,
      headers,
      setHost: false, // the forwarded headers carry Host
      agent: false, // a connection of its own (see above)
      ...(tls ? { servername: url.hostname } : {})
    })
    timer = setTimeout(() => fail(timeout('ETIMEDOUT', 'connect timeout')), upstream.connectTimeoutMs)
    r.once('socket', (s: Socket) => {
      s.once('connect', () => {
        clearTimeout(timer)
        timer = setTimeout(() => fail(timeout('UND_ERR_HEADERS_TIMEOUT', 'no answer to the upgrade in time')), answerMs)
      })
    })
    r.on('error', fail)
    r.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      if (settled) {
        socket.destroy()
        return
      }
      settled = true
      clearTimeout(timer)
      resolve({ kind: 'switched', rawHeaders: res.rawHeaders, socket, head })
    })
    r.once('response', (response: IncomingMessage) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({ kind: 'answered', response })
    })
    r.end()
  })
  return {
    answer,
    abort: () => fail(timeout('ABORTED', 'the client left before the backend answered'))
  }
}
