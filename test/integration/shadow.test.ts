import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib'
import t from 'tap'
import type { DivergenceSample } from '../../src/adapters/divergence-store.js'
import { admin, samples, summary } from '../helpers/admin.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { held, startUpstream, type Handler } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/** An answer per path: `[status, body, headers]`; a body object is sent as JSON. */
type Answers = Record<string, [number, unknown, Record<string, string>?]>

function answers(table: Answers): Handler {
  return (req, res) => {
    const [status, body, headers] = table[(req.url ?? '').split('?')[0] as string] ?? [404, { error: 'none' }]
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': buf.length, ...headers })
    res.end(buf)
  }
}

const paths = (s: DivergenceSample | undefined): string[] => (s?.differences ?? []).map((d) => d.path)

/** Legacy answers, new gets the copy (new: 0, shadow: 100), with the given compare rules. */
async function shadowed(t: Parameters<typeof startUpstream>[0], legacy: Handler, next: Handler, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) {
  const l = await startUpstream(t, 'legacy', legacy)
  const n = await startUpstream(t, 'new', next)
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: l.url }, new: { url: n.url } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 0, shadow: 100, ...extra }],
    ...top
  })
  return { l, n, f, idle: async () => f.shadowIdle() }
}

const ORDER = { id: 1, customer_name: 'Ada', amount: '12.50', items: [{ sku: 'A', qty: 2 }, { sku: 'B', qty: 1 }], meta: { at: 1 }, tags: ['x', 'y'] }
const NEW_ORDER = { id: 1, customerName: 'Ada', amount: 12.5, items: [{ sku: 'B', qty: 1 }, { sku: 'A', qty: 2 }], meta: { at: 2 }, tags: ['y', 'x', 'z'] }

/** Three reads through a route shadowed to new, each diverging in one area (body, status, header), once the shadow stage is idle. */
async function threeReads(t: Parameters<typeof startUpstream>[0]) {
  const rig = await shadowed(t,
    answers({ '/o/1': [200, ORDER], '/s': [200, { ok: true }], '/h': [200, 'plain', { 'content-type': 'text/plain' }] }),
    answers({ '/o/1': [200, NEW_ORDER], '/s': [500, { ok: true }], '/h': [200, 'plain', { 'content-type': 'text/html' }] }))
  const r = await rig.f.fetch('/o/1?token=secret', { headers: { 'x-user-id': 'alice' } })
  await rig.f.fetch('/s')
  await rig.f.fetch('/h')
  await rig.idle()
  return { ...rig, r }
}

t.test('a shadowed read: the client gets legacy\'s answer, untouched', async (t) => {
  const { r } = await threeReads(t)
  t.equal(r.status, 200)
  t.same(r.json(), ORDER, 'the client gets legacy\'s answer, untouched')
})

t.test('a shadowed read is copied to new, marked, with the same target and request id', async (t) => {
  const { l, n } = await threeReads(t)
  t.equal(n.requests.length, 3, 'new got a copy of each read')
  t.equal(n.requests[0]?.headers['x-ficus-shadow'], '1', 'copies are marked')
  t.equal(l.requests[0]?.headers['x-ficus-shadow'], undefined, 'the primary request is not')
  t.equal(n.requests[0]?.url, '/o/1?token=secret', 'the copy has the same target')
  t.equal(n.requests[0]?.headers['x-request-id'], l.requests[0]?.headers['x-request-id'], 'and the same request id')
})

t.test('every kind of difference is reported in the samples, with the query redacted and without the raw sticky key', async (t) => {
  const { f } = await threeReads(t)
  const list = await samples(f, '?route=orders')
  t.equal(list.length, 3)
  const [h, s, o] = list as [DivergenceSample, DivergenceSample, DivergenceSample]
  t.match(o, { route: 'orders', method: 'GET', path: '/o/1?token=[redacted]', primary: 'legacy', status: { legacy: 200, new: 200 }, truncated: false })
  t.notOk(JSON.stringify(o).includes('secret'), 'a token in the query is never shown')
  t.match(o.keyHash, /^[0-9a-f]{12}$/, 'the sticky key is hashed')
  t.notOk(JSON.stringify(o).includes('alice'), 'never shown raw')
  t.same(o.differences.map((d) => `${d.path} ${d.kind}`).sort(), [
    'body.amount type',
    'body.customerName extra',
    'body.customer_name missing',
    'body.items[0].sku changed', 'body.items[1].sku changed', 'body.items[0].qty changed', 'body.items[1].qty changed',
    'body.meta.at changed',
    'body.tags length', 'body.tags[0] changed', 'body.tags[1] changed'
  ].sort())
  t.match(o.differences.find((d) => d.path === 'body.amount'), { area: 'body', legacy: '12.50', new: 12.5 })
  t.same(s.differences, [{ path: 'status', area: 'status', kind: 'changed', legacy: 200, new: 500 }])
  t.same(h.differences, [{ path: 'header.content-type', area: 'header', kind: 'changed', legacy: 'text/plain', new: 'text/html' }])
})

t.test('comparisons, divergences by kind and the copies\' requests are counted in /metrics', async (t) => {
  const { f } = await threeReads(t)
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'diverged' }), 3)
  t.equal(sample(m, 'ficus_divergences_total', { route: 'orders', kind: 'body' }), 1)
  t.equal(sample(m, 'ficus_divergences_total', { route: 'orders', kind: 'status' }), 1)
  t.equal(sample(m, 'ficus_divergences_total', { route: 'orders', kind: 'header' }), 1)
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'new', role: 'shadow', code: '200' }), 2)
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'new', role: 'shadow', code: '500' }), 1)
  t.equal(sample(m, 'ficus_request_duration_seconds_count', { route: 'orders', backend: 'new', role: 'shadow' }), 3)
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'legacy', role: 'primary', code: '200' }), 3)
})

t.test('the divergence summary counts comparisons and kinds; per-field counts fold array positions', async (t) => {
  const { f } = await threeReads(t)
  const sum = await summary(f, 'orders')
  t.match(sum, { route: 'orders', comparisons: { match: 0, diverged: 3, error: 0, skipped: 0 }, divergenceRate: 1, kinds: { status: 1, header: 1, body: 1 } })
  const fields = Object.fromEntries(sum.topFields.map((x) => [x.field, x.count]))
  t.equal(fields['body.items[*].sku'], 2, 'per-field counts fold array positions')
  t.equal(fields['body.amount'], 1)
})

t.test('the copy of a read goes out while the primary is still working on it', async (t) => {
  // Legacy (the primary) is held until release(): if the copy waited for its answer, n.arrived would never resolve.
  t.setTimeout(10_000)
  const slow = held(answers({ '/o': [200, { ok: 1 }] }))
  const { l, n, f, idle } = await shadowed(t, slow.handler, answers({ '/o': [200, { ok: 1 }] }))
  const pending = f.fetch('/o')
  await n.arrived(1, { timeoutMs: 5_000, message: 'the copy did not go out while the primary was held' })
  await l.arrived(1)
  slow.release()
  t.equal((await waitFor(pending, { message: 'the primary did not answer once released' })).status, 200)
  await idle()
  t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'orders', outcome: 'match' }), 1)
})

t.test('a comparison that starts when the primary ends is not part of the primary\'s measured time', async (t) => {
  // The copy is answered and read first, so the comparison starts from the primary's end:
  // it must run after that request is recorded (access line, duration), not inside it.
  t.setTimeout(10_000)
  const slow = held(answers({ '/o': [200, ORDER] }))
  const { f, idle } = await shadowed(t, slow.handler, answers({ '/o': [200, NEW_ORDER] }))
  // undici publishes a request's completion just before its handler's onResponseEnd runs, in
  // the same call stack: what awaits `copyRead` runs after the handler took the copy's answer.
  const copyRead = new Promise<void>((resolve) => {
    const done = (m: unknown): void => {
      if (!(m as { request: { headers: string[] } }).request.headers.includes('x-ficus-shadow')) return
      unsubscribe('undici:request:trailers', done)
      resolve()
    }
    subscribe('undici:request:trailers', done)
  })
  const pending = f.fetch('/o')
  await waitFor(copyRead, { timeoutMs: 5_000, message: 'the copy\'s answer was not read while the primary was held' })
  t.equal(sample(await f.scrape(), 'ficus_requests_total', { route: 'orders', backend: 'new', role: 'shadow', code: '200' }), 1, 'the copy was read first')
  slow.release()
  t.equal((await waitFor(pending, { message: 'the primary did not answer once released' })).status, 200)
  await idle()
  const order = f.logs.lines.filter((l) => l.msg === 'request' || l.msg === 'divergence').map((l) => l.msg)
  t.same(order, ['request', 'divergence'], 'the primary was recorded before its comparison ran')
})

t.test('ignore, keyed and unordered arrays, tolerance and string-number remove those differences', async (t) => {
  const { f, idle } = await shadowed(t,
    answers({ '/o/1': [200, { ...ORDER, price: 1.0001, tags: ['x', 'y', 'z'] }, { date: 'Mon' }] }),
    answers({ '/o/1': [200, { ...NEW_ORDER, customerName: undefined, customer_name: 'Ada', price: 1.0, tags: ['z', 'x', 'y'] }, { date: 'Tue' }] }),
    {
      compare: {
        headers: ['content-type', 'date'],
        ignore: ['body.meta', 'header.date'],
        arrays: { 'body.items': { key: 'sku' }, 'body.tags': 'unordered' },
        numbers: { tolerance: 0.001 },
        treatAsEqual: ['string-number']
      }
    })
  await f.fetch('/o/1')
  await idle()
  t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'orders', outcome: 'match' }), 1)
  t.same(await samples(f), [])
})

t.test('keyed arrays name the item by its key when it does differ', async (t) => {
  const { f, idle } = await shadowed(t,
    answers({ '/o': [200, { items: [{ sku: 'A', qty: 2 }, { sku: 'B', qty: 1 }] }] }),
    answers({ '/o': [200, { items: [{ sku: 'B', qty: 1 }, { sku: 'A', qty: 3 }, { sku: 'C', qty: 1 }] }] }),
    { compare: { arrays: { 'body.items': { key: 'sku' } } } })
  await f.fetch('/o')
  await idle()
  const [s] = await samples(f)
  t.same(s?.differences.map((d) => `${d.path} ${d.kind}`), ['body.items[sku=A].qty changed', 'body.items[sku=C] extra'])
})

t.test('compressed answers are decoded before comparing', async (t) => {
  const doc = { a: 1, b: [1, 2, 3] }
  const { f, idle } = await shadowed(t,
    answers({ '/gz': [200, gzipSync(JSON.stringify(doc)), { 'content-encoding': 'gzip' }], '/br': [200, brotliCompressSync(JSON.stringify(doc)), { 'content-encoding': 'br' }] }),
    answers({ '/gz': [200, doc], '/br': [200, { a: 2, b: [1, 2, 3] }] }))
  const r = await f.fetch('/gz')
  t.equal(r.headers['content-encoding'], 'gzip', 'the client still gets the bytes legacy sent')
  await f.fetch('/br')
  await idle()
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'match' }), 1, 'gzip equals plain')
  const [s] = await samples(f)
  t.same(s?.differences, [{ path: 'body.a', area: 'body', kind: 'changed', legacy: 1, new: 2 }], 'br decoded too')
})

t.test('deflate, zlib-wrapped or raw, is decoded; past shadow.maxBodySize once decoded it is skipped', async (t) => {
  const doc = JSON.stringify({ a: 1 })
  const huge = JSON.stringify({ a: 'x'.repeat(8192) })
  const { f, idle } = await shadowed(t,
    answers({ '/z': [200, deflateSync(doc), { 'content-encoding': 'deflate' }], '/raw': [200, deflateRawSync(doc), { 'content-encoding': 'deflate' }], '/bomb': [200, deflateSync(huge), { 'content-encoding': 'deflate' }] }),
    answers({ '/z': [200, doc], '/raw': [200, doc], '/bomb': [200, huge] }),
    {}, { shadow: { maxBodySize: '4KiB' } })
  for (const p of ['/z', '/raw', '/bomb']) await f.fetch(p)
  await idle()
  t.match(await summary(f, 'orders'), { comparisons: { match: 2, diverged: 0, skipped: 1 }, skipped: { body_too_large: 1 } })
})

t.test('non-JSON bodies are compared as bytes', async (t) => {
  const { f, idle } = await shadowed(t,
    answers({ '/t': [200, 'hello world', { 'content-type': 'text/plain' }] }),
    answers({ '/t': [200, 'hello there', { 'content-type': 'text/plain' }] }))
  await f.fetch('/t')
  await idle()
  const [s] = await samples(f)
  t.match(s?.differences, [{ path: 'body', kind: 'changed', legacy: /at byte 6/, new: /there/ }])
})

/** A shadow backend that accepts the copy and never answers (shadow.timeout 200 ms), after one read. */
async function silentShadow(t: Parameters<typeof startUpstream>[0]) {
  const rig = await shadowed(t, answers({ '/o': [200, { ok: 1 }] }), () => { /* silent */ }, {}, { shadow: { timeout: '200ms' } })
  return { ...rig, r: await rig.f.fetch('/o') }
}

t.test('a shadow backend that never answers: the client is unaffected', async (t) => {
  const { n, r } = await silentShadow(t)
  t.equal(r.status, 200)
  t.same(r.json(), { ok: 1 })
  t.equal(n.started(), 1, 'the copy was sent')
})

t.test('a copy that is never answered times out at shadow.timeout and is counted as a shadow error, not a primary one', async (t) => {
  const { f, idle } = await silentShadow(t)
  await idle()
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'error' }), 1)
  t.equal(sample(m, 'ficus_shadow_dropped_total', { route: 'orders', reason: 'timeout' }), 1)
  t.equal(sample(m, 'ficus_requests_total', { route: 'orders', backend: 'new', role: 'shadow', code: '504' }), 1)
  t.equal(sample(m, 'ficus_upstream_errors_total', { route: 'orders', backend: 'new', reason: 'timeout' }), 0, 'shadow failures are not primary upstream errors')
  t.match(await summary(f, 'orders'), { errors: { timeout: 1 } })
})

/** A shadow backend that resets the copy's connection, after one read. */
async function resettingShadow(t: Parameters<typeof startUpstream>[0]) {
  const rig = await shadowed(t, answers({ '/o': [200, { ok: 1 }] }), (req) => { req.socket.destroy() })
  return { ...rig, r: await rig.f.fetch('/o') }
}

t.test('a shadow backend that resets the connection: the client is unaffected', async (t) => {
  const { r } = await resettingShadow(t)
  t.same([r.status, r.json()], [200, { ok: 1 }])
})

t.test('a copy whose connection is reset is counted as an error, with a 502', async (t) => {
  const { f, idle } = await resettingShadow(t)
  await idle()
  t.match(await summary(f, 'orders'), { comparisons: { error: 1 }, errors: { reset: 1 } })
  t.equal(sample(await f.scrape(), 'ficus_requests_total', { route: 'orders', backend: 'new', role: 'shadow', code: '502' }), 1)
})

t.test('a slow shadow that then answers 500: the client had its answer before the shadow answered', async (t) => {
  // The shadow is held until release(): if the client's answer waited for it, the fetch would never resolve.
  t.setTimeout(10_000)
  const slow = held(answers({ '/o': [500, { error: 'boom' }] }))
  const { n, f, idle } = await shadowed(t, answers({ '/o': [200, { ok: 1 }] }), slow.handler)
  const r = await waitFor(f.fetch('/o'), { timeoutMs: 5_000, message: 'the client\'s answer waited for the held shadow' })
  t.same([r.status, r.json()], [200, { ok: 1 }], 'answered while the shadow is still held')
  await n.arrived(1, { message: 'the copy never reached new' })
  slow.release()
  await idle()
  const [s] = await samples(f)
  t.same(s?.differences[0], { path: 'status', area: 'status', kind: 'changed', legacy: 200, new: 500 })
})

t.test('a primary that streams on past shadow.timeout: the comparison is given up and the slot freed', async (t) => {
  let finish = (): void => {}
  const { l, f, idle } = await shadowed(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first part;')
    finish = () => res.end('last part')
  }, answers({ '/o': [200, 'other'] }), {}, { shadow: { timeout: '200ms' } })
  const pending = f.fetch('/o')
  await l.arrived(1) // the copy is under way from here on
  await idle()
  t.match(await summary(f, 'orders'), { comparisons: { skipped: 1 }, skipped: { primary_too_slow: 1 } })
  t.equal(sample(await f.scrape(), 'ficus_shadow_dropped_total', { route: 'orders', reason: 'timeout' }), 1)
  finish()
  t.equal((await waitFor(pending, { message: 'the streaming primary\'s answer did not end' })).text, 'first part;last part', 'the client still gets all of it')
})

t.test('a primary refused at once (saturated) is not copied', async (t) => {
  const slow = held(answers({ '/o': [200, { ok: 1 }] }))
  const l = await startUpstream(t, 'legacy', slow.handler)
  const n = await startUpstream(t, 'new', answers({ '/o': [200, { ok: 1 }] }))
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: l.url, connections: 1, maxQueue: 0 }, new: { url: n.url } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 0, shadow: 100 }]
  })
  const first = f.fetch('/o')
  await l.arrived(1)
  t.equal((await f.fetch('/o')).status, 503)
  slow.release()
  await waitFor(first, { message: 'the held request did not complete once released' })
  await f.shadowIdle()
  t.equal(n.started(), 1, 'only the request legacy took was copied')
  t.match(await summary(f, 'orders'), { comparisons: { match: 1, skipped: 1 }, skipped: { primary_failed: 1 } })
})

t.test('at the concurrency bound shadows are dropped and counted, never queued', async (t) => {
  const slow = held(answers({ '/o': [200, { ok: 1 }] }))
  const { n, f, idle } = await shadowed(t, answers({ '/o': [200, { ok: 1 }] }), slow.handler, {}, { shadow: { maxInFlight: 2 } })
  for (let i = 0; i < 5; i++) t.equal((await f.fetch('/o')).status, 200)
  await n.arrived(2, { message: 'the two copies within shadow.maxInFlight did not reach new' })
  t.equal(f.running.ficus.shadowing.inFlight, 2)
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_shadow_dropped_total', { route: 'orders', reason: 'concurrency' }), 3)
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'skipped' }), 3)
  slow.release()
  await idle()
  t.equal(n.started(), 2, 'dropped copies were never sent')
  t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'orders', outcome: 'match' }), 2)
  t.match(await summary(f, 'orders'), { skipped: { concurrency: 3 } })
})

t.test('writes are not shadowed unless the route says so', async (t) => {
  const { n, f, idle } = await shadowed(t, answers({ '/o': [201, { id: 7 }] }), answers({ '/o': [201, { id: 8 }] }))
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
    t.equal((await f.fetch('/o', { method, body: '{"a":1}', headers: { 'content-type': 'application/json' } })).status, 201)
  }
  await idle()
  t.equal(n.started(), 0, 'new saw none of them')
  t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'orders', outcome: 'skipped' }), 0)
})

/** A route with shadowWrites, after one POST legacy answers 201 (new 201 too, another id); `events` says who was called when. */
async function shadowedWrite(t: Parameters<typeof startUpstream>[0]) {
  const events: string[] = []
  const legacy: Handler = (req, res, body) => {
    events.push('legacy answers')
    answers({ '/o': [201, { id: 7 }], '/bad': [409, { error: 'conflict' }] })(req, res, body)
  }
  const next: Handler = (req, res, body) => {
    events.push('new gets the copy')
    answers({ '/o': [201, { id: 8 }] })(req, res, body)
  }
  const rig = await shadowed(t, legacy, next, { shadowWrites: true })
  const payload = JSON.stringify({ item: 'tea', qty: 2 }).repeat(100)
  const r = await rig.f.fetch('/o', { method: 'POST', body: payload, headers: { 'content-type': 'application/json' } })
  await rig.idle()
  return { ...rig, events, payload, r }
}

t.test('shadowWrites: the copy of a write goes out after the primary answered 2xx, with the same body', async (t) => {
  const { n, f, events, payload, r } = await shadowedWrite(t)
  t.same([r.status, r.json()], [201, { id: 7 }])
  t.same(events, ['legacy answers', 'new gets the copy'])
  t.equal(n.requests[0]?.body.toString(), payload, 'same body')
  t.equal(n.requests[0]?.method, 'POST')
  const [s] = await samples(f)
  t.same(s?.differences, [{ path: 'body.id', area: 'body', kind: 'changed', legacy: 7, new: 8 }])
})

t.test('shadowWrites: a write the primary refused is not repeated on new', async (t) => {
  const { n, f, idle } = await shadowedWrite(t)
  const refused = await f.fetch('/bad', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
  t.equal(refused.status, 409)
  await idle()
  t.equal(n.started(), 1, 'a write the primary refused is not repeated')
  t.match(await summary(f, 'orders'), { skipped: { write_not_2xx: 1 } })
})

t.test('a shadowed write whose body is over shadow.maxBodySize is forwarded but not copied', async (t) => {
  const { l, n, f, idle } = await shadowed(t, answers({ '/o': [201, { id: 7 }] }), answers({ '/o': [201, { id: 7 }] }),
    { shadowWrites: true }, { shadow: { maxBodySize: '1KiB' } })
  const r = await f.fetch('/o', { method: 'POST', body: 'x'.repeat(4096) })
  t.equal(r.status, 201)
  t.equal(l.requests[0]?.body.length, 4096, 'the primary got the whole body')
  await idle()
  t.equal(n.started(), 0)
  t.equal(sample(await f.scrape(), 'ficus_shadow_dropped_total', { route: 'orders', reason: 'body_too_large' }), 1)
})

t.test('answers over shadow.maxBodySize: the body is skipped, a status difference still shows', async (t) => {
  const big = { data: 'x'.repeat(4096) }
  const { f, idle } = await shadowed(t, answers({ '/big': [200, big], '/both': [200, big] }), answers({ '/big': [500, { error: 1 }], '/both': [200, big] }),
    {}, { shadow: { maxBodySize: '1KiB' } })
  t.equal((await f.fetch('/big')).text.length, JSON.stringify(big).length, 'the client gets all of it')
  await f.fetch('/both')
  await idle()
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'diverged' }), 1)
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'skipped' }), 1)
  t.equal(sample(m, 'ficus_shadow_dropped_total', { route: 'orders', reason: 'body_too_large' }), 1)
  t.same(paths((await samples(f))[0]), ['status'])
})

t.test('new primary with fallback: legacy answered, so nothing is compared', async (t) => {
  const l = await startUpstream(t, 'legacy', answers({ '/o': [200, { ok: 1 }] }))
  const n = await startUpstream(t, 'new', answers({ '/o': [503, { error: 'down' }] }))
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: l.url }, new: { url: n.url } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100, shadow: 100 }]
  })
  const r = await f.fetch('/o')
  t.same([r.status, r.json()], [200, { ok: 1 }])
  await f.shadowIdle()
  t.equal(l.started(), 2, 'legacy got the copy and the fallback')
  t.match(await summary(f, 'orders'), { comparisons: { skipped: 1 }, skipped: { fallback: 1 } })
})

t.test('new primary: legacy gets the copy, differences are still named from legacy to new', async (t) => {
  const l = await startUpstream(t, 'legacy', answers({ '/o': [200, { a: 1 }] }))
  const n = await startUpstream(t, 'new', answers({ '/o': [200, { a: 1, b: 2 }] }))
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: l.url }, new: { url: n.url } },
    routes: [{ name: 'orders', match: { path: '/*' }, new: 100, shadow: 100 }]
  })
  t.same((await f.fetch('/o')).json(), { a: 1, b: 2 })
  await f.shadowIdle()
  t.equal(l.requests[0]?.headers['x-ficus-shadow'], '1')
  const [s] = await samples(f)
  t.match(s, { primary: 'new', differences: [{ path: 'body.b', kind: 'extra', new: 2 }] })
  t.equal(sample(await f.scrape(), 'ficus_requests_total', { route: 'orders', backend: 'legacy', role: 'shadow', code: '200' }), 1)
})

/** Two answers whose comparison (as unordered arrays) exhausts the stack, after one read of them. */
async function comparisonThrows(t: Parameters<typeof startUpstream>[0]) {
  // Deep enough that comparing it as an unordered array exhausts the stack.
  const deep = '['.repeat(20000) + ']'.repeat(20000)
  const deeper = `[1,${deep.slice(1)}`
  const rig = await shadowed(t, answers({ '/deep': [200, deep], '/o': [200, { a: 1 }] }), answers({ '/deep': [200, deeper], '/o': [200, { a: 1 }] }),
    { compare: { arrays: { body: 'unordered' } } })
  const r = await rig.f.fetch('/deep')
  await rig.idle()
  return { ...rig, deep, r }
}

t.test('an exception while comparing is counted as an error and logged, the client unaffected', async (t) => {
  const { f, deep, r } = await comparisonThrows(t)
  t.same([r.status, r.text.length], [200, deep.length])
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'error' }), 1)
  const line = await f.logs.waitFor((x) => x.msg === 'shadow comparison failed')
  t.equal(line.level, 'error')
})

t.test('after an exception while comparing, the proxy keeps serving and comparing', async (t) => {
  const { f, idle } = await comparisonThrows(t)
  t.equal((await f.fetch('/o')).status, 200, 'still serving')
  await idle()
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'match' }), 1)
})

t.test('samples are redacted: credential headers always, and the route\'s redact paths', async (t) => {
  const { f, idle } = await shadowed(t,
    answers({ '/u': [200, { user: { name: 'a', email: 'a@x', card: { pan: '4111' } }, token: 't1' }, { 'set-cookie': 'sid=abc' }] }),
    answers({ '/u': [200, { user: { name: 'b', email: 'b@x' }, token: 't2' }, { 'set-cookie': 'sid=def' }] }),
    { compare: { headers: ['content-type', 'set-cookie'], redact: ['body.user.email', 'body.token', 'body.**.pan'] } })
  await f.fetch('/u')
  await idle()
  const [s] = await samples(f)
  const by = Object.fromEntries((s?.differences ?? []).map((d) => [d.path, d]))
  t.match(by['header.set-cookie'], { legacy: '[redacted]', new: '[redacted]' })
  t.match(by['body.user.email'], { legacy: '[redacted]', new: '[redacted]' })
  t.match(by['body.token'], { legacy: '[redacted]', new: '[redacted]' })
  t.same(by['body.user.card'], { path: 'body.user.card', area: 'body', kind: 'missing', legacy: { pan: '[redacted]' } }, 'inside a value too')
  t.match(by['body.user.name'], { legacy: 'a', new: 'b' }, 'the rest stays readable')
  t.notOk(/abc|def|a@x|b@x|4111|t1|t2/.test(JSON.stringify(s)))
})

t.test('a sample keeps the query string, so a divergence is tied to /posts?_page=2; secret and sticky parameters are redacted', async (t) => {
  const { f, idle } = await shadowed(t,
    (req, res, body) => answers({ '/posts': [200, { page: req.url?.includes('_page=2') === true ? 2 : 1 }] })(req, res, body),
    (req, res, body) => answers({ '/posts': [200, { page: req.url?.includes('_page=2') === true ? 3 : 1 }] })(req, res, body),
    { sticky: 'query:user', compare: { redact: ['query.session'] } })
  await f.fetch('/posts?_page=1&user=bob')
  await f.fetch('/posts?_page=2&session=s3cr3t&user=bob&api_key=k3y')
  await idle()
  const list = await samples(f, '?route=orders')
  t.same(list.map((s) => s.path), ['/posts?_page=2&session=[redacted]&user=[redacted]&api_key=[redacted]'], 'only page 2 diverged, and its sample says so')
  t.notOk(/s3cr3t|bob|k3y/.test(JSON.stringify(list)), 'no secret, sticky key or API key in samples')
})

t.test('an array keyed by a redacted field does not show the key in paths', async (t) => {
  const { f, idle } = await shadowed(t,
    answers({ '/u': [200, { users: [{ email: 'ada@corp', plan: 'gold' }] }] }),
    answers({ '/u': [200, { users: [{ email: 'ada@corp', plan: 'free' }] }] }),
    { compare: { arrays: { 'body.users': { key: 'email' } }, redact: ['body.**.email'] } })
  await f.fetch('/u')
  await idle()
  const [s] = await samples(f)
  t.same(paths(s), ['body.users[email=[redacted]].plan'])
  t.notOk(JSON.stringify(await summary(f, 'orders')).includes('ada@corp'), 'nor in field counts')
})

t.test('a difference too deeply nested to show is still one diverged comparison', async (t) => {
  const deep = `{"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}`
  const { f, idle } = await shadowed(t, answers({ '/d': [200, deep] }), answers({ '/d': [200, { y: 1 }] }))
  await f.fetch('/d')
  await idle()
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'diverged' }), 1)
  t.equal(sample(m, 'ficus_comparisons_total', { route: 'orders', outcome: 'error' }), 0, 'not counted twice')
  const [s] = await samples(f)
  t.match(s?.differences.find((d) => d.path === 'body.x'), { kind: 'missing', legacy: '(too deeply nested to show)' })
})

t.test('the sample ring keeps the newest samples per route; the counts keep everything', async (t) => {
  let i = 0
  const { f, idle } = await shadowed(t, answers({ '/o': [200, { n: 0 }] }), (req, res, body) => answers({ '/o': [200, { n: ++i }] })(req, res, body),
    {}, { shadow: { samples: 3 } })
  for (let k = 0; k < 5; k++) await f.fetch('/o')
  await idle()
  t.same((await samples(f)).map((x) => x.differences[0]?.new), [5, 4, 3], 'newest first, three kept')
  t.same((await samples(f, '?limit=1')).length, 1)
  t.match((await summary(f, 'orders')).comparisons, { diverged: 5 }, 'counts keep everything')
})

t.test('GET /admin/divergences checks its input: limit, route, unknown parameters and paths', async (t) => {
  const { f } = await shadowed(t, answers({}), answers({}))
  t.match(await admin(f, 'GET', '/admin/divergences?limit=0'), { status: 400, body: { code: 'FICUS_ERR_BAD_ADMIN_REQUEST', detail: 'limit: must be >= 1' } })
  t.match(await admin(f, 'GET', '/admin/divergences?limit=ten'), { status: 400, body: { detail: 'limit: must be integer' } })
  t.match(await admin(f, 'GET', '/admin/divergences?rout=orders'), { status: 400, body: { detail: 'unknown parameter "rout"' } })
  t.match(await admin(f, 'GET', '/admin/divergences?route=nope'), { status: 404, body: { code: 'FICUS_ERR_UNKNOWN_ROUTE', detail: /no route named "nope"/ } })
  t.match(await admin(f, 'GET', '/admin/divergences/summary?route=nope'), { status: 404, body: { code: 'FICUS_ERR_UNKNOWN_ROUTE' } })
  t.match(await admin(f, 'GET', '/admin/nothing'), { status: 404, body: { code: 'FICUS_ERR_ADMIN_NOT_FOUND', detail: 'GET /admin/nothing' } })
  t.match(await admin(f, 'GET', '/admin/divergences/summary?route=default'), { status: 200, body: { routes: [{ route: 'default', divergenceRate: null }] } })
})

const TOKEN_TOP = { admin: { host: '127.0.0.1', port: 0, token: 's3cret-token' } }

t.test('with admin.token, /admin/divergences needs the bearer token, and unknown admin paths tell nothing', async (t) => {
  const { f } = await shadowed(t, answers({}), answers({}), {}, TOKEN_TOP)
  for (const token of [undefined, 'wrong', 's3cret-token-longer', '']) {
    const r = await admin(f, 'GET', '/admin/divergences', { token })
    t.match(r, { status: 401, body: { code: 'FICUS_ERR_UNAUTHORIZED' } }, `token ${String(token)}`)
  }
  const basic = await admin(f, 'GET', '/admin/divergences', { headers: { authorization: 'Basic czNjcmV0LXRva2Vu' } })
  t.equal(basic.status, 401)
  t.equal(basic.headers['www-authenticate'], 'Bearer realm="ficus-admin"')
  t.equal((await admin(f, 'GET', '/admin/divergences', { token: 's3cret-token' })).status, 200)
  t.equal((await admin(f, 'GET', '/admin/nothing')).status, 401, 'unknown admin paths do not tell what exists')
})

t.test('with admin.token, probes and metrics stay open without one', async (t) => {
  const { f } = await shadowed(t, answers({}), answers({}), {}, TOKEN_TOP)
  for (const open of ['/metrics', '/healthz', '/readyz']) {
    t.equal((await admin(f, 'GET', open)).status, 200, open)
  }
})
