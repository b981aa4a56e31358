import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { LmdbStore } from '../../src/adapters/lmdb-store.js'
import type { Delivery } from '../../src/adapters/sync-store.js'
import { drained } from '../helpers/sockets.js'
import {
  bodyOf, dualDoc, history, holdWrites, outbox, peekLmdb, send, startFicus, startPair, until, writeDoc, writeLock,
  type FicusProcess, type Pair
} from '../helpers/sync-rig.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A Ficus process killed with SIGKILL at each point of a dual write (docs/sync.md "What
 * happens to one write"),
 * then started again on the same LMDB file: what a client saw succeed is never lost, what
 * Ficus cannot know is a dead letter `outcome_unknown` (never dropped, never sent on a
 * guess), and the other side gets each write once (or twice with one Idempotency-Key, which
 * it dedupes), in order per record.
 *
 * Real parts only: the built CLI in its own process, two records APIs (demo/records.ts) in
 * this one, a real LMDB file. Each point is reached by an event, not a sleep:
 * - a commit of Ficus is stopped by a second process holding LMDB's write lock
 *   (test/fixtures/sync/lock.mjs; LMDB serialises write transactions across processes);
 * - an answer is stopped by the records API holding it (`hold`, after the write is applied);
 * - that Ficus has read what it was sent is read from the kernel (/proc/net/tcp: nothing
 *   unacknowledged on the sender, nothing unread on Ficus's socket).
 * Legacy answers (new: 0); new is "the other side". One process is killed with a write of
 * a different note at each point (a process start costs seconds): A before forwarding, F
 * after its intent and before legacy answered, B after legacy's answer and before the
 * settle, C (and a note E created then) after the settle, D mid-delivery.
 */

interface Rig extends Pair {
  readonly path: string
  readonly file: string
  /** The store as this process reads it (after the first start). */
  store: LmdbStore
  start(): Promise<FicusProcess>
}

async function rig(t: Test): Promise<Rig> {
  const pair = await startPair(t)
  const dir = t.testdir()
  const path = join(dir, 'ficus.lmdb')
  const file = join(dir, 'routes.yaml')
  await writeDoc(file, dualDoc(pair, { kind: 'embedded', path }))
  const r: Rig = {
    ...pair,
    path,
    file,
    store: null as unknown as LmdbStore,
    start: async () => {
      const f = await startFicus(t, file)
      if ((r.store as LmdbStore | null) === null) r.store = peekLmdb(t, path) // Ficus has created its databases
      return f
    }
  }
  return r
}

async function caughtUp(store: LmdbStore, timeoutMs?: number): Promise<void> {
  await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0, 'the outbox did not drain', timeoutMs)
}

const portOf = (url: string): number => Number(new URL(url).port)

t.test('one Ficus killed with a write at each point, restarted on the same store: no 2xx without a durable entry, every acknowledged write reaches new once (or twice, deduped), unknown outcomes are dead letters, order per record kept', async (t) => {
  const r = await rig(t)
  const { legacy, next } = r
  const f = await r.start()
  const store = (): LmdbStore => r.store

  // Five notes, created and delivered: A, B, C, D and F (legacy 1000 to 1004).
  const NOTES = ['a', 'b', 'c', 'd', 'f']
  const ids: Record<string, string> = {}
  for (const x of NOTES) {
    const res = await send(f.traffic, 'POST', '/api/notes', { v: `${x}0` })
    t.equal(res.status, 201)
    ids[x] = res.json<{ id: string }>().id
  }
  await caughtUp(store())
  const other: Record<string, string> = {}
  for (const x of NOTES) other[x] = (await store().lookupId('note', 'legacy', ids[x] as string))?.other as string
  t.same(Object.values(ids), ['1000', '1001', '1002', '1003', '1004'])

  // D, mid-delivery: new applied d1 and holds its answer; d2 waits behind it.
  const keys: string[] = []
  next.server.prependListener('request', (req) => {
    if (req.method === 'PUT' && req.url === `/api/notes/${other.d}`) keys.push(String(req.headers['idempotency-key']))
  })
  const toNew = holdWrites(next, (method, id) => method === 'PUT' && id === other.d)
  t.equal((await send(f.traffic, 'PUT', `/api/notes/${ids.d}`, { v: 'd1' })).status, 200)
  const delivering = await waitFor(toNew.arrived, { message: 'the delivery of d1 did not reach new' })
  t.equal((await send(f.traffic, 'PUT', `/api/notes/${ids.d}`, { v: 'd2' })).status, 200)

  // C (and a new note E), after the settle: acknowledged, in the outbox, not yet delivered
  // (delivery paused, as `ficus sync pause` does: nothing more is claimed; d1 stays claimed).
  await store().setPaused('*', true)
  const acked = ['d1', 'd2']
  for (const [method, path, v] of [['PUT', `/api/notes/${ids.c}`, 'c1'], ['POST', '/api/notes', 'e0'], ['PATCH', `/api/notes/${ids.c}`, 'c2'], ['PUT', '/api/notes/1005', 'e1']] as const) {
    const res = await send(f.traffic, method, path, { v })
    t.ok(res.status === 200 || res.status === 201, `${method} ${path}: ${res.status}`)
    acked.push(v)
    // No 2xx without a durable entry: each acknowledged write is in the store when its answer arrives.
    t.same((await outbox(store())).map((d) => bodyOf(d).v), acked, `${v} is in the outbox once acknowledged`)
  }

  // F, after its intent, before legacy answers: legacy applied f1 and holds its answer.
  const fromLegacyF = holdWrites(legacy, (method, id) => method === 'PUT' && id === ids.f)
  const f1 = send(f.traffic, 'PUT', `/api/notes/${ids.f}`, { v: 'f1' })
  await waitFor(fromLegacyF.arrived, { message: 'f1 did not reach legacy' })

  // B, after legacy's answer and before the settle commits: legacy holds its answer to b1 (its
  // intent is committed by then), the lock is taken, then the answer goes and Ficus reads it.
  const lock = await writeLock(t, r.path)
  const toLegacy = holdWrites(legacy, (method, id) => method === 'PUT' && id === ids.b)
  const b1 = send(f.traffic, 'PUT', `/api/notes/${ids.b}`, { v: 'b1' })
  const answering = await waitFor(toLegacy.arrived, { message: 'b1 did not reach legacy' })
  t.match(await store().stats(), { intents: 2 }, 'f1\'s and b1\'s intents were durable before they were forwarded')
  await lock.lock()
  toLegacy.release()
  await waitFor(() => drained(portOf(legacy.url), answering.remotePort), { message: 'Ficus did not read legacy\'s answer to b1' })

  // A, before forwarding: Ficus reads the whole PUT, and its intent cannot commit.
  let clientPort = 0
  const a1 = send(f.traffic, 'PUT', `/api/notes/${ids.a}`, { v: 'a1' }, { socket: (p) => { clientPort = p } })
  await waitFor(async () => clientPort !== 0 && drained(clientPort, portOf(f.traffic)), { message: 'Ficus did not read the whole PUT of a1' })

  await f.kill()
  t.equal((await a1).status, null, 'a1: the client got no answer')
  t.equal((await b1).status, null, 'b1: the client got no answer (it cannot know whether the write was made)')
  t.equal((await f1).status, null, 'f1: the client got no answer')
  await lock.unlock()
  toNew.release() // new's answer to d1 goes nowhere: d1 stays applied on new, and no Ficus heard of it
  fromLegacyF.release() // and legacy's to f1

  t.same(history(legacy, ids.a as string), ['POST a0'], 'a1 never reached legacy')
  t.same(history(legacy, ids.b as string), ['POST b0', 'PUT b1'], 'b1 did')
  t.same(history(next, other.d as string), ['POST d0', 'PUT d1'], 'd1 reached new')
  t.match(await store().stats(), { intents: 2, pending: 6, dead: 0 }, 'in the store: the intents of f1 and b1 (never settled), the six acknowledged writes; nothing of a1')
  await store().setPaused('*', false)

  const g = await r.start()
  const dead = await until(async () => store().deadLetters(10), (d) => d.length === 2, 'the intents of f1 and b1 did not become dead letters')
  const [deadF, deadB] = dead as [Delivery, Delivery]
  t.match(deadF, { key: `note:${ids.f}`, method: 'PUT', path: `/api/notes/${ids.f}`, target: 'new', state: 'dead', reason: 'outcome_unknown' }, 'f1: a dead letter, outcome_unknown')
  t.match(deadB, { key: `note:${ids.b}`, method: 'PUT', path: `/api/notes/${ids.b}`, target: 'new', state: 'dead', reason: 'outcome_unknown' }, 'b1: the same')
  t.same([bodyOf(deadF), bodyOf(deadB)], [{ v: 'f1' }, { v: 'b1' }], 'with the writes, for an operator')
  await caughtUp(store(), 20_000) // d1's claim is taken again when the killed process's lease ends (7 s here)

  t.same(history(next, other.a as string), ['POST a0'], 'A: nothing more')
  t.same(history(next, other.b as string), ['POST b0'], 'B: b1 not sent on a guess')
  t.same(history(next, other.f as string), ['POST f0'], 'F: nor f1')
  t.same(history(legacy, ids.f as string), ['POST f0', 'PUT f1'], '(which legacy had applied)')
  t.same(history(next, other.c as string), ['POST c0', 'PUT c1', 'PATCH c2'], 'C: delivered after the restart, in order')
  t.same(history(next, other.d as string), ['POST d0', 'PUT d1', 'PUT d2'], 'D: d1 applied once, then d2')
  t.equal(next.deduped(), 1, 'd1 was sent twice, and new answered the second from its idempotency cache')
  t.same(keys, [delivering.key, delivering.key, keys[2]], 'd1\'s second send had the first\'s Idempotency-Key')
  t.not(keys[2], delivering.key, 'd2 has its own')
  const e = (await store().lookupId('note', 'legacy', '1005'))?.other as string
  t.same(history(next, e), ['POST e0', 'PUT e1'], 'E, created before the kill: created on new after it, and updated by its new id')
  t.equal(await g.metric('ficus_sync_deliveries_total', { route: 'notes', target: 'new', outcome: 'dead' }), 2, 'both counted as dead letters')
  t.ok(g.logs.lines.some((l) => l.level === 'error' && /Ficus stopped before the answer/.test(l.msg ?? '')), 'and logged as an error')

  // Afterwards: A takes writes; B's next write waits behind its dead letter until an operator
  // who checked legacy replays it (ficus sync replay), then both go, in order; F's too.
  t.equal((await send(g.traffic, 'PUT', `/api/notes/${ids.a}`, { v: 'a2' })).status, 200)
  t.equal((await send(g.traffic, 'PUT', `/api/notes/${ids.b}`, { v: 'b2' })).status, 200)
  await until(async () => store().stats(), (s) => s.pending === 1 && s.dead === 2, 'b2 did not wait behind the dead letter')
  t.same(history(next, other.b as string), ['POST b0'], 'b2 waits')
  t.equal(await store().replay(deadB.seq), true)
  t.equal(await store().replay(deadF.seq), true)
  await caughtUp(store())
  t.match(await store().stats(), { dead: 0 })
  for (const x of NOTES) {
    t.same(history(next, other[x] as string), history(legacy, ids[x] as string), `${x.toUpperCase()}: new applied what legacy did, in the same order`)
  }
  t.same(history(next, other.b as string), ['POST b0', 'PUT b1', 'PUT b2'])
  t.equal(legacy.deduped(), 0)
})
