import { join } from 'node:path'
import t from 'tap'
import { dualDoc, history, peekLmdb, send, startFicus, startPair, until, writeDoc } from '../helpers/sync-rig.js'

/**
 * `ficus start --workers 2` on one embedded store (docs/sync.md): a real cluster, both
 * worker processes taking dual writes into one LMDB file and both delivering from it. Which
 * worker took a write is read from the access log (matched by the request id the client
 * sent), never from the answer.
 */

t.test('--workers 2 on one LMDB file: writes taken by both workers, each delivered to new once, in order per note', async (t) => {
  const pair = await startPair(t)
  const { legacy, next } = pair
  const path = join(t.testdir(), 'ficus.lmdb')
  const file = join(t.testdir(), 'routes.yaml')
  await writeDoc(file, dualDoc(pair, { kind: 'embedded', path }))
  const f = await startFicus(t, file, ['--workers', '2'])
  const store = peekLmdb(t, path)

  // Three clients at once, each writing its own note (create, then updates, a PATCH, and for
  // one a DELETE), every write on a connection of its own, so the cluster spreads them.
  let n = 0
  const write = async (method: string, path: string, body?: unknown): Promise<{ status: number | null; id: string | undefined; reqId: string }> => {
    const reqId = `w-${++n}`
    const res = await send(f.traffic, method, path, body, { headers: { 'x-request-id': reqId } })
    return { status: res.status, id: res.status === 201 ? res.json<{ id: string }>().id : undefined, reqId }
  }
  const reqIds: string[] = []
  const failed: string[] = []
  const ids = await Promise.all([0, 1, 2].map(async (c) => {
    const created = await write('POST', '/api/notes', { v: `${c}-0` })
    reqIds.push(created.reqId)
    const id = created.id as string
    for (let i = 1; i <= 8; i++) {
      const w = await write(i === 8 ? 'PATCH' : 'PUT', `/api/notes/${id}`, { v: `${c}-${i}` })
      if (w.status !== 200) failed.push(`${c}-${i}: ${w.status}`)
      reqIds.push(w.reqId)
    }
    if (c === 2) {
      const d = await write('DELETE', `/api/notes/${id}`)
      if (d.status !== 204) failed.push(`DELETE: ${d.status}`)
      reqIds.push(d.reqId)
    }
    return id
  }))
  t.same([...ids].sort(), ['1000', '1001', '1002'], 'three notes created')
  t.same(failed, [], 'every write was taken')

  const byWorker = new Map<number, number>()
  for (const reqId of reqIds) {
    const line = await f.logs.waitFor((l) => l.msg === 'request' && l.reqId === reqId)
    byWorker.set(line.worker as number, (byWorker.get(line.worker as number) ?? 0) + 1)
  }
  t.equal(byWorker.size, 2, `both workers took writes: ${JSON.stringify([...byWorker])}`)

  await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0, 'the outbox did not drain')
  t.match(await store.stats(), { dead: 0 })
  for (const [c, id] of ids.entries()) {
    const other = (await store.lookupId('note', 'legacy', id))?.other as string
    t.same(history(next, other), history(legacy, id), `note ${c}: new applied what legacy did, in the same order`)
    t.equal(history(legacy, id).length, c === 2 ? 10 : 9)
  }
  t.equal(next.applied.length, legacy.applied.length, 'as many writes on new as on legacy')
  t.equal(next.deduped(), 0, 'none delivered twice')
  t.equal(next.notes.size, 2, 'the deleted note is gone from new too')
})
