import t, { type Test } from 'tap'
import { caughtUp, dualRig, setNew, type DualRig } from '../helpers/dual-rig.js'
import { sample } from '../helpers/ficus.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Dual writes (docs/sync.md): a route's writes reach both sides, in order per record, with
 * the ids each side gave translated through the id map, so moving a route to new and back
 * loses nothing a client wrote. Two real records APIs (demo/records.ts: legacy counts ids
 * from 1000, new gives `n-3e9`), a real LMDB file, real sockets.
 */

async function rig(t: Test, over: { sync?: Record<string, unknown> } = {}): Promise<DualRig> {
  return dualRig(t, over.sync === undefined ? {} : { sync: over.sync })
}

const json = (body: unknown): { method: 'POST' | 'PUT' | 'PATCH'; body: string; headers: Record<string, string> } =>
  ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })

t.test('a route moved to new and back: every record a client created reads back, with its last content, on the side that answers, whatever id the client holds', async (t) => {
  const { legacy, next, f } = await rig(t)
  // Legacy answers: it gives id 1000; new gets the create too, and gives n-3e9.
  const a = await f.fetch('/api/notes', json({ text: 'first' }))
  t.equal(a.status, 201)
  const aId = (a.json() as { id: string }).id
  t.equal(aId, '1000', 'the client keeps legacy\'s id')
  await caughtUp(f)
  t.same([...next.notes.values()], [{ text: 'first', id: 'n-3e9' }], 'new has it, under its own id')
  t.equal(await f.running.ficus.sync()?.store.lookupId('note', 'legacy', '1000').then((p) => p?.other), 'n-3e9', 'the pair is in the id map')

  // An update by legacy's id reaches new under new's id.
  t.equal((await f.fetch(`/api/notes/${aId}`, { ...json({ text: 'edited' }), method: 'PUT' })).status, 200)
  await caughtUp(f)
  t.same(next.notes.get('n-3e9'), { text: 'edited', id: 'n-3e9' })
  t.same(next.applied.map((w) => `${w.method} ${w.id}`), ['POST n-3e9', 'PUT n-3e9'])

  // The route moves to new: the client's id 1000 is translated on the way in.
  await setNew(f, 100)
  const read = await f.fetch(`/api/notes/${aId}`)
  t.equal(read.headers['x-served-by'], 'new')
  t.same(read.json(), { text: 'edited', id: 'n-3e9' })
  // A create on new: new's id for the client, legacy gets it as 1001.
  const b = await f.fetch('/api/notes', json({ text: 'second' }))
  const bId = (b.json() as { id: string }).id
  t.equal(bId, 'n-3ea')
  t.equal((await f.fetch(`/api/notes/${aId}`, { ...json({ tag: 'x' }), method: 'PATCH' })).status, 200, 'a PATCH by legacy\'s id, on new')
  await caughtUp(f)
  t.same(legacy.notes.get('1001'), { text: 'second', id: '1001' }, 'legacy has the create made on new')
  t.same(legacy.notes.get('1000'), { text: 'edited', tag: 'x', id: '1000' }, 'and the PATCH made on new')

  // Rollback: legacy answers again, for both ids the clients hold.
  await setNew(f, 0)
  const back = await f.fetch(`/api/notes/${bId}`)
  t.equal(back.headers['x-served-by'], 'legacy')
  t.same(back.json(), { text: 'second', id: '1001' }, 'new\'s id n-3ea reads legacy\'s 1001')
  t.equal((await f.fetch(`/api/notes/${bId}`, { method: 'DELETE' })).status, 204)
  await caughtUp(f)
  t.equal(next.notes.has('n-3ea'), false, 'the delete reached new, by new\'s id')
  t.equal(legacy.notes.has('1001'), false)
  t.equal(legacy.deduped() + next.deduped(), 0, 'nothing was sent twice')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_sync_deliveries_total', { route: 'notes', target: 'new', outcome: 'delivered' }), 2, 'the PUT and the DELETE')
  t.equal(sample(m, 'ficus_sync_deliveries_total', { route: 'notes', target: 'legacy', outcome: 'delivered' }), 1, 'the PATCH')
  t.equal(sample(m, 'ficus_sync_deliveries_total', { route: 'notes-create', target: 'new', outcome: 'delivered' }), 1)
})

t.test('each delivery carries a stable Idempotency-Key and x-ficus-sync, never the client\'s credentials', async (t) => {
  const { next, f } = await rig(t)
  const seen: Record<string, string | string[] | undefined>[] = []
  next.server.prependListener('request', (req) => { seen.push(req.headers) })
  await f.fetch('/api/notes', { ...json({ text: 'x' }), headers: { 'content-type': 'application/json', authorization: 'Bearer user-secret', cookie: 'sid=1' } })
  await caughtUp(f)
  t.equal(seen.length, 1)
  t.match(seen[0], { 'idempotency-key': /^ficus-notes-create-\d+$/, 'x-ficus-sync': '1', 'content-type': 'application/json' })
  t.equal(seen[0]?.authorization, undefined, 'no client credential is stored or sent')
  t.equal(seen[0]?.cookie, undefined)
})

t.test('the other side down: writes are acknowledged at once, wait in the outbox (lag grows), and reach it in order once it is back', async (t) => {
  const { next, f } = await rig(t)
  next.down = true
  const a = await f.fetch('/api/notes', json({ n: 0 }))
  const id = (a.json() as { id: string }).id
  for (let i = 1; i <= 5; i++) t.equal((await f.fetch(`/api/notes/${id}`, { ...json({ n: i }), method: 'PUT' })).status, 200)
  const st = await f.running.ficus.sync()?.store.stats()
  t.match(st, { pending: 6, dead: 0 }, 'all six wait')
  await waitFor(async () => (sample(await f.scrape(), 'ficus_sync_lag_seconds', { route: 'notes-create', target: 'new' }) ?? 0) > 0, { message: 'the lag gauge did not show the waiting writes' })
  next.down = false
  await caughtUp(f)
  t.same(next.applied.map((w) => w.method), ['POST', 'PUT', 'PUT', 'PUT', 'PUT', 'PUT'], 'in the order they were made')
  t.same(next.notes.get('n-3e9'), { n: 5, id: 'n-3e9' }, 'the last write wins, as on legacy')
})

t.test('a write new refuses for good is a dead letter that blocks only its own record', async (t) => {
  const { next, f } = await rig(t)
  const a = (await f.fetch('/api/notes', json({ n: 'a' }))).json() as { id: string }
  const b = (await f.fetch('/api/notes', json({ n: 'b' }))).json() as { id: string }
  await caughtUp(f)
  next.refuse = (method, path) => (method === 'PATCH' && path === '/api/notes/n-3e9' ? 422 : null)
  t.equal((await f.fetch(`/api/notes/${a.id}`, { ...json({ n: 'a2' }), method: 'PATCH' })).status, 200)
  t.equal((await f.fetch(`/api/notes/${a.id}`, { ...json({ n: 'a3' }), method: 'PATCH' })).status, 200)
  t.equal((await f.fetch(`/api/notes/${b.id}`, { ...json({ n: 'b2' }), method: 'PATCH' })).status, 200)
  const store = f.running.ficus.sync()!.store
  await waitFor(async () => {
    const st = await store.stats()
    return st.dead === 1 && st.pending === 1
  }, { message: 'the poison write did not become a dead letter' })
  const [dead] = await store.deadLetters(10)
  t.match(dead, { route: 'notes', key: 'note:1000', method: 'PATCH', reason: 'status_422' })
  t.same(next.notes.get('n-3ea'), { n: 'b2', id: 'n-3ea' }, 'b\'s write went')
  t.same(next.notes.get('n-3e9'), { n: 'a', id: 'n-3e9' }, 'a2 and a3 did not: a3 waits behind the dead letter, in order')
  next.refuse = null
  t.equal(await store.replay(dead!.seq), true)
  f.running.ficus.sync()!.deliverer.kick()
  await caughtUp(f)
  t.same(next.notes.get('n-3e9'), { n: 'a3', id: 'n-3e9' }, 'replayed: a2 then a3')
})

t.test('a rollback while new\'s writes are on their way: legacy answers for a record only once it holds them (a fence)', async (t) => {
  const { legacy, f } = await rig(t, { sync: { fenceTimeout: '10s' } })
  await setNew(f, 100)
  legacy.refuse = (method) => (method === 'POST' ? 503 : null) // legacy cannot take the create yet
  const created = (await f.fetch('/api/notes', json({ text: 'made on new' }))).json() as { id: string }
  const store = f.running.ficus.sync()!.store
  await waitFor(async () => (await store.stats()).routes.some((r) => r.target === 'legacy' && r.pending === 1), { message: 'the create did not wait for legacy' })
  await setNew(f, 0) // the rollback
  const read = f.fetch(`/api/notes/${created.id}`)
  await f.logs.waitFor((l) => l.msg === 'sync: fence: waiting for the record\'s writes to reach the side that answers it', { message: 'the read did not wait at the fence' })
  t.equal(legacy.notes.size, 0, 'legacy has not got the record yet, and the read has not reached it')
  legacy.refuse = null
  const r = await read
  t.equal(r.status, 200, 'not the 404 of a legacy that has not got it')
  t.same(r.json(), { text: 'made on new', id: '1000' }, 'new\'s id n-3e9, once legacy held the record, read as legacy\'s 1000')
  t.equal(sample(await f.scrape(), 'ficus_sync_fences_total', { route: 'notes', outcome: 'waited' }), 1)
})

t.test('a fence that times out: a read is served anyway (counted), a write is refused before anything is sent, so it never lands before the record\'s earlier writes', async (t) => {
  const { legacy, next, f } = await rig(t, { sync: { fenceTimeout: '200ms' } })
  const created = (await f.fetch('/api/notes', json({ v: 1 }))).json() as { id: string }
  await caughtUp(f)
  await setNew(f, 100)
  legacy.refuse = (method) => (method === 'PUT' ? 503 : null)
  t.equal((await f.fetch(`/api/notes/${created.id}`, { ...json({ v: 2 }), method: 'PUT' })).status, 200, 'new takes v2; legacy cannot yet')
  const store = f.running.ficus.sync()!.store
  await waitFor(async () => (await store.stats()).routes.some((r) => r.target === 'legacy' && r.pending === 1), { message: 'the PUT did not wait for legacy' })
  await setNew(f, 0)
  const read = await f.fetch(`/api/notes/${created.id}`)
  t.equal(read.status, 200)
  t.same(read.json(), { v: 1, id: '1000' }, 'legacy\'s stale copy, after sync.fenceTimeout')
  const write = await f.fetch(`/api/notes/${created.id}`, { ...json({ v: 3 }), method: 'PUT' })
  t.equal(write.status, 503)
  t.equal(write.headers['retry-after'], '1')
  t.match(write.json(), { code: 'FICUS_ERR_SYNC_BEHIND' })
  t.same(legacy.applied.map((w) => w.method), ['POST'], 'v3 never reached legacy')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_sync_fences_total', { route: 'notes', outcome: 'timeout' }), 2, 'the read and the write')
  t.equal(sample(m, 'ficus_writes_refused_total', { route: 'notes', reason: 'sync_behind' }), 1)
  legacy.refuse = null
  await caughtUp(f)
  t.same(legacy.notes.get('1000'), { v: 2, id: '1000' }, 'v2 arrived; the client retries v3 now')
  t.equal((await f.fetch(`/api/notes/${created.id}`, { ...json({ v: 3 }), method: 'PUT' })).status, 200)
  await caughtUp(f)
  t.same(next.notes.get('n-3e9'), { v: 3, id: 'n-3e9' }, 'and new gets v3 after v2, in order')
})

t.test('sync.auth passthrough: the client\'s own credential reaches the other side, kept sealed in the store; other credentials are never stored', async (t) => {
  const key = 'q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA='
  const { next, f } = await rig(t, { sync: { auth: { mode: 'passthrough', headers: ['authorization'], key } } })
  const seen: Record<string, string | string[] | undefined>[] = []
  next.server.prependListener('request', (req) => { seen.push(req.headers) })
  const store = f.running.ficus.sync()!.store
  await store.setPaused('*', true) // hold the write in the store to look at it
  t.equal((await f.fetch('/api/notes', { ...json({ text: 'x' }), headers: { 'content-type': 'application/json', authorization: 'Bearer user-secret', 'x-api-key': 'k-123' } })).status, 201)
  const entry = await store.get(1) // the store's first entry: this create
  t.match(entry, { route: 'notes-create', state: 'pending' })
  const stored = Object.fromEntries(entry!.headers)
  t.match(stored.authorization, /^sealed:v1:/, 'sealed at rest')
  t.notMatch(JSON.stringify(entry!.headers), /user-secret|k-123/, 'neither credential is in the store in clear')
  await store.setPaused('*', false)
  await waitFor(() => seen.length === 1, { message: 'the create was not delivered' })
  t.equal(seen[0]?.authorization, 'Bearer user-secret', 'opened for the delivery')
  t.equal(seen[0]?.['x-api-key'], undefined, 'a credential header not listed in sync.auth.headers is not stored at all')
})
