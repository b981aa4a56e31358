import t from 'tap'
import { Agent, request } from 'undici'
import { admin } from '../helpers/admin.js'
import { dualRig, NOTES_ROUTES } from '../helpers/dual-rig.js'
import { sample } from '../helpers/ficus.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The acceptance test for dual writes: a writing route migrated through every phase
 * (shadow, canary, half, new primary) and rolled back, under a bounded load of clients that
 * create, change and delete their own notes, each side giving its own ids. Afterwards every
 * id any client was given reads back, with the last content that client saw accepted, from
 * the side that answers; and the two sides hold the same notes.
 */

const CLIENTS = 8
const OPS_PER_PHASE = 60
const PHASES = [0, 10, 50, 100, 0] // the last one is the rollback

/** A small deterministic PRNG (mulberry32): the same run every time. */
function prng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

t.test('a writing route through shadow, canary, half, new primary and a rollback under load: nothing a client wrote is lost, on either side', async (t) => {
  const { legacy, next, f } = await dualRig(t, { sync: { retry: { base: '10ms', max: '100ms' }, fenceTimeout: '5s' } }, [
    NOTES_ROUTES[0] as Record<string, unknown>,
    { ...NOTES_ROUTES[1], shadow: 100 }
  ])
  const agent = new Agent({ connections: CLIENTS })
  t.teardown(async () => agent.close())

  /** What each client saw accepted: id → its last content, or null once deleted. */
  const known = new Map<string, Record<string, unknown> | null>()
  let ops = 0
  let refused = 0
  let stop = false
  const client = async (c: number): Promise<void> => {
    const random = prng(c + 1)
    const mine: string[] = []
    let v = 0
    while (!stop) {
      const user = `user-${c}`
      const live = mine.filter((id) => known.get(id) !== null)
      const roll = random()
      let method: 'POST' | 'PUT' | 'PATCH' | 'DELETE'
      let path = '/api/notes'
      let body: Record<string, unknown> | undefined = { by: user, v: ++v }
      if (live.length === 0 || (live.length < 3 && roll < 0.3)) method = 'POST'
      else {
        path = `/api/notes/${encodeURIComponent(live[Math.floor(random() * live.length)] as string)}`
        method = roll < 0.6 ? 'PUT' : roll < 0.9 ? 'PATCH' : 'DELETE'
        if (method === 'DELETE') body = undefined
      }
      const r = await request(f.url + path, {
        method, dispatcher: agent, headers: { 'x-user-id': user, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body)
      })
      const text = await r.body.text()
      ops++
      if (r.statusCode === 503) {
        refused++ // behind a fence, or new ejected: nothing was sent anywhere; the client moves on
        continue
      }
      if (r.statusCode >= 300) throw new Error(`${method} ${path} by ${user}: ${r.statusCode} ${text}`)
      const id = method === 'POST' ? String((JSON.parse(text) as { id: string }).id) : decodeURIComponent(path.slice('/api/notes/'.length))
      if (method === 'POST') mine.push(id)
      const before = known.get(id) ?? {}
      known.set(id, method === 'DELETE' ? null : method === 'PATCH' ? { ...before, ...body } : { ...body })
    }
  }
  const clients = Array.from({ length: CLIENTS }, async (_, c) => client(c))

  for (const [i, percent] of PHASES.entries()) {
    for (const name of ['notes-create', 'notes']) {
      const r = await admin(f, 'PATCH', `/admin/routes/${name}`, { json: { new: percent, reason: `phase ${i}` } })
      t.equal(r.status, 200, `${name} → new ${percent} %`)
    }
    const target = (i + 1) * OPS_PER_PHASE
    await waitFor(() => ops >= target, { message: () => `phase ${i} (new ${percent} %): ${ops} of ${target} operations done` })
  }
  stop = true
  await Promise.all(clients)
  await waitFor(async () => {
    const st = await f.running.ficus.sync()!.store.stats()
    return st.pending === 0 && st.intents === 0
  }, { message: 'the outbox did not drain after the load' })
  const st = await f.running.ficus.sync()!.store.stats()
  t.equal(st.dead, 0, 'no dead letter')

  // Every id a client holds reads back from legacy (which answers after the rollback), with its last content.
  const wrong: string[] = []
  for (const [id, content] of known) {
    const r = await request(`${f.url}/api/notes/${encodeURIComponent(id)}`, { dispatcher: agent, headers: { 'x-user-id': 'checker' } })
    const got = await r.body.text()
    if (content === null ? r.statusCode !== 404 : r.statusCode !== 200 || JSON.stringify({ ...JSON.parse(got) as object, id: undefined }) !== JSON.stringify({ ...content, id: undefined })) {
      wrong.push(`${id}: expected ${content === null ? '404' : JSON.stringify(content)}, got ${r.statusCode} ${got}`)
    }
  }
  t.same(wrong, [], `${known.size} ids (${[...known.keys()].filter((id) => id.startsWith('n-')).length} of them given by new) read back with their last content`)

  // And the two sides agree, record by record, through the id map.
  const store = f.running.ficus.sync()!.store
  const mismatched: string[] = []
  for (const [id, note] of legacy.notes) {
    const pair = await store.lookupId('note', 'legacy', id)
    const other = next.notes.get(pair?.other ?? id)
    if (JSON.stringify({ ...other, id: undefined }) !== JSON.stringify({ ...note, id: undefined })) mismatched.push(`legacy ${id}: ${JSON.stringify(note)} vs new ${JSON.stringify(other)}`)
  }
  t.equal(next.notes.size, legacy.notes.size, `both sides hold ${legacy.notes.size} notes`)
  t.same(mismatched, [], 'every note is the same on both sides')
  t.equal(legacy.deduped() + next.deduped(), 0, 'no write was delivered twice')
  const m = await f.scrape()
  t.comment(`${ops} operations, ${refused} refused (503: behind a fence), ${known.size} notes; fences waited ${sample(m, 'ficus_sync_fences_total', { route: 'notes', outcome: 'waited' }) ?? 0} times`)
  t.equal(sample(m, 'ficus_sync_deliveries_total', { route: 'notes', target: 'new', outcome: 'dead' }), 0)
})
