import t, { type Test } from 'tap'
import { admin } from '../helpers/admin.js'
import { startTestFicus } from '../helpers/ficus.js'
import { closedPort, startUpstream } from '../helpers/upstream.js'
import { CLI, run } from '../helpers/spawn.js'
import { diverging } from '../helpers/diverging.js'

/** The control commands (divergences, set, rollback, status, audit) against a running Ficus, as a release manager runs them. */

t.test('ficus divergences, against a running Ficus whose shadowed reads diverge', async (t) => {
  // The subtests only read (divergences changes nothing): one Ficus for all of them.
  const f = await diverging(t)

  t.test('a table of the shadowed routes', async (t) => {
    const all = run(t, CLI, ['divergences', '--admin-url', f.adminUrl, '--token', 'tok-1'])
    t.equal(await all.exitCode(), 0)
    t.match(all.stdout.split('\n').map((l) => l.split(/\s{2,}/)), [
      ['ROUTE', 'COMPARED', 'MATCH', 'DIVERGED', 'RATE', 'RATE 5M', 'ERROR', 'SKIPPED', 'TOP FIELD', 'SINCE'],
      ['orders', '3', '0', '3', '100.0 %', '100.0 %', '0', '0', 'body.body (3)', /^\d{4}-\d\d-\d\dT/],
      ['']
    ], 'only shadowed routes are listed')
    t.equal(all.stdout.trim().split('\n').length, 2)
  })

  t.test('<route>: one route in detail, field by field; --json for scripts', async (t) => {
    const one = run(t, CLI, ['divergences', 'orders'], { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: 'tok-1' })
    t.equal(await one.exitCode(), 0)
    t.match(one.stdout, /^orders: 3 compared, 3 diverged \(100\.0 %\), 0 errors, 0 skipped\n {2}since \S+: epoch 1, since Ficus started\n {2}diverged in: status 0, headers 0, body 3\n {2}last 5 min: 3 compared, 3 diverged \(100\.0 %\); last hour: 3 compared, 3 diverged \(100\.0 %\)\n/)
    t.match(one.stdout, /\nFIELD\s+COUNT\s+HOW\nbody\.body\s+3\s+missing 3\n(.*\n)*body\.served\s+3\s+changed 3\n/)
    const json = run(t, CLI, ['divergences', 'orders', '--json', '--admin-url', f.adminUrl, '--token', 'tok-1'])
    t.equal(await json.exitCode(), 0)
    t.match(JSON.parse(json.stdout), { routes: [{ route: 'orders', comparisons: { diverged: 3 } }] })
  })

  t.test('fails clearly: no token, an unknown route, Ficus not running, wrong usage', async (t) => {
    const noToken = run(t, CLI, ['divergences', '--admin-url', f.adminUrl])
    t.equal(await noToken.exitCode(), 1)
    t.match(noToken.stderr, /admin token is required.*pass --token or set FICUS_ADMIN_TOKEN.*FICUS_ERR_UNAUTHORIZED/)
    const unknown = run(t, CLI, ['divergences', 'nope', '--admin-url', f.adminUrl, '--token', 'tok-1'])
    t.equal(await unknown.exitCode(), 1)
    t.match(unknown.stderr, /no route named "nope" \(routes: orders, rest, default\)/)
    const down = run(t, CLI, ['divergences', '--admin-url', `http://127.0.0.1:${await closedPort()}`])
    t.equal(await down.exitCode(), 1)
    t.match(down.stderr, /cannot reach the Ficus admin API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); is Ficus running\?/)
    const extra = run(t, CLI, ['divergences', 'a', 'b'])
    t.equal(await extra.exitCode(), 2)
  })
})

/** Ficus with a named token `release`, orders on legacy and rest on new; `cli` runs a control command against it. */
async function controlled(t: Test) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, {
    admin: { host: '127.0.0.1', port: 0, tokens: { release: 'tok-r' } },
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0 }, { name: 'rest', match: { path: '/*' }, new: 100 }]
  })
  const env = { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: 'tok-r' }
  const cli = async (...args: string[]): Promise<{ code: number | null; out: string; err: string }> => {
    const p = run(t, CLI, args, env)
    const code = await p.exitCode()
    return { code, out: p.stdout, err: p.stderr }
  }
  /** What a release manager did before status and audit are read: orders to 25 % ("ramp"), rest rolled back ("errors"), as `release`. */
  const ramped = async (): Promise<void> => {
    for (const [method, path, json] of [['PATCH', '/admin/routes/orders', { new: 25, reason: 'ramp' }], ['POST', '/admin/rollback', { route: 'rest', reason: 'errors' }]] as const) {
      const r = await admin(f, method, path, { json, token: 'tok-r' })
      if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.text}`)
    }
  }
  return { f, cli, ramped }
}

t.test('ficus set and rollback change a running Ficus and say what is in effect; set --clear goes back to the file', async (t) => {
  const { cli } = await controlled(t)
  t.same(await cli('set', 'orders', '--new', '25', '--reason', 'ramp'), { code: 0, out: 'orders: new 25 % (override), shadow 0 % (file)\n', err: '' })
  t.same(await cli('rollback', 'rest', '--reason', 'errors'), { code: 0, out: 'rest: rolled back, new 0 %\n', err: '' })
  t.same(await cli('set', 'orders', '--clear'), { code: 0, out: 'orders: new 0 % (file), shadow 0 % (file)\n', err: '' })
})

t.test('after a ramp and a rollback, as a release manager makes them', async (t) => {
  // status and audit only read: one Ficus for both.
  const { f, cli, ramped } = await controlled(t)
  await ramped()

  t.test('ficus status: each route\'s shares, where they come from, request rates and the last change', async (t) => {
    for (let i = 0; i < 3; i++) await f.fetch('/orders/1', { headers: { 'x-user-id': `u${i}` } })
    const status = await cli('status')
    t.equal(status.code, 0)
    const rows = status.out.trim().split('\n').map((l) => l.split(/\s{2,}/))
    t.same(rows[0], ['ROUTE', 'NEW', 'SHADOW', 'SOURCE', 'LEGACY REQ/S', '5XX/S', 'NEW REQ/S', '5XX/S', 'FALLBACK/S', 'NEW BREAKER', 'DIVERGENCE', 'DIV 5M', 'LAST CHANGE'])
    // The rates themselves are tested in test/integration/control.test.ts (here no request falls in the window).
    t.match(rows[1], ['orders', '25 %', '0 %', 'override', '0.0', '0.0', '0.0', '0.0', '0.0', /^(closed|-)$/, '-', '-', /release: ramp$/])
    t.match(rows[2], ['rest', '0 %', '0 %', 'override'])
    t.match(rows[3], ['default', '0 %', '0 %', 'file'])
    const json = await cli('status', '--json')
    t.match(JSON.parse(json.out), { routes: [{ name: 'orders', new: { value: 25, source: 'override' }, requestsPerSecond: { legacy: Number, new: Number } }] })
  })

  t.test('ficus audit: the changes, newest first, with who, what and why', async (t) => {
    const audit = await cli('audit', '--limit', '5')
    t.equal(audit.code, 0)
    t.match(audit.out, /^TIME\s+WHO\s+ACTION\s+ROUTE\s+CHANGE\s+REASON\n\S+\s+release\s+rollback\s+rest\s+new 100→0, shadow 0→0\s+errors\n\S+\s+release\s+set\s+orders\s+new 0→25, shadow 0→0\s+ramp\n$/)
  })
})

t.test('ficus set and rollback refuse a bad value, an unknown route and a missing token (exit 1), wrong usage (exit 2)', async (t) => {
  const { f, cli } = await controlled(t)
  const bad = await cli('set', 'orders', '--new', '250')
  t.equal(bad.code, 1)
  t.match(bad.err, /^ficus: The admin request is invalid: new must be an integer from 0 to 100.*\[FICUS_ERR_BAD_ADMIN_REQUEST\]\n$/)
  t.match(await cli('rollback', 'nope'), { code: 1, err: /no route named "nope"/ })
  const noToken = run(t, CLI, ['rollback', '--all'], { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: '' })
  t.equal(await noToken.exitCode(), 1)
  t.match(noToken.stderr, /FICUS_ERR_UNAUTHORIZED/)
  for (const args of [['set', 'orders'], ['set', 'orders', '--new', 'five'], ['set', 'orders', '--clear', '--new', '5'], ['rollback'], ['rollback', 'a', '--all'], ['audit', '--limit', '0'], ['status', 'x']]) {
    t.equal((await cli(...args)).code, 2, args.join(' '))
  }
})
