import t, { type Test } from 'tap'
import { admin, audit } from '../helpers/admin.js'
import { caughtUp, operatedRig, OPS_TOKEN, wrote, type DualOptions } from '../helpers/dual.js'
import { waitFor } from '../helpers/wait.js'

/**
 * `ficus sync …` (docs/sync.md "Operating dual writes"), the built CLI run as a process against
 * a running Ficus with dual writes between two real records APIs on a real LMDB file, as an
 * operator runs them. `ficus ids` and what `ficus rollback` says of writes on their way:
 * cli-ids.test.ts.
 */

async function operated(t: Test, o: DualOptions = {}) {
  const rig = await operatedRig(t, o)
  const deadLetters = async (n: number): Promise<void> => {
    await waitFor(async () => (await admin(rig.f, 'GET', '/admin/sync', { token: OPS_TOKEN })).body.deadLetters === n, { message: `not ${n} dead letters` })
  }
  return { ...rig, deadLetters }
}

const cells = (out: string): string[][] => out.trimEnd().split('\n').map((l) => l.split(/\s{2,}/))

t.test('ficus sync status, dead-letters, show, replay and skip, as an operator runs them', async (t) => {
  const { next, f, storePath, cli, deadLetters } = await operated(t)
  next.down = true
  await wrote(f, '/api/notes', { n: 'a' })
  await wrote(f, '/api/notes/1000', { n: 'a2' }, 'PUT')

  const status = await cli('sync', 'status')
  t.equal(status.code, 0, status.err)
  const [table, summary] = status.out.split('\n\n') as [string, string]
  t.match(cells(table), [
    ['ROUTE', 'TO', 'PENDING', 'DEAD LETTERS', 'LAG', 'OLDEST PENDING', 'DELIVERY'],
    ['notes-create', 'legacy', '0', '0', '0.0 s', '-', 'on'],
    ['notes-create', 'new', '1', '0', /^\d+\.\d s$/, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/, 'on'],
    ['notes', 'legacy', '0', '0', '0.0 s', '-', 'on'],
    ['notes', 'new', '1', '0', /^\d+\.\d s$/, /^\d{4}-/, 'on']
  ])
  t.match(summary, new RegExp(`^pending: 2, dead letters: 0, intents: 0 \\(writes whose primary has not answered yet\\)\nbehind: legacy 0\\.0 s, new \\d+\\.\\d s\npaused: none\nid map: empty\nstore: embedded ${storePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n$`))

  next.down = false
  await caughtUp(f, OPS_TOKEN)
  let refusals = 0
  next.refuse = (method) => (method === 'PATCH' && refusals++ < 2 ? 422 : null)
  await wrote(f, '/api/notes/1000', { n: 'a3' }, 'PATCH')
  await deadLetters(1)
  const list = await cli('sync', 'dead-letters')
  t.equal(list.code, 0)
  const rows = cells(list.out)
  t.match(rows.slice(0, 2), [
    ['SEQ', 'ROUTE', 'TO', 'WRITE', 'KEY', 'ATTEMPTS', 'AGE', 'REASON'],
    [/^\d+$/, 'notes', 'new', 'PATCH /api/notes/1000', 'note:1000', '1', /^\d+\.\d s$/, 'status_422']
  ])
  t.match(list.out, /\n\nficus sync show <seq> shows one; replay <seq> delivers it again once the cause is fixed, skip <seq> drops it\.\n$/)
  const seq = rows[1]![0]!

  const show = await cli('sync', 'show', seq)
  t.equal(show.code, 0)
  t.match(show.out, new RegExp([
    `^entry ${seq}: a dead letter \\(status_422\\)`,
    'route: {5}notes',
    'key: {7}note:1000',
    'write: {5}PATCH /api/notes/1000 to new',
    'created: {3}\\S+ \\(\\d+\\.\\d s ago\\)',
    'attempts: {2}1',
    'ids: {7}note 1000 \\(path segment 3\\), as legacy knows them: translated for new at delivery',
    'headers: {3}(.*\n {11})*content-type: application/json(\n {11}.*)*',
    'body: {6}10 bytes of JSON',
    '\\{"n":"a3"\\}\n$'
  ].join('\n')))

  const replay = await cli('sync', 'replay', seq, '--reason', 'new takes it now')
  t.same(replay, { code: 0, out: `entry ${seq} (PATCH /api/notes/1000 to new) replayed: pending, delivered next, then the later writes of note:1000\n`, err: '' })
  // Refused once more: a dead letter again, which is skipped this time.
  await deadLetters(1)
  t.match((await admin(f, 'GET', '/admin/sync/dead-letters', { token: OPS_TOKEN })).body.deadLetters, [{ seq: Number(seq), attempts: 1 }], 'the replayed write, refused again')
  const skip = await cli('sync', 'skip', seq, '--reason', 'not needed on new')
  t.same(skip, { code: 0, out: `entry ${seq} (PATCH /api/notes/1000 to new) skipped: new will not get it; the later writes of note:1000 go on\n`, err: '' })
  const gone = await cli('sync', 'show', seq)
  t.equal(gone.code, 1)
  t.match(gone.err, new RegExp(`^ficus: The outbox has no entry with that seq: no outbox entry ${seq}: it was delivered or skipped, or never existed .*\\[FICUS_ERR_SYNC_NO_ENTRY\\]\n$`))
  t.match((await audit(f, '?limit=2', { token: OPS_TOKEN })), [
    { who: 'ops', action: 'sync-skip', route: 'notes', reason: 'not needed on new' },
    { who: 'ops', action: 'sync-replay', route: 'notes', reason: 'new takes it now' }
  ], 'both audited, naming the token')
})

t.test('ficus sync pause, resume and drain', async (t) => {
  const { next, f, cli } = await operated(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f, OPS_TOKEN)
  t.same(await cli('sync', 'pause', 'notes', '--reason', 'reindex'), { code: 0, out: 'delivery of notes paused: its writes are still recorded, and wait (paused: notes)\n', err: '' })
  await wrote(f, '/api/notes/1000', { n: 'a2' }, 'PUT')
  const held = await cli('sync', 'drain', 'notes', '--timeout', '20s')
  t.equal(held.code, 1, 'not drained: exit 1')
  t.match(held.out, /^notes: not drained, delivery is paused \(ficus sync resume\): 1 write left to deliver\n {2}notes → new: 1 \(new is \d+\.\d s behind\), paused\n$/)
  t.same(await cli('sync', 'resume', 'notes'), { code: 0, out: 'delivery of notes resumed (paused: none)\n', err: '' })
  const drained = await cli('sync', 'drain', '--timeout', '20s')
  t.equal(drained.code, 0, drained.err)
  t.match(drained.out, /^every route: drained, nothing left to deliver \(waited \d+\.\d s\)\n$/)
  t.same(next.notes.get('n-3e9'), { n: 'a2', id: 'n-3e9' })

  next.down = true
  await wrote(f, '/api/notes/1000', { n: 'a3' }, 'PUT')
  const timedOut = await cli('sync', 'drain', '--timeout', '300ms')
  t.equal(timedOut.code, 1)
  t.match(timedOut.out, /^every route: not drained, after 0\.\d s: 1 write left to deliver\n {2}notes → new: 1 \(new is \d+\.\d s behind\)\n$/)
})

