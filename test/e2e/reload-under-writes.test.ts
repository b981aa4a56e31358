import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { Pool } from 'undici'
import { startRecords } from '../../demo/records.js'
import { CLI, listening, run } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A saved routes.yaml is reloaded while a dual route takes writes without pause. The embedded
 * sync store lives beside routes.yaml by default and is written on every dual write; the
 * watch of the config's directory took each of its writes for a change of the directory, and
 * restarted its 200 ms debounce every time, so under steady writes no save was ever reloaded.
 */

t.test('routes.yaml is reloaded on save while the sync store beside it is written all the time', async (t) => {
  const legacy = await startRecords('legacy')
  const next = await startRecords('new')
  t.teardown(async () => { await Promise.all([legacy.close(), next.close()]) })
  const dir = t.testdir({})
  const file = join(dir, 'routes.yaml')
  const routes = (percent: number): string => [
    'version: 1',
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    `upstreams: { legacy: { url: "${legacy.url}" }, new: { url: "${next.url}" } }`,
    'sticky: header:x-user-id',
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'routes:',
    `  - { name: notes-create, match: { path: /api/notes, methods: [POST] }, new: ${percent}, sync: { mode: dual, entity: note, learn: response.body.id } }`,
    ''
  ].join('\n')
  await writeFile(file, routes(0))
  const ficus = run(t, CLI, ['start', '--config', file], { FICUS_LOG_LEVEL: 'info' }, { cwd: dir })
  const { traffic } = await listening(ficus)

  // One writer, a create every few milliseconds, until the reload is seen: the store (ficus.lmdb
  // in this directory) commits far more often than every 200 ms.
  const pool = new Pool(traffic, { connections: 1 })
  t.teardown(() => pool.destroy())
  let writing = true
  let created = 0
  const writer = (async () => {
    while (writing) {
      const r = await pool.request({ method: 'POST', path: '/api/notes', body: JSON.stringify({ n: created }), headers: { 'content-type': 'application/json' } })
      await r.body.dump()
      if (r.statusCode === 201) created++
    }
  })()
  await waitFor(() => created >= 20, { message: 'the writes did not start' })

  await writeFile(file, routes(100))
  await ficus.waitFor(/"why":"file changed".*"msg":"config reloaded"/, { timeoutMs: 10_000, message: 'a save of routes.yaml was not reloaded while the store was written' })
  const before = created
  await waitFor(() => created >= before + 5, { message: 'the writes stopped after the reload' })
  writing = false
  await writer
  t.ok(next.notes.size > 0, 'creates served by new after the reload')

  ficus.child.kill('SIGTERM')
  t.equal(await ficus.exitCode(), 0)
})
