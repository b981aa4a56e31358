import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { request } from 'undici'
import { admin, summary } from '../helpers/admin.js'
import { CLI, ROOT, run } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

/** Waits for the shadows of requests already answered: polls the summary, the only view from outside the process. */
async function waitForCompared(adminUrl: string, route: string, n: number): Promise<void> {
  let seen = 0
  await waitFor(async () => {
    const { comparisons: c } = await summary(adminUrl, route)
    seen = c.match + c.diverged
    return seen >= n
  }, { message: () => `${route}: ${n} comparisons were not completed (${seen} were)` })
}

t.test('npm run demo: sample backends, Ficus, a traffic summary, and a proxy to curl', async (t) => {
  const p = run(t, join(ROOT, 'dist', 'demo', 'run-demo.js'), [], { LEGACY_PORT: '0', NEW_PORT: '0', FICUS_PORT: '0', FICUS_ADMIN_PORT: '0' })
  const out = await p.waitFor(/Ctrl-C stops the demo\./, { timeoutMs: 40_000, message: 'the demo did not finish its traffic summary' })
  const proxy = /proxy\s+(http:\/\/\S+)/.exec(out)?.[1] as string
  const adminUrl = /admin\s+(http:\/\/\S+)\/metrics/.exec(out)?.[1] as string
  t.match(out, /\/api\/customers\/1\s+route customers\s+new: 100 %\s+→ 20 on new,\s+0 on legacy/)
  t.match(out, /\/api\/orders\/1\s+route orders\s+new:\s+25 %/)
  t.match(out, /\/api\/reports\/daily\s+route reports\s+new:\s+0 %\s+→\s+0 on new, 20 on legacy/)
  t.match(out, /\/api\/customers\/3 .* 0 on new, 20 on legacy .*fallback/)
  t.match(out, /new's breaker on route customers: open after 5 failures in a row \(status_503\)/, 'new was ejected from the route')
  t.match(out, /ficus_fallbacks_total\{route="customers",reason="status_503"\} 5\n/, 'five 503s, each answered by legacy')
  t.match(out, /ficus_fallbacks_total\{route="customers",reason="ejected"\} 15\n/, 'then legacy answered without new being asked')
  t.notMatch(out, /\} 0\n/, 'no series at 0 is shown')
  const alice1 = await request(`${proxy}/api/orders/1`, { headers: { 'x-user-id': 'alice' } })
  const alice2 = await request(`${proxy}/api/orders/1`, { headers: { 'x-user-id': 'alice' } })
  t.equal(alice1.headers['x-ficus-backend'], alice2.headers['x-ficus-backend'], 'sticky')
  t.match(await alice1.body.json(), { id: 1, currency: 'EUR' })
  await alice2.body.dump()
  t.match((await admin(adminUrl, 'GET', '/metrics')).text, /ficus_requests_total\{route="orders"/)

  // Shadow comparisons: the deliberate differences show, the ignored ones do not.
  t.match(out, /orders\s+20\s+0\s+20\s+100\.0 %/, 'every orders read diverged')
  t.match(out, /reports\s+20\s+20\s+0\s+0\.0 %/, 'reports match')
  for (const field of ['body.amount', 'body.customerName', 'body.customer_name']) t.match(out, new RegExp(`${field.replace('.', '\\.')}\\s+20\\s`), field)
  t.notMatch(out, /body\.meta|body\.items/, 'meta is ignored and items are matched by sku')
  // Dual writes: ids differ per side, every id a client got reads back after new and after a rollback.
  t.match(out, /POST \/api\/notes\s+legacy → id 1000; new holds it as n-3e9/)
  t.match(out, /routes moved to new: GET \/api\/notes\/1000 → new answers \{"text":"written on legacy","id":"n-3e9"\}/)
  t.match(out, /POST \/api\/notes\s+new\s+→ id n-3ea; legacy holds it as 1001/)
  t.match(out, /rollback: GET \/api\/notes\/n-3ea → legacy answers \{"text":"written on new","id":"1001"\}/)
  // Verify: the note edited on new alone is found, through the id map; the other matches.
  t.match(out, /2 notes on legacy, 2 on new: 1 matched, 1 mismatched: 1000 \(new n-3e9\) body\.text changed/)
  // The ramp: new's slow reports fail the paired latency gate, and the route is rolled back.
  t.match(out, /step 1 \(new 5 %\), \d+ requests later: gates failed at step 1 \(new 5 %\): 100\.0 % of \d+ paired requests had new slower by more than 50 ms/)
  t.match(await admin(adminUrl, 'GET', '/admin/ramp/reports'), { status: 200, body: { phase: 'rolled_back', percent: 0 } })
  const status = run(t, CLI, ['ramp', 'status', 'reports', '--admin-url', adminUrl])
  t.equal(await status.exitCode(), 0, status.stderr)
  t.match(status.stdout, /reports: ROLLED BACK to new 0 % at step 1 of 3/)
  // The printed create, with the real curl: then the id it gave reads back.
  const create = /^\s+(curl -s \S+\/api\/notes -H .*-d '\{"text":"hi"\}')/m.exec(out)?.[1] as string
  const made = JSON.parse((await promisify(execFile)('/bin/sh', ['-c', create])).stdout) as { id: string }
  t.equal(made.id, '1002', 'legacy answers the notes routes again, and gives its next id')
  const again = await request(`${proxy}/api/notes/${made.id}`)
  t.same(await again.body.json(), { text: 'hi', id: '1002' })
  // The printed curl loop, with the real curl, then the printed divergences command.
  const loop = /^\s+(for i in .*done)$/m.exec(out)?.[1] as string
  await promisify(execFile)('/bin/sh', ['-c', loop])
  await waitForCompared(adminUrl, 'orders', 20 + 2 + 50)
  const cli = run(t, CLI, ['divergences', 'orders', '--admin-url', adminUrl])
  t.equal(await cli.exitCode(), 0)
  t.match(cli.stdout, /^orders: 72 compared, 72 diverged \(100\.0 %\), 0 errors, 0 skipped$/m)
  t.match(cli.stdout, /body\.amount\s+72\s+type 72/)
  p.child.kill('SIGTERM')
  t.equal(await p.exitCode(), 0)
})
