import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import type { RouteSummary } from '../../src/adapters/divergence-store.js'
import { CATALOGUE, type ErrorCode } from '../../src/errors.js'
import { summary } from '../helpers/admin.js'
import { sample, startTestFicus, type Response, type TestFicus } from '../helpers/ficus.js'
import type { LogLine } from '../helpers/log-sink.js'
import { startRawUpstream, type RawUpstream } from '../helpers/raw-upstream.js'
import { closedPort, held, startUpstream, type Handler, type Upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Upstream faults, as a matrix (docs/reliability.md "Upstream faults"): each backend (legacy, new) × each role it can play for a request (primary: it
 * answers the client; shadow: it gets the copy) × each fault a backend can have. Every cell
 * is a subtest named `<backend> as <role>: <fault>`.
 *
 * One route, `orders` (`/*`), on a Ficus between two real upstreams on 127.0.0.1:0: the
 * faulty one and a healthy one. The faulty side is primary with `new: 0` (legacy) or
 * `new: 100` (new), and shadow with `shadow: 100` and the other side primary.
 *
 * PRIMARY: the client's status and Ficus code (docs/errors.md), never a 500 nor an address;
 * the connection aborted when the fault comes after the head; ficus_upstream_errors_total
 * {route, backend, reason}; how many requests the upstream got (no retries). When new is
 * primary, the route's own behaviour is tested (a GET: legacy answers where README
 * "Fallback" says it does) and the no-fallback case as the product defines it (a POST with
 * a body that may have reached new: never sent twice, the client gets new's failure; one
 * that never reached it, refused or saturated, goes to legacy).
 *
 * SHADOW: the client gets exactly the primary's answer, while a hanging copy is still held
 * (the answer does not wait for shadow.timeout); the copy's outcome is counted
 * (ficus_comparisons_total, ficus_shadow_dropped_total, ficus_requests_total{role="shadow"}:
 * docs/shadow.md), not as a primary upstream error; one copy per request; Ficus keeps serving.
 *
 * No sleeps: tests wait for events (an upstream's arrival, a log line, the shadow stage going
 * idle). The only timing checks are "within a configured timeout, with a wide margin".
 */

type Backend = 'legacy' | 'new'
type Role = 'primary' | 'shadow'

const ROUTE = 'orders'
/** The faulty upstream's timeouts: short, so a cell that waits for one stays quick. */
const FAULT_TIMEOUT_MS = 400
/** shadow.timeout: long against a client answer on loopback (milliseconds), short for the suite. */
const SHADOW_TIMEOUT_MS = 2000
/** Margin on every "bounded by a configured timeout" check. */
const MARGIN_MS = 3000
/** The healthy side's timeout: leaves a fallback plenty of time. */
const HEALTHY_TIMEOUT = '10s'
/** shadow.maxBodySize in the cells. */
const SHADOW_MAX_BODY = 1024 * 1024
/** The huge response: far past shadow.maxBodySize and socket buffers. */
const HUGE_BYTES = 32 * 1024 * 1024
/** Client requests sent in a 503 storm. */
const STORM = 5

/** What both healthy upstreams answer: the same body, so a copy of it matches. */
const OK_BODY = JSON.stringify({ id: 1, status: 'paid' })
const healthy = (name: Backend): Handler => (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name })
  res.end(OK_BODY)
}
const other = (b: Backend): Backend => (b === 'legacy' ? 'new' : 'legacy')

/* ------------------------------------------------------------------ the cell's Ficus */

interface Cell {
  readonly t: Test
  readonly f: TestFicus
  readonly faulty: Backend
  /** The side answering the client. */
  readonly primary: Backend
  /** The healthy upstream (the other side). */
  readonly good: Upstream
  /** The faulty upstream's host:port, for "no address in the body" checks. */
  readonly address: string
}

/**
 * Starts the healthy upstream and a Ficus where `faulty` (at `url`, with `upstream` settings
 * over the short test timeouts) plays `role`.
 */
async function cell(t: Test, faulty: Backend, role: Role, url: string, upstream: Record<string, unknown> = {}, shadow: Record<string, unknown> = {}): Promise<Cell> {
  const side = other(faulty)
  const good = await startUpstream(t, side, healthy(side))
  const primary = role === 'primary' ? faulty : side
  const ms = `${FAULT_TIMEOUT_MS}ms`
  const f = await startTestFicus(t, {
    upstreams: {
      [faulty]: { url, timeout: ms, connectTimeout: ms, bodyTimeout: ms, ...upstream },
      [side]: { url: good.url, timeout: HEALTHY_TIMEOUT }
    },
    routes: [{ name: ROUTE, match: { path: '/*' }, new: primary === 'new' ? 100 : 0, shadow: role === 'shadow' ? 100 : 0 }],
    shadow: { timeout: `${SHADOW_TIMEOUT_MS}ms`, maxBodySize: SHADOW_MAX_BODY, maxInFlight: 8, ...shadow },
    // One request's handling per cell: new's breaker (which would eject it during a 503
    // storm) is tested in test/integration/broken-new.test.ts.
    fallback: { breaker: false }
  })
  return { t, f, faulty, primary, good, address: new URL(url).host }
}

let seq = 0
/** A request id of our own, to find the request's access-log line. */
const rid = (): string => `uf-${++seq}`

/** The access-log line of a request (written when its response is over: metrics are counted by then). */
const logOf = (c: Cell, id: string): Promise<LogLine> => c.f.logs.waitFor((l) => l.msg === 'request' && l.reqId === id, { message: `no access-log line for request ${id}` })

interface Sent { readonly r: Response; readonly line: LogLine; readonly ms: number }

/** A request through Ficus, read whole; resolves once its access-log line is written. */
async function send(c: Cell, method: 'GET' | 'POST' = 'GET'): Promise<Sent> {
  const id = rid()
  const t0 = performance.now()
  const r = await c.f.fetch('/orders/1', {
    method,
    headers: { 'x-request-id': id, 'x-user-id': 'u1', ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    ...(method === 'POST' ? { body: '{"item":"tea"}' } : {})
  })
  const ms = performance.now() - t0
  return { r, line: await logOf(c, id), ms }
}

/** A 0 for a series that is not there (counters without a primed 0). */
const count = (m: string, name: string, labels: Record<string, string>): number => sample(m, name, labels) ?? 0

/** The route's summary from /admin/divergences/summary. */
const summaryOf = async (c: Cell): Promise<RouteSummary> => summary(c.f, ROUTE)

/* ------------------------------------------------------------------ primary checks */

/** Ficus answered with catalogue error `code`: its status (never 500), the JSON body, no address, no stack. */
function isFicusError(c: Cell, s: Sent, code: ErrorCode): void {
  const { t } = c
  const { r, line } = s
  t.equal(r.status, CATALOGUE[code].status, `status ${CATALOGUE[code].status}`)
  t.not(r.status, 500, 'an upstream fault is never a 500')
  t.equal(r.headers['content-type'], 'application/json; charset=utf-8')
  t.same(r.json(), { error: CATALOGUE[code].message, code, requestId: line.reqId }, `${code}, with the request id`)
  t.notOk(r.text.includes(c.address) || /127\.0\.0\.1|\bat .*\.[jt]s:\d+/.test(r.text), 'no upstream address or stack in the body')
  t.match(line, { level: 'warn', backend: c.faulty, status: r.status, outcome: CATALOGUE[code].reason, error: { code } })
}

/** legacy answered instead of new (README "Fallback"), for `reason`. */
function fellBack(c: Cell, s: Sent, reason: string): void {
  const { t } = c
  t.same([s.r.status, s.r.text, s.r.headers['x-served-by']], [200, OK_BODY, 'legacy'], 'legacy answers in new\'s place')
  t.match(s.line, { backend: 'legacy', status: 200, outcome: 'fallback', fallback: reason })
}

/** A primary answer whose head was sent, then broke: the client's connection is aborted (a truncated body is never taken for a whole one). */
async function brokenAfterHead(c: Cell, breakIt: () => void): Promise<{ line: LogLine; ms: number }> {
  const id = rid()
  const agent = new Agent()
  c.t.teardown(() => agent.close())
  const t0 = performance.now()
  const res = await request(`${c.f.url}/orders/1`, { headers: { 'x-request-id': id }, dispatcher: agent })
  c.t.equal(res.statusCode, 200, 'the status was already sent')
  breakIt()
  await c.t.rejects(res.body.text(), 'the client connection is aborted, not ended')
  const ms = performance.now() - t0
  return { line: await logOf(c, id), ms }
}

/* ------------------------------------------------------------------ shadow checks */

/** The client got exactly the primary's answer. */
function primaryAnswer(c: Cell, s: Sent, what = 'the client gets the primary\'s answer, untouched'): void {
  c.t.same([s.r.status, s.r.text, s.r.headers['x-served-by']], [200, OK_BODY, c.primary], what)
  c.t.match(s.line, { level: 'info', backend: c.primary, status: 200, outcome: 'ok' })
}

interface ShadowOutcome {
  readonly outcome: 'match' | 'diverged' | 'error' | 'skipped'
  /** The reason in the summary (errors or skipped); a list: any one of them. */
  readonly reason?: string | readonly string[]
  /** ficus_shadow_dropped_total reason. */
  readonly dropped?: string
  /** ficus_requests_total{role="shadow", code}: the copy's status (a failed copy: 502/504); none when never sent. */
  readonly code?: number
  readonly n?: number
}

/**
 * After the shadow stage is idle: the copy's outcome is counted, a failed copy is not a
 * primary upstream error, the faulty upstream got one copy per request (`copies`, when it
 * can count them), and Ficus keeps serving.
 */
async function shadowCounted(c: Cell, want: ShadowOutcome, copies?: () => number): Promise<void> {
  const { t, f } = c
  const n = want.n ?? 1
  await f.shadowIdle()
  if (copies !== undefined) t.equal(copies(), n, 'one copy per request: no retry')
  const m = await f.scrape()
  t.equal(count(m, 'ficus_comparisons_total', { route: ROUTE, outcome: want.outcome }), n, `ficus_comparisons_total{outcome="${want.outcome}"}`)
  if (want.dropped !== undefined) t.equal(count(m, 'ficus_shadow_dropped_total', { route: ROUTE, reason: want.dropped }), n, `ficus_shadow_dropped_total{reason="${want.dropped}"}`)
  if (want.code !== undefined) t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: c.faulty, role: 'shadow', code: String(want.code) }), n, `the copy counted with role="shadow", code="${want.code}"`)
  t.notMatch(m, /^ficus_upstream_errors_total\{[^}]*\} [1-9]/m, 'a failed copy is not counted as a primary upstream error (docs/shadow.md)')
  if (want.reason !== undefined) {
    const s = await summaryOf(c)
    const reasons = want.outcome === 'error' ? s.errors : want.outcome === 'skipped' ? s.skipped : {}
    const accepted = typeof want.reason === 'string' ? [want.reason] : want.reason
    t.equal(accepted.reduce((sum, r) => sum + (reasons[r] ?? 0), 0), n, `summary: ${want.outcome} for ${accepted.join(' or ')}`)
  }
  // Ficus keeps serving: the next request gets the primary's answer (its copy may fail again;
  // one still in flight is cut when Ficus stops).
  primaryAnswer(c, await send(c), 'still serving afterwards')
}

/** The client's answer arrived while the copy is still held by the shadow upstream: it did not wait for it. */
function answeredWhileCopyHeld(c: Cell): void {
  c.t.equal(c.f.running.ficus.shadowing.inFlight, 1, 'the copy is still in flight when the client has its answer')
}

/* ------------------------------------------------------------------ faulty upstreams */

/** Resolves `arrived(n)` once n requests reached a raw upstream (failing past DEADLINE_MS); keeps their sockets. */
function arrivals(): { readonly sockets: Socket[]; push(s: Socket): void; arrived(n: number): Promise<Socket> } {
  const sockets: Socket[] = []
  const waiting: { n: number; resolve: (s: Socket) => void }[] = []
  return {
    sockets,
    push (s) {
      sockets.push(s)
      for (const w of waiting.filter((x) => x.n <= sockets.length)) {
        waiting.splice(waiting.indexOf(w), 1)
        w.resolve(sockets[w.n - 1] as Socket)
      }
    },
    arrived: async (n) => n <= sockets.length
      ? sockets[n - 1] as Socket
      : waitFor(new Promise<Socket>((resolve) => waiting.push({ n, resolve })), { message: () => `request ${n} did not reach the raw upstream (${sockets.length} did)` })
  }
}

/** A raw upstream that writes `bytes` once a request head arrived; counts requests. */
async function rawWriting(t: Test, bytes: string): Promise<{ raw: RawUpstream; seen: ReturnType<typeof arrivals> }> {
  const seen = arrivals()
  const raw = await startRawUpstream(t, (s) => {
    s.write(bytes)
    seen.push(s)
  })
  return { raw, seen }
}

/** One event-loop turn through the poll phase: Ficus (same process) reads what an upstream just wrote on loopback. */
const PARTIAL = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"partial":'
const DUPLICATE_CL = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello'
const BAD_CHUNK = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'

interface Huge {
  readonly handler: Handler
  /** Bytes written so far, sha256 of what was written, and whether all of it was. */
  readonly stats: { written: number; finished: boolean; readonly hash: ReturnType<typeof createHash> }
  /** Resolves when the response is over (finished or cut). */
  readonly over: Promise<void>
}

/** An upstream streaming `total` bytes (64 KiB chunks, varying content), following backpressure. */
function huge(total: number): Huge {
  const stats = { written: 0, finished: false, hash: createHash('sha256') }
  let done: () => void = () => {}
  const over = new Promise<void>((resolve) => { done = resolve })
  const handler: Handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': total })
    res.on('close', () => {
      stats.finished = res.writableFinished
      done()
    })
    let i = 0
    const pump = (): void => {
      while (stats.written < total) {
        const chunk = Buffer.alloc(Math.min(64 * 1024, total - stats.written), String.fromCharCode(97 + (i++ % 26)))
        stats.written += chunk.length
        stats.hash.update(chunk)
        if (!res.write(chunk)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  }
  return { handler, stats, over }
}

/* ------------------------------------------------------------------ the faults */

type Run = (t: Test, faulty: Backend, role: Role) => Promise<void>

/** Nothing listens on the faulty upstream's port. */
const refused: Run = async (t, faulty, role) => {
  const c = await cell(t, faulty, role, `http://127.0.0.1:${await closedPort()}`)
  if (role === 'shadow') {
    primaryAnswer(c, await send(c))
    await shadowCounted(c, { outcome: 'error', reason: 'refused', code: 502 })
    return
  }
  if (faulty === 'legacy') {
    const s = await send(c)
    isFicusError(c, s, 'FICUS_ERR_UPSTREAM_REFUSED')
    const m = await c.f.scrape()
    t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: 'legacy', reason: 'refused' }), 1)
    t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: 'legacy', role: 'primary', code: '502' }), 1)
    t.equal(c.good.started(), 0, 'new is not asked for legacy\'s failure')
    return
  }
  // new refuses: nothing of the request reached it, so legacy answers a GET and a POST alike.
  fellBack(c, await send(c), 'refused')
  t.equal(c.good.started(), 1, 'legacy asked once')
  fellBack(c, await send(c, 'POST'), 'refused')
  t.equal(c.good.started(), 2, 'a POST that never reached new goes to legacy')
  t.equal(c.good.requests[1]?.body.toString(), '{"item":"tea"}', 'with its body')
  const m = await c.f.scrape()
  t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: 'new', reason: 'refused' }), 2, 'both of new\'s failures counted')
  t.equal(count(m, 'ficus_fallbacks_total', { route: ROUTE, reason: 'refused' }), 2)
  t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: 'legacy', role: 'primary', code: '200' }), 2)
}

/** The upstream sends its head and part of the body, then resets the connection. */
const resetMidBody: Run = async (t, faulty, role) => {
  const { raw, seen } = await rawWriting(t, PARTIAL)
  // The copy is reset by the test, not timed out: a long shadow.timeout keeps a slow machine from turning it into one.
  const c = await cell(t, faulty, role, raw.url, {}, role === 'shadow' ? { timeout: '10s' } : {})
  if (role === 'shadow') {
    const [s] = await Promise.all([send(c), seen.arrived(1)])
    primaryAnswer(c, s)
    answeredWhileCopyHeld(c)
    ;(await seen.arrived(1)).resetAndDestroy()
    // A reset discards bytes Ficus had not read yet: whether the copy's head was read first
    // (aborted) or not (reset) is the kernel's timing, not Ficus's behaviour. Either way the
    // copy is one error, counted as a 502, and the client never saw it.
    await shadowCounted(c, { outcome: 'error', reason: ['aborted', 'reset'], code: 502 }, () => seen.sockets.length)
    return
  }
  const { line } = await brokenAfterHead(c, () => { seen.sockets[0]?.resetAndDestroy() })
  t.match(line, { level: 'warn', backend: faulty, status: 200, outcome: 'aborted', error: { code: 'FICUS_ERR_UPSTREAM_ABORTED' } })
  t.equal(line.fallback, undefined, 'no fallback once the head was sent')
  const m = await c.f.scrape()
  t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: faulty, reason: 'aborted' }), 1)
  t.equal(seen.sockets.length, 1, 'one upstream request, no retry')
  t.equal(c.good.started(), 0, 'the other side is not asked')
  t.equal(count(m, 'ficus_fallbacks_total', { route: ROUTE, reason: 'aborted' }), 0)
}

/** The upstream accepts and reads the request, and never writes a byte. */
const neverAnswers: Run = async (t, faulty, role) => {
  const silent = await startUpstream(t, faulty, () => { /* never answers */ })
  const c = await cell(t, faulty, role, silent.url)
  if (role === 'shadow') {
    const [s] = await Promise.all([send(c), silent.arrived(1)])
    primaryAnswer(c, s)
    answeredWhileCopyHeld(c)
    await shadowCounted(c, { outcome: 'error', reason: 'timeout', dropped: 'timeout', code: 504 }, silent.started)
    return
  }
  if (faulty === 'legacy') {
    const s = await send(c)
    isFicusError(c, s, 'FICUS_ERR_UPSTREAM_TIMEOUT')
    t.ok(s.ms < FAULT_TIMEOUT_MS + MARGIN_MS, `answered within upstreams.legacy.timeout (${FAULT_TIMEOUT_MS} ms) + margin: ${Math.round(s.ms)} ms`)
    const m = await c.f.scrape()
    t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: 'legacy', reason: 'timeout' }), 1)
    t.equal(silent.started(), 1, 'one upstream request, no retry')
    t.equal(c.good.started(), 0)
    return
  }
  const get = await send(c)
  fellBack(c, get, 'timeout')
  t.ok(get.ms < FAULT_TIMEOUT_MS + MARGIN_MS, `legacy answered after new's timeout (${FAULT_TIMEOUT_MS} ms) + margin: ${Math.round(get.ms)} ms`)
  t.equal(c.good.started(), 1)
  const post = await send(c, 'POST')
  isFicusError(c, post, 'FICUS_ERR_UPSTREAM_TIMEOUT')
  t.ok(post.ms < FAULT_TIMEOUT_MS + MARGIN_MS, `within upstreams.new.timeout + margin: ${Math.round(post.ms)} ms`)
  t.equal(c.good.started(), 1, 'no fallback for a POST')
  t.equal(silent.started(), 2, 'one upstream request per client request')
  const m = await c.f.scrape()
  t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: 'new', reason: 'timeout' }), 2)
  t.equal(count(m, 'ficus_fallbacks_total', { route: ROUTE, reason: 'timeout' }), 1)
}

/** The upstream sends its head and a few body bytes, then goes silent with the connection open. */
const stallAfterHead: Run = async (t, faulty, role) => {
  const { raw, seen } = await rawWriting(t, PARTIAL)
  const c = await cell(t, faulty, role, raw.url)
  if (role === 'shadow') {
    const [s] = await Promise.all([send(c), seen.arrived(1)])
    primaryAnswer(c, s)
    answeredWhileCopyHeld(c)
    await shadowCounted(c, { outcome: 'error', reason: 'timeout', dropped: 'timeout', code: 504 }, () => seen.sockets.length)
    await raw.closed(1, { message: 'the stalled copy\'s connection was not closed at shadow.timeout' })
    t.pass('the stalled copy\'s connection was closed at shadow.timeout')
    return
  }
  const { line, ms } = await brokenAfterHead(c, () => {})
  t.ok(ms < FAULT_TIMEOUT_MS + MARGIN_MS, `aborted within bodyTimeout (${FAULT_TIMEOUT_MS} ms) + margin: ${Math.round(ms)} ms`)
  t.match(line, { level: 'warn', backend: faulty, status: 200, outcome: 'body_timeout', error: { code: 'FICUS_ERR_UPSTREAM_BODY_TIMEOUT' } })
  await raw.closed(1, { message: 'the stalled upstream connection was not closed' })
  t.pass('the stalled upstream connection was closed')
  const m = await c.f.scrape()
  t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: faulty, reason: 'body_timeout' }), 1)
  t.equal(seen.sockets.length, 1, 'one upstream request, no retry')
  t.equal(c.good.started(), 0, 'no fallback once the head was sent')
}

/**
 * The upstream's response framing is invalid: two conflicting Content-Lengths (found in the
 * head), then a chunk size that is not hex (found in the first body bytes; nothing of the
 * body reached the client). As nginx does: close that upstream connection and answer 502.
 */
const badFraming: Run = async (t, faulty, role) => {
  const seen = arrivals()
  let n = 0
  const raw = await startRawUpstream(t, (s) => {
    s.write(++n === 1 || (faulty === 'new' && role === 'primary' && n === 2) ? DUPLICATE_CL : BAD_CHUNK)
    seen.push(s)
  })
  const c = await cell(t, faulty, role, raw.url)
  if (role === 'shadow') {
    primaryAnswer(c, await send(c), 'conflicting Content-Length on the copy: the client gets the primary\'s answer')
    await seen.arrived(1)
    await raw.closed(1, { message: 'the upstream connection of the copy with conflicting Content-Lengths was not closed' })
    t.pass('the copy\'s upstream connection was closed')
    await c.f.shadowIdle()
    primaryAnswer(c, await send(c), 'bad chunk size on the copy: the client gets the primary\'s answer')
    await seen.arrived(2)
    await raw.closed(2, { message: 'the upstream connection of the copy with a bad chunk size was not closed' })
    t.pass('the copy\'s upstream connection was closed')
    await c.f.shadowIdle()
    const m = await c.f.scrape()
    t.equal(count(m, 'ficus_comparisons_total', { route: ROUTE, outcome: 'error' }), 2, 'both copies counted as errors')
    t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: faulty, role: 'shadow', code: '502' }), 2)
    t.notMatch(m, /^ficus_upstream_errors_total\{[^}]*\} [1-9]/m, 'not counted as primary upstream errors')
    t.match((await summaryOf(c)).errors, { bad_response: 1 }, 'the conflicting Content-Length is a bad_response')
    t.equal(seen.sockets.length, 2, 'one copy per request')
    primaryAnswer(c, await send(c), 'still serving afterwards')
    return
  }
  if (faulty === 'new') {
    // A GET: new failed before answering, legacy answers (README "Fallback").
    fellBack(c, await send(c), 'bad_response')
    await raw.closed(1, { message: 'new\'s connection was not closed' })
    t.pass('new\'s connection was closed')
    t.equal(c.good.started(), 1)
    // A POST: no fallback, the client gets the 502.
    isFicusError(c, await send(c, 'POST'), 'FICUS_ERR_UPSTREAM_BAD_RESPONSE')
    await raw.closed(2, { message: 'new\'s connection for the POST was not closed' })
    t.equal(count(await c.f.scrape(), 'ficus_fallbacks_total', { route: ROUTE, reason: 'bad_response' }), 1)
  } else {
    isFicusError(c, await send(c), 'FICUS_ERR_UPSTREAM_BAD_RESPONSE')
    await raw.closed(1, { message: 'the upstream connection was not closed' })
    t.pass('the upstream connection was closed')
  }
  const first = faulty === 'new' ? 2 : 1
  // Bad chunk size in the first body bytes: the client has had nothing yet, so it gets a 502
  // too. A POST, so that no fallback is involved when new is primary either.
  const id = rid()
  let got: Response | Error
  try {
    got = await c.f.fetch('/orders/1', { method: 'POST', body: '{}', headers: { 'x-request-id': id } })
  } catch (err) {
    got = err as Error
  }
  const line = await logOf(c, id)
  await raw.closed(first + 1, { message: 'the upstream connection with the bad chunk was not closed' })
  t.pass('the upstream connection with the bad chunk was closed')
  if (got instanceof Error) {
    t.fail(`bad chunk size: expected a 502 FICUS_ERR_UPSTREAM_BAD_RESPONSE, the client got no response at all (${(got as { code?: string }).code ?? got.message}); logged status ${String(line.status)}, outcome ${String(line.outcome)}`)
  } else {
    isFicusError(c, { r: got, line, ms: 0 }, 'FICUS_ERR_UPSTREAM_BAD_RESPONSE')
  }
  const m = await c.f.scrape()
  t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: faulty, reason: 'bad_response' }), first + 1, 'every invalid response counted as bad_response')
  t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: faulty, role: 'primary', code: '200' }), 0, 'no 200 counted for a response the client never got')
  t.equal(seen.sockets.length, first + 1, 'one upstream request per client request')
  t.equal(c.good.started(), faulty === 'new' ? 1 : 0, 'the other side is asked only for the fallback GET')
}

/** A 32 MiB response, streamed. */
const hugeResponse: Run = async (t, faulty, role) => {
  const big = huge(HUGE_BYTES)
  const up = await startUpstream(t, faulty, big.handler)
  const c = await cell(t, faulty, role, up.url)
  if (role === 'shadow') {
    primaryAnswer(c, await send(c))
    await waitFor(big.over, { message: 'the shadow upstream\'s huge response was neither finished nor cut' })
    t.notOk(big.stats.finished, 'the copy was cut off past shadow.maxBodySize')
    t.ok(big.stats.written < HUGE_BYTES / 2, `the shadow upstream could write only ${(big.stats.written / 2 ** 20).toFixed(1)} MiB of ${HUGE_BYTES / 2 ** 20} MiB: Ficus stopped reading, it does not hold the body`)
    await shadowCounted(c, { outcome: 'skipped', reason: 'body_too_large', dropped: 'body_too_large', code: 200 }, up.started)
    return
  }
  const id = rid()
  const res = await request(`${c.f.url}/orders/1`, { headers: { 'x-request-id': id } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(HUGE_BYTES))
  const hash = createHash('sha256')
  let got = 0
  for await (const chunk of res.body) {
    got += (chunk as Buffer).length
    hash.update(chunk as Buffer)
  }
  t.equal(got, HUGE_BYTES, 'the client gets every byte')
  await waitFor(big.over, { message: 'the upstream did not see its huge response end' })
  t.equal(hash.digest('hex'), big.stats.hash.digest('hex'), 'the bytes the upstream sent, in order')
  t.match(await logOf(c, id), { level: 'info', backend: faulty, status: 200, outcome: 'ok' })
  const m = await c.f.scrape()
  t.notMatch(m, /^ficus_upstream_errors_total\{[^}]*\} [1-9]/m, 'no upstream error')
  t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: faulty, role: 'primary', code: '200' }), 1)
  t.equal(up.started(), 1)
  t.equal(c.good.started(), 0)
}

/** Every request gets a 503 from the upstream. */
const storm503: Run = async (t, faulty, role) => {
  const busy = await startUpstream(t, faulty, (_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' })
    res.end('busy')
  })
  const c = await cell(t, faulty, role, busy.url)
  if (role === 'shadow') {
    for (let i = 0; i < STORM; i++) primaryAnswer(c, await send(c))
    await c.f.shadowIdle()
    const m = await c.f.scrape()
    t.equal(count(m, 'ficus_divergences_total', { route: ROUTE, kind: 'status' }), STORM, 'the 503 is a status divergence')
    await shadowCounted(c, { outcome: 'diverged', code: 503, n: STORM }, busy.started)
    return
  }
  for (let i = 0; i < STORM; i++) {
    const s = await send(c)
    if (faulty === 'new') {
      fellBack(c, s, 'status_503')
    } else {
      t.same([s.r.status, s.r.text, s.r.headers['retry-after']], [503, 'busy', '1'], 'legacy\'s own 503 is passed through')
    }
    t.equal(busy.started(), i + 1, `request ${i + 1}: one upstream request per client request`)
  }
  if (faulty === 'new') {
    t.equal(c.good.started(), STORM, 'legacy answered each once')
    const post = await send(c, 'POST')
    t.same([post.r.status, post.r.text, post.r.headers['retry-after']], [503, 'busy', '1'], 'a POST gets new\'s 503: no fallback, no retry')
    t.equal(busy.started(), STORM + 1)
    t.equal(c.good.started(), STORM)
  } else {
    const post = await send(c, 'POST')
    t.equal(post.r.status, 503)
    t.equal(busy.started(), STORM + 1, 'a POST too: exactly once')
    t.equal(c.good.started(), 0)
  }
  const m = await c.f.scrape()
  const total = faulty === 'new' ? 1 : STORM + 1
  t.equal(count(m, 'ficus_requests_total', { route: ROUTE, backend: faulty, role: 'primary', code: '503' }), total, 'every 503 the client got is counted')
  t.equal(count(m, 'ficus_fallbacks_total', { route: ROUTE, reason: 'status_503' }), faulty === 'new' ? STORM : 0)
}

/**
 * `connections: 1, maxQueue: 0` on the faulty upstream and a request held there: the next
 * one is refused at once. For the shadow role the bound is the shadow stage's own
 * (`shadow.maxInFlight: 1`, copies never use the primary pool): the copy is dropped.
 */
const saturated: Run = async (t, faulty, role) => {
  const hold = held(healthy(faulty))
  const up = await startUpstream(t, faulty, hold.handler)
  t.teardown(() => hold.release())
  const c = await cell(t, faulty, role, up.url, { timeout: HEALTHY_TIMEOUT, connections: 1, maxQueue: 0 }, { maxInFlight: 1, timeout: '10s' })
  if (role === 'shadow') {
    primaryAnswer(c, await send(c), 'first request: answered while its copy is held')
    await up.arrived(1, { message: 'the first copy did not reach the shadow upstream' })
    answeredWhileCopyHeld(c)
    primaryAnswer(c, await send(c), 'second request: answered, its copy dropped at the bound')
    const m = await c.f.scrape()
    t.equal(count(m, 'ficus_shadow_dropped_total', { route: ROUTE, reason: 'concurrency' }), 1)
    t.equal(count(m, 'ficus_comparisons_total', { route: ROUTE, outcome: 'skipped' }), 1)
    t.equal(up.started(), 1, 'the dropped copy was never sent')
    hold.release()
    await shadowCounted(c, { outcome: 'match', code: 200 }, up.started)
    return
  }
  let firstOver = false
  const firstId = rid()
  const first = c.f.fetch('/orders/1', { headers: { 'x-request-id': firstId } }).finally(() => { firstOver = true })
  await up.arrived(1, { message: 'the request to be held did not reach the upstream' })
  const second = await send(c)
  t.notOk(firstOver, 'refused while the held request still holds the only connection: not queued behind it')
  t.ok(second.ms < FAULT_TIMEOUT_MS + MARGIN_MS, `refused at once (${Math.round(second.ms)} ms), not after a timeout`)
  if (faulty === 'new') {
    fellBack(c, second, 'saturated')
    fellBack(c, await send(c, 'POST'), 'saturated') // never sent to new: legacy takes it
    t.notOk(firstOver)
    t.equal(c.good.started(), 2, 'legacy asked for the GET and the POST')
  } else {
    isFicusError(c, second, 'FICUS_ERR_UPSTREAM_SATURATED')
    t.equal(c.good.started(), 0)
  }
  t.equal(up.started(), 1, 'refused requests never reached the upstream')
  const m = await c.f.scrape()
  t.equal(count(m, 'ficus_upstream_errors_total', { route: ROUTE, backend: faulty, reason: 'saturated' }), faulty === 'new' ? 2 : 1)
  t.equal(count(m, 'ficus_fallbacks_total', { route: ROUTE, reason: 'saturated' }), faulty === 'new' ? 2 : 0)
  hold.release()
  const r = await waitFor(first, { message: 'the held request did not complete once released' })
  t.same([r.status, r.text, r.headers['x-served-by']], [200, OK_BODY, faulty], 'the held request completes')
  await logOf(c, firstId)
  const again = await send(c)
  t.same([again.r.status, again.r.headers['x-served-by']], [200, faulty], 'capacity is given back')
}

const FAULTS: readonly (readonly [string, Run])[] = [
  ['refused', refused],
  ['reset mid-body', resetMidBody],
  ['never answers', neverAnswers],
  ['headers then stall', stallAfterHead],
  ['invalid response framing', badFraming],
  ['huge response', hugeResponse],
  ['503 storm', storm503],
  ['pool saturation', saturated]
]

for (const backend of ['legacy', 'new'] as const) {
  for (const role of ['primary', 'shadow'] as const) {
    for (const [fault, run] of FAULTS) {
      t.test(`${backend} as ${role}: ${fault}`, (t) => run(t, backend, role))
    }
  }
}
