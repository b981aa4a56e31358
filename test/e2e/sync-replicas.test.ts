import pg from 'pg'
import t from 'tap'
import { PgStore } from '../../src/adapters/pg-store.js'
import { startPostgres } from '../helpers/postgres.js'
import { ownerOf, socketBetween } from '../helpers/sockets.js'
import { dualDoc, history, holdWrites, LEASE_MS, send, startFicus, startPair, until, writeDoc, type FicusProcess } from '../helpers/sync-rig.js'
import { waitFor } from '../helpers/wait.js'
import { join } from 'node:path'

/**
 * Two Ficus replicas on one PostgreSQL store (`store: { kind: postgres, url }`; a real
 * PostgreSQL 15, test/helpers/postgres.ts), the way a fleet runs: both take writes, both
 * deliver, claims are leased rows. The replica that is delivering a write is killed with
 * SIGKILL while new holds its answer; which one that is, is read from the kernel (the
 * process that holds the delivery's socket), not guessed.
 */

t.test('two replicas on one PostgreSQL: one killed mid-delivery, the other delivers its claim once the lease ends; each write applied once (the resend deduped), in order per note', async (t) => {
  const postgres = await startPostgres(t)
  await postgres.createDatabase('ficus')
  const url = postgres.url('ficus')
  const pair = await startPair(t)
  const { legacy, next } = pair
  const file = join(t.testdir(), 'routes.yaml')
  await writeDoc(file, dualDoc(pair, { kind: 'postgres', url }))
  const replicas = await Promise.all([startFicus(t, file), startFicus(t, file)])
  const store = new PgStore(url)
  t.teardown(async () => store.close())
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  t.teardown(async () => db.end())
  const drained = async (): Promise<void> => {
    await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0, 'the outbox did not drain')
  }

  // Three notes, written through both replicas in turn.
  const ids: string[] = []
  for (let c = 0; c < 3; c++) {
    const res = await send(replicas[c % 2]!.traffic, 'POST', '/api/notes', { v: `${c}-0` })
    t.equal(res.status, 201)
    ids.push(res.json<{ id: string }>().id)
  }
  const failed: string[] = []
  for (let i = 1; i <= 4; i++) {
    for (const [c, id] of ids.entries()) {
      const res = await send(replicas[(c + i) % 2]!.traffic, 'PUT', `/api/notes/${id}`, { v: `${c}-${i}` })
      if (res.status !== 200) failed.push(`${c}-${i}: ${res.status}`)
    }
  }
  t.same(failed, [], 'both replicas took every write')
  await drained()
  const other = await Promise.all(ids.map(async (id) => (await store.lookupId('note', 'legacy', id))?.other as string))

  // Note 0's next write: new applies it and holds its answer; the replica delivering it dies.
  const arrivals: { key: string; at: number }[] = []
  next.server.prependListener('request', (req) => {
    if (req.method === 'PUT' && req.url === `/api/notes/${other[0]}`) arrivals.push({ key: String(req.headers['idempotency-key']), at: Date.now() })
  })
  const gate = holdWrites(next, (method, id) => method === 'PUT' && id === other[0])
  t.equal((await send(replicas[0].traffic, 'PUT', `/api/notes/${ids[0]}`, { v: '0-5' })).status, 200)
  const held = await waitFor(gate.arrived, { message: 'the delivery of 0-5 did not reach new' })
  const seq = Number(/^ficus-notes-(\d+)$/.exec(held.key ?? '')?.[1])
  const { rows: [claim] } = await db.query<{ leased_until: string }>('SELECT leased_until FROM ficus_outbox WHERE seq = $1', [seq])
  const leasedUntil = Number(claim?.leased_until)
  t.ok(leasedUntil > Date.now(), 'the entry is claimed, under a lease')
  const socket = await socketBetween(held.remotePort, Number(new URL(next.url).port))
  const owner = socket === undefined ? undefined : await ownerOf(socket.inode, replicas.map((r) => r.pid))
  const victim = replicas.find((r) => r.pid === owner) as FicusProcess
  const survivor = replicas.find((r) => r.pid !== owner) as FicusProcess
  t.ok(victim !== undefined, `the delivering replica is one of the two (pid ${owner})`)
  await victim.kill()
  gate.release() // new's answer goes nowhere: 0-5 stays applied on new, and no replica heard of it

  // The survivor takes writes; note 0's wait behind its claimed write, the others' go at once.
  t.equal((await send(survivor.traffic, 'PUT', `/api/notes/${ids[0]}`, { v: '0-6' })).status, 200)
  t.equal((await send(survivor.traffic, 'PUT', `/api/notes/${ids[1]}`, { v: '1-5' })).status, 200)
  await waitFor(() => history(next, other[1] as string).at(-1) === 'PUT 1-5', { message: 'note 1\'s write did not reach new while note 0\'s claim was leased' })
  t.ok(Date.now() < leasedUntil, 'note 1 was not held up by note 0\'s lease')
  t.same(history(next, other[0] as string).slice(-1), ['PUT 0-5'], 'note 0: 0-6 waits behind 0-5')

  await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0, 'the survivor did not deliver the dead replica\'s claim', LEASE_MS + 15_000)
  t.same(arrivals.map((a) => a.key).slice(0, 2), [held.key, held.key], '0-5 was sent again, with the same Idempotency-Key')
  t.ok((arrivals[1]?.at ?? 0) >= leasedUntil, `and not before its lease ended (${(arrivals[1]?.at ?? 0) - leasedUntil} ms after)`)
  t.equal(arrivals.length, 3, 'then 0-6, once')
  t.equal(next.deduped(), 1, 'new applied 0-5 once: the resend was answered from its idempotency cache')
  for (const [c, id] of ids.entries()) {
    t.same(history(next, other[c] as string), history(legacy, id), `note ${c}: new applied what legacy did, in the same order`)
  }
  t.same(history(next, other[0] as string).slice(-3), ['PUT 0-4', 'PUT 0-5', 'PUT 0-6'])
  t.match(await store.stats(), { dead: 0 })
})
