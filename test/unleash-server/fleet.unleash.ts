import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { bucket } from '../../src/core/bucket.js'
import { admin, routes } from '../helpers/admin.js'
import { sample } from '../helpers/ficus.js'
import { CLI, listening, run } from '../helpers/spawn.js'
import { createFlexibleRolloutFlag, setEnabled, setRollout, startUnleash } from '../helpers/unleash-server.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * `npm run test:unleash`: a real Unleash server (unleash-server 7.5.1 on a PostgreSQL 15
 * cluster made for the run) and a real `ficus start` process. The release manager's path:
 * a flexibleRollout flag for a route, 30 → 50 % seen by the proxy within refreshInterval
 * + 1 s with no user moving back, `ficus set` changing the flag in Unleash, the flag off
 * sending everyone to legacy, and Unleash going away: the proxy keeps its last state and
 * still exits cleanly on SIGTERM.
 */

const REFRESH_MS = 1_000

/** The flexibleRollout's rollout of a flag in Unleash itself. */
async function rolloutIn (unleash: { url: string; adminToken: string }, flag: string): Promise<string | undefined> {
  const r = await request(`${unleash.url}/admin/projects/default/features/${flag}/environments/development/strategies`, { headers: { authorization: unleash.adminToken } })
  const strategies = await r.body.json() as { parameters: { rollout: string } }[]
  return strategies[0]?.parameters.rollout
}
/** Two upstreams, and a routes.yaml on them whose flags come from `unleash` (admin token included), with `rest` appended. */
async function fleetConfig (t: Test, unleash: { url: string }, appName: string, rest: readonly string[]): Promise<string> {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const config = join(t.testdir({}), 'routes.yaml')
  await writeFile(config, [
    'version: 1',
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    `upstreams: { legacy: { url: "${legacy.url}" }, new: { url: "${next.url}" } }`,
    'sticky: header:x-user-id',
    'state: ficus-state.json',
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'unleash:',
    `  url: "${unleash.url}"`,
    `  appName: ${appName}`,
    '  token: ${UNLEASH_TOKEN}',
    `  refreshInterval: ${REFRESH_MS}ms`,
    '  admin: { token: "${UNLEASH_ADMIN_TOKEN}" }',
    ...rest,
    ''
  ].join('\n'))
  return config
}

const USERS = Array.from({ length: 200 }, (_, i) => `user-${i}`)
const expected = (share: number): Map<string, string> => new Map(USERS.map((u) => [u, bucket('orders', u) <= share ? 'new' : 'legacy']))

// One Unleash server (and its PostgreSQL) for the file, ~30 s to start: the ramp's test runs
// first, the fleet's last (it ends by killing Unleash).
const server = startUnleash(t)
server.catch(() => {}) // each test awaits it, and fails with its error

t.test('a ramp on a flagged route drives the flag in a real Unleash, and pauses when someone changes the flag there', async (t) => {
  const unleash = await server
  await createFlexibleRolloutFlag(unleash, 'items-new', { rollout: 0, groupId: 'items' })
  const config = await fleetConfig(t, unleash, 'ficus-ramp-test', [
    'ramp:',
    '  evaluateEvery: 100ms',
    '  plans:',
    '    canary:',
    '      steps: [{ new: 10, hold: 300ms }, { new: 50, hold: 1h }, { new: 100 }]',
    'routes:',
    '  - { name: items, match: { path: "/items/*" }, flag: items-new, ramp: canary }'
  ])
  const ficus = run(t, CLI, ['start', '--config', config], { UNLEASH_TOKEN: unleash.clientToken, UNLEASH_ADMIN_TOKEN: unleash.adminToken })
  const { admin: adminUrl } = await listening(ficus)
  await ficus.waitFor(/flags synchronized with Unleash/, { timeoutMs: 30_000, message: 'ficus did not synchronize with the real Unleash' })
  const ramp = async (): Promise<Record<string, unknown>> => (await admin(adminUrl, 'GET', '/admin/ramp/items')).body

  const started = await admin(adminUrl, 'POST', '/admin/ramp/items/start', { json: { reason: 'fleet canary' } })
  t.equal(started.status, 200, started.text)
  t.equal(await rolloutIn(unleash, 'items-new'), '10', 'step 1 is the flag\'s rollout in Unleash')
  // Step 1 holds 300 ms and has no gates: the controller advances, through Unleash.
  await waitFor(async () => (await rolloutIn(unleash, 'items-new')) === '50', { timeoutMs: 15_000, message: 'the ramp did not set the flag to 50 % in Unleash' })
  await waitFor(async () => (await routes(adminUrl)).find((x) => x.name === 'items')?.new.value === 50, { timeoutMs: 10_000, message: 'the proxy did not see its own change come back from Unleash' })
  t.match(await ramp(), { phase: 'running', step: 2, percent: 50 })

  // A person moves the flag in Unleash: the ramp pauses rather than set it back.
  await setRollout(unleash, 'items-new', 30)
  const paused = await waitFor(async () => {
    const r = await ramp()
    return r.phase === 'paused' ? r : null
  }, { timeoutMs: 20_000, message: 'the ramp did not pause after the flag was changed in Unleash' })
  t.match(paused, { by: 'unleash', reason: /the flag items-new's rollout was changed in Unleash to 30 % \(the ramp had set 50 %\)/ })
  t.equal(await rolloutIn(unleash, 'items-new'), '30', 'the person\'s change stands')
  // Resumed: the step's 50 % is set again in Unleash.
  t.match(await admin(adminUrl, 'POST', '/admin/ramp/items/resume', { json: { reason: 'checked' } }), { status: 200, body: { phase: 'running', percent: 50 } })
  t.equal(await rolloutIn(unleash, 'items-new'), '50')
  // An abort takes new off the route on this replica at once and in Unleash for the fleet.
  t.match(await admin(adminUrl, 'POST', '/admin/ramp/items/abort', { json: { reason: 'stop' } }), { status: 200, body: { phase: 'aborted', percent: 0 } })
  t.equal(await rolloutIn(unleash, 'items-new'), '0')
  t.equal((await routes(adminUrl)).find((x) => x.name === 'items')?.new.value, 0)
  const metrics = (await admin(adminUrl, 'GET', '/metrics')).text
  t.equal(sample(metrics, 'ficus_ramp_transitions_total', { route: 'items', to: 'paused', reason: 'manual' }), 1)
  ficus.child.kill('SIGTERM')
  t.equal(await ficus.exitCode(), 0)
})

t.test('a fleet flag in a real Unleash drives the proxy', async (t) => {
  const unleash = await server
  await createFlexibleRolloutFlag(unleash, 'orders-new', { rollout: 30, groupId: 'orders' })
  const config = await fleetConfig(t, unleash, 'ficus-fleet-test', ['exposeBackend: true', 'routes:', '  - { name: orders, match: { path: "/orders/*" }, flag: orders-new }'])
  const ficus = run(t, CLI, ['start', '--config', config], { UNLEASH_TOKEN: unleash.clientToken, UNLEASH_ADMIN_TOKEN: unleash.adminToken })
  const { traffic, admin: adminUrl } = await listening(ficus)

  const sides = async (): Promise<Map<string, string>> => {
    const m = new Map<string, string>()
    await Promise.all(USERS.map(async (u) => {
      const r = await request(`${traffic}/orders/${u}`, { headers: { 'x-user-id': u } })
      await r.body.dump()
      m.set(u, String(r.headers['x-ficus-backend']))
    }))
    return m
  }
  const share = async (): Promise<unknown> => (await routes(adminUrl)).find((x) => x.name === 'orders')?.new.value
  /** Runs `change` and resolves with the milliseconds until the proxy logs the route's share going from `before` to `after`. */
  const applied = async (change: () => Promise<void>, before: number, after: number): Promise<number> => {
    const start = performance.now()
    await change()
    await ficus.waitFor(new RegExp(`"route":"orders","flag":"orders-new","before":${before},"after":${after}`), { message: `the proxy did not log the share going from ${before} to ${after} %` })
    return performance.now() - start
  }

  await ficus.waitFor(/flags synchronized with Unleash/, { timeoutMs: 30_000, message: 'ficus did not synchronize with the real Unleash' })
  t.equal((await admin(adminUrl, 'GET', '/readyz')).status, 200, 'ready once synchronized')
  t.equal(await share(), 30)
  const at30 = await sides()
  t.same(at30, expected(30), 'users on new at 30 % = Ficus\'s own bucketing of the same users')

  const to50 = await applied(() => setRollout(unleash, 'orders-new', 50), 30, 50)
  t.ok(to50 <= REFRESH_MS + 1_000, `30 → 50 % seen by the proxy in ${Math.round(to50)} ms (bound: refreshInterval + 1 s)`)
  const at50 = await sides()
  t.same(at50, expected(50))
  t.same(USERS.filter((u) => at30.get(u) === 'new' && at50.get(u) !== 'new'), [], 'no user moved from new back to legacy')

  // ficus set on a flagged route goes to Unleash (fleet-wide), audited.
  const set = run(t, CLI, ['set', 'orders', '--new', '60', '--reason', 'step 3', '--admin-url', adminUrl])
  t.equal(await set.exitCode(), 0, set.stderr)
  t.match(set.stdout, /orders: new 60 % \(flag orders-new\)/)
  t.equal(await rolloutIn(unleash, 'orders-new'), '60', 'the rollout changed in Unleash itself')
  const audit = run(t, CLI, ['audit', '--json', '--admin-url', adminUrl])
  t.equal(await audit.exitCode(), 0)
  t.match(JSON.parse(audit.stdout), { entries: [{ action: 'set', route: 'orders', before: { new: 50 }, after: { new: 60 }, reason: 'step 3', detail: /in Unleash/ }] })

  const off = await applied(() => setEnabled(unleash, 'orders-new', false), 60, 0)
  t.ok(off <= REFRESH_MS + 1_000, `flag off seen in ${Math.round(off)} ms`)
  t.ok([...(await sides()).values()].every((s) => s === 'legacy'), 'flag off: every user on legacy')
  const metrics = (await admin(adminUrl, 'GET', '/metrics')).text
  t.equal(sample(metrics, 'ficus_rollbacks_total', { route: 'orders', trigger: 'flag' }), 1, 'counted as a rollback by flag')

  await applied(() => setEnabled(unleash, 'orders-new', true), 0, 60)
  const before = await sides()

  // Unleash goes away: the proxy keeps the last state it fetched.
  await unleash.kill()
  await ficus.waitFor(/Unleash cannot be reached: serving the last flags/, { message: 'ficus did not notice Unleash going away' })
  t.same(await sides(), before, 'the same users on the same sides during the outage')
  const during = (await admin(adminUrl, 'GET', '/metrics')).text
  t.equal(sample(during, 'ficus_flag_source_ready'), 0)
  t.ok((sample(during, 'ficus_flag_errors_total', { kind: 'fetch' }) ?? 0) >= 1)

  ficus.child.kill('SIGTERM')
  t.equal(await ficus.exitCode(), 0, 'exits cleanly on SIGTERM while Unleash is unreachable')
  t.notMatch(ficus.stderr, /Unhandled|uncaught/i)
})
