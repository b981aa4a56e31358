/**
 * Header rewriting on the way to an upstream and back (RFC 9110 §7.6). Pure: the caller
 * passes the peer address, protocol and request id.
 */

import { plainHeaderName, SINGLE_FIELDS } from './strictness.js'

/**
 * What happens to a request header whose name is not letters, digits and `-` (`X_Forwarded_For`,
 * `X.Real.IP`; core/strictness.ts plainHeaderName): left out of the upstream request (as
 * nginx does), forwarded, or the request refused.
 */
export type HeaderNamePolicy = 'drop' | 'pass' | 'refuse'

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) and fields a proxy must not relay. `expect` is
 * answered by Ficus itself (100-continue happens on the client side); `trailer` announces
 * request trailers, which are not relayed; a client must never be able to mark its own
 * request as a shadow copy or a sync delivery (`x-ficus-sync`: a backend that calls back
 * through Ficus must not have its write mistaken for one, or echoed). `te` is rebuilt
 * below: only `trailers` passes.
 */
const REQUEST_DROP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer',
  'http2-settings', 'proxy-authorization', 'expect', 'x-ficus-shadow', 'x-ficus-sync',
  // rewritten below
  'host', 'via', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-request-id'
])

/**
 * Hop-by-hop fields of a response; Proxy-Authenticate is addressed to the proxy itself
 * (RFC 9110 §11.7.1). `Trailer` is end-to-end and kept: Ficus relays response trailers.
 */
const RESPONSE_DROP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade',
  'http2-settings', 'proxy-authenticate'
])

export interface ForwardContext {
  /** Socket peer address, as Node reports it. */
  readonly peer: string
  readonly proto: 'http' | 'https'
  /** HTTP version of the client's request, for Via ("1.1"). */
  readonly httpVersion: string
  /** How many proxies in front of Ficus are trusted to have set X-Forwarded-For / Forwarded. */
  readonly trustedHops: number
  readonly requestId: string
  /** Authority of an absolute-form target, which replaces Host (RFC 9112 §3.2.2); undefined keeps the client's. */
  readonly authority: string | undefined
  /** Header names that are not letters, digits and `-`: `drop` leaves them out (`limits.headerNames`). */
  readonly headerNames: HeaderNamePolicy
}

export interface ForwardedHeaders {
  /** Flat [name, value, name, value, …] list, the form undici and Node's rawHeaders use. */
  readonly headers: string[]
  /** The client's address: the peer, or the first untrusted hop of X-Forwarded-For. */
  readonly clientIp: string
  /** How many Host fields the request had (more than one is a 400). */
  readonly hostCount: number
  /** The first field of SINGLE_FIELDS (core/strictness.ts) the request has twice, lower-case; null when none. */
  readonly repeated: string | null
  /** Header names that are not letters, digits and `-`, as sent (left out of `headers` unless the policy is `pass`). */
  readonly oddNames: readonly string[]
}

/**
 * Builds the upstream request's headers from the client's raw headers: repeated headers
 * keep their order, hop-by-hop ones and those named in `Connection` are dropped, and
 * `Via`, `X-Forwarded-*`, `Forwarded` and `X-Request-Id` are set.
 * @example forwardHeaders(req.rawHeaders, { peer: '10.0.0.7', proto: 'http', ... })
 */
export function forwardHeaders(raw: readonly string[], ctx: ForwardContext): ForwardedHeaders {
  let listed: Set<string> | null = null
  let host: string | undefined
  let xff = ''
  let xfp: string | undefined
  let xfh: string | undefined
  let forwarded = ''
  let via = ''
  let hostCount = 0
  let trailers = false
  let seen: Set<string> | null = null
  let repeated: string | null = null
  // Each name lower-cased once, for both passes.
  const lower: string[] = new Array<string>(raw.length >> 1)
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    lower[i >> 1] = name
    const value = raw[i + 1] as string
    if (repeated === null && SINGLE_FIELDS.has(name)) {
      seen ??= new Set()
      if (seen.has(name)) repeated = name
      else seen.add(name)
    }
    switch (name) {
      case 'connection':
        for (const token of value.split(',')) {
          const t = token.trim().toLowerCase()
          if (t !== '' && t !== 'close' && t !== 'keep-alive') (listed ??= new Set()).add(t)
        }
        break
      case 'host': host ??= value; hostCount++; break
      case 'te': trailers ||= value.split(',').some((c) => c.trim().toLowerCase() === 'trailers'); break
      case 'x-forwarded-for': xff = xff === '' ? value : `${xff}, ${value}`; break
      // The nearest proxy appends last: with trusted hops, the last value is the trusted one.
      case 'x-forwarded-proto': xfp = lastItem(value); break
      case 'x-forwarded-host': xfh = lastItem(value); break
      case 'forwarded': forwarded = forwarded === '' ? value : `${forwarded}, ${value}`; break
      case 'via': via = via === '' ? value : `${via}, ${value}`; break
    }
  }

  const out: string[] = []
  let oddNames: string[] | null = null
  const keepOdd = ctx.headerNames === 'pass'
  for (let i = 0; i < raw.length; i += 2) {
    const name = lower[i >> 1] as string
    if (REQUEST_DROP.has(name) || (listed !== null && listed.has(name))) continue
    if (!plainHeaderName(name)) {
      (oddNames ??= []).push(raw[i] as string)
      if (!keepOdd) continue
    }
    out.push(raw[i] as string, raw[i + 1] as string)
  }

  if (trailers) out.push('te', 'trailers')

  const peer = unmapIPv4(ctx.peer)
  const trusted = ctx.trustedHops > 0
  let clientIp = peer
  let chain = peer
  let earlier = ''
  if (trusted) {
    const hops = xff === '' ? [] : xff.split(',').map((s) => s.trim()).filter((s) => s !== '')
    hops.push(peer)
    const first = Math.max(0, hops.length - 1 - ctx.trustedHops)
    clientIp = hops[first] as string
    // Entries left of the client were written by the client itself: not forwarded. The
    // same for Forwarded: one element per trusted proxy is kept.
    chain = hops.slice(first).join(', ')
    earlier = forwarded === '' ? '' : splitElements(forwarded).slice(-ctx.trustedHops).join(', ')
  }
  const clientHost = ctx.authority ?? host ?? ''
  const ours = `for=${forwardedNode(peer)};host=${quoted(clientHost)};proto=${ctx.proto}`
  if (clientHost !== '') out.push('host', clientHost)
  out.push(
    'via', via === '' ? `${ctx.httpVersion} ficus` : `${via}, ${ctx.httpVersion} ficus`,
    'x-forwarded-for', chain,
    'x-forwarded-proto', trusted && xfp !== undefined ? xfp : ctx.proto,
    'x-forwarded-host', trusted && xfh !== undefined ? xfh : clientHost,
    'forwarded', earlier !== '' ? `${earlier}, ${ours}` : ours,
    'x-request-id', ctx.requestId
  )
  return { headers: out, clientIp, hostCount, repeated, oddNames: oddNames ?? NONE }
}

const NONE: readonly string[] = []

/**
 * Copies an upstream response's headers for the client, without hop-by-hop fields and
 * those the response's `Connection` names. Node re-frames the body itself.
 */
export function responseHeaders(h: Readonly<Record<string, string | string[] | undefined>>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const conn = h.connection
  let listed: Set<string> | null = null
  if (conn !== undefined) {
    for (const token of (Array.isArray(conn) ? conn.join(',') : conn).split(',')) {
      const t = token.trim().toLowerCase()
      if (t !== '') (listed ??= new Set()).add(t)
    }
  }
  for (const name in h) {
    if (RESPONSE_DROP.has(name) || (listed !== null && listed.has(name))) continue
    const v = h[name]
    if (v !== undefined) out[name] = v
  }
  return out
}

/**
 * The head of a backend's `101 Switching Protocols`, as Ficus writes it on the client's
 * socket: the backend's fields as it sent them (`Sec-WebSocket-Accept`, `-Protocol`,
 * `-Extensions`, cookies…) without hop-by-hop ones, then `Connection: Upgrade` and the
 * `Upgrade` it switched to (RFC 9110 §7.8), and `extra` pairs. Values come from Node's
 * parser, which refuses CR and LF in them.
 * @example switchingProtocolsHead(['Upgrade', 'websocket', 'Sec-WebSocket-Accept', 'x'], 'websocket', [])
 */
export function switchingProtocolsHead(raw: readonly string[], protocol: string, extra: readonly string[]): string {
  const listed = new Set<string>()
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'connection') continue
    for (const token of (raw[i + 1] as string).split(',')) listed.add(token.trim().toLowerCase())
  }
  let head = 'HTTP/1.1 101 Switching Protocols\r\n'
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (RESPONSE_DROP.has(lower) || listed.has(lower)) continue
    head += `${name}: ${raw[i + 1] as string}\r\n`
  }
  for (let i = 0; i < extra.length; i += 2) head += `${extra[i] as string}: ${extra[i + 1] as string}\r\n`
  return `${head}Connection: Upgrade\r\nUpgrade: ${protocol}\r\n\r\n`
}

function lastItem(value: string): string {
  const comma = value.lastIndexOf(',')
  return comma === -1 ? value.trim() : value.slice(comma + 1).trim()
}

/** RFC 7239 §4: elements are comma-separated; a quoted string may itself hold commas. */
function splitElements(value: string): string[] {
  const out: string[] = []
  let quoted = false
  let start = 0
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (c === '"' && value[i - 1] !== '\\') quoted = !quoted
    else if (c === ',' && !quoted) {
      out.push(value.slice(start, i).trim())
      start = i + 1
    }
  }
  out.push(value.slice(start).trim())
  return out.filter((e) => e !== '')
}

/** A client-chosen request id is kept when it is short printable ASCII; otherwise we make one. */
export function acceptableRequestId(id: string | string[] | undefined): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= 128 && /^[\x21-\x7e]+$/.test(id)
}

/** `::ffff:10.0.0.1` → `10.0.0.1`: Node reports IPv4 peers of a dual-stack socket that way. */
export function unmapIPv4(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr
}

/** RFC 7239 §6: IPv6 nodes are bracketed and quoted. */
function forwardedNode(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip
}

function quoted(s: string): string {
  // Nearly every host has nothing to escape: no regular expression for it.
  if (!s.includes('"') && !s.includes('\\')) return `"${s}"`
  return `"${s.replace(/[\\"]/g, '\\$&')}"`
}

/** Whether a request says it has a body (Transfer-Encoding, or a Content-Length other than 0). */
export function declaresBody(headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  const length = headers['content-length']
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/** Whether a request declares a body larger than `limit` bytes (refused before it is read). */
export function declaresMoreThan(headers: Readonly<Record<string, string | string[] | undefined>>, limit: number): boolean {
  const length = headers['content-length']
  return length !== undefined && Number(length) > limit
}
