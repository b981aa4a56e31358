import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createLogger } from '../../src/adapters/logger.js'
import { LmdbStore } from '../../src/adapters/lmdb-store.js'
import type { Delivery, NewWrite } from '../../src/adapters/sync-store.js'
import { parseConfig } from '../../src/config/load-config.js'
import type { Verdict } from '../../src/core/delivery.js'
import { Deliverer } from '../../src/pipeline/sync/deliverer.js'
import { testYaml } from '../helpers/ficus.js'
import { startUpstream, type Handler, type Upstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The deliverer (src/pipeline/sync/deliverer.ts) on a real LMDB store and a real target:
 * order per key, at least once with a stable Idempotency-Key, Retry-After, dead letters that
 * block only their key.
 */

const write = (key: string, n: number): NewWrite => ({
  route: 'orders', key, target: 'legacy', method: 'PUT', path: `/orders/${key}?n=${n}`,
  headers: [['content-type', 'application/json']], body: Buffer.from(JSON.stringify({ key, n })), plan: null
})

async function rig(t: Test, handler: Handler) {
  const target = await startUpstream(t, 'legacy', handler)
  const config = parseConfig(testYaml({ upstreams: { legacy: { url: target.url }, new: { url: target.url } } }), 'sync.yaml', {})
  const store = new LmdbStore(join(t.testdir(), 'ficus.lmdb'))
  const verdicts: [Delivery, Verdict][] = []
  const d = new Deliverer({
    store,
    upstreamOf: (_route, side) => config.upstreams[side],
    retry: { baseMs: 20, maxMs: 200, maxAttempts: 5, maxAgeMs: 60_000 },
    concurrency: 4,
    leaseMs: 10_000,
    pollMs: 20,
    log: createLogger('silent'),
    now: Date.now,
    random: Math.random,
    onVerdict: (x, v) => { verdicts.push([x, v]) },
    unmappedIds: 'wait',
    maxIdWaitMs: 60_000,
    extraHeaders: [],
    sealKey: null
  })
  t.teardown(async () => {
    await d.stop()
    await store.close()
  })
  return { target, store, d, verdicts }
}

const seen = (u: Upstream): string[] => u.requests.map((r) => `${r.method} ${r.url}`)

t.test('each write reaches the target once, in order per key, with its body, a stable Idempotency-Key and x-ficus-sync', async (t) => {
  const { target, store, d } = await rig(t, (_req, res) => { res.writeHead(204).end() })
  const seqs = await store.append([write('a', 1), write('b', 1), write('a', 2), write('a', 3), write('b', 2)])
  d.start()
  await waitFor(async () => (await store.stats()).pending === 0, { message: 'the outbox did not drain' })
  t.equal(target.requests.length, 5)
  const urls = seen(target)
  t.same(urls.filter((u) => u.includes('/a?')), ['PUT /orders/a?n=1', 'PUT /orders/a?n=2', 'PUT /orders/a?n=3'], 'a in order')
  t.same(urls.filter((u) => u.includes('/b?')), ['PUT /orders/b?n=1', 'PUT /orders/b?n=2'], 'b in order')
  const first = target.requests.find((r) => r.url === '/orders/a?n=1')!
  t.same(JSON.parse(first.body.toString()), { key: 'a', n: 1 })
  t.equal(first.headers['idempotency-key'], `ficus-orders-${seqs[0]}`)
  t.equal(first.headers['x-ficus-sync'], '1')
  t.equal(first.headers['content-type'], 'application/json')
})

t.test('a busy target: retried after its Retry-After, with the same Idempotency-Key, then delivered', async (t) => {
  let busy = 2
  const { target, store, d, verdicts } = await rig(t, (_req, res) => {
    if (busy-- > 0) res.writeHead(503, { 'retry-after': '1' }).end()
    else res.writeHead(200).end()
  })
  const [seq] = await store.append([write('a', 1)]) as [number]
  d.start()
  await waitFor(async () => (await store.stats()).pending === 0 && verdicts.length === 3, { message: 'the write was not delivered once the target took it' })
  t.equal(target.requests.length, 3, 'two 503s, then the 200')
  t.same(new Set(target.requests.map((r) => r.headers['idempotency-key'])), new Set([`ficus-orders-${seq}`]), 'one key for every attempt')
  t.match(verdicts.map(([, v]) => v), [{ kind: 'retry', reason: 'status_503' }, { kind: 'retry', reason: 'status_503' }, { kind: 'delivered' }])
  t.ok(verdicts.slice(0, 2).every(([, v]) => v.kind === 'retry' && v.afterMs >= 1000), 'no sooner than Retry-After (1 s), though the backoff was 20 ms')
})

t.test('a write the target refuses (422) is a dead letter that blocks its key only; replayed, it goes, and its key after it', async (t) => {
  let refuse = true
  const { target, store, d } = await rig(t, (req, res) => {
    if (refuse && req.url === '/orders/a?n=1') res.writeHead(422).end('bad')
    else res.writeHead(204).end()
  })
  const [a1] = await store.append([write('a', 1), write('a', 2), write('b', 1)]) as [number]
  d.start()
  await waitFor(async () => (await store.stats()).dead === 1 && seen(target).includes('PUT /orders/b?n=1'), { message: 'no dead letter, or b was held up' })
  t.match(await store.get(a1), { state: 'dead', reason: 'status_422' })
  t.notOk(seen(target).includes('PUT /orders/a?n=2'), 'a\'s next write waits behind the dead letter')
  refuse = false
  t.equal(await store.replay(a1), true)
  d.kick()
  await waitFor(async () => (await store.stats()).pending === 0, { message: 'the replayed key did not drain' })
  t.same(seen(target).filter((u) => u.includes('/a?')), ['PUT /orders/a?n=1', 'PUT /orders/a?n=1', 'PUT /orders/a?n=2'], 'refused once, then in order')
})
