import { join } from 'node:path'
import t, { type Test } from 'tap'
import { LmdbStore } from '../../src/adapters/lmdb-store.js'
import { PgStore } from '../../src/adapters/pg-store.js'
import type { NewWrite, SyncStore } from '../../src/adapters/sync-store.js'
import { startPostgres } from '../helpers/postgres.js'
import { ROOT, run } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The sync store's contract (src/adapters/sync-store.ts), run against both implementations:
 * LMDB on real files, and a real PostgreSQL 15 (a throwaway cluster, test/helpers/postgres.ts).
 * Then what each has to prove of its own: several processes on one LMDB file and a SIGKILL
 * mid-write; two replicas on one database, appending and delivering at once.
 */

const write = (key: string, n: number, over: Partial<NewWrite> = {}): NewWrite => ({
  route: 'orders', key, target: 'new', method: 'POST', path: `/orders?n=${n}`,
  headers: [['content-type', 'application/json'], ['idempotency-key', `k-${n}`]], body: Buffer.from(`{"n":${n}}`), plan: null, ...over
})

type Open = (t: Test) => Promise<SyncStore>

function contract(name: string, open: Open): void {
  t.test(`${name}: append is durable and ordered; get returns what was written`, async (t) => {
    const s = await open(t)
    const seqs = await s.append([write('order:1', 1), write('order:2', 2, { body: null, method: 'DELETE' })])
    t.equal(seqs.length, 2)
    t.ok((seqs[1] as number) > (seqs[0] as number), 'seqs increase in append order')
    t.match(await s.get(seqs[0] as number), { seq: seqs[0], route: 'orders', key: 'order:1', target: 'new', method: 'POST', path: '/orders?n=1', state: 'pending', attempts: 0, reason: null })
    t.same((await s.get(seqs[0] as number))?.body, Buffer.from('{"n":1}'), 'the body, byte for byte')
    t.same((await s.get(seqs[0] as number))?.headers, [['content-type', 'application/json'], ['idempotency-key', 'k-1']])
    t.equal((await s.get(seqs[1] as number))?.body, null)
    t.equal(await s.get(999_999), null)
    const many = await Promise.all(Array.from({ length: 200 }, async (_, i) => s.append([write(`order:${i % 5}`, i)])))
    const all = many.flat()
    t.equal(new Set(all).size, 200, '200 appends at once: 200 different seqs')
    t.same([...all].sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => (seqs[1] as number) + 1 + i), 'and no gap')
  })

  t.test(`${name}: claim gives each key's oldest entry only, once, until its lease ends`, async (t) => {
    const s = await open(t)
    const [a1, b1, a2] = await s.append([write('a', 1), write('b', 1), write('a', 2)]) as [number, number, number]
    const first = await s.claim(1_000, 10, 500)
    t.same(first.map((d) => d.seq), [a1, b1], 'a\'s second write waits for its first')
    t.same(first.map((d) => d.attempts), [1, 1])
    t.same(await s.claim(1_100, 10, 500), [], 'leased: nothing to claim')
    const again = await s.claim(1_500, 10, 500)
    t.same(again.map((d) => [d.seq, d.attempts]), [[a1, 2], [b1, 2]], 'a lease that ran out is claimed again (its claimer died)')
    await s.delivered(a1)
    t.same((await s.claim(1_600, 10, 500)).map((d) => d.seq), [a2], 'a1 delivered: a2 is next for a; b1 is still leased')
    t.equal(await s.get(a1), null, 'a delivered entry is gone')
    t.same((await s.claim(1_600, 1, 500)), [], 'limit respected (and nothing left)')
  })

  t.test(`${name}: a claim drops the entries its caller delivered first, in the same transaction: their keys' next writes are claimed with it`, async (t) => {
    const s = await open(t)
    const [a1, b1, a2, b2, c1] = await s.append([write('a', 1), write('b', 1), write('a', 2), write('b', 2), write('c', 1)]) as [number, number, number, number, number]
    t.same((await s.claim(1_000, 2, 500)).map((d) => d.seq), [a1, b1])
    t.same((await s.claim(1_100, 10, 500, [a1, b1])).map((d) => d.seq), [a2, b2, c1], 'a1 and b1 gone: a2 and b2 are their keys\' heads, claimed at once')
    t.equal(await s.get(a1), null, 'a1 is gone')
    t.equal(await s.get(b1), null, 'b1 is gone')
    t.same(await s.claim(1_200, 0, 500, [a2]), [], 'a limit of 0 only drops')
    t.equal(await s.get(a2), null, 'a2 is gone')
    t.same(await s.claim(1_300, 10, 500, [a2, 999_999]), [], 'dropping one already gone, or never there, is no error')
    t.same((await s.stats()).routes.map((r) => r.pending), [2], 'b2 and c1 wait, leased')
  })

  t.test(`${name}: a retry waits for its time; a dead letter blocks only its own key until replayed or skipped`, async (t) => {
    const s = await open(t)
    const [a1, b1, a2, b2] = await s.append([write('a', 1), write('b', 1), write('a', 2), write('b', 2)]) as [number, number, number, number]
    await s.claim(0, 10, 10_000)
    await s.retry(a1, 5_000, 'status_503')
    await s.deadLetter(b1, 'status_422')
    t.same(await s.claim(4_999, 10, 100), [], 'a1 not before 5 s; b blocked by its dead letter')
    const due = await s.claim(5_000, 10, 100)
    t.same(due.map((d) => [d.seq, d.reason]), [[a1, 'status_503']], 'a1 due again, with why it failed')
    t.match(await s.stats(), { pending: 3, dead: 1 })
    t.same((await s.deadLetters(10)).map((d) => [d.seq, d.state, d.reason]), [[b1, 'dead', 'status_422']])
    t.equal(await s.replay(a1), false, 'only a dead letter can be replayed')
    t.equal(await s.replay(b1), true)
    t.same((await s.claim(10_000, 10, 100)).map((d) => [d.seq, d.attempts]), [[a1, 3], [b1, 1]], 'replayed: due at once, attempts counted afresh')
    await s.deadLetter(b1, 'status_422')
    t.equal(await s.skip(b1), true, 'an operator drops it')
    t.equal(await s.skip(b1), false)
    t.same((await s.claim(20_000, 10, 100)).map((d) => d.seq), [a1, b2], 'b goes on with its next write; a2 still waits behind a1')
    await s.delivered(a1)
    t.same((await s.claim(20_000, 10, 100)).map((d) => d.seq), [a2], 'a1 delivered: a2 goes')
  })

  t.test(`${name}: stats: pending, dead letters, and the oldest pending write (the lag)`, async (t) => {
    const s = await open(t)
    t.same(await s.stats(), { intents: 0, pending: 0, dead: 0, oldestPending: null, routes: [] })
    const before = Date.now()
    const [x] = await s.append([write('x', 1)]) as [number]
    await s.append([write('y', 1)])
    const st = await s.stats()
    t.match(st, { pending: 2, dead: 0 })
    t.ok(st.oldestPending !== null && st.oldestPending >= before && st.oldestPending <= Date.now(), 'createdAt of the oldest')
    await s.deadLetter(x, 'poison')
    t.match(await s.stats(), { pending: 1, dead: 1 })
    const [z] = await s.append([write('z', 1, { route: 'users', target: 'legacy' })]) as [number]
    const byRoute = (await s.stats()).routes
    t.match(byRoute.find((r) => r.route === 'orders'), { target: 'new', pending: 1, dead: 1 }, 'per route and target')
    t.match(byRoute.find((r) => r.route === 'users'), { target: 'legacy', pending: 1, dead: 0, oldestPending: (await s.get(z))?.createdAt })
    await s.delivered(z)
    t.equal((await s.stats()).routes.find((r) => r.route === 'users'), undefined, 'a route with nothing left is not listed')
  })

  t.test(`${name}: the id map, both ways, with the side that created the entity; a pair never changes`, async (t) => {
    const s = await open(t)
    t.equal(await s.lookupId('order', 'legacy', '26'), null)
    t.equal(await s.mapIds('order', '26', '909e', 'new'), true)
    t.same(await s.lookupId('order', 'legacy', '26'), { other: '909e', origin: 'new' })
    t.same(await s.lookupId('order', 'new', '909e'), { other: '26', origin: 'new' })
    t.equal(await s.lookupId('customer', 'legacy', '26'), null, 'per entity')
    t.equal(await s.mapIds('order', '26', '909e', 'new'), true, 'the same pair again: fine')
    t.equal(await s.mapIds('order', '26', 'aaaa', 'legacy'), false, 'legacy 26 is already paired')
    t.equal(await s.mapIds('order', '27', '909e', 'legacy'), false, 'new 909e is already paired')
    t.equal(await s.lookupId('order', 'new', 'aaaa'), null)
    t.equal(await s.mapIds('order', '27', '27', 'legacy'), true, 'an id the two sides share')
    t.equal(await s.mapIds('customer', '1', 'c-1', 'legacy'), true)
    t.same(await s.idCounts(), { order: 2, customer: 1 })
    t.same([...await s.lookupIds('order', 'legacy', ['26', 'nope', '27', '26'])].sort(), [['26', { other: '909e', origin: 'new' }], ['27', { other: '27', origin: 'legacy' }]],
      'several at once: the ids the map knows')
    t.same([...await s.lookupIds('order', 'new', ['909e', '26'])], [['909e', { other: '26', origin: 'new' }]], 'of one side')
    t.same([...await s.lookupIds('customer', 'legacy', ['26', '1'])], [['1', { other: 'c-1', origin: 'legacy' }]], 'of one entity')
    t.same(await s.lookupIds('order', 'legacy', []), new Map(), 'none asked, none given')
  })

  t.test(`${name}: an intent blocks its key until settled; one not settled in time is a dead letter (outcome_unknown)`, async (t) => {
    const s = await open(t)
    const [i1] = await s.intend([write('order:?', 1)], 5_000) as [number]
    const [a1] = await s.append([write('a', 1)]) as [number]
    const [i2] = await s.intend([write('a', 2)], 5_000) as [number]
    const [a3] = await s.append([write('a', 3)]) as [number]
    t.match(await s.get(i1), { state: 'intent', notBefore: 5_000 })
    t.match(await s.stats(), { intents: 2, pending: 2, dead: 0 })
    t.same((await s.claim(1_000, 10, 100)).map((d) => d.seq), [a1], 'an intent is never claimed')
    await s.delivered(a1)
    t.same(await s.claim(1_000, 10, 100), [], 'a3 waits behind the intent i2 of its key')
    t.equal(await s.settle(i2, write('a', 2, { path: '/orders/a', plan: { source: 'legacy', entity: 'order', ids: [{ in: 'path', segment: 1, entity: 'order', id: 'a' }], learn: null } })), true)
    t.equal(await s.settle(i2, null), false, 'settled once')
    const due = await s.claim(1_000, 10, 100)
    t.same(due.map((d) => [d.seq, d.state, d.path]), [[i2, 'pending', '/orders/a']], 'settled: pending as given, in its place in the key\'s order')
    t.same(due[0]?.plan, { source: 'legacy', entity: 'order', ids: [{ in: 'path', segment: 1, entity: 'order', id: 'a' }], learn: null }, 'with its plan')
    await s.delivered(i2)
    t.same((await s.claim(1_000, 10, 100)).map((d) => d.seq), [a3])
    // A create: its key is known once the primary answered.
    const [c] = await s.intend([write('order:?', 4)], 5_000) as [number]
    t.equal(await s.settle(c, write('order:77', 4)), true)
    t.match(await s.get(c), { key: 'order:77', state: 'pending' })
    const [gone] = await s.intend([write('b', 5)], 5_000) as [number]
    t.equal(await s.settle(gone, null), true, 'a non-2xx answer removes it')
    t.equal(await s.get(gone), null)
    t.same(await s.expire(4_999), [], 'i1 not yet expired')
    const expired = await s.expire(5_000)
    t.same(expired.map((d) => [d.seq, d.state, d.reason]), [[i1, 'dead', 'outcome_unknown']], 'Ficus died before it knew the primary\'s answer')
    t.same(await s.expire(6_000), [])
    t.equal(await s.settle(i1, write('order:?', 1)), false, 'too late: an operator decides now')
    t.match(await s.stats(), { intents: 0, dead: 1 })
  })

  t.test(`${name}: waitingFor counts a key's writes still to reach one side (pending and dead letters), whatever their route`, async (t) => {
    const s = await open(t)
    t.same(await s.waitingFor('note:1', 'legacy'), { pending: 0, dead: 0 })
    const [a, b] = await s.append([write('note:1', 1, { target: 'legacy' }), write('note:1', 2, { target: 'legacy', route: 'notes-create' })]) as [number, number]
    await s.append([write('note:1', 3, { target: 'new' }), write('note:2', 4, { target: 'legacy' })])
    const [i] = await s.intend([write('note:1', 5, { target: 'legacy' })], 9_000_000_000_000) as [number]
    t.same(await s.waitingFor('note:1', 'legacy'), { pending: 2, dead: 0 }, 'an intent is not counted: its answer is not known')
    await s.deadLetter(a, 'status_422')
    t.same(await s.waitingFor('note:1', 'legacy'), { pending: 1, dead: 1 })
    await s.delivered(b)
    await s.settle(i, write('note:9', 5, { target: 'legacy' }))
    t.same(await s.waitingFor('note:1', 'legacy'), { pending: 0, dead: 1 }, 'a settled intent counts under the key it was settled with')
    t.same(await s.waitingFor('note:9', 'legacy'), { pending: 1, dead: 0 })
    t.same(await s.waitingFor('note:1', 'new'), { pending: 1, dead: 0 })
    await s.skip(a)
    t.same(await s.waitingFor('note:1', 'legacy'), { pending: 0, dead: 0 })
  })

  t.test(`${name}: a paused route waits, for everyone on the store; resume lets it go`, async (t) => {
    const s = await open(t)
    const [a] = await s.append([write('a', 1)]) as [number]
    const [b] = await s.append([write('b', 1, { route: 'users' })]) as [number]
    await s.setPaused('orders', true)
    t.same(await s.paused(), ['orders'])
    t.same((await s.claim(1_000, 10, 100)).map((d) => d.seq), [b], 'orders paused; users goes')
    await s.setPaused('*', true)
    t.same(await s.claim(2_000, 10, 100), [], 'all paused')
    await s.setPaused('*', false)
    await s.setPaused('orders', false)
    t.same(await s.paused(), [])
    t.same((await s.claim(3_000, 10, 100)).map((d) => d.seq), [a, b], 'resumed (b\'s lease ran out)')
  })

  t.test(`${name}: a ramp's record is written only over the version read; one holder of a lease at a time, until it lets go or its time runs out`, async (t) => {
    const s = await open(t)
    t.same(await s.ramps(), [])
    t.equal(await s.putRamp('orders', { step: 0 }, 0), 1)
    t.equal(await s.putRamp('orders', { step: 9 }, 0), null, 'a second first write loses')
    t.equal(await s.putRamp('orders', { step: 1 }, 1), 2)
    t.equal(await s.putRamp('orders', { step: 2 }, 1), null, 'a write over a version another replaced loses')
    t.equal(await s.putRamp('users', { step: 0 }, 0), 1)
    t.same(await s.ramps(), [{ route: 'orders', version: 2, value: { step: 1 } }, { route: 'users', version: 1, value: { step: 0 } }])
    t.equal(await s.lease('ramp', 'a', 60_000), 'a')
    t.equal(await s.lease('ramp', 'b', 60_000), 'a', 'held: b does not get it')
    t.equal(await s.lease('ramp', 'a', 60_000), 'a', 'renewed by its holder')
    await s.unlease('ramp', 'b')
    t.equal(await s.lease('ramp', 'b', 60_000), 'a', 'only the holder lets go')
    await s.unlease('ramp', 'a')
    t.equal(await s.lease('ramp', 'b', 300), 'b', 'let go: the next takes it')
    await waitFor(async () => (await s.lease('ramp', 'a', 60_000)) === 'a', { timeoutMs: 5_000, message: 'b\'s lease of 300 ms did not run out' })
  })
}

contract('lmdb', async (t) => {
  const store = new LmdbStore(join(t.testdir(), 'ficus.lmdb'))
  t.teardown(async () => store.close())
  return store
})

// One PostgreSQL cluster for the file, a database of its own per test.
const postgres = startPostgres(t)
let databases = 0
const pgStore = async (t: Test): Promise<PgStore> => {
  const pg = await postgres
  const name = `ficus_${++databases}`
  await pg.createDatabase(name)
  const store = new PgStore(pg.url(name))
  t.teardown(async () => store.close())
  return store
}
contract('postgres', pgStore)

t.test('postgres: two replicas append and deliver at once: each write delivered once, in order per key', async (t) => {
  const a = await pgStore(t)
  const pg = await postgres
  const b = new PgStore(pg.url(`ficus_${databases}`))
  t.teardown(async () => b.close())
  const appended = await Promise.all([a, b].map(async (s, r) => {
    const seqs: number[] = []
    for (let i = 0; i < 60; i++) seqs.push(...await s.append([write(`k${i % 6}`, r * 1000 + i)]))
    return seqs
  }))
  const delivered: { seq: number; key: string }[] = []
  const worker = async (s: PgStore): Promise<void> => {
    for (let idle = 0; idle < 3;) {
      const got = await s.claim(Date.now(), 4, 60_000)
      if (got.length === 0) idle++
      for (const d of got) {
        delivered.push({ seq: d.seq, key: d.key })
        await s.delivered(d.seq)
      }
    }
  }
  await Promise.all([worker(a), worker(b)])
  const all = appended.flat()
  t.equal(delivered.length, all.length, `${all.length} writes, ${delivered.length} deliveries`)
  t.same(new Set(delivered.map((d) => d.seq)), new Set(all), 'each write delivered exactly once')
  for (const key of new Set(delivered.map((d) => d.key))) {
    const seqs = delivered.filter((d) => d.key === key).map((d) => d.seq)
    t.same(seqs, [...seqs].sort((x, y) => x - y), `${key}: in append order`)
  }
  t.match(await a.stats(), { pending: 0, dead: 0 })
})

t.test('lmdb: what was appended is there after a reopen', async (t) => {
  const path = join(t.testdir(), 'ficus.lmdb')
  const s = new LmdbStore(path)
  const [seq] = await s.append([write('order:1', 1)]) as [number]
  await s.mapIds('order', '26', '909e', 'new')
  await s.close()
  const again = new LmdbStore(path)
  t.teardown(async () => again.close())
  t.match(await again.get(seq), { key: 'order:1', path: '/orders?n=1' })
  t.same(await again.lookupId('order', 'legacy', '26'), { other: '909e', origin: 'new' })
  const [next] = await again.append([write('order:1', 2)]) as [number]
  t.equal(next, seq + 1, 'seqs go on where they were')
})

const WRITER = join(ROOT, 'test', 'fixtures', 'sync', 'writer.mjs')

t.test('lmdb: two processes append to one file at once: every write is there once, each process\'s in its order', async (t) => {
  const path = join(t.testdir(), 'ficus.lmdb')
  const writers = ['w1', 'w2'].map((who) => run(t, WRITER, [path, who, '300']))
  for (const w of writers) t.equal(await w.exitCode(), 0, w.stderr)
  const acked = writers.flatMap((w) => w.stdout.trim().split('\n').map((l) => l.split(' ')))
  t.equal(acked.length, 600)
  t.equal(new Set(acked.map(([seq]) => seq)).size, 600, 'no seq given twice across processes')
  const s = new LmdbStore(path)
  t.teardown(async () => s.close())
  t.match(await s.stats(), { pending: 600, dead: 0 })
  for (const who of ['w1', 'w2']) {
    const seqs = acked.filter(([, w]) => w === who).map(([seq]) => Number(seq))
    t.same(seqs, [...seqs].sort((a, b) => a - b), `${who}'s writes in the order it made them`)
  }
  const d = await s.get(Number(acked[0]?.[0]))
  t.same(JSON.parse(d?.body?.toString() ?? '{}'), { who: acked[0]?.[1], i: Number(acked[0]?.[2]) })
})

t.test('lmdb: a claim finds what is due whatever waits ahead of it: a long backlog behind a dead letter, many records backing off, a paused route', async (t) => {
  const s = new LmdbStore(join(t.testdir(), 'ficus.lmdb'))
  t.teardown(async () => s.close())
  /** Claims until nothing more is due at `now` (one claim takes 10,000 at most). */
  const claimAll = async (now: number): Promise<number> => {
    let n = 0
    for (let got = await s.claim(now, 20_000, 1e9); got.length > 0; got = await s.claim(now, 20_000, 1e9)) n += got.length
    return n
  }
  // More entries than a claim looks at (10,000), all ahead of the one that is due.
  const [poison] = await s.append([write('stuck', 0)]) as [number]
  await s.deadLetter(poison, 'status_422')
  await s.append(Array.from({ length: 10_001 }, (_, i) => write('stuck', i + 1)))
  const backingOff = await s.append(Array.from({ length: 10_001 }, (_, i) => write(`slow-${i}`, i)))
  t.equal(await claimAll(1_000), 10_001, 'each record backing off was claimed once')
  // All at once: the store commits them together, instead of one commit to disk each (~15 s one by one).
  await Promise.all(backingOff.map(async (seq) => s.retry(seq, 9_000, 'status_503')))
  await s.append(Array.from({ length: 10_001 }, (_, i) => write(`paused-${i}`, i, { route: 'users' })))
  await s.setPaused('users', true)
  const [due] = await s.append([write('fine', 1)]) as [number]
  t.same((await s.claim(2_000, 10, 1e9)).map((d) => d.seq), [due], 'the one due write is claimed at once')
  t.equal((await s.deadLetters(5))[0]?.seq, poison, 'dead letters are found without reading the outbox')
  await s.setPaused('users', false)
  t.equal(await claimAll(4_000), 10_001, 'the paused route\'s writes, due again once resumed')
  t.equal(await claimAll(9_000), 10_001, 'the retries at their time')
})

t.test('lmdb: the intents of a process that is gone are dead letters at once, not at their expiry', async (t) => {
  const path = join(t.testdir(), 'ficus.lmdb')
  const w = run(t, WRITER, [path, 'gone', '2', 'intent'])
  t.equal(await w.exitCode(), 0, w.stderr)
  const s = new LmdbStore(path)
  t.teardown(async () => s.close())
  const [mine] = await s.intend([write('mine', 1)], Date.now() + 3_600_000) as [number]
  t.match(await s.stats(), { intents: 3 })
  const expired = await s.expire(Date.now())
  t.same(expired.map((d) => [d.key, d.reason]), [['order:gone-0', 'outcome_unknown'], ['order:gone-1', 'outcome_unknown']], 'the writer exited without settling them: an hour early')
  t.match(await s.get(mine), { state: 'intent' }, 'this process\'s own intent waits for its answer')
})

t.test('lmdb: a process killed (SIGKILL) while appending loses no write it had acknowledged', async (t) => {
  const path = join(t.testdir(), 'ficus.lmdb')
  const w = run(t, WRITER, [path, 'k', '1000000'])
  await w.waitFor(/^(.*\n){300}/, { message: 'the writer did not acknowledge 300 writes' })
  w.child.kill('SIGKILL')
  t.equal(await w.exitCode(), null, 'killed, not exited')
  const lines = w.stdout.split('\n')
  lines.pop() // a line the kill cut short (or the empty string after the last newline): not acknowledged
  const acked = lines.map((l) => l.split(' '))
  t.ok(acked.length >= 300, `${acked.length} writes acknowledged before the kill`)
  const s = new LmdbStore(path)
  t.teardown(async () => s.close())
  for (const [seq, who, i] of acked) {
    const d = await s.get(Number(seq))
    if (d === null || d.path !== `/orders/${who}/${i}`) {
      t.fail(`acknowledged write ${seq} is ${d === null ? 'missing' : `wrong (${d.path})`}`)
      return
    }
  }
  t.pass(`all ${acked.length} acknowledged writes are in the store, intact`)
  const { pending } = await s.stats()
  t.ok(pending >= acked.length && pending <= acked.length + 1, `at most the one write in flight is there too (${pending} for ${acked.length} acknowledged)`)
})
