import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { admin, audit, routes, samples, summary } from '../helpers/admin.js'
import { sample, startTestFicus, testYaml } from '../helpers/ficus.js'
import { held, startUpstream, type Handler } from '../helpers/upstream.js'

/**
 * Divergences a team can work through (docs/shadow.md "Reading divergences"): counts per
 * epoch (a reload that changes a route's compare rules, or a reset, starts one), recent
 * windows, `since`, and the audited reset, through a real Ficus between real upstreams.
 */

type Teardown = Parameters<typeof startUpstream>[0] & { testdir(): string }

const json = (body: unknown): Handler => (_req, res) => {
  const buf = Buffer.from(JSON.stringify(body))
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length })
  res.end(buf)
}

/** `orders` shadowed to a new that renames a field, changes meta and the total; Ficus started from a file the test rewrites. */
async function noisy(t: Teardown, top: Record<string, unknown> = {}) {
  const l = await startUpstream(t, 'legacy', json({ meta: { at: 1 }, customer_name: 'Ada', total: 1 }))
  const n = await startUpstream(t, 'new', json({ meta: { at: 2 }, customerName: 'Ada', total: 2 }))
  const file = join(t.testdir(), 'routes.yaml')
  const doc = (compare: Record<string, unknown> | undefined, newShare = 0): Record<string, unknown> => ({
    ...top,
    upstreams: { legacy: { url: l.url }, new: { url: n.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: newShare, shadow: 100, ...(compare === undefined ? {} : { compare }) }, { name: 'rest', match: { path: '/*' }, new: 0 }]
  })
  const f = await startTestFicus(t, doc(undefined), { file })
  const reads = async (count: number, path = '/orders/1'): Promise<void> => {
    for (let i = 0; i < count; i++) await f.fetch(path)
    await f.shadowIdle()
  }
  const reload = async (compare: Record<string, unknown> | undefined, newShare = 0): Promise<string> => {
    await writeFile(file, testYaml(doc(compare, newShare)))
    return f.running.reload('test')
  }
  return { f, reads, reload }
}

const fieldsOf = (s: { topFields: readonly { field: string; count: number }[] }): [string, number][] => s.topFields.map((x) => [x.field, x.count])

t.test('after a reload that adds two rules, the old noise no longer tops the list; a new epoch says why', async (t) => {
  const { f, reads, reload } = await noisy(t)
  await reads(5)
  const before = await summary(f, 'orders')
  t.match(before, { epoch: { n: 1, why: 'start' }, comparisons: { diverged: 5 } })
  t.same(fieldsOf(before).map(([x]) => x).sort(), ['body.customerName', 'body.customer_name', 'body.meta.at', 'body.total'])

  t.equal(await reload(undefined, 10), 'success')
  t.match(await summary(f, 'orders'), { epoch: { n: 1 }, comparisons: { diverged: 5 } }, 'a reload that leaves the compare rules alone keeps the epoch')

  t.equal(await reload({ ignore: ['body.meta'], paths: [{ legacy: 'body.customer_name', new: 'body.customerName' }] }), 'success')
  await reads(2)
  const after = await summary(f, 'orders')
  t.match(after, { epoch: { n: 2, why: 'reload', reason: null }, comparisons: { match: 0, diverged: 2 }, kinds: { body: 2 } })
  t.equal(after.since, after.epoch.startedAt)
  t.same(fieldsOf(after), [['body.total', 2]], 'only what still differs under the new rules')
  t.equal(sample(await f.scrape(), 'ficus_divergences_total', { route: 'orders', kind: 'body' }), 7, 'the Prometheus counter keeps counting')
  t.same((await samples(f, '?route=orders&since=epoch')).map((s) => s.differences.map((d) => d.path)), [['body.total'], ['body.total']], 'samples of this epoch')
  t.equal((await samples(f, '?route=orders')).length, 7, 'older samples are kept, marked with their epoch')
  t.same([...new Set((await samples(f, '?route=orders')).map((s) => s.epoch))], [2, 1])
})

t.test('recent windows, the 5-minute divergence rate in /admin/routes, and counts since a time', async (t) => {
  const { f, reads } = await noisy(t)
  await reads(3)
  const s = await summary(f, 'orders')
  t.match(s.windows, { '5m': { comparisons: { diverged: 3 }, divergenceRate: 1 }, '1h': { comparisons: { diverged: 3 }, divergenceRate: 1 } })
  const views = await routes(f)
  t.same(views.map((r) => [r.name, r.divergence5m]), [['orders', 1], ['rest', null], ['default', null]])
  const since = (await admin(f, 'GET', '/admin/divergences/summary?route=orders&since=15m')).body as { routes: { comparisons: { diverged: number }; since: string }[] }
  t.match(since.routes[0], { comparisons: { diverged: 3 } })
  t.equal(since.routes[0]?.since, s.epoch.startedAt, '15 minutes reach back past the epoch\'s start: the epoch is what is counted')
  t.match(await admin(f, 'GET', '/admin/divergences/summary?since=2h'), { status: 400, body: { code: 'FICUS_ERR_BAD_ADMIN_REQUEST', detail: /last 60 minutes; for more, since=epoch/ } })
  t.match(await admin(f, 'GET', '/admin/divergences?since=yesterday'), { status: 400, body: { detail: /since: must be epoch, a duration like 15m or 1h, or an ISO 8601 time/ } })
  const iso = new Date(Date.now() - 60_000).toISOString()
  t.equal((await admin(f, 'GET', `/admin/divergences?route=orders&since=${iso}`)).status, 200, 'an ISO time within the hour')
})

t.test('POST /admin/divergences/reset: a new epoch for a route, audited with who and why; the counters keep counting', async (t) => {
  const TOKEN = 'tok-reset'
  const { f, reads } = await noisy(t, { admin: { host: '127.0.0.1', port: 0, tokens: { ana: TOKEN } } })
  await reads(4)
  const r = await admin(f, 'POST', '/admin/divergences/reset', { token: TOKEN, json: { route: 'orders', reason: 'fixed the total rounding' } })
  t.equal(r.status, 200)
  t.match(r.body, { routes: [{ route: 'orders', epoch: { n: 2, why: 'reset', reason: 'fixed the total rounding' } }] })
  const s = await summary(f, 'orders', { token: TOKEN })
  t.match(s, { epoch: { n: 2, why: 'reset' }, comparisons: { match: 0, diverged: 0 }, topFields: [], windows: { '5m': { comparisons: { diverged: 0 } } } })
  const [entry] = await audit(f, '?limit=1', { token: TOKEN })
  t.match(entry, { who: 'ana', action: 'reset-divergences', route: 'orders', reason: 'fixed the total rounding' })
  t.equal(sample(await f.scrape(), 'ficus_divergences_total', { route: 'orders', kind: 'body' }), 4, 'not reset')
  const [view] = await routes(f, { token: TOKEN })
  t.equal(view?.lastChange, null, 'a reset is not a change of the route\'s traffic')
  await reads(1)
  t.match(await summary(f, 'orders', { token: TOKEN }), { comparisons: { diverged: 1 } }, 'counting goes on in the new epoch')

  const all = await admin(f, 'POST', '/admin/divergences/reset', { token: TOKEN })
  t.same((all.body.routes as { route: string; epoch: { n: number } }[]).map((x) => [x.route, x.epoch.n]), [['orders', 3], ['rest', 2], ['default', 2]], 'no body: every route')
  t.match(await admin(f, 'POST', '/admin/divergences/reset', { token: TOKEN, json: { route: 'nope' } }), { status: 404, body: { code: 'FICUS_ERR_UNKNOWN_ROUTE' } })
  t.match(await admin(f, 'POST', '/admin/divergences/reset', { token: TOKEN, json: { route: 'orders', why: 'x' } }), { status: 400, body: { code: 'FICUS_ERR_BAD_ADMIN_REQUEST', detail: 'unknown field "why"' } })
  t.match(await admin(f, 'POST', '/admin/divergences/reset', { token: TOKEN, json: ['orders'] }), { status: 400, body: { detail: /must be a JSON object/ } })
  t.match(await admin(f, 'POST', '/admin/divergences/reset', { json: { route: 'orders' } }), { status: 401 }, 'a token is needed')
  t.match(await summary(f, 'orders', { token: TOKEN }), { epoch: { n: 3 } }, 'refused calls changed nothing')
})

t.test('a comparison in flight when the rules change is not counted in the new epoch', async (t) => {
  const l = await startUpstream(t, 'legacy', json({ meta: { at: 1 }, total: 1 }))
  const hold = held(json({ meta: { at: 2 }, total: 1 }))
  const n = await startUpstream(t, 'new', hold.handler)
  t.teardown(() => hold.release())
  const file = join(t.testdir(), 'routes.yaml')
  const doc = (compare?: Record<string, unknown>): Record<string, unknown> => ({
    upstreams: { legacy: { url: l.url }, new: { url: n.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0, shadow: 100, ...(compare === undefined ? {} : { compare }) }]
  })
  const f = await startTestFicus(t, doc(), { file })
  t.equal((await f.fetch('/orders/1')).status, 200, 'the client is answered while its copy is held')
  await n.arrived(1, { message: 'the copy did not reach new' })
  await writeFile(file, testYaml(doc({ ignore: ['body.meta'] })))
  t.equal(await f.running.reload('test'), 'success')
  hold.release()
  await f.shadowIdle()
  const s = await summary(f, 'orders')
  t.match(s, { epoch: { n: 2, why: 'reload' }, comparisons: { match: 0, diverged: 0, skipped: 1 }, skipped: { epoch_changed: 1 } },
    'begun under the old rules (it would diverge on body.meta), it is a skip of the new epoch, not noise in it')
  t.same(s.topFields, [])
})
