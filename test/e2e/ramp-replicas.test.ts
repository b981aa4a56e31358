import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { RampView } from '../../src/control/ramp-control.js'
import { admin } from '../helpers/admin.js'
import { startPostgres } from '../helpers/postgres.js'
import { rampDoc, rampUpstreams, testPlan } from '../helpers/ramp-rig.js'
import { startFicus, writeDoc, type FicusProcess } from '../helpers/sync-rig.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A fleet's ramp: two Ficus replicas (real processes) on one PostgreSQL store. Both follow
 * the ramp's record; one holds the lease and drives; killing it (SIGKILL) hands the driving
 * over to the other once the lease runs out.
 */

const view = async (r: FicusProcess): Promise<RampView> => {
  const a = await admin(r.admin, 'GET', '/admin/ramp/items')
  if (a.status !== 200) throw new Error(`GET /admin/ramp/items answered ${a.status}: ${a.text}`)
  return a.body as unknown as RampView
}
const pidOf = (driver: string | null): number | null => (driver === null ? null : Number(driver.split(':')[1]))

t.test('two replicas on one store: both follow the ramp, one drives; killing it hands over, and the other drives on', async (t) => {
  const postgres = await startPostgres(t)
  await postgres.createDatabase('ficus')
  const rig = await rampUpstreams(t)
  // No gates: a step advances when its hold is over, so only a driver can move it.
  const plan = testPlan({ steps: [{ new: 10, hold: '1h' }, { new: 50, hold: '300ms' }, { new: 100, hold: '1h' }], gates: {} })
  const replicas: FicusProcess[] = []
  const root = t.testdir() // a fresh directory each call: read once
  for (const name of ['a', 'b']) {
    const dir = join(root, name)
    mkdirSync(dir, { recursive: true })
    const file = join(dir, 'routes.yaml')
    await writeDoc(file, rampDoc(rig, dir, plan, { store: { kind: 'postgres', url: postgres.url('ficus') } }))
    replicas.push(await startFicus(t, file))
  }
  const [a, b] = replicas as [FicusProcess, FicusProcess]
  const started = await admin(a.admin, 'POST', '/admin/ramp/items/start', { json: { reason: 'fleet' } })
  t.equal(started.status, 200, started.text)
  // b follows the record: its own route goes to 10 % too.
  await waitFor(async () => (await b.metric('ficus_route_new_percent', { route: 'items' })) === 10, { message: 'replica b did not follow the ramp to 10 %' })
  t.equal(await a.metric('ficus_route_new_percent', { route: 'items' }), 10)
  // One driver, the same for both.
  const driver = await waitFor(async () => {
    const [va, vb] = await Promise.all([view(a), view(b)])
    return va.driver !== null && va.driver === vb.driver ? va.driver : null
  }, { message: 'the replicas did not agree on one driver' })
  const driving = replicas.find((r) => r.pid === pidOf(driver))!
  const other = replicas.find((r) => r !== driving)!
  t.ok(driving !== undefined, `the driver ${driver} is one of the two (${a.pid}, ${b.pid})`)
  await driving.kill()
  // The lease runs out (3 rounds, at least 2 s): the other takes it.
  const next = await waitFor(async () => {
    const v = await view(other)
    return pidOf(v.driver) === other.pid ? v.driver : null
  }, { timeoutMs: 15_000, message: 'the surviving replica did not take the driving over' })
  t.not(next, driver)
  // And drives: at step 2 (hold 300 ms, no gates) it advances by itself to 100 %.
  const forced = await admin(other.admin, 'POST', '/admin/ramp/items/advance', { json: { force: true, reason: 'on' } })
  t.match(forced, { status: 200, body: { step: 2, percent: 50 } })
  const done = await waitFor(async () => {
    const v = await view(other)
    return v.step === 3 ? v : null
  }, { timeoutMs: 15_000, message: 'the new driver did not advance the ramp' })
  t.match(done.history.at(-1), { action: 'advance', by: 'ramp' })
  t.equal(done.percent, 100)
  await waitFor(async () => (await other.metric('ficus_route_new_percent', { route: 'items' })) === 100, { message: 'the surviving replica did not apply 100 %' })
  // The killed replica comes back: it follows the record (100 %), then an abort made on it reaches the other.
  const back = await startFicus(t, driving === a ? join(root, 'a', 'routes.yaml') : join(root, 'b', 'routes.yaml'))
  await waitFor(async () => (await back.metric('ficus_route_new_percent', { route: 'items' })) === 100, { message: 'the restarted replica did not follow the ramp to 100 %' })
  t.match(await admin(back.admin, 'POST', '/admin/ramp/items/abort', { json: { reason: 'enough' } }), { status: 200, body: { phase: 'aborted', percent: 0 } })
  await waitFor(async () => (await other.metric('ficus_route_new_percent', { route: 'items' })) === 0, { message: 'the other replica did not follow the abort to 0 %' })
})
