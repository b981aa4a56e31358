import { execFile } from 'node:child_process'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { dualDoc, history, peekLmdb, send, startFicus, startPair, until, writeDoc } from '../helpers/sync-rig.js'
import { waitFor } from '../helpers/wait.js'

/**
 * When the other side or the store cannot keep up (docs/sync.md): the outbox grows within
 * `sync.maxPending` and then refuses writes before they are forwarded; the store failing
 * refuses writes and leaves reads alone; both recover by themselves.
 */

const run = promisify(execFile)
const JSON_HEADERS = { 'content-type': 'application/json' }

t.test('new down under a bounded load: the backlog fills sync.maxPending, then writes get 503 FICUS_ERR_SYNC_FULL unforwarded; lag is the oldest write\'s age; it drains in order', async (t) => {
  const pair = await startPair(t)
  const { legacy, next } = pair
  const MAX = 20
  const WRITERS = 4
  // No attempt limit: new is down for seconds, and a write that ran out of attempts would be a dead letter, not the backlog this measures.
  const f = await startTestFicus(t, dualDoc(pair, { kind: 'embedded', path: join(t.testdir(), 'ficus.lmdb') }, { maxPending: MAX, retry: { base: '20ms', max: '200ms', maxAttempts: 1000000 } }))
  const store = f.running.ficus.sync()!.store
  const notes: string[] = []
  for (let w = 0; w < WRITERS; w++) {
    const res = await f.fetch('/api/notes', { method: 'POST', body: JSON.stringify({ v: `${w}-0` }), headers: JSON_HEADERS })
    notes.push((res.json() as { id: string }).id)
  }
  await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0, 'the creates were not delivered')

  next.down = true
  // The oldest write of the backlog, then the lag it makes, then the rest.
  const sent = Date.now()
  t.equal((await f.fetch(`/api/notes/${notes[0]}`, { method: 'PUT', body: JSON.stringify({ v: '0-1' }), headers: JSON_HEADERS })).status, 200)
  const acked = Date.now()
  const lag = async (): Promise<number> => sample(await f.scrape(), 'ficus_sync_lag_seconds', { route: 'notes', target: 'new' }) ?? 0
  // (2 s: more than the gauge's refresh, so that the lag of the newest write could not pass for the oldest's below.)
  await waitFor(async () => (await lag()) >= 2, { message: 'the lag gauge did not reach 2 s with a write waiting' })

  // Four clients, each writing its own note in a loop, until eight writes were refused.
  const taken: string[][] = notes.map((_, w) => (w === 0 ? ['0-1'] : []))
  const refusals: { status: number; code: unknown; retryAfter: unknown }[] = []
  await Promise.all(notes.map(async (id, w) => {
    for (let i = 2; refusals.length < 8 && i < 200; i++) {
      const res = await f.fetch(`/api/notes/${id}`, { method: 'PUT', body: JSON.stringify({ v: `${w}-${i}` }), headers: JSON_HEADERS })
      if (res.status === 200) taken[w]!.push(`${w}-${i}`)
      else refusals.push({ status: res.status, code: (res.json() as { code?: unknown }).code, retryAfter: res.headers['retry-after'] })
    }
  }))
  const accepted = taken.flat().length
  const st = await store.stats()
  t.equal(st.pending, accepted, `every acknowledged write waits in the outbox (${accepted})`)
  t.ok(st.pending <= MAX, `the backlog stays within sync.maxPending: ${st.pending} <= ${MAX}`)
  t.ok(st.pending >= MAX - WRITERS, `and fills it: ${st.pending}`)
  t.ok(refusals.length >= 8)
  t.same(new Set(refusals.map((r) => JSON.stringify(r))), new Set([JSON.stringify({ status: 503, code: 'FICUS_ERR_SYNC_FULL', retryAfter: '5' })]), 'every refusal is 503 FICUS_ERR_SYNC_FULL, Retry-After: 5')
  for (const [w, id] of notes.entries()) {
    t.same(history(legacy, id), [`POST ${w}-0`, ...taken[w]!.map((v) => `PUT ${v}`)], `legacy got only the writes that were taken (note ${id})`)
  }
  t.equal(sample(await f.scrape(), 'ficus_writes_refused_total', { route: 'notes', reason: 'sync_full' }), refusals.length, 'counted')

  // The lag: the age of the oldest waiting write, as of the last read of the store (once a second).
  const before = Date.now()
  const shown = await lag()
  const after = Date.now()
  t.ok(shown * 1000 <= after - sent, `lag ${shown} s is no more than the oldest write's age (${(after - sent) / 1000} s)`)
  t.ok(shown * 1000 >= before - acked - 1500, `and no less than its age at the last read, a second (and some slack) ago: ${(before - acked - 1500) / 1000} s`)
  const oldest = (await store.stats()).routes.find((x) => x.route === 'notes' && x.target === 'new')?.oldestPending ?? 0
  t.ok(oldest >= sent && oldest <= acked, 'the store\'s oldest waiting write of the route is that first one')
  let scraped = ''
  await waitFor(async () => sample(scraped = await f.scrape(), 'ficus_sync_pending', { route: 'notes', target: 'new' }) === accepted,
    { message: () => `the pending gauge did not show the ${accepted} writes waiting: ${scraped.split('\n').filter((l) => l.startsWith('ficus_sync_pending')).join(' ; ')}` })

  next.down = false
  await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0 && s.dead === 0, 'the backlog did not drain once new was back')
  for (const [w, id] of notes.entries()) {
    const other = (await store.lookupId('note', 'legacy', id))?.other as string
    t.same(history(next, other), history(legacy, id), `note ${w}: new applied what legacy did, in the same order`)
  }
  t.equal(next.deduped(), 0, 'each once')
  await waitFor(async () => (await lag()) === 0, { message: 'the lag gauge did not go back to 0' })
  t.equal((await f.fetch(`/api/notes/${notes[1]}`, { method: 'PUT', body: JSON.stringify({ v: 'again' }), headers: JSON_HEADERS })).status, 200, 'writes are taken again')
})

t.test('the store\'s disk full: writes get 503 FICUS_ERR_SYNC_UNAVAILABLE unforwarded, reads are served, Ficus runs on, writes are taken once there is room', async (t) => {
  // Stands for the volume of ficus.lmdb filling up: the Ficus process gets a file-size limit
  // (RLIMIT_FSIZE, set with prlimit on the running process; Node ignores SIGXFSZ), so LMDB's
  // write() of a page past the file's current end fails with EFBIG, as it fails with ENOSPC on
  // a full disk: the commit is aborted, and the file and what it held are left as they were.
  // Raising the limit again is the operator freeing space.
  const pair = await startPair(t)
  const { legacy, next } = pair
  const path = join(t.testdir(), 'ficus.lmdb')
  const file = join(t.testdir(), 'routes.yaml')
  await writeDoc(file, dualDoc(pair, { kind: 'embedded', path }))
  const f = await startFicus(t, file)
  const store = peekLmdb(t, path)
  t.equal((await send(f.traffic, 'POST', '/api/notes', { v: 'a0' })).status, 201)
  await until(async () => store.stats(), (s) => s.pending === 0 && s.intents === 0, 'the create was not delivered')
  // Delivery paused, so that what is written stays (delivered entries free pages LMDB reuses).
  await store.setPaused('*', true)

  // Room for a few more writes, then none.
  await run('prlimit', ['--pid', String(f.pid), `--fsize=${statSync(path).size + 128 * 1024}:`])
  const PAD = 'x'.repeat(8000)
  const taken: string[] = []
  let failed: { v: string; status: number | null; code: unknown } | null = null
  for (let i = 0; i < 400 && failed === null; i++) {
    const res = await send(f.traffic, 'POST', '/api/notes', { v: `x${i}`, pad: PAD })
    if (res.status === 201) taken.push(`x${i}`)
    else failed = { v: `x${i}`, status: res.status, code: res.status === null ? null : res.json().code }
  }
  t.ok(taken.length > 0 && taken.length < 400, `the disk filled after ${taken.length} writes`)
  // The write that met the full disk: its intent could not be recorded (503, not forwarded), or
  // legacy took it and its answer could not be recorded (502: applied, and logged for an operator).
  t.ok(failed !== null && ((failed.status === 503 && failed.code === 'FICUS_ERR_SYNC_UNAVAILABLE') || (failed.status === 502 && failed.code === 'FICUS_ERR_SYNC_UNRECORDED')),
    `the first write on a full disk is refused or reported unrecorded, never a 2xx: ${JSON.stringify(failed)}`)
  t.equal(f.p.child.exitCode, null, 'Ficus is still running')
  const alive = (): string => (f.p.child.exitCode === null && f.p.child.signalCode === null ? '' : ` (Ficus exited: ${f.p.child.exitCode ?? f.p.child.signalCode}; ${(f.p.stdout + f.p.stderr).trim().split('\n').filter((l) => !l.includes('"msg":"request"')).slice(-3).join(' ').slice(0, 1500)})`)

  for (const [method, path, v] of [['POST', '/api/notes', 'r0'], ['PUT', '/api/notes/1000', 'r1'], ['DELETE', '/api/notes/1000', undefined], ['POST', '/api/notes', 'r2']] as const) {
    const res = await send(f.traffic, method, path, v === undefined ? undefined : { v })
    t.match({ status: res.status, code: res.json().code }, { status: 503, code: 'FICUS_ERR_SYNC_UNAVAILABLE' }, `${method} ${path} refused while the disk is full${alive()}`)
  }
  t.notOk(legacy.applied.some((w) => /^r/.test(String(w.body.v)) || w.method === 'DELETE'), 'legacy got none of the refused writes')
  const read = await send(f.traffic, 'GET', '/api/notes/1000')
  t.match({ status: read.status, body: read.json() }, { status: 200, body: { v: 'a0' } }, 'reads are served')
  t.ok(((await f.metric('ficus_writes_refused_total', { route: 'notes', reason: 'sync_unavailable' })) ?? 0) >= 2, 'refusals are counted')

  await run('prlimit', ['--pid', String(f.pid), '--fsize=unlimited:'])
  // Taken again once the store answers (the watch tries it once a second); a refused try is not forwarded.
  await waitFor(async () => (await send(f.traffic, 'POST', '/api/notes', { v: 'after' })).status === 201, { message: 'writes were not taken again once there was room' })
  taken.push('after')
  await store.setPaused('*', false)
  await until(async () => store.stats(), (s) => s.pending === 0, 'the writes taken did not reach new')
  const onNew = new Set(next.applied.map((w) => String(w.body.v)))
  t.same(taken.filter((v) => !onNew.has(v)), [], 'every write a client saw succeed reached new')
  t.notOk([...onNew].some((v) => /^r/.test(v)), 'no refused write did')
  if (failed?.status === 502) {
    t.ok(f.logs.lines.some((l) => l.msg === 'sync: write applied but not recorded: the other side will not get it unless it is replayed by hand'), 'the unrecorded write is logged in full')
  } else {
    t.notOk(legacy.applied.some((w) => w.body.v === failed?.v), 'the refused write never reached legacy')
  }
  t.equal(f.p.child.exitCode, null, 'Ficus ran throughout')
})
