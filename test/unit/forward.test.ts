import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import t from 'tap'
import type { Dispatcher } from 'undici'
import { createMetrics } from '../../src/adapters/metrics-registry.js'
import type { UpstreamSlots, Waiter } from '../../src/adapters/upstreams.js'
import { parseConfig } from '../../src/config/load-config.js'
import type { UpstreamConfig } from '../../src/config/schema.js'
import { decide } from '../../src/core/decide.js'
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
    // As undici does: the handlers run later, never inside dispatch().
    setImmediate(() => {
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

const answer = (status: number, body: string): Step[] => [
  { head: status, headers: { 'content-type': 'text/plain', 'content-length': String(body.length) } },
  { data: body },
  { end: true }
]
const refused = (): Step[] => [{ fail: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }]

interface Rig {
  readonly ex: Exchange
  readonly legacy: ScriptedUpstream
  readonly next: ScriptedUpstream
  /** What the client received, once the response is over. */
  readonly written: Promise<string>
  counted(name: string, labels: Record<string, string>): Promise<number>
}

/** A request of `method` decided for new (new: 100), with scripted upstreams; `elapsed` ms passed when legacy is asked. */
function rig(method: string, newScript: Step[], legacyScript: Step[], elapsedMs = 0): Rig {
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
  const r = rule({ new: 100 })
  ex.routed(r, decide(r, method, undefined, Math.random))
  const legacy = new ScriptedUpstream(config.upstreams.legacy as UpstreamConfig, legacyScript)
  const next = new ScriptedUpstream(config.upstreams.new as UpstreamConfig, newScript)
  const metrics = createMetrics()
  const forward = new Forwarder({
    upstreams: new Map([['legacy', legacy], ['new', next]]),
    limits: config.limits,
    live: { current: config },
    metrics,
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

t.test('a POST is never sent twice: new\'s refusal is the client\'s 502', async (t) => {
  const r = rig('POST', refused(), answer(200, 'from legacy'))
  const out = await r.written
  t.match(out, /^HTTP\/1\.1 502 /)
  t.match(out, /"code":"FICUS_ERR_UPSTREAM_REFUSED"/)
  t.equal(r.legacy.sent.length, 0, 'legacy never saw the request')
  t.equal(r.ex.outcome, 'refused')
  t.equal(await r.counted('ficus_fallbacks_total', {}), 0)
})

t.test('a POST that new answers with 503 gets new\'s answer as it is', async (t) => {
  const r = rig('POST', answer(503, 'busy'), answer(200, 'from legacy'))
  t.match(await r.written, /^HTTP\/1\.1 503 [^]*busy$/)
  t.equal(r.legacy.sent.length, 0)
  t.equal(r.ex.outcome, 'ok')
})

t.test('no time left of legacy\'s timeout: the client gets new\'s failure, legacy is not asked', async (t) => {
  const r = rig('GET', refused(), answer(200, 'from legacy'), 2_000)
  const out = await r.written
  t.match(out, /^HTTP\/1\.1 502 /)
  t.match(out, /"code":"FICUS_ERR_UPSTREAM_REFUSED"/)
  t.equal(r.legacy.sent.length, 0)
  t.equal(r.ex.fallback, 'refused', 'the log line still says a fallback was tried')
  t.equal(r.ex.outcome, 'refused')
})

t.test('legacy is asked within what is left of its own timeout', async (t) => {
  const r = rig('GET', refused(), answer(200, 'from legacy'), 1_250)
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
