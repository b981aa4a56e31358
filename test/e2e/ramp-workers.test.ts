import { join } from 'node:path'
import t from 'tap'
import type { RampView } from '../../src/control/ramp-control.js'
import { admin } from '../helpers/admin.js'
import { load, rampDoc, rampUpstreams } from '../helpers/ramp-rig.js'
import { startFicus, writeDoc } from '../helpers/sync-rig.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A ramp with `--workers 2`: the controller runs in the primary and judges the gates on every
 * worker's counters, merged (cluster/metrics.ts); each step reaches every worker.
 */

t.test('with --workers 2, a clean new advances to 100 % on the merged counters of both workers', async (t) => {
  const rig = await rampUpstreams(t)
  const dir = t.testdir()
  const file = join(dir, 'routes.yaml')
  await writeDoc(file, rampDoc(rig, dir))
  const f = await startFicus(t, file, ['--workers', '2'])
  const traffic = load(f.traffic)
  t.teardown(async () => { await traffic.stop() })
  const started = await admin(f.admin, 'POST', '/admin/ramp/items/start', { json: {} })
  t.equal(started.status, 200, started.text)
  let last: RampView | null = null
  const done = await waitFor(async () => {
    last = (await admin(f.admin, 'GET', '/admin/ramp/items')).body as unknown as RampView
    return last.phase === 'completed' ? last : null
  }, { timeoutMs: 90_000, message: () => `the ramp did not complete: ${last?.text ?? 'no answer'}` })
  await traffic.stop()
  t.equal(done.history.filter((h) => h.action === 'advance').length, 6)
  t.same([...traffic.statuses.keys()], [200], 'no user saw an error')
  // Both workers serve new to everyone now.
  const served = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${f.traffic}/api/items/${i}`, { headers: { 'x-user-id': `late${i}` } })
    served.add(`${r.headers.get('x-served-by') ?? ''}`)
    await r.text()
  }
  t.same([...served], ['new'])
  t.equal(await f.metric('ficus_ramp_step_percent', { route: 'items' }), 100, 'one value, from the primary, not summed over workers')
})
