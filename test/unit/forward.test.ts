import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import t from 'tap'
import type { Dispatcher } from 'undici'
import { Breakers } from '../../src/adapters/breakers.js'
import { createLogger } from '../../src/adapters/logger.js'
import { createMetrics, type Metrics } from '../../src/adapters/metrics-registry.js'
import type { UpstreamSlots, Waiter } from '../../src/adapters/upstreams.js'
import { parseConfig } from '../../src/config/load-config.js'
import type { UpstreamConfig } from '../../src/config/schema.js'
import { decide } from '../../src/core/decide.js'
import type { BreakerPolicy } from '../../src/core/types.js'
import { Exchange } from '../../src/pipeline/exchange.js'
import { Forwarder } from '../../src/pipeline/forward/forwarder.js'
import { parseMetrics, sum } from '../../bench/prom-text.js'
import { rule } from '../helpers/rule.js'
import { testYaml } from '../helpers/ficus.js'

/**
 * The forward stage without sockets: an Attempt runs on undici's dispatch handler interface,
 * so a fake upstream that calls those handlers drives it exactly as a Pool would, and the
 * client's response is a real ServerResponse writing into a stream. What is checked is what
 * a client and an SRE see: who answered, the bytes written, the outcome and the counters.
 */

type Step =
  | { readonly head: number; readonly headers?: Record<string, string> }
  | { readonly data: string }
  | { readonly end: true }
  | { readonly fail: NodeJS.ErrnoException }

/** An upstream that plays a script for each request sent to it, and records what it was sent. */
class ScriptedUpstream implements UpstreamSlots {
  readonly sent: Dispatcher.DispatchOptions[] = []
  released = 0

  constructor (readonly config: UpstreamConfig, private readonly script: readonly Step[]) {}

  admit (_w: Waiter): 'now' { return 'now' }
  cancel (): boolean { return false }
  release (): void { this.released++ }
  headersFor (headers: string[]): string[] { return headers }

  dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.sent.push(opts)
    let aborted: Error | null = null
    const controller = {
      abort (reason: Error) { aborted ??= reason },
      pause () {},
      resume () {},
      get paused () { return false },
      get aborted () { return aborted !== null },
      get reason () { return aborted }
    } as unknown as Dispatcher.DispatchController
    // As undici does: the handlers run later, never inside dispatch(); a connection that
    // could not be opened fails before onRequestStart (nothing of the request was sent).
    setImmediate(() => {
      const first = this.script[0]
      if (first !== undefined && 'fail' in first && CONNECT_ERRORS.has(first.fail.code ?? '')) {
        handler.onResponseError?.(controller, first.fail)
        return
      }
      handler.onRequestStart?.(controller, {})
      for (const step of this.script) {
        if (aborted !== null) {
          handler.onResponseError?.(controller, aborted)
          return
        }
        if ('head' in step) handler.onResponseStart?.(controller, step.head, step.headers ?? {}, '')
        else if ('data' in step) handler.onResponseData?.(controller, Buffer.from(step.data))
        else if ('end' in step) handler.onResponseEnd?.(controller, {})
        else {
          handler.onResponseError?.(controller, step.fail)
          return
        }
      }
    })
  }
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT'])

const answer = (status: number, body: string): Step[] => [
  { head: status, headers: { 'content-type': 'text/plain', 'content-length': String(body.length) } },
  { data: body },
  { end: true }
]
const refused = (): Step[] => [{ fail: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }]
/** The connection was open and the request sent: then it broke. */
const reset = (): Step[] => [{ fail: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) }]

interface Rig {
  readonly ex: Exchange
  readonly legacy: ScriptedUpstream
  readonly next: ScriptedUpstream
  /** What the client received, once the response is over. */
  readonly written: Promise<string>
  counted(name: string, labels: Record<string, string>): Promise<number>
}

interface RigOptions {
  /** ms passed when legacy is asked. */
  readonly elapsedMs?: number
  /** The route's breaker; null: none. */
  readonly breaker?: BreakerPolicy | null
  readonly ejectedWrites?: 'refuse' | 'legacy'
  /** Shared between requests, to drive one breaker through several. */
  readonly breakers?: Breakers
  readonly metrics?: Metrics
}

/** A request of `method` decided for new (new: 100), with scripted upstreams. */
function rig(method: string, newScript: Step[], legacyScript: Step[], o: RigOptions = {}): Rig {
  const elapsedMs = o.elapsedMs ?? 0
  const config = parseConfig(testYaml({ upstreams: { legacy: { url: 'http://127.0.0.1:1', timeout: '2s' }, new: { url: 'http://127.0.0.1:2' } } }), 'forward.yaml', {})
  const socket = new PassThrough()
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  const req = new IncomingMessage(socket as unknown as Socket)
  Object.assign(req, { method, url: '/orders/1', complete: true, httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1 })
  const res = new ServerResponse(req)
  res.assignSocket(socket as unknown as Socket)
  const written = new Promise<string>((resolve) => {
    const done = (): void => { setImmediate(() => { resolve(Buffer.concat(chunks).toString('latin1')) }) }
    res.once('finish', done)
    res.once('close', done)
  })
  const ex = new Exchange('req-1', method, 0, req, res, '/orders/1')
  const r = rule({ new: 100, fallback: { newTimeout: { share: 0.5 }, ejectedWrites: o.ejectedWrites ?? 'refuse', breaker: o.breaker ?? null } })
  ex.routed(r, decide(r, method, undefined, Math.random))
  const legacy = new ScriptedUpstream(config.upstreams.legacy as UpstreamConfig, legacyScript)
  const next = new ScriptedUpstream(config.upstreams.new as UpstreamConfig, newScript)
  const metrics = o.metrics ?? createMetrics()
  const forward = new Forwarder({
    upstreams: new Map([['legacy', legacy], ['new', next]]),
    limits: config.limits,
    live: { current: config },
    metrics,
    breakers: o.breakers ?? new Breakers(metrics, createLogger('silent'), () => elapsedMs),
    now: () => elapsedMs,
    draining: () => false
  })
  forward.send(ex, null)
  const counted = async (name: string, labels: Record<string, string>): Promise<number> =>
    sum(parseMetrics(await metrics.register.metrics()), name, (l) => Object.entries(labels).every(([k, v]) => l[k] === v))
  return { ex, legacy, next, written, counted }
}

t.test('new answers 503 to a GET: legacy answers instead, and it is counted as a fallback', async (t) => {
  const r = rig('GET', answer(503, 'no'), answer(200, 'from legacy'))
  const out = await r.written
  t.match(out, /^HTTP\/1\.1 200 /, 'the client gets legacy\'s status')
  t.match(out, /from legacy$/, 'and legacy\'s body')
  t.notMatch(out, /no$/, 'nothing of new\'s failure answer reaches the client')
  t.equal(r.next.sent.length, 1)
  t.equal(r.legacy.sent.length, 1)
  t.equal(r.ex.outcome, 'fallback')
  t.equal(r.ex.backend, 'legacy')
  t.equal(r.ex.fallback, 'status_503')
  t.equal(await r.counted('ficus_fallbacks_total', { route: 'orders', reason: 'status_503' }), 1)
  t.equal(r.next.released + r.legacy.released, 2, 'both attempts gave their slot back')
})

t.test('new refuses the connection on a GET: legacy answers, the refusal is counted against new', async (t) => {
  const r = rig('GET', refused(), answer(200, 'from legacy'))
  t.match(await r.written, /^HTTP\/1\.1 200 [^]*from legacy$/)
  t.equal(r.ex.outcome, 'fallback')
  t.equal(r.ex.error?.code, 'FICUS_ERR_UPSTREAM_REFUSED', 'new\'s failure stays in the log line')
  t.equal(await r.counted('ficus_upstream_errors_total', { route: 'orders', backend: 'new', reason: 'refused' }), 1)
  t.equal(await r.counted('ficus_fallbacks_total', { route: 'orders', reason: 'refused' }), 1)
})

t.test('a POST that never reached new (connection refused) is answered by legacy', async (t) => {
  const r = rig('POST', refused(), answer(201, 'created by legacy'))
  t.match(await r.written, /^HTTP\/1\.1 201 [^]*created by legacy$/)
  t.equal(r.legacy.sent.length, 1)
  t.equal(r.legacy.sent[0]?.method, 'POST')
  t.equal(r.ex.fallback, 'refused')
  t.equal(await r.counted('ficus_fallbacks_total', { route: 'orders', reason: 'refused' }), 1)
})

t.test('a POST is never sent twice: once it may have reached new, new\'s failure is the client\'s 502', async (t) => {
  const r = rig('POST', reset(), answer(200, 'from legacy'))
  const out = await r.written
  t.match(out, /^HTTP\/1\.1 502 /)
  t.match(out, /"code":"FICUS_ERR_UPSTREAM_RESET"/)
  t.equal(r.legacy.sent.length, 0, 'legacy never saw the request')
  t.equal(r.ex.outcome, 'reset')
  t.equal(await r.counted('ficus_fallbacks_total', {}), 0)
})

t.test('a DELETE or a PUT without a body is a write: once it may have reached new, legacy never gets it too', async (t) => {
  for (const method of ['DELETE', 'PUT']) {
    const r = rig(method, answer(503, 'busy'), answer(200, 'from legacy'))
    t.match(await r.written, /^HTTP\/1\.1 503 [^]*busy$/, `${method}: new's own answer`)
    t.equal(r.legacy.sent.length, 0, `${method}: legacy never saw it (new and legacy keep their own data)`)
    const unsent = rig(method, refused(), answer(204, ''))
    t.match(await unsent.written, /^HTTP\/1\.1 204 /, `${method} that never reached new: legacy takes it`)
  }
})

t.test('a fallback is counted only when legacy answered', async (t) => {
  const r = rig('GET', refused(), refused())
  t.match(await r.written, /^HTTP\/1\.1 502 /)
  t.equal(r.ex.fallback, 'refused', 'the log line says a fallback was tried')
  t.equal(await r.counted('ficus_fallbacks_total', {}), 0, 'but nobody was served by it')
  t.equal(await r.counted('ficus_upstream_errors_total', { backend: 'legacy', reason: 'refused' }), 1)
})

t.test('the breaker: after N failures in a row new is ejected, reads go to legacy without trying new, writes get 503 with Retry-After, and a probe brings new back', async (t) => {
  let clock = 0
  const metrics = createMetrics()
  const breakers = new Breakers(metrics, createLogger('silent'), () => clock)
  const breaker: BreakerPolicy = { consecutiveFailures: 3, failureRate: 0, minRequests: 1, windowMs: 10_000, ejectionMs: 5_000, maxEjectionMs: 60_000, probes: 1 }
  const o = { breaker, breakers, metrics }
  for (let i = 0; i < 3; i++) {
    const r = rig('GET', refused(), answer(200, 'legacy'), o)
    t.match(await r.written, /^HTTP\/1\.1 200 /, `failure ${i + 1}: legacy answers`)
  }
  t.equal(breakers.snapshots().orders?.state, 'open', 'three refusals in a row eject new')
  const read = rig('GET', answer(200, 'new'), answer(200, 'legacy'), o)
  t.match(await read.written, /legacy$/)
  t.equal(read.next.sent.length, 0, 'an ejected new is not tried')
  t.equal(read.ex.fallback, 'ejected')
  const write = rig('POST', answer(201, 'new'), answer(201, 'legacy'), o)
  const w = await write.written
  t.match(w, /^HTTP\/1\.1 503 [^]*retry-after: 5\r\n[^]*"code":"FICUS_ERR_NEW_EJECTED"/i, 'a write gets 503 with the cool-down left')
  t.equal(write.next.sent.length + write.legacy.sent.length, 0, 'and goes nowhere')
  const moved = rig('POST', answer(201, 'new'), answer(201, 'legacy'), { ...o, ejectedWrites: 'legacy' })
  t.match(await moved.written, /^HTTP\/1\.1 201 [^]*legacy$/, 'ejectedWrites: legacy sends it to legacy')
  t.equal(await moved.counted('ficus_writes_refused_total', { route: 'orders', reason: 'new_ejected' }), 1, 'the refused write is counted')
  clock = 5_000
  const probe = rig('GET', answer(200, 'new'), answer(200, 'legacy'), o)
  t.match(await probe.written, /new$/, 'after the cool-down one request goes to new')
  t.equal(breakers.snapshots().orders?.state, 'closed', 'its success closes the breaker')
  t.equal(await probe.counted('ficus_breaker_ejections_total', { route: 'orders' }), 1)
  t.equal(await probe.counted('ficus_fallbacks_total', { route: 'orders', reason: 'ejected' }), 2, 'the read and the moved write')
})

t.test('a POST that new answers with 503 gets new\'s answer as it is', async (t) => {
  const r = rig('POST', answer(503, 'busy'), answer(200, 'from legacy'))
  t.match(await r.written, /^HTTP\/1\.1 503 [^]*busy$/)
  t.equal(r.legacy.sent.length, 0)
  t.equal(r.ex.outcome, 'ok')
})

t.test('no time left of legacy\'s timeout: the client gets new\'s failure, legacy is not asked', async (t) => {
  const r = rig('GET', refused(), answer(200, 'from legacy'), { elapsedMs: 2_000 })
  const out = await r.written
  t.match(out, /^HTTP\/1\.1 502 /)
  t.match(out, /"code":"FICUS_ERR_UPSTREAM_REFUSED"/)
  t.equal(r.legacy.sent.length, 0)
  t.equal(r.ex.fallback, 'refused', 'the log line still says a fallback was tried')
  t.equal(r.ex.outcome, 'refused')
})

t.test('legacy is asked within what is left of its own timeout', async (t) => {
  const r = rig('GET', refused(), answer(200, 'from legacy'), { elapsedMs: 1_250 })
  await r.written
  t.equal(r.legacy.sent[0]?.headersTimeout, 750, 'timeout 2s, 1.25 s already spent')
})

t.test('once new\'s answer has started, a failure aborts the client connection: no fallback, no second answer', async (t) => {
  const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
  const r = rig('GET', [{ head: 200, headers: { 'content-length': '100' } }, { data: 'partial' }, { fail: reset }], answer(200, 'from legacy'))
  const out = await r.written
  t.ok(r.ex.res.destroyed, 'the client connection is aborted')
  t.notMatch(out, /FICUS_ERR|from legacy/, 'no error answer and no second answer after the head')
  t.equal(r.legacy.sent.length, 0)
  t.equal(r.ex.error?.code, 'FICUS_ERR_UPSTREAM_ABORTED')
})
