import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { admin, audit } from '../helpers/admin.js'
import { caughtUp, dualRig, wrote } from '../helpers/dual.js'
import { startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The admin API of dual writes (docs/sync.md "Operating dual writes"): /admin/sync… reads the
 * outbox and acts on it (replay, skip, pause, resume, drain), /admin/ids… reads and sets the
 * id map; every decision audited. A real Ficus between two real records APIs, a real LMDB
 * file; the admin API reads it through a handle of its own while the traffic side writes.
 */

t.test('status: per route and side, exact, while new is down; lag from the oldest pending write', async (t) => {
  const { next, f } = await dualRig(t)
  next.down = true
  const a = await wrote(f, '/api/notes', { n: 0 })
  t.equal(a.id, '1000')
  for (let i = 1; i <= 5; i++) await wrote(f, '/api/notes/1000', { n: i }, 'PUT')
  const before = Date.now()
  const r = await admin(f, 'GET', '/admin/sync')
  const after = Date.now()
  t.equal(r.status, 200)
  const create = (await admin(f, 'GET', '/admin/sync/entries/1')).body.entry as { createdAt: string }
  const put = (await admin(f, 'GET', '/admin/sync/entries/2')).body.entry as { createdAt: string }
  const row = (route: string, target: string, pending: number, oldest: string | null) => ({ route, target, pending, deadLetters: 0, oldestPending: oldest, paused: false })
  t.match(r.body, {
    store: { kind: 'embedded', path: join(t.testdir(), 'ficus.lmdb') },
    routes: [row('notes-create', 'legacy', 0, null), row('notes-create', 'new', 1, create.createdAt), row('notes', 'legacy', 0, null), row('notes', 'new', 5, put.createdAt)],
    pending: 6,
    deadLetters: 0,
    intents: 0,
    paused: [],
    ids: {}
  })
  const routes = r.body.routes as { lagSeconds: number; oldestPending: string | null }[]
  t.equal(routes.length, 4, 'every dual route to each side; the route without sync is not listed')
  for (const x of routes) {
    if (x.oldestPending === null) {
      t.equal(x.lagSeconds, 0)
      continue
    }
    const oldest = Date.parse(x.oldestPending)
    t.ok(x.lagSeconds >= (before - oldest) / 1000 - 0.001 && x.lagSeconds <= (after - oldest) / 1000 + 0.001, `lag ${x.lagSeconds} s is now minus the oldest pending write`)
  }
  t.equal(r.body.lagSeconds, Math.max(...routes.map((x) => x.lagSeconds)))

  next.down = false
  await caughtUp(f)
  t.match((await admin(f, 'GET', '/admin/sync')).body, {
    routes: [row('notes-create', 'legacy', 0, null), row('notes-create', 'new', 0, null), row('notes', 'legacy', 0, null), row('notes', 'new', 0, null)],
    pending: 0,
    lagSeconds: 0,
    ids: { note: 1 }
  }, 'delivered: nothing behind, and the pair learned')
})

t.test('a dead letter is listed and shown whole, then replayed (audited) and delivered', async (t) => {
  const { next, f } = await dualRig(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f)
  next.refuse = (method, path) => (method === 'PATCH' && path === '/api/notes/n-3e9' ? 422 : null)
  await wrote(f, '/api/notes/1000', { n: 'a2' }, 'PATCH')
  await waitFor(async () => (await admin(f, 'GET', '/admin/sync')).body.deadLetters === 1, { message: 'the refused write did not become a dead letter' })

  const list = await admin(f, 'GET', '/admin/sync/dead-letters?limit=10')
  t.equal(list.status, 200)
  const dead = list.body.deadLetters as { seq: number }[]
  t.match(dead, [{ seq: Number, route: 'notes', key: 'note:1000', target: 'new', method: 'PATCH', path: '/api/notes/1000', state: 'dead', reason: 'status_422', attempts: 1, bodySize: 10, nextAttempt: null }])
  const seq = dead[0]!.seq
  const shown = await admin(f, 'GET', `/admin/sync/entries/${seq}`)
  t.equal(shown.status, 200)
  t.match(shown.body.entry, {
    seq, state: 'dead', reason: 'status_422',
    body: { size: 10, text: '{"n":"a2"}' },
    ids: [{ in: 'path', segment: 2, entity: 'note', id: '1000' }],
    source: 'legacy',
    learn: null
  })
  const headers = (shown.body.entry as { headers: [string, string][] }).headers
  t.same(headers.filter(([n]) => n === 'content-type'), [['content-type', 'application/json']])
  t.same(headers.filter(([n]) => /authorization|cookie/.test(n)), [], 'no credential is stored')
  t.match(await admin(f, 'GET', '/admin/sync'), { body: { routes: [{}, {}, {}, { route: 'notes', target: 'new', pending: 0, deadLetters: 1 }] } })

  next.refuse = null
  const replayed = await admin(f, 'POST', '/admin/sync/replay', { json: { seq, reason: 'new accepts the field now' } })
  t.equal(replayed.status, 200)
  t.match(replayed.body.entry, { seq, state: 'pending', attempts: 0 })
  await caughtUp(f)
  t.same(next.notes.get('n-3e9'), { n: 'a2', id: 'n-3e9' }, 'the replayed write reached new')
  t.match(await admin(f, 'GET', `/admin/sync/entries/${seq}`), { status: 404, body: { code: 'FICUS_ERR_SYNC_NO_ENTRY' } }, 'delivered: gone from the outbox')
  t.match((await audit(f))[0], { who: 'local', action: 'sync-replay', route: 'notes', reason: 'new accepts the field now', detail: `replay entry ${seq} (PATCH /api/notes/1000 to new, route notes, key note:1000) (a dead letter: status_422)` })
  t.match(await admin(f, 'POST', '/admin/sync/replay', { json: { seq } }), { status: 404, body: { code: 'FICUS_ERR_SYNC_NO_ENTRY' } }, 'a second replay finds nothing')
})

t.test('a skipped dead letter is gone, never delivered, audited; its record\'s later writes go on', async (t) => {
  const { next, f } = await dualRig(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f)
  let refusals = 0
  next.refuse = (method) => (method === 'PATCH' && refusals++ === 0 ? 422 : null)
  await wrote(f, '/api/notes/1000', { n: 'bad' }, 'PATCH')
  await waitFor(async () => (await admin(f, 'GET', '/admin/sync')).body.deadLetters === 1, { message: 'no dead letter' })
  await wrote(f, '/api/notes/1000', { n: 'good' }, 'PATCH')
  const [dead] = (await admin(f, 'GET', '/admin/sync/dead-letters')).body.deadLetters as { seq: number }[]
  const seq = dead!.seq
  t.match((await admin(f, 'GET', '/admin/sync')).body, { pending: 1, deadLetters: 1 }, 'the later write waits behind the dead letter')

  const skipped = await admin(f, 'POST', '/admin/sync/skip', { json: { seq, reason: 'a test write' } })
  t.equal(skipped.status, 200)
  t.match(skipped.body.skipped, { seq, method: 'PATCH', state: 'dead', reason: 'status_422' })
  await caughtUp(f)
  t.same(next.notes.get('n-3e9'), { n: 'good', id: 'n-3e9' }, 'the later write went')
  t.same(next.applied.map((w) => w.method), ['POST', 'PATCH'], 'the skipped one never did')
  t.match(await admin(f, 'GET', `/admin/sync/entries/${seq}`), { status: 404 })
  t.match((await admin(f, 'GET', '/admin/sync')).body, { pending: 0, deadLetters: 0 })
  t.match((await audit(f))[0], { who: 'local', action: 'sync-skip', route: 'notes', reason: 'a test write', detail: /^skip entry \d+ \(PATCH \/api\/notes\/1000 to new, route notes, key note:1000\) \(a dead letter: status_422\): never delivered$/ })
  t.match(await admin(f, 'POST', '/admin/sync/skip', { json: { seq } }), { status: 404, body: { code: 'FICUS_ERR_SYNC_NO_ENTRY' } })
})

t.test('a paused route\'s writes are recorded and wait; other routes deliver; resume releases them (audited)', async (t) => {
  const { next, f } = await dualRig(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f)
  t.match(await admin(f, 'POST', '/admin/sync/pause', { json: { route: 'notes', reason: 'new is reindexing' } }), { status: 200, body: { paused: ['notes'] } })
  await wrote(f, '/api/notes/1000', { n: 'a2' }, 'PUT')
  await wrote(f, '/api/notes', { n: 'b' })
  // b's create is claimed with (or after) a's PUT, which is older: b delivered and the PUT not means the pause held it.
  await waitFor(async () => next.notes.has('n-3ea') && (await admin(f, 'GET', '/admin/sync')).body.pending === 1, { message: 'the create on the route not paused was not delivered' })
  const st = (await admin(f, 'GET', '/admin/sync')).body
  t.match(st, { pending: 1, paused: ['notes'], routes: [{ route: 'notes-create', paused: false }, { route: 'notes-create', paused: false }, { route: 'notes', paused: true }, { route: 'notes', target: 'new', pending: 1, paused: true }] })
  const [held] = (await admin(f, 'GET', '/admin/sync/dead-letters')).body.deadLetters as unknown[]
  t.equal(held, undefined, 'held, not dead')
  t.same(next.notes.get('n-3e9'), { n: 'a', id: 'n-3e9' }, 'the PUT waits')

  t.match(await admin(f, 'POST', '/admin/sync/resume', { json: { route: 'notes' } }), { status: 200, body: { paused: [] } })
  await waitFor(() => next.notes.get('n-3e9')?.n === 'a2', { message: 'the PUT was not delivered once resumed' })
  t.match((await audit(f)).slice(0, 2), [
    { action: 'sync-resume', route: 'notes', reason: null, detail: 'delivery of notes resumed' },
    { action: 'sync-pause', route: 'notes', reason: 'new is reindexing', detail: 'delivery of notes paused: its writes are recorded and wait' }
  ])

  // Every route: `*`; resuming all clears every pause.
  t.match(await admin(f, 'POST', '/admin/sync/pause', { json: {} }), { body: { paused: ['*'] } })
  await admin(f, 'POST', '/admin/sync/pause', { json: { route: 'notes-create' } })
  await wrote(f, '/api/notes', { n: 'c' })
  t.match((await admin(f, 'GET', '/admin/sync')).body, { pending: 1, routes: [{ paused: true }, { paused: true }, { paused: true }, { paused: true }] })
  // A drain answers at once for paused routes, with the write still held: it was not delivered.
  t.match((await admin(f, 'POST', '/admin/sync/drain', { json: { timeout: '10s' } })).body, { drained: false, paused: true, pending: 1 })
  t.notOk(next.notes.has('n-3eb'), 'not delivered while every route is paused')
  t.match(await admin(f, 'POST', '/admin/sync/resume', { json: {} }), { body: { paused: [] } })
  await caughtUp(f)
  t.ok(next.notes.has('n-3eb'), 'delivered once every route resumed')
  t.match((await audit(f))[0], { action: 'sync-resume', route: null, detail: 'delivery of every route (was paused: *, notes-create) resumed' })
})

t.test('drain waits until nothing is pending; at its timeout it says what is left; it never waits on dead letters or paused routes', async (t) => {
  const { next, f } = await dualRig(t)
  next.down = true
  await wrote(f, '/api/notes', { n: 'a' })
  await wrote(f, '/api/notes/1000', { n: 'a2' }, 'PUT')
  const short = await admin(f, 'POST', '/admin/sync/drain', { json: { timeout: '200ms' } })
  t.equal(short.status, 200)
  t.match(short.body, { drained: false, route: null, paused: false, pending: 2, deadLetters: 0, intents: 0, routes: [{ pending: 0 }, { target: 'new', pending: 1 }, { pending: 0 }, { target: 'new', pending: 1 }], deadLetterEntries: [] })
  t.ok((short.body.waitedSeconds as number) >= 0.2, `waited its timeout (${String(short.body.waitedSeconds)} s)`)

  const drain = admin(f, 'POST', '/admin/sync/drain', { json: { route: 'notes', timeout: '10s' } })
  next.down = false
  const done = await drain
  t.match(done.body, { drained: true, route: 'notes', pending: 0, routes: [{ route: 'notes', target: 'legacy' }, { route: 'notes', target: 'new', pending: 0 }] })
  t.equal((done.body.routes as unknown[]).length, 2, 'only the route asked for')
  t.same(next.notes.get('n-3e9'), { n: 'a2', id: 'n-3e9' }, 'answered once delivered')

  next.refuse = (method) => (method === 'PATCH' ? 422 : null)
  await wrote(f, '/api/notes/1000', { n: 'x' }, 'PATCH')
  await waitFor(async () => (await admin(f, 'GET', '/admin/sync')).body.deadLetters === 1, { message: 'no dead letter' })
  t.match((await admin(f, 'POST', '/admin/sync/drain', { json: { timeout: '10s' } })).body, {
    drained: true, pending: 0, deadLetters: 1, deadLetterEntries: [{ route: 'notes', method: 'PATCH', reason: 'status_422' }]
  }, 'a dead letter is reported, not waited for')

  await admin(f, 'POST', '/admin/sync/pause', { json: { route: 'notes-create' } })
  await wrote(f, '/api/notes', { n: 'b' })
  const started = Date.now()
  t.match((await admin(f, 'POST', '/admin/sync/drain', { json: { timeout: '10s' } })).body, { drained: false, paused: true, pending: 1 })
  t.ok(Date.now() - started < 5_000, 'a paused route is answered at once, not at the timeout')
  t.match((await admin(f, 'POST', '/admin/sync/drain', { json: { route: 'notes' } })).body, { drained: true, paused: false, deadLetters: 1 })
})

t.test('stopping Ficus ends a drain in progress: it answers at once with what is left', async (t) => {
  const { next, f } = await dualRig(t)
  next.down = true
  await wrote(f, '/api/notes', { n: 'a' })
  const drain = admin(f, 'POST', '/admin/sync/drain', { json: { timeout: '10m' } })
  await f.logs.waitFor((l) => l.msg === 'sync: a drain waits for writes to be delivered')
  const started = Date.now()
  await f.running.stop()
  t.match(await drain, { status: 200, body: { drained: false, pending: 1 } })
  t.ok(Date.now() - started < 10_000, 'not held until its timeout')
})

t.test('the id map: a pair read by either side\'s id, set by hand (audited), a conflicting one refused', async (t) => {
  const { f } = await dualRig(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f)
  const pair = { entity: 'note', legacy: '1000', new: 'n-3e9', origin: 'legacy' }
  t.same(await admin(f, 'GET', '/admin/ids/note/legacy/1000').then((r) => r.body), { pair })
  t.same(await admin(f, 'GET', '/admin/ids/note/new/n-3e9').then((r) => r.body), { pair })
  t.match(await admin(f, 'GET', '/admin/ids/note/legacy/77'), { status: 404, body: { code: 'FICUS_ERR_ID_UNKNOWN', detail: 'the id map has no legacy id "77" for note' } })

  const set = await admin(f, 'PUT', '/admin/ids', { json: { entity: 'note', legacy: 77, new: 'n-77', origin: 'new', reason: 'created before Ficus' } })
  t.same([set.status, set.body], [200, { pair: { entity: 'note', legacy: '77', new: 'n-77', origin: 'new' }, created: true }])
  t.same((await admin(f, 'GET', '/admin/ids/note/legacy/77')).body, { pair: { entity: 'note', legacy: '77', new: 'n-77', origin: 'new' } })
  t.match((await audit(f))[0], { who: 'local', action: 'ids-set', route: null, reason: 'created before Ficus', detail: 'id pair set: note: legacy 77 ↔ new n-77 (created on new)' })
  t.match((await admin(f, 'GET', '/admin/sync')).body, { ids: { note: 2 } })

  const again = await admin(f, 'PUT', '/admin/ids', { json: { entity: 'note', legacy: '77', new: 'n-77' } })
  t.same([again.status, again.body.created], [200, false], 'the same pair again changes nothing')
  const entries = (await audit(f)).length

  t.match(await admin(f, 'PUT', '/admin/ids', { json: { entity: 'note', legacy: '1000', new: 'n-999' } }), {
    status: 409, body: { code: 'FICUS_ERR_ID_CONFLICT', detail: 'note: legacy 1000 is already paired with new n-3e9 (created on legacy); a pair never changes once set' }
  })
  t.match(await admin(f, 'PUT', '/admin/ids', { json: { entity: 'note', legacy: '5', new: 'n-3e9' } }), {
    status: 409, body: { detail: 'note: new n-3e9 is already paired with legacy 1000 (created on legacy); a pair never changes once set' }
  })
  t.equal((await audit(f)).length, entries, 'refusals change nothing and are not audited as changes')
  t.same((await admin(f, 'GET', '/admin/ids/note/legacy/1000')).body, { pair }, 'the pair in the map is unchanged')

  // An entity no dual route names yet (its backfill comes first): set, with a warning in case of a typo.
  t.same((await admin(f, 'PUT', '/admin/ids', { json: { entity: 'order', legacy: '5', new: 'o-5' } })).body, {
    pair: { entity: 'order', legacy: '5', new: 'o-5', origin: 'legacy' },
    created: true,
    warning: 'no dual route writes or rewrites "order" yet (entities: note): check the name if it should'
  })
})

t.test('bad input gets a 4xx that says what is wrong', async (t) => {
  const { next, f } = await dualRig(t)
  next.down = true
  await wrote(f, '/api/notes', { n: 'a' })
  const cases: [string, string, { json?: unknown; body?: string; headers?: Record<string, string> }, number, string, RegExp | string][] = [
    ['GET', '/admin/sync/entries/abc', {}, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^seq: must be a positive integer \(got "abc"\)/],
    ['GET', '/admin/sync/entries/0', {}, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^seq: must be a positive integer \(got "0"\)/],
    ['GET', '/admin/sync/entries/999', {}, 404, 'FICUS_ERR_SYNC_NO_ENTRY', /^no outbox entry 999: it was delivered or skipped, or never existed/],
    ['GET', '/admin/sync/dead-letters?limit=0', {}, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'limit: must be an integer from 1 to 1000 (got "0")'],
    ['GET', '/admin/sync/dead-letters?route=notes', {}, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'unknown parameter "route"'],
    ['POST', '/admin/sync/replay', { json: {} }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^seq: is required/],
    ['POST', '/admin/sync/replay', { json: { seq: '1' } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^seq: must be a positive integer \(got "1"\)/],
    ['POST', '/admin/sync/replay', { json: { seq: 1, force: true } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^unknown field "force" \(expected \{ "seq": number, "reason"\?: text \}\)$/],
    ['POST', '/admin/sync/replay', { json: [1] }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^the body must be a JSON object/],
    ['POST', '/admin/sync/replay', { body: '{"seq": 1', headers: { 'content-type': 'application/json' } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /JSON/],
    ['POST', '/admin/sync/replay', {}, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^the body must be a JSON object/],
    ['POST', '/admin/sync/replay', { json: { seq: 1 } }, 409, 'FICUS_ERR_SYNC_ENTRY_STATE', /^entry 1 is pending \(to be delivered(; its last attempt: status_503)?\), not a dead letter: only a dead letter is replayed$/],
    ['POST', '/admin/sync/skip', { json: { seq: 999, reason: 'x' } }, 404, 'FICUS_ERR_SYNC_NO_ENTRY', /^no outbox entry 999/],
    ['POST', '/admin/sync/skip', { body: 'seq=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE', /form-urlencoded/],
    ['POST', '/admin/sync/pause', { json: { route: 'nope' } }, 404, 'FICUS_ERR_UNKNOWN_ROUTE', 'no route named "nope" (dual routes: notes-create, notes)'],
    ['POST', '/admin/sync/pause', { json: { route: 'plain' } }, 409, 'FICUS_ERR_SYNC_OFF', 'route "plain" does not have sync.mode: dual (dual routes: notes-create, notes)'],
    ['POST', '/admin/sync/pause', { json: { route: 5 } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'route: must be a route name (leave it out for every route)'],
    ['POST', '/admin/sync/resume', { json: { route: '*' } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'route: must be a route name (leave it out for every route)'],
    ['POST', '/admin/sync/drain', { json: { timeout: 'forever' } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'timeout: must be a duration up to 15m, like "30s" or "2m" (got "forever")'],
    ['POST', '/admin/sync/drain', { json: { timeout: 30 } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', /^timeout: must be a duration/],
    ['GET', '/admin/ids/note/old/1000', {}, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'side: must be legacy or new (got "old")'],
    ['PUT', '/admin/ids', { json: { entity: 'note', legacy: '1' } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'new: must be the record\'s id on new (text or a number)'],
    ['PUT', '/admin/ids', { json: { entity: 'no te', legacy: '', new: 'x', origin: 'both' } }, 400, 'FICUS_ERR_BAD_ADMIN_REQUEST', 'entity: must be an entity name like order; legacy: must be 1 to 512 characters; origin: must be legacy or new (the side that created the record; default legacy)'],
    ['DELETE', '/admin/sync/entries/1', {}, 404, 'FICUS_ERR_ADMIN_NOT_FOUND', 'DELETE /admin/sync/entries/1']
  ]
  for (const [method, path, opts, status, code, detail] of cases) {
    const r = await admin(f, method, path, opts)
    t.equal(r.status, status, `${method} ${path} ${opts.body ?? JSON.stringify(opts.json) ?? ''}: ${r.text}`)
    t.equal(r.body.code, code)
    if (typeof detail === 'string') t.equal(r.body.detail, detail)
    else t.match(r.body.detail, detail)
  }
  t.same((await audit(f)).filter((e) => e.action.startsWith('sync') || e.action === 'ids-set'), [], 'nothing refused was audited as done')
  t.match((await admin(f, 'GET', '/admin/sync')).body, { pending: 1, paused: [] }, 'and nothing changed')
})

t.test('with tokens, every sync and ids endpoint needs one; refused changes are audited, accepted ones name the token', async (t) => {
  const { f } = await dualRig(t, { admin: { host: '127.0.0.1', port: 0, tokens: { ops: 'tok-ops' } } })
  await wrote(f, '/api/notes', { n: 'a' })
  const calls: [string, string, unknown?][] = [
    ['GET', '/admin/sync'], ['GET', '/admin/sync/dead-letters'], ['GET', '/admin/sync/entries/1'], ['GET', '/admin/ids/note/legacy/1000'],
    ['POST', '/admin/sync/replay', { seq: 1 }], ['POST', '/admin/sync/skip', { seq: 1 }], ['POST', '/admin/sync/pause', {}],
    ['POST', '/admin/sync/resume', {}], ['POST', '/admin/sync/drain', {}], ['PUT', '/admin/ids', { entity: 'note', legacy: '1', new: 'n-1' }]
  ]
  for (const [method, path, json] of calls) {
    const r = await admin(f, method, path, { ...(json === undefined ? {} : { json }), token: 'wrong' })
    t.match(r, { status: 401, body: { code: 'FICUS_ERR_UNAUTHORIZED' } }, `${method} ${path} with a wrong token`)
  }
  const refused = (await audit(f, '', { token: 'tok-ops' })).filter((e) => e.action === 'refused').map((e) => e.detail)
  t.same(refused.reverse(), calls.filter(([m]) => m !== 'GET').map(([m, p]) => `${m} ${p} from 127.0.0.1`), 'each refused change audited')
  t.match(await admin(f, 'POST', '/admin/sync/pause', { json: { route: 'notes', reason: 'maintenance' }, token: 'tok-ops' }), { status: 200 })
  t.match((await audit(f, '', { token: 'tok-ops' }))[0], { who: 'ops', action: 'sync-pause', route: 'notes', reason: 'maintenance' })
  t.match(await admin(f, 'GET', '/admin/sync', { token: 'tok-ops' }), { status: 200, body: { paused: ['notes'] } })
})

t.test('with no dual route, /admin/sync says so (409) and creates no store; the id map can be set for a backfill', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const path = join(t.testdir(), 'ficus.lmdb')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } },
    store: { kind: 'embedded', path },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0 }]
  })
  for (const [method, path, json] of [
    ['GET', '/admin/sync'], ['GET', '/admin/sync/dead-letters'], ['GET', '/admin/sync/entries/1'], ['POST', '/admin/sync/pause', {}],
    ['POST', '/admin/sync/drain', {}]
  ] as [string, string, unknown?][]) {
    t.match(await admin(f, method, path, json === undefined ? {} : { json }), {
      status: 409,
      body: { code: 'FICUS_ERR_SYNC_OFF', error: 'Dual writes are not in use there: no route (or not the one named) has sync.mode: dual', detail: 'no route has sync.mode: dual in routes.yaml, so no write is recorded for the other side (docs/sync.md)' }
    }, `${method} ${path}`)
  }
  t.equal(existsSync(path), false, 'no store file was created')

  t.match(await admin(f, 'GET', '/admin/ids/note/legacy/1'), { status: 404, body: { code: 'FICUS_ERR_ID_UNKNOWN' } })
  t.same((await admin(f, 'PUT', '/admin/ids', { json: { entity: 'note', legacy: '1', new: 'n-1', reason: 'backfill' } })).body, {
    pair: { entity: 'note', legacy: '1', new: 'n-1', origin: 'legacy' },
    created: true,
    warning: 'no dual route writes or rewrites "note" yet (no route is dual): check the name if it should'
  })
  t.match((await audit(f))[0], { action: 'ids-set', reason: 'backfill' })
  t.equal(existsSync(path), true, 'the id map is in the store the dual routes will use')
})
