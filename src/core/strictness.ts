/**
 * What a request must look like to be forwarded, beyond what Node's parser already refuses
 * (docs/reliability.md "Strictness"): the Host, the fields that may appear only once, the
 * transfer codings, the header names, the methods a route must list. Pure: the admit and
 * decide stages read these and refuse.
 */

import type { RouteRule } from './types.js'

/**
 * RFC 9112 §3.2 / RFC 3986 §3.2.2: `Host` is `uri-host [ ":" port ]`, and so is the
 * authority of an absolute-form target. Ficus takes, as hosts:
 * - an IPv4 address in dotted-decimal (four numbers 0-255, no leading zeros);
 * - an IPv6 address in brackets (no zone, no IPvFuture);
 * - a name: labels of letters, digits, `-` and `_` separated by single dots, optionally
 *   ending in one dot (an absolute DNS name). A name whose last label is all digits must be
 *   an IPv4 address (RFC 3986 §3.2.2 prefers the IPv4 reading; `127.1` or `0x7f.1` mean
 *   127.0.0.1 to inet_aton).
 * The port, when there is a colon, is 1-5 digits up to 65535. An empty Host is valid (RFC
 * 9112 §3.2: a target without authority).
 *
 * Stricter than RFC 3986's reg-name, which also allows sub-delims (`!$&'()*+,;=`), `~` and
 * percent-encoding: no host is named with them, `,` and `;` split X-Forwarded-Host and
 * Forwarded at a backend, and `%` decodes differently at each hop.
 * @example validHost('shop.example:8080') // true
 * @example validHost('shop..example') // false
 */
export function validHost(value: string): boolean {
  // A service is reached under a few names: each is checked once (a memo, bounded; the answer is the same each time).
  const known = HOSTS.get(value)
  if (known !== undefined) return known
  const valid = checkHost(value)
  if (value.length <= 262) { // a DNS name (253) and a port: at most ~260 KB kept, whatever clients send
    if (HOSTS.size >= HOSTS_KEPT) HOSTS.clear()
    // A copy: an authority cut from a request's target would otherwise keep the whole target alive.
    HOSTS.set(Buffer.from(value, 'latin1').toString('latin1'), valid)
  }
  return valid
}

const HOSTS = new Map<string, boolean>()
const HOSTS_KEPT = 1024

function checkHost(value: string): boolean {
  if (value === '') return true
  let host = value
  let port: string | undefined
  if (value.charCodeAt(0) === 91 /* '[' */) {
    const close = value.indexOf(']')
    if (close === -1 || !validIPv6(value.slice(1, close))) return false
    const rest = value.slice(close + 1)
    return rest === '' || (rest.charCodeAt(0) === 58 /* ':' */ && validPort(rest.slice(1)))
  }
  const colon = value.indexOf(':')
  if (colon !== -1) {
    host = value.slice(0, colon)
    port = value.slice(colon + 1)
  }
  return validName(host) && (port === undefined || validPort(port))
}

/** RFC 3986 §3.2.3: `port = *DIGIT`, so `example.com:` (an empty port: the default) is valid, as nginx takes it. */
function validPort(port: string): boolean {
  return /^[0-9]{0,5}$/.test(port) && Number(port) <= 65535
}

function validName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host
  if (!/^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/.test(name)) return false
  const last = name.slice(name.lastIndexOf('.') + 1)
  return !/^[0-9]+$/.test(last) || (host === name && validIPv4(name))
}

function validIPv4(s: string): boolean {
  const parts = s.split('.')
  return parts.length === 4 && parts.every((p) => /^(?:0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)
}

/** RFC 4291 §2.2 text forms: eight groups of 1-4 hex digits, one `::` at most, an IPv4 address in the last 32 bits. */
function validIPv6(s: string): boolean {
  let text = s
  if (s.includes('.')) {
    // The dotted quad stands for the last two groups.
    const lastColon = s.lastIndexOf(':')
    if (lastColon === -1 || !validIPv4(s.slice(lastColon + 1))) return false
    text = `${s.slice(0, lastColon + 1)}0:0`
  }
  const halves = text.split('::')
  if (halves.length > 2) return false
  const groups = (h: string): number => {
    if (h === '') return 0
    const g = h.split(':')
    return g.every((x) => /^[0-9A-Fa-f]{1,4}$/.test(x)) ? g.length : NaN
  }
  const left = groups(halves[0] as string)
  if (halves.length === 1) return left === 8
  const right = groups(halves[1] as string)
  return left + right < 8 // NaN compares false
}

/**
 * Fields a request may carry once (RFC 9110 §5.3: a field that is not a list must not be
 * repeated), refused when repeated: a backend that reads the first copy and one that reads
 * the last (or the cache or WAF in front of either) would act on different requests. The
 * fields nginx refuses twice (ngx_http_process_unique_header_line), and Proxy-Authorization,
 * Content-Type and Range, whose grammar is one value too. If-Match and If-None-Match are
 * lists in RFC 9110 §13.1, yet nginx refuses a second line of either, so no client of a
 * backend behind nginx relies on one; a backend that reads one line of them evaluates a
 * different precondition than one that reads the list. Host (its own code) and
 * Content-Length (Node's parser) are refused elsewhere.
 */
export const SINGLE_FIELDS: ReadonlySet<string> = new Set([
  'authorization', 'proxy-authorization', 'content-type', 'content-range', 'range',
  'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range',
  'transfer-encoding', 'expect'
])

/** What a request's Transfer-Encoding says of its framing. */
export type TransferCoding = 'chunked' | 'malformed' | 'unsupported'

/**
 * Reads a request's Transfer-Encoding value (Node joins repeated lines with `, `):
 * - `malformed` (400): an empty element (`, chunked`, `gzip, , chunked`, an empty line),
 *   which Node lets through and another parser may read otherwise, or a last coding that is
 *   not chunked (RFC 9112 §6.3: the length cannot be known, 400);
 * - `unsupported` (501, RFC 9112 §6.1): a coding besides chunked (`gzip, chunked`). Node
 *   removes the chunking only: the backend would get the gzip bytes labelled as plain.
 * nginx answers 501 to anything but exactly `chunked`.
 * @example transferCoding('chunked') // 'chunked'
 * @example transferCoding(', chunked') // 'malformed'
 */
export function transferCoding(value: string): TransferCoding {
  const codings = value.split(',').map((e) => e.trim().toLowerCase())
  if (codings.includes('') || codings[codings.length - 1] !== 'chunked') return 'malformed'
  return codings.length === 1 ? 'chunked' : 'unsupported'
}

/**
 * Whether a header name is plain: letters, digits and `-` only. Node accepts every RFC 9110
 * token (`_`, `.`, `!`, `~`, …); nginx ignores names with anything else
 * (`ignore_invalid_headers on`, `underscores_in_headers off`), since a backend that maps
 * `_` to `-` (CGI, PHP, Rails) reads `X_Forwarded_For` as the X-Forwarded-For Ficus set.
 * @example plainHeaderName('X-Forwarded-For') // true
 * @example plainHeaderName('X_Forwarded_For') // false
 */
export function plainHeaderName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    // 0-9, A-Z, a-z, '-'
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45)) return false
  }
  return true
}

/**
 * Methods a route takes only when its `match.methods` lists them: TRACE reflects the request
 * (cookies and credentials a script cannot read otherwise, RFC 9110 §9.3.8), so nginx
 * refuses it always and Ficus unless a route asks for it.
 */
const LISTED_ONLY: ReadonlySet<string> = new Set(['TRACE'])

/**
 * Whether a request with `method` that matched `rule` is refused (405): a TRACE on a route
 * that takes every method rather than naming TRACE.
 * @example refusedMethod({ methods: null, … }, 'TRACE') // true
 */
export function refusedMethod(rule: Pick<RouteRule, 'methods'>, method: string): boolean {
  return rule.methods === null && LISTED_ONLY.has(method)
}
