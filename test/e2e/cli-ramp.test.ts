import t, { type Test } from 'tap'
import { admin } from '../helpers/admin.js'
import { startTestFicus } from '../helpers/ficus.js'
import type { RampView } from '../../src/control/ramp-control.js'
import { rampDoc, rampUpstreams, testPlan } from '../helpers/ramp-rig.js'
import { CLI, run } from '../helpers/spawn.js'
import { closedPort } from '../helpers/upstream.js'

/**
 * `ficus ramp …` (docs/ramp.md "Operating a ramp"), the built CLI run as a process against a
 * running Ficus whose route `items` has a ramp plan, as an operator runs it. Each step holds
 * an hour, so nothing but the commands moves the ramp here (the ramp's own advances are
 * test/integration/ramp.test.ts's). The admin API has a token, `ops`: the commands send it, and
 * each decision is made by its name. Every command's effect is in place when it exits, so
 * the test reads the API right after, with no wait.
 */

const TOKEN = 'tok-ops'

async function ramped(t: Test) {
  const rig = await rampUpstreams(t)
  const plan = testPlan({ steps: [1, 5, 10, 25, 50, 100].map((n) => ({ new: n, hold: '1h' })) })
  const doc = rampDoc(rig, t.testdir(), plan, { admin: { host: '127.0.0.1', port: 0, tokens: { ops: TOKEN } } })
  doc.routes = [...doc.routes as unknown[], { name: 'plain', match: { path: '/plain/*' }, new: 0 }]
  const f = await startTestFicus(t, doc)
  const cli = async (...args: string[]): Promise<{ code: number | null; out: string; err: string }> => {
    const p = run(t, CLI, args, { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: TOKEN })
    const code = await p.exitCode()
    return { code, out: p.stdout, err: p.stderr }
  }
  /** The share of new in effect for `items`, as the admin API shows it. */
  const newShare = async (): Promise<unknown> => {
    const r = await admin(f, 'GET', '/admin/routes', { token: TOKEN })
    return (r.body.routes as { name: string; new: { value: number | null } }[]).find((x) => x.name === 'items')?.new.value
  }
  /** The ramp of `items`, as the admin API shows it. */
  const rampNow = async (): Promise<RampView> => {
    const r = await admin(f, 'GET', '/admin/ramp/items', { token: TOKEN })
    if (r.status !== 200) throw new Error(`GET /admin/ramp/items answered ${r.status}: ${r.text}`)
    return r.body as unknown as RampView
  }
  return { f, cli, newShare, rampNow }
}

t.test('ficus ramp status, start, pause, resume, hold, advance --force and abort, as an operator runs them', async (t) => {
  const { cli, newShare, rampNow } = await ramped(t)

  const notRamping = 'items: not ramping (plan canary: 1 % → 5 % → 10 % → 25 % → 50 % → 100 %); ficus ramp start items\n'
  const [before, all] = await Promise.all([cli('ramp', 'status', 'items'), cli('ramp')])
  t.same(before, { code: 0, out: notRamping, err: '' }, 'no history before a start')
  t.same(all, { code: 0, out: notRamping, err: '' }, 'ramp alone is ramp status, of the ramped routes only')

  const start = await cli('ramp', 'start', 'items', '--reason', 'canary on new')
  t.equal(start.code, 0, start.err)
  t.match(start.out, /^items: step 1 of 6 \(new 1 %\), held .+? of .+?, 0 requests on new\n(  \S+ +(pass|hold|fail) .*\n)+  verdict: hold: needs .*\n$/)
  t.equal(await newShare(), 1, 'the first step is in effect')

  const status = await cli('ramp', 'status', 'items')
  t.equal(status.code, 0, status.err)
  t.match(status.out, /^items: step 1 of 6 \(new 1 %\)/)
  t.match(status.out, /\n\nhistory:\n {2}\d{4}-\d\d-\d\dT[\d:.]+Z {2}start {4}by ops: canary on new\n$/, 'the start, by the token\'s name, with its reason')

  const pause = await cli('ramp', 'pause', 'items', '--reason', 'looking at a report')
  t.equal(pause.code, 0, pause.err)
  t.match(pause.out, /^items: step 1 of 6 \(new 1 %\).*\n  PAUSED by ops: looking at a report\n/)
  const resume = await cli('ramp', 'resume', 'items')
  t.equal(resume.code, 0, resume.err)
  t.match(resume.out, /^items: step 1 of 6 \(new 1 %\)/)
  const hold = await cli('ramp', 'hold', 'items', '--reason', 'weekend')
  t.equal(hold.code, 0, hold.err)
  t.match(hold.out, /^items: step 1 of 6 \(new 1 %\).*\n  HOLDING by ops: weekend\n/)
  t.match(await rampNow(), { phase: 'holding', step: 1, percent: 1 })
  t.equal((await cli('ramp', 'resume', 'items')).code, 0)

  const unforced = await cli('ramp', 'advance', 'items')
  t.equal(unforced.code, 2, 'a usage error: nothing sent')
  t.match(unforced.err, /^ficus: ramp advance needs --force: a ramp advances by itself when its gates pass; --force skips them/)
  t.match(await rampNow(), { phase: 'running', step: 1 }, 'still at step 1')

  const advance = await cli('ramp', 'advance', 'items', '--force', '--reason', 'enough evidence from staging')
  t.equal(advance.code, 0, advance.err)
  t.match(advance.out, /^items: step 2 of 6 \(new 5 %\)/)
  t.equal(await newShare(), 5)

  const [json, jsonAll] = await Promise.all([cli('ramp', 'status', 'items', '--json'), cli('ramp', 'status', '--json')])
  t.equal(json.code, 0, json.err)
  t.match(JSON.parse(json.out), { route: 'items', plan: 'canary', phase: 'running', step: 2, steps: 6, percent: 5, text: /^items: step 2 of 6/, evaluation: { action: 'hold' } })
  t.equal(jsonAll.code, 0, jsonAll.err)
  t.match(JSON.parse(jsonAll.out), { ramps: [{ route: 'items', step: 2 }] })
  t.equal((JSON.parse(jsonAll.out) as { ramps: unknown[] }).ramps.length, 1)

  const abort = await cli('ramp', 'abort', 'items', '--reason', 'new is wrong')
  t.equal(abort.code, 0, abort.err)
  t.match(abort.out, /^items: aborted: new 0 % at step 2 of 6, \S+ by ops: new is wrong\n$/)
  t.equal(await newShare(), 0, 'the route is back on legacy')

  const after = await cli('ramp', 'status', 'items')
  t.equal(after.code, 0, after.err)
  const history = after.out.split('\n\nhistory (last 5 of 7):\n')[1]
  t.ok(history !== undefined, after.out)
  // start, pause, resume, hold, resume, advance, abort: the last five.
  t.match((history ?? '').trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/)), [
    [/^\d{4}-/, 'resume', 'by ops'],
    [/^\d{4}-/, 'hold', 'by ops: weekend'],
    [/^\d{4}-/, 'resume', 'by ops'],
    [/^\d{4}-/, 'advance', 'by ops: enough evidence from staging'],
    [/^\d{4}-/, 'abort', 'by ops: new is wrong']
  ], 'the last five decisions, oldest first')
})

t.test('ficus ramp fails clearly: a refused move, no plan, an unknown route (exit 1); wrong usage (exit 2)', async (t) => {
  const { f, cli, rampNow } = await ramped(t)
  // None of these changes anything: they run side by side.
  const usage = [['ramp', 'start'], ['ramp', 'start', 'items', 'extra'], ['ramp', 'pause', 'items', '--force'], ['ramp', 'status', 'items', 'extra'], ['ramp', 'go', 'items'], ['ramp', 'advance']]
  const [notRamping, noPlan, unknownStatus, unknownStart, ...wrong] = await Promise.all([
    cli('ramp', 'pause', 'items'), cli('ramp', 'start', 'plain'), cli('ramp', 'status', 'nope'), cli('ramp', 'start', 'nope'),
    ...usage.map(async (args) => cli(...args))
  ])
  t.match(notRamping, { code: 1, out: '', err: /^ficus: .*items has no ramp in progress: ficus ramp start items \[FICUS_ERR_RAMP_STATE\]\n$/ })
  t.match(noPlan, { code: 1, out: '', err: /route "plain" has no ramp plan in routes\.yaml.*\[FICUS_ERR_RAMP_NO_PLAN\]\n$/ })
  t.match(unknownStatus, { code: 1, out: '', err: /no route named "nope".*\[FICUS_ERR_UNKNOWN_ROUTE\]/ })
  t.match(unknownStart, { code: 1, out: '', err: /no route named "nope".*\[FICUS_ERR_UNKNOWN_ROUTE\]/ })
  usage.forEach((args, i) => { t.match(wrong[i], { code: 2, out: '', err: /^ficus: .*\n\nUsage: ficus/ }, args.join(' ')) })
  const noToken = run(t, CLI, ['ramp', 'status'], { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: '' })
  const down = run(t, CLI, ['ramp', 'status', '--admin-url', `http://127.0.0.1:${await closedPort()}`])
  t.equal(await noToken.exitCode(), 1)
  t.match(noToken.stderr, /FICUS_ERR_UNAUTHORIZED/)
  t.equal(await down.exitCode(), 1)
  t.match(down.stderr, /cannot reach the Ficus admin API/)
  t.match(await rampNow(), { phase: 'none', history: [] }, 'no usage error reached Ficus')
})
