import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { startRecords } from '../../demo/records.js'
import { admin } from '../helpers/admin.js'
import { startCluster } from '../helpers/cluster.js'

/**
 * `ficus start --workers 2` with dual writes: the workers record and deliver, the primary has
 * no traffic side, and its admin API reads and acts on the same LMDB file through a handle of
 * its own (docs/sync.md "Operating dual writes").
 */

t.test('the primary\'s /admin/sync sees what the workers recorded, and drains what they deliver', async (t) => {
  const legacy = await startRecords('legacy')
  const next = await startRecords('new')
  t.teardown(async () => { await Promise.all([legacy.close(), next.close()]) })
  const c = await startCluster(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    store: { kind: 'embedded', path: join(t.testdir(), 'ficus.lmdb') },
    sync: { retry: { base: '20ms', max: '200ms', maxAttempts: 100000 } },
    routes: [{ name: 'notes-create', match: { path: '/api/notes', methods: ['POST'] }, new: 0, sync: { mode: 'dual', entity: 'note', learn: 'response.body.id' } }]
  })
  next.down = true
  for (let i = 0; i < 4; i++) {
    // A connection each: the workers take turns.
    const r = await request(`${c.traffic}/api/notes`, { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json' }, reset: true })
    await r.body.dump()
    t.equal(r.statusCode, 201)
  }
  const st = await admin(c.admin, 'GET', '/admin/sync')
  t.match(st, { status: 200, body: { pending: 4, intents: 0, routes: [{ target: 'legacy', pending: 0 }, { target: 'new', pending: 4 }] } })
  next.down = false
  const drained = await admin(c.admin, 'POST', '/admin/sync/drain', { json: { timeout: '20s' } })
  t.match(drained.body, { drained: true, pending: 0 })
  t.equal(next.notes.size, 4, 'every create reached new')
  t.match((await admin(c.admin, 'GET', '/admin/ids/note/legacy/1003')).body, { pair: { legacy: '1003', new: /^n-3e[9abc]$/, origin: 'legacy' } })
})
