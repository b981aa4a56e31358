import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createLogger } from '../../src/adapters/logger.js'
import { createMetrics } from '../../src/adapters/metrics-registry.js'
import { ProcessStore } from '../../src/adapters/open-store.js'
import { AuditLog } from '../../src/adapters/audit-log.js'
import { parseConfig } from '../../src/config/load-config.js'
import { VerifyControl } from '../../src/control/verify-control.js'
import { admin } from '../helpers/admin.js'
import { startCatalog, type Rec } from '../helpers/catalog.js'
import { sample, startTestFicus, testYaml } from '../helpers/ficus.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Verify jobs run by Ficus (docs/verify.md "Run by Ficus"): through the admin API (audited,
 * one run per job at a time, stopped on demand), on their schedule, and what they leave in
 * the metrics a ramp and the alerts read.
 */

const record = (i: number, over: Partial<Rec> = {}): Rec => ({ id: String(1000 + i), title: `item ${i}`, ...over })

async function catalogs (t: Test, n: number, changed: number[] = [], pageDelayMs = 0): Promise<{ legacy: string; next: string }> {
  const legacy = Array.from({ length: n }, (_, i) => record(i))
  const l = await startCatalog(t, legacy, { paging: 'cursor', pageSize: 50, pageDelayMs })
  const x = await startCatalog(t, legacy.map((r, i) => (changed.includes(i) ? { ...r, title: 'changed' } : r)), { paging: 'cursor', pageSize: 50, pageDelayMs })
  return { legacy: l.url, next: x.url }
}

const job = {
  route: 'items',
  list: { path: '/api/items', items: 'body.items', id: 'id', next: 'body.next_cursor', cursorParam: 'cursor', total: 'body.total', query: { limit: '50' } },
  get: '/api/items/:id',
  rate: '10000/s'
}

t.test('POST /admin/verify/<job>/run: audited, one at a time; its report at GET /admin/verify/<job>; the metrics a ramp reads', async (t) => {
  // Pages answered 50 ms late: the first run is still going when the second is asked for.
  const up = await catalogs(t, 400, [7, 300], 50)
  const dir = t.testdir()
  mkdirSync(dir, { recursive: true })
  const f = await startTestFicus(t, {
    state: join(dir, 'state.json'),
    upstreams: { legacy: { url: up.legacy }, new: { url: up.next } },
    routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 0 }],
    verify: { items: job }
  })
  const started = await admin(f, 'POST', '/admin/verify/items/run', { json: { reason: 'before 25 %' } })
  t.equal(started.status, 202, started.text)
  t.match(started.body, { job: 'items', running: { mode: 'checksum', by: 'local' } })
  t.match(await admin(f, 'POST', '/admin/verify/items/run', { json: {} }), { status: 409, body: { code: 'FICUS_ERR_VERIFY_RUNNING' } }, 'one run of a job at a time')
  const done = await waitFor(async () => {
    const r = await admin(f, 'GET', '/admin/verify/items')
    return r.body.running === null && r.body.last !== null ? r.body : null
  }, { timeoutMs: 30_000, message: 'the run did not end' })
  t.match(done, { last: { verdict: 'differences', mode: 'checksum', counts: { matched: 398, mismatched: 2 } }, report: { counts: { mismatched: 2 }, fields: [{ path: 'body.title', kind: 'changed', count: 2 }] } })
  const metrics = await f.scrape()
  t.equal(sample(metrics, 'ficus_verify_last_result', { job: 'items' }), 1, 'differences: 1, as ficus verify exits')
  t.ok((sample(metrics, 'ficus_verify_last_completed_timestamp_seconds', { job: 'items' }) ?? 0) > Date.now() / 1000 - 60)
  t.ok((sample(metrics, 'ficus_verify_records_total', { job: 'items', outcome: 'matched' }) ?? 0) >= 398)
  const audit = await admin(f, 'GET', '/admin/audit')
  t.match(JSON.stringify(audit.body), /"action":"verify-run","route":"items","reason":"before 25 %","detail":"items --mode checksum"/)
  const list = await admin(f, 'GET', '/admin/verify')
  t.match(list.body, { jobs: [{ job: 'items', route: 'items', scheduleSeconds: null, running: null, last: { verdict: 'differences' } }] })

  t.match(await admin(f, 'POST', '/admin/verify/nope/run', { json: {} }), { status: 404, body: { code: 'FICUS_ERR_VERIFY_UNKNOWN_JOB', detail: /jobs: items/ } })
  t.match(await admin(f, 'POST', '/admin/verify/items/run', { json: { mode: 'fast' } }), { status: 400, body: { detail: /mode: must be one of count, checksum, sample, full/ } })
  t.match(await admin(f, 'POST', '/admin/verify/items/run', { json: { sample: 10 } }), { status: 400, body: { detail: /sample and seed are for mode "sample"/ } })
  t.match(await admin(f, 'POST', '/admin/verify/items/stop', { json: {} }), { status: 409, body: { code: 'FICUS_ERR_VERIFY_NOT_RUNNING' } })
  const sampled = await admin(f, 'POST', '/admin/verify/items/run', { json: { mode: 'sample', sample: 400, seed: 3 } })
  t.equal(sampled.status, 202)
  const s = await waitFor(async () => {
    const r = await admin(f, 'GET', '/admin/verify/items')
    return r.body.running === null && (r.body.last as { mode?: string } | null)?.mode === 'sample' ? r.body : null
  }, { timeoutMs: 30_000, message: 'the sample did not end' })
  t.match(s, { last: { verdict: 'differences', counts: { matched: 398, mismatched: 2 }, statement: /^2 of 400 differ/ } })
})

t.test('a run is stopped through the admin API, and by the shutdown: incomplete, never a difference', async (t) => {
  const up = await catalogs(t, 3000, [], 50)
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: up.legacy }, new: { url: up.next } },
    routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 0 }],
    verify: { items: job }
  })
  t.equal((await admin(f, 'POST', '/admin/verify/items/run', { json: {} })).status, 202)
  const stopped = await admin(f, 'POST', '/admin/verify/items/stop', { json: { reason: 'peak hour' } })
  t.equal(stopped.status, 200, stopped.text)
  t.match(stopped.body, { running: null, last: { verdict: 'incomplete', problems: [/stopped before the end/] } })
  t.equal(sample(await f.scrape(), 'ficus_verify_last_result', { job: 'items' }), 2)
  // A run in progress when Ficus stops: stopped with it, not waited for to its end.
  t.equal((await admin(f, 'POST', '/admin/verify/items/run', { json: {} })).status, 202)
  const before = sample(await f.scrape(), 'ficus_verify_last_completed_timestamp_seconds', { job: 'items' }) ?? 0
  const t0 = Date.now()
  await f.running.stop()
  t.ok(Date.now() - t0 < 10_000, 'the shutdown did not wait for the run (3,000 records a side at 50 ms a page)')
  const after = sample(await f.metrics.register.metrics(), 'ficus_verify_last_completed_timestamp_seconds', { job: 'items' }) ?? 0
  t.ok(after > before, `the run stopped by the shutdown ended, and counted as ended (${before} → ${after})`)
  t.equal(sample(await f.metrics.register.metrics(), 'ficus_verify_last_result', { job: 'items' }), 2, 'incomplete')
})

t.test('a job with a schedule runs by itself when it is due', async (t) => {
  const up = await catalogs(t, 100)
  const dir = t.testdir()
  mkdirSync(dir, { recursive: true })
  const config = parseConfig(testYaml({
    upstreams: { legacy: { url: up.legacy }, new: { url: up.next } },
    routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 0 }],
    verify: { items: { ...job, schedule: { every: '1h', mode: 'sample', sample: 20 } } }
  }), join(dir, 'routes.yaml'), {})
  let skew = 0
  const metrics = createMetrics()
  const control = new VerifyControl({
    live: { current: config },
    store: new ProcessStore(config.store),
    audit: await AuditLog.open(undefined),
    log: createLogger('silent'),
    metrics,
    now: () => Date.now() + skew
  })
  t.teardown(async () => { await control.close() })
  control.tick()
  t.equal(control.status().jobs[0]?.running, null, 'not due yet: nothing runs')
  skew = 59 * 60_000
  control.tick()
  t.equal(control.status().jobs[0]?.running, null, 'still not due a minute before')
  skew = 61 * 60_000 // an hour and a minute later
  control.start() // its ticks, every second, start the run
  const ran = await waitFor(() => control.status().jobs[0]?.last ?? null, { timeoutMs: 30_000, message: 'the scheduled run did not happen' })
  t.match(ran, { verdict: 'parity', mode: 'sample', by: 'schedule', counts: { matched: 20 } })
  t.equal(control.status().jobs[0]?.scheduleSeconds, 3600)
})
