import t from 'tap'
import { caughtUp, operatedRig, OPS_TOKEN, wrote } from '../helpers/dual.js'
import { startTestFicus } from '../helpers/ficus.js'
import { CLI, run } from '../helpers/spawn.js'
import { startUpstream } from '../helpers/upstream.js'

/**
 * `ficus ids …`, what `ficus rollback` says of dual writes on their way, and the sync commands'
 * wrong usage (docs/sync.md "Operating dual writes"): the built CLI run as a process against a
 * running Ficus with dual writes between two real records APIs on a real LMDB file.
 */


t.test('ficus ids get and set; a conflicting pair is refused', async (t) => {
  const { f, cli } = await operatedRig(t)
  await wrote(f, '/api/notes', { n: 'a' })
  await caughtUp(f, OPS_TOKEN)
  t.same(await cli('ids', 'get', 'note', 'legacy', '1000'), { code: 0, out: 'note: legacy 1000 ↔ new n-3e9 (created on legacy)\n', err: '' })
  t.same(await cli('ids', 'set', 'note', '--legacy', '77', '--new', 'n-77', '--origin', 'new', '--reason', 'made before Ficus'), { code: 0, out: 'note: legacy 77 ↔ new n-77 (created on new): set\n', err: '' })
  const conflict = await cli('ids', 'set', 'note', '--legacy', '1000', '--new', 'n-1')
  t.equal(conflict.code, 1)
  t.equal(conflict.err, 'ficus: The pair contradicts one already in the id map, where a pair never changes once set: note: legacy 1000 is already paired with new n-3e9 (created on legacy); a pair never changes once set [FICUS_ERR_ID_CONFLICT]\n')
  const unknown = await cli('ids', 'get', 'note', 'legacy', '5')
  t.equal(unknown.code, 1)
  t.match(unknown.err, /the id map has no legacy id "5" for note \[FICUS_ERR_ID_UNKNOWN\]/)
})

t.test('ficus rollback says how many writes are still on their way to each side, and how far behind it is', async (t) => {
  const { legacy, f, cli } = await operatedRig(t, { new: 100 })
  legacy.down = true
  const made = await wrote(f, '/api/notes', { n: 'a' })
  await wrote(f, `/api/notes/${String(made.id)}`, { n: 'a2' }, 'PUT')
  const r = await cli('rollback', 'notes', '--reason', 'new misbehaves')
  t.equal(r.code, 0, r.err)
  t.match(r.out, /^notes: rolled back, new 0 %\n {2}notes: writes still on their way: 1 to legacy \(\d+\.\d s behind\), 0 to new\n {2}ficus sync drain \[route\] waits until they are delivered; ficus sync dead-letters lists what waits for an operator\n$/)
  legacy.down = false
  await caughtUp(f, OPS_TOKEN)
  const after = await cli('rollback', 'notes-create')
  t.equal(after.out, 'notes-create: rolled back, new 0 %\n  notes-create: no write on its way to either side\n', 'nothing left: no hint')
})

t.test('wrong usage exits 2; sync not in use, or no token, exits 1 saying so', async (t) => {
  const usage: [string[], RegExp][] = [
    [['sync', 'show', 'abc'], /^sync show needs an entry's seq, a positive integer \(ficus sync dead-letters lists them\): ficus sync show <seq> \(got abc\)$/],
    [['sync', 'nope'], /^unknown sync command: nope \(status, dead-letters, show, replay, skip, pause, resume, drain\)$/],
    [['sync', 'drain', '--timeout', 'forever'], /^--timeout must be a duration up to 15m, like 30s or 2m$/],
    [['ids', 'get', 'note', 'old', '1'], /^the side must be legacy or new \(got old\)$/],
    [['ids', 'set', 'note', '--legacy', '1'], /^ids set needs an entity and both ids: ficus ids set <entity> --legacy <id> --new <id>/]
  ]
  for (const [args, message] of usage) {
    const p = run(t, CLI, args, { FICUS_ADMIN_URL: 'http://127.0.0.1:9' })
    t.equal(await p.exitCode(), 2, args.join(' '))
    const [first, , next] = p.stderr.split('\n')
    t.match(first?.replace(/^ficus: /, ''), message, `${args.join(' ')}: says what is wrong`)
    t.match(next, /^Usage: ficus <command>/, 'then the usage')
  }

  const legacy = await startUpstream(t, 'legacy')
  const f = await startTestFicus(t, {
    admin: { host: '127.0.0.1', port: 0, tokens: { ops: OPS_TOKEN } },
    upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0 }]
  })
  const off = run(t, CLI, ['sync', 'status'], { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: OPS_TOKEN })
  const noToken = run(t, CLI, ['ids', 'get', 'note', 'legacy', '1'], { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: '' })
  const rollback = run(t, CLI, ['rollback', 'orders'], { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: OPS_TOKEN })
  t.equal(await off.exitCode(), 1)
  t.equal(off.stderr, 'ficus: Dual writes are not in use there: no route (or not the one named) has sync.mode: dual: no route has sync.mode: dual in routes.yaml, so no write is recorded for the other side (docs/sync.md) [FICUS_ERR_SYNC_OFF]\n')
  t.equal(await noToken.exitCode(), 1)
  t.match(noToken.stderr, /pass --token or set FICUS_ADMIN_TOKEN.*\[FICUS_ERR_UNAUTHORIZED\]/)
  t.equal(await rollback.exitCode(), 0)
  t.equal(rollback.stdout, 'orders: rolled back, new 0 %\n', 'without sync, a rollback says what it always said')
})
