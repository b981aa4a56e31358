import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { createLogger } from '../src/adapters/logger.js'
import { loadConfig } from '../src/config/load-config.js'
import { startFicus, type Running } from '../src/start.js'
import { divergencesCommand } from '../src/commands/divergences.js'
import { DEFAULT_PORTS, startBackend } from './backends.js'

/**
 * `npm run demo`: the two sample backends, Ficus on the shipped routes.yaml, a burst of
 * sample traffic whose outcome is printed, then Ficus keeps running for you to curl.
 * Ports: LEGACY_PORT (3001), NEW_PORT (3002), FICUS_PORT (8080), FICUS_ADMIN_PORT (9090);
 * 0 picks a free one. Logs: FICUS_LOG_LEVEL (default warn, so the banner stays readable).
 */
async function main(): Promise<void> {
  const env = process.env
  const legacy = await startBackend('legacy', Number(env.LEGACY_PORT ?? DEFAULT_PORTS.legacy))
  const next = await startBackend('new', Number(env.NEW_PORT ?? DEFAULT_PORTS.new))
  // Ctrl-C stops the demo at once (no load balancer to drain from). The sync store starts
  // empty, like the demo backends: a fresh directory, removed at the end.
  const storeDir = mkdtempSync(join(tmpdir(), 'ficus-demo-'))
  const config = await loadConfig(env.FICUS_CONFIG ?? 'routes.yaml', { FICUS_DRAIN_DELAY: '0s', FICUS_STORE: join(storeDir, 'ficus.lmdb'), ...env, LEGACY_URL: legacy.url, NEW_URL: next.url })
  const logger = createLogger(env.FICUS_LOG_LEVEL ?? 'warn')
  const ficus = await startFicus(config, { logger })
  const proxy = ficus.trafficUrl
  const out: string[] = []
  const say = (line = ''): void => { out.push(line) }

  say('Ficus demo: a legacy API and its rewrite behind one proxy')
  say(`  proxy   ${proxy}            (config: ${config.file})`)
  say(`  admin   ${ficus.adminUrl}/metrics`)
  say(`  legacy  ${legacy.url}    new  ${next.url}`)
  say()
  say('Sample traffic, 20 users per path (routing is sticky per x-user-id):')
  for (const path of ['/api/customers/1', '/api/orders/1', '/api/reports/daily', '/api/customers/3']) {
    const seen = { legacy: 0, new: 0 }
    for (let i = 1; i <= 20; i++) {
      const r = await request(proxy + path, { headers: { 'x-user-id': `user-${i}` } })
      await r.body.dump()
      const who = r.headers['x-ficus-backend']
      if (who === 'legacy' || who === 'new') seen[who]++
    }
    const route = ficus.ficus.table.current.match('GET', path)
    const note = path === '/api/customers/3' ? '  ← new answers 503 here; legacy took over (fallback)' : ''
    say(`  ${path.padEnd(20)} route ${String(route?.name).padEnd(10)} new: ${String(route?.new).padStart(3)} %  → ${String(seen.new).padStart(2)} on new, ${String(seen.legacy).padStart(2)} on legacy${note}`)
  }
  const routes = await (await request(`${ficus.adminUrl}/admin/routes`)).body.json() as { routes: { name: string; breaker: { state: string; lastFailure: string | null; openForMs: number | null } | null }[] }
  const breaker = routes.routes.find((r) => r.name === 'customers')?.breaker
  if (breaker != null && breaker.state !== 'closed') {
    say(`  new's breaker on route customers: ${breaker.state} after 5 failures in a row (${breaker.lastFailure ?? ''}): legacy serves the route,`)
    say(`  writes get 503 + Retry-After; in ${Math.ceil((breaker.openForMs ?? 0) / 1000)} s one request probes new (npx ficus status shows it)`)
  }
  await ficus.ficus.shadowing.idle()
  const metrics = await (await request(`${ficus.adminUrl}/metrics`)).body.text()
  // Series that counted something (every route's counters exist at 0 from the start).
  const shown = metrics.split('\n').filter((l) => /^ficus_(fallbacks|comparisons|divergences)_total\{/.test(l) && !l.endsWith(' 0'))
  say()
  say('From /metrics:')
  for (const line of shown) say(`  ${line}`)
  const admin = { url: ficus.adminUrl, token: undefined }
  say()
  say('Shadow comparisons (npx ficus divergences): orders differs on purpose; reports matches.')
  say(indent(await divergencesCommand(admin, undefined, false)))
  say(indent(await divergencesCommand(admin, 'orders', false)))
  say('  (orders also reorders its items and changes meta: the route\'s compare rules leave those out)')
  say()
  say('Dual writes on /api/notes: each side gives its own ids; every write reaches both (docs/sync.md).')
  const newId = await dualWrites(proxy, ficus, say)
  say()
  say('Verify (docs/verify.md): one note edited on new behind Ficus\'s back; the job compares every note through the id map:')
  await verifyNotes(ficus, next.url, newId, say)
  say()
  say('Ramp (docs/ramp.md): ficus ramp start reports; new\'s reports are ten times slower than legacy\'s:')
  await rampReports(ficus, say)
  say()
  await consoleLines(ficus, say)
  say()
  say('Try:')
  say(`  curl -si ${proxy}/api/orders/1 -H 'x-user-id: alice'     # x-ficus-backend: who answered`)
  say(`  for i in $(seq 50); do curl -s ${proxy}/api/orders/2 -H "x-user-id: u$i" >/dev/null; done`)
  say(`  npx ficus divergences orders --admin-url ${ficus.adminUrl}`)
  say(`  curl -s '${ficus.adminUrl}/admin/divergences?route=orders&limit=1'   # one redacted sample`)
  say(`  curl -s  ${ficus.adminUrl}/metrics | grep '^ficus_'`)
  say(`  curl -s ${proxy}/api/notes -H 'content-type: application/json' -d '{"text":"hi"}'   # then GET it by the id you got`)
  say(`  curl -s -XPOST ${ficus.adminUrl}/admin/verify/notes/run -H 'content-type: application/json' -d '{}'; curl -s ${ficus.adminUrl}/admin/verify/notes`)
  say(`  npx ficus ramp status --admin-url ${ficus.adminUrl}`)
  say('  npx ficus check routes.yaml')
  say('Ctrl-C stops the demo.')
  process.stdout.write(out.join('\n') + '\n')

  const stop = (): void => {
    void ficus.stop().then(() => {
      legacy.server.close()
      next.server.close()
      rmSync(storeDir, { recursive: true, force: true })
      logger.flush()
      process.exit(0)
    })
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

/**
 * The console's address, and what its routes view shows of each side of reports (the ramp's
 * evidence, from GET /admin/traffic): the same numbers the page shows.
 */
async function consoleLines(ficus: Running, say: (line: string) => void): Promise<void> {
  interface Side { requests: number; errorRate: number | null; p50Ms: number | null; p99Ms: number | null }
  const traffic = await (await request(`${ficus.adminUrl}/admin/traffic`)).body.json() as { routes: Record<string, { legacy: Side; new: Side }> }
  const side = (x: Side): string => `${x.requests} requests, ${x.errorRate === null ? '-' : (x.errorRate * 100).toFixed(1)} % errors, p50 ${x.p50Ms ?? '-'} ms`
  say(`Console (docs/console.md): ${ficus.adminUrl}/console (no admin token in the demo: sign in with an empty one).`)
  say('  Every route with its phase and each side\'s traffic, divergences side by side, the ramp\'s decisions; for reports:')
  const reports = traffic.routes.reports
  if (reports !== undefined) say(`  legacy ${side(reports.legacy)}; new ${side(reports.new)}`)
}

/**
 * The reports route's ramp, started: sample traffic, then the latency gate (the same requests'
 * times on both sides) fails and the route is rolled back, with the ramp's reason.
 */
async function rampReports(ficus: Running, say: (line: string) => void): Promise<void> {
  const post = await request(`${ficus.adminUrl}/admin/ramp/reports/start`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'demo' }) })
  await post.body.dump()
  const deadline = Date.now() + 15_000
  let user = 0
  for (;;) {
    await Promise.all(Array.from({ length: 10 }, async () => {
      const r = await request(`${ficus.trafficUrl}/api/reports/daily`, { headers: { 'x-user-id': `ramp-${++user}` } })
      await r.body.dump()
    }))
    const v = await (await request(`${ficus.adminUrl}/admin/ramp/reports`)).body.json() as { phase: string; history: { action: string; reason: string | null }[] }
    if (v.phase === 'rolled_back') {
      say(`  step 1 (new 5 %), ${user} requests later: ${v.history.at(-1)?.reason ?? ''}`)
      say('  → rolled back to new 0 % (ficus_rollbacks_total{trigger="ramp"}); the audit log has each gate\'s numbers')
      return
    }
    if (Date.now() > deadline) throw new Error(`the demo's ramp did not roll back within 15 s (it is ${v.phase})`)
  }
}

/**
 * A note written while legacy answers, the routes moved to new, a note written there, then a
 * rollback: every id a client was given reads back, on whichever side answers.
 */
async function dualWrites(proxy: string, ficus: Running, say: (line: string) => void): Promise<string> {
  const call = async (method: string, path: string, body?: unknown): Promise<{ who: string; json: Record<string, unknown> }> => {
    const r = await request(proxy + path, { method: method as 'GET', headers: { 'content-type': 'application/json', 'x-user-id': 'demo' }, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await r.body.text()
    return { who: String(r.headers['x-ficus-backend']), json: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
  }
  const setNew = async (percent: number): Promise<void> => {
    for (const name of ['notes-create', 'notes']) {
      const r = await request(`${ficus.adminUrl}/admin/routes/${name}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ new: percent, reason: 'demo' }) })
      await r.body.dump()
    }
  }
  const sync = ficus.ficus.sync()
  // POST /admin/sync/drain answers once every write has reached the other side (ficus sync drain).
  const caughtUp = async (): Promise<void> => {
    const r = await request(`${ficus.adminUrl}/admin/sync/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ timeout: '10s' }) })
    await r.body.dump()
  }
  const otherId = async (side: 'legacy' | 'new', id: string): Promise<string> => (await sync?.store.lookupId('note', side, id))?.other ?? '?'
  const a = await call('POST', '/api/notes', { text: 'written on legacy' })
  const aId = String(a.json.id)
  await caughtUp()
  say(`  POST /api/notes           ${a.who.padEnd(6)} → id ${aId}; new holds it as ${await otherId('legacy', aId)} (the id map pairs them)`)
  await setNew(100)
  const read = await call('GET', `/api/notes/${aId}`)
  say(`  routes moved to new: GET /api/notes/${aId} → ${read.who} answers ${JSON.stringify(read.json)}`)
  const b = await call('POST', '/api/notes', { text: 'written on new' })
  const bId = String(b.json.id)
  await caughtUp()
  say(`  POST /api/notes           ${b.who.padEnd(6)} → id ${bId}; legacy holds it as ${await otherId('new', bId)}`)
  await setNew(0)
  const back = await call('GET', `/api/notes/${bId}`)
  say(`  rollback: GET /api/notes/${bId} → ${back.who} answers ${JSON.stringify(back.json)}: nothing written on new is lost`)
  return otherId('legacy', aId)
}

/**
 * A note edited on new behind Ficus's back (a migration script, a bug): `verify notes`, run by
 * Ficus through its admin API, lists both sides, pairs their ids through the id map, and
 * finds it (docs/verify.md).
 */
async function verifyNotes(ficus: Running, newUrl: string, newId: string, say: (line: string) => void): Promise<void> {
  const edit = await request(`${newUrl}/api/notes/${newId}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'edited on new only' }) })
  await edit.body.dump()
  const run = await request(`${ficus.adminUrl}/admin/verify/notes/run`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'demo' }) })
  await run.body.dump()
  const deadline = Date.now() + 10_000
  for (;;) {
    const r = await request(`${ficus.adminUrl}/admin/verify/notes`)
    const job = await r.body.json() as { running: unknown; report: { listed: { legacy: number; new: number }; counts: Record<string, number>; records: { legacyId: string; newId: string; outcome: string; fields?: { path: string; kind: string }[] }[] } | null }
    if (job.running === null && job.report !== null) {
      const { listed, counts, records } = job.report
      const found = records.map((x) => `${x.legacyId} (new ${x.newId}) ${(x.fields ?? []).map((f) => `${f.path} ${f.kind}`).join(', ')}`).join('; ')
      say(`  ${listed.legacy} notes on legacy, ${listed.new} on new: ${counts.matched} matched, ${counts.mismatched} mismatched: ${found}`)
      return
    }
    if (Date.now() > deadline) throw new Error('the demo\'s verify run did not end within 10 s')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function indent(text: string): string {
  return text.trimEnd().split('\n').map((l) => (l === '' ? l : `  ${l}`)).join('\n')
}

main().catch((err: unknown) => {
  const e = err as NodeJS.ErrnoException & { port?: number }
  if (e.code === 'EADDRINUSE') {
    process.stderr.write(`demo: port ${e.port ?? ''} is already in use; set LEGACY_PORT, NEW_PORT, FICUS_PORT or FICUS_ADMIN_PORT (0 = any free port)\n`)
  } else {
    process.stderr.write(`demo: ${e.message}\n`)
  }
  process.exit(1)
})
