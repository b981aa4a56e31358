import type { Metrics } from '../adapters/metrics-registry.js'
import type { LiveConfig } from '../config/live.js'
import type { Limits } from '../config/schema.js'
import { declaresMoreThan, forwardHeaders } from '../core/forward-headers.js'
import { transferCoding, validHost } from '../core/strictness.js'
import { absoluteFormAuthority } from './edge.js'
import type { Exchange } from './exchange.js'
import { refuse } from './respond.js'

/**
 * Stage 1, admit: refuses what must not be forwarded (a target that is not a path, another
 * HTTP version, bad framing or a transfer coding other than chunked, a declared body over
 * the limit, a missing, repeated or invalid Host, a second copy of a field that may appear
 * once, a header name limits.headerNames refuses: docs/reliability.md "Strictness") and
 * builds what does go upstream: the header list (hop-by-hop fields and odd header names
 * dropped, Forwarded / X-Forwarded-* / Via / X-Request-Id set) and the client's address.
 * Cost: one pass over the raw headers to read them and one to copy them (forward-headers.ts),
 * a set lookup and a character scan per header name, and a short parse of Host.
 */
export class Admit {
  /** `limits` are read at start (a reload does not change them); `live` for trustedHops, which it does. */
  constructor (private readonly limits: Limits, private readonly live: LiveConfig, private readonly metrics: Metrics) {}

  /** True when the request may go on; false when it was refused (answered and recorded). */
  admit (ex: Exchange): boolean {
    const { req } = ex
    const { metrics } = this
    // The edge marked a target that is not a path: the exchange holds none (edge.ts targetOf).
    if (ex.target === '') return refuse(ex, 'FICUS_ERR_BAD_TARGET', metrics)
    // Node parses `HTTP/2.0` in a request line like 1.x; nginx answers 505 to it.
    if (req.httpVersionMajor !== 1) return refuse(ex, 'FICUS_ERR_HTTP_VERSION', metrics)
    const te = req.headers['transfer-encoding']
    if (te !== undefined) {
      // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing (Node would read it as chunked).
      if (req.httpVersionMinor === 0) return refuse(ex, 'FICUS_ERR_BAD_REQUEST', metrics)
      const coding = transferCoding(te)
      // An empty list element, or chunked not last: framing another parser may read otherwise.
      if (coding === 'malformed') return refuse(ex, 'FICUS_ERR_BAD_REQUEST', metrics)
      // `gzip, chunked`: Node removes the chunking only, and the backend would get gzip bytes as plain.
      if (coding === 'unsupported') return refuse(ex, 'FICUS_ERR_TRANSFER_CODING', metrics)
    }
    if (declaresMoreThan(req.headers, this.limits.bodyBytes)) return refuse(ex, 'FICUS_ERR_BODY_TOO_LARGE', metrics)
    const authority = absoluteFormAuthority(req)
    const fwd = forwardHeaders(req.rawHeaders, {
      peer: req.socket.remoteAddress ?? '',
      proto: 'http',
      httpVersion: req.httpVersion,
      trustedHops: this.live.current.trustedHops,
      requestId: ex.requestId,
      authority,
      headerNames: this.limits.headerNames
    })
    ex.admitted(fwd.headers, fwd.clientIp, this.limits.headerNames === 'drop' ? fwd.oddNames : [])
    // nginx and HAProxy answer 400 to a second Host; Node keeps the first one silently.
    if (fwd.hostCount > 1) return refuse(ex, 'FICUS_ERR_DUPLICATE_HOST', metrics)
    // RFC 9112 §3.2; checked here rather than by Node so the answer carries a Ficus code.
    if (fwd.hostCount === 0 && req.httpVersion === '1.1' && authority === undefined) return refuse(ex, 'FICUS_ERR_MISSING_HOST', metrics)
    const host = authority ?? req.headers.host
    if (host !== undefined && !validHost(host)) return refuse(ex, 'FICUS_ERR_INVALID_HOST', metrics)
    if (fwd.repeated !== null) return refuse(ex, 'FICUS_ERR_DUPLICATE_HEADER', metrics)
    if (fwd.oddNames.length > 0 && this.limits.headerNames === 'refuse') return refuse(ex, 'FICUS_ERR_HEADER_NAME', metrics)
    return true
  }
}
