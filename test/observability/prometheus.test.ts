import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { Pool } from 'undici'
import { admin } from '../helpers/admin.js'
import { rolloutFlag, startFeaturesServer } from '../helpers/features-server.js'
import { prometheusBinaries, startPrometheus } from '../helpers/prometheus.js'
import { CLI, ROOT, listening, run } from '../helpers/spawn.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * What SREs import must work the first time: a real Prometheus scrapes a real `ficus start`
 * process in front of real legacy/new servers under load (a split route shadowed both ways
 * with divergences, fallbacks, upstream resets, shadow copies cut by their timeout, 5xx on
 * both sides, dual writes delivered, retried and dead-lettered, creates whose ids the id map
 * learns, a flag from an Unleash API, a ramp whose gates are judged and which a rollback by
 * hand pauses, a rollback, config reloads that succeed and fail).
 * Then every query of the shipped dashboard, with its template variables substituted as
 * Grafana does, must return series; the shipped rules must evaluate without error on that
 * data; promtool must accept the rules, their unit tests and Ficus's own exposition.
 */

const { prometheus: PROMETHEUS, promtool: PROMTOOL } = prometheusBinaries()
const DASHBOARD = JSON.parse(readFileSync(join(ROOT, 'grafana', 'dashboards', 'ficus.json'), 'utf8')) as Dashboard
const RULES = join(ROOT, 'prometheus', 'alerts.yml')
/** Scrape and rule evaluation every second; Grafana's $__rate_interval is then max($__interval + 1s, 4 × 1s). */
const SCRAPE = '1s'
const INTERVAL = '2s'
const RATE_INTERVAL = '4s'

interface Target { expr: string; refId: string }
interface Panel { type: string; title: string; targets?: Target[] }
interface Dashboard {
  panels: Panel[]
  annotations: { list: { name: string; expr?: string; builtIn?: number }[] }
  templating: { list: { name: string; type: string; query?: string }[] }
}
interface Series { metric: Record<string, string>; values: [number, string][] }

t.test('promtool accepts the rules and their unit tests pass', async (t) => {
  const check = spawnSync(PROMTOOL, ['check', 'rules', RULES], { encoding: 'utf8' })
  t.equal(check.status, 0, check.stdout + check.stderr)
  const tests = spawnSync(PROMTOOL, ['test', 'rules', 'alerts.test.yml'], { cwd: join(ROOT, 'prometheus'), encoding: 'utf8' })
  t.equal(tests.status, 0, tests.stdout + tests.stderr)
  const config = spawnSync(PROMTOOL, ['check', 'config', join(ROOT, 'prometheus', 'prometheus.yml')], { encoding: 'utf8' })
  t.equal(config.status, 0, config.stdout + config.stderr)
})

t.test('a real Prometheus scraping Ficus under load: what the dashboard and the rules read works', async (t) => {
  t.setTimeout(120_000)
  // Writes of the dual routes, on either side: a create gets the side's own id (the id map
  // learns the pair when its copy is delivered); the copy of a write (x-ficus-sync) to order 7
  // is refused for good (a dead letter, which blocks order 7's later writes), to order 8 for
  // now (retried, so writes wait and the lag grows). Users on the other side of those copies
  // then meet the fence: their writes to orders 7 and 8 are refused (sync_behind).
  const writes = (side: 'legacy' | 'new'): ((req: IncomingMessage, res: ServerResponse) => boolean) => {
    let created = 0
    return (req, res) => {
      if (req.method === 'GET') return false
      const answer = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
      }
      const copy = req.headers['x-ficus-sync'] === '1'
      if (copy && req.url === '/api/orders/7') answer(422, { error: 'order 7 is locked' })
      else if (copy && req.url === '/api/orders/8') answer(503, { error: 'try later' }, { 'retry-after': '1' })
      else if (req.method === 'POST') answer(201, { id: side === 'legacy' ? String(1000 + ++created) : `n-${++created}` })
      else answer(200, { url: req.url })
      return true
    }
  }
  const legacyWrites = writes('legacy')
  const newWrites = writes('new')
  // What a verify job lists (docs/verify.md): two records, the second one different on new.
  const catalog = (side: 'legacy' | 'new', res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items: [{ id: '1', name: 'a' }, { id: '2', name: side === 'legacy' ? 'b' : 'B' }] }))
  }
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    if (legacyWrites(req, res)) return
    if (req.url === '/catalog') return void catalog('legacy', res)
    if (req.url === '/api/orders/broken') return void res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}')
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url, customer_name: 'Ada', amount: '12.50' }))
  })
  const next = await startUpstream(t, 'new', (req, res) => {
    if (newWrites(req, res)) return
    if (req.url === '/catalog') return void catalog('new', res)
    const answer = (status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)) }
    switch (req.url) {
      case '/api/orders/fail': return answer(503, { error: 'overloaded' })
      case '/api/orders/broken': return answer(500, { error: 'boom' })
      case '/api/orders/reset': return void req.socket.destroy()
      case '/api/orders/slow': return void setTimeout(() => { answer(200, { url: req.url, customer_name: 'Ada', amount: '12.50' }) }, 300)
      // slower than legacy on the same request, within the shadow timeout: a pair where new was slower
      case '/api/orders/2': return void setTimeout(() => { answer(200, { url: req.url, customer_name: 'Ada', amount: '12.50' }) }, 50)
      // a rewrite that sends amounts as numbers: a body divergence
      default: return answer(200, { url: req.url, customer_name: 'Ada', amount: req.url?.endsWith('3') === true ? 12.5 : '12.50' })
    }
  })
  const unleash = await startFeaturesServer(t, { features: [rolloutFlag('flagged-new', 50)] })
  const dir = t.testdir({})
  const file = join(dir, 'routes.yaml')
  const routes = (comment: string): string => [
    `# ${comment}`,
    'version: 1',
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    `upstreams: { legacy: { url: "${legacy.url}" }, new: { url: "${next.url}" } }`,
    'sticky: header:x-user-id',
    'state: ficus-state.json',
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'shadow: { timeout: 150ms }',
    'unleash:',
    `  url: "${unleash.url}"`,
    '  appName: ficus-observability-test',
    `  token: "${unleash.token}"`,
    '  refreshInterval: 1s',
    // The two sides share the ids of existing orders (reads shadowed as they are); retries every
    // second at most; a request behind a fence waits 100 ms, not 2 s, so the load keeps its pace.
    'sync: { unmappedIds: same, fenceTimeout: 100ms, retry: { base: 100ms, max: 1s, maxAttempts: 1000 } }',
    'routes:',
    '  - { name: orders-create, match: { path: /api/orders, methods: [POST] }, new: 50, sync: { mode: dual, entity: order, learn: response.body.id } }',
    '  - { name: orders, match: { path: "/api/orders/:id" }, new: 50, shadow: 100, sync: { mode: dual, entity: order, key: path.id }, ramp: observed }',
    '  - { name: flagged, match: { path: "/flagged/*" }, flag: flagged-new }',
    'verify: { catalog: { route: orders, list: { path: /catalog, items: body.items, id: id } } }',
    // A ramp that stays where the route is (its first step is the route's 50 %) and never acts
    // by itself: every gate configured, none that can fail, no trip-wire; only judged.
    'ramp:',
    '  evaluateEvery: 500ms',
    '  plans:',
    '    observed:',
    '      steps: [{ new: 50, hold: 1h }, { new: 100, require: [verify] }]',
    '      window: 10s',
    '      gates:',
    '        divergence: { max: 99% }',
    '        errors: { maxIncrease: 99pp }',
    '        latency: { p99Delta: 10s, maxShare: 99% }',
    '        sync: { maxLag: 1h, maxDeadLetters: 1000 }',
    '        verify: { job: catalog, maxMismatchRate: 1 }',
    '      tripwire: { failureShare: 100%, minRequests: 1000000 }',
    '      onFail: pause',
    ''
  ].join('\n')
  await writeFile(file, routes('first'))
  const ficus = run(t, CLI, ['start', '--config', file], {}, { cwd: dir })
  const { traffic, admin: adminUrl } = await listening(ficus)
  await ficus.waitFor(/flags synchronized with Unleash/, { message: 'ficus did not synchronize with the Unleash API' })

  const prom = await startPrometheus(t, PROMETHEUS, [
    `global: { scrape_interval: ${SCRAPE}, evaluation_interval: ${SCRAPE} }`,
    `rule_files: ["${RULES}"]`,
    'scrape_configs:',
    '  - job_name: ficus',
    `    static_configs: [{ targets: ["${new URL(adminUrl).host}"] }]`,
    ''
  ].join('\n'))

  // Load: 4 clients, 200 sticky users, every kind of request, until told to stop; each client
  // waits 10 ms between requests (a few hundred per second) to leave CPU to the tests beside it.
  const reads = ['/api/orders/1', '/api/orders/2', '/api/orders/3', '/api/orders/fail', '/api/orders/reset', '/api/orders/slow', '/api/orders/broken', '/flagged/1', '/flagged/2']
  const requests: { method: 'GET' | 'PUT' | 'POST'; path: string }[] = [
    ...reads.map((path) => ({ method: 'GET' as const, path })),
    { method: 'PUT', path: '/api/orders/1' }, { method: 'PUT', path: '/api/orders/7' }, { method: 'PUT', path: '/api/orders/8' }, { method: 'POST', path: '/api/orders' }
  ]
  const pool = new Pool(traffic, { connections: 4 })
  t.teardown(() => pool.destroy())
  let running = true
  let sent = 0
  const client = async (): Promise<void> => {
    while (running) {
      const i = sent++
      const { method, path } = requests[i % requests.length] as (typeof requests)[number]
      const write = method !== 'GET'
      const r = await pool.request({
        method, path, body: write ? JSON.stringify({ n: i }) : null,
        headers: { 'x-user-id': `u${i % 200}`, ...(write ? { 'content-type': 'application/json' } : {}) }
      })
      await r.body.dump()
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  const start = Date.now()
  const load = Promise.all(Array.from({ length: 4 }, client))

  // A verify job run through the admin API: one record matched, one mismatched.
  t.equal((await admin(adminUrl, 'POST', '/admin/verify/catalog/run', { json: { reason: 'observability test' } })).status, 202)
  await waitFor(async () => (await admin(adminUrl, 'GET', '/admin/verify/catalog')).body.last !== null, { message: 'the verify run did not end' })
  await prom.scrapedSince(start + 2_000) // a few seconds of traffic in the TSDB
  // The ramp starts (its phase goes from none to running: the dashboard's annotation) and its gates are judged.
  const ramp = await admin(adminUrl, 'POST', '/admin/ramp/orders/start', { json: { reason: 'observability test' } })
  t.equal(ramp.status, 200, ramp.text)
  // The p99 gate needs 100 answers a side in the step: until then it has no value to show.
  const judged = async (): Promise<boolean> => {
    const gates = ((await admin(adminUrl, 'GET', '/admin/ramp/orders')).body.evaluation as { gates: { gate: string; observed: number | null }[] } | null)?.gates ?? []
    return gates.some((g) => g.gate === 'latency_p99' && g.observed !== null)
  }
  await waitFor(judged, { timeoutMs: 30_000, message: 'the ramp\'s latency_p99 gate never had its 100 answers a side' })
  await prom.scrapedSince(Date.now() + 1_000)
  // The control plane acts: a reload that applies, one that is rejected, the file fixed, a rollback.
  await writeFile(file, routes('second'))
  await ficus.waitFor(/"msg":"config reloaded"/, { message: 'the second routes.yaml was not reloaded' })
  await writeFile(file, routes('third').replace('version: 1', 'version: 1\nroutes: ['))
  await ficus.waitFor(/config reload rejected/, { message: 'the broken third routes.yaml was not rejected' })
  await writeFile(file, routes('fourth'))
  await ficus.waitFor(/"msg":"config reloaded"[\s\S]*"msg":"config reloaded"/, { message: 'the fourth routes.yaml was not reloaded' })
  await prom.scrapedSince(Date.now() + 2_000)
  const rollback = await admin(adminUrl, 'POST', '/admin/rollback', { json: { route: 'orders', reason: 'observability test' } })
  t.equal(rollback.status, 200, rollback.text)
  // A change by hand pauses the ramp rather than being overwritten.
  await waitFor(async () => (await admin(adminUrl, 'GET', '/admin/ramp/orders')).body.phase === 'paused', { message: 'the rollback by hand did not pause the ramp' })
  await prom.scrapedSince(Date.now() + 2_000)
  running = false
  await waitFor(load, { message: 'the load clients did not stop' })
  await prom.scrapedSince(Date.now())
  const end = Date.now()
  t.ok(sent > 500, `${sent} requests sent over ${((end - start) / 1000).toFixed(1)} s`)

  // Each subtest reads what the run above left in Prometheus (and Ficus's /metrics); none changes it.
  await t.test('promtool accepts Ficus\'s own exposition (names, units, help, types)', async (t) => {
    // prom-client's default nodejs_active_*_total gauges break promtool's _total rule: theirs to rename, not ours.
    const exposition = (await admin(adminUrl, 'GET', '/metrics')).text
    const own = exposition.split('\n').filter((l) => /^(# (HELP|TYPE) )?ficus_/.test(l)).join('\n') + '\n'
    t.ok(own.split('# TYPE ').length > 15, 'every ficus_ family')
    const lint = spawnSync(PROMTOOL, ['check', 'metrics'], { input: own, encoding: 'utf8' })
    t.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`)
  })

  await t.test('the dashboard\'s template variables list the replica and every route, the flagged one too', async (t) => {
    // What Grafana offers in the pickers.
    const instances = await prom.api<string[]>('label/instance/values', { 'match[]': 'ficus_build_info' })
    t.same(instances, [new URL(adminUrl).host], '$instance lists the replica')
    const routeNames = await prom.api<string[]>('label/route/values', { 'match[]': 'ficus_route_shadow_percent{instance=~".*"}' })
    t.same(routeNames.sort(), ['default', 'flagged', 'orders', 'orders-create'], '$route lists every route, the flagged one too')
    for (const v of DASHBOARD.templating.list.filter((x) => x.type === 'query')) {
      t.match(v.query, /^label_values\((ficus_build_info|ficus_route_shadow_percent\{instance=~"\$instance"\}), (instance|route)\)$/, `${v.name}: a query checked above`)
    }
  })

  const range = `${Math.ceil((end - start) / 1000) + 5}s`
  await t.test('every panel and annotation query returns series, for all routes, one, and two', async (t) => {
    const queries = [
      ...DASHBOARD.panels.flatMap((p) => (p.targets ?? []).map((x) => ({ where: `${p.title} [${x.refId}]`, expr: x.expr, step: 1 }))),
      ...DASHBOARD.annotations.list.filter((a) => a.builtIn === undefined).map((a) => ({ where: `annotation ${a.name}`, expr: a.expr ?? '', step: 2 }))
    ]
    t.ok(queries.length >= 30, `${queries.length} queries`)
    // "All" (Grafana sends the variable's allValue), one route, and two (a multi-value becomes a regex alternation).
    for (const route of ['.*', 'orders', '(orders|flagged)']) {
      for (const q of queries) {
        const expr = q.expr.replace(/\$(__rate_interval|__interval|__range|route|instance)\b/g, (_m, name: string) =>
          ({ __rate_interval: RATE_INTERVAL, __interval: INTERVAL, __range: range, route, instance: '.*' })[name] as string)
        t.notMatch(expr.replaceAll('${1}', ''), /\$/, `${q.where}: every variable substituted`)
        const data = await prom.api<{ result: Series[] }>('query_range', { query: expr, start: String((start - 5_000) / 1000), end: String(end / 1000), step: String(q.step) })
        t.ok(data.result.length > 0, `${q.where} (route=${route}): ${data.result.length} series`)
      }
    }
  })

  await t.test('the queries see what happened: divergences, fallbacks, resets, shadow timeouts, dual writes, the rollback, the rejected reload, the flag source', async (t) => {
    const last = async (expr: string): Promise<Series[]> =>
      (await prom.api<{ result: Series[] }>('query_range', { query: expr, start: String(start / 1000), end: String(end / 1000), step: '1' })).result
    const max = (s: Series[]): number => Math.max(...s.flatMap((x) => x.values.map(([, v]) => Number(v))).filter((v) => !Number.isNaN(v)))
    t.ok(max(await last(`sum(rate(ficus_comparisons_total{route="orders", outcome="diverged"}[${RATE_INTERVAL}]))`)) > 0, 'divergences seen')
    t.ok(max(await last(`sum(rate(ficus_fallbacks_total{route="orders"}[${RATE_INTERVAL}]))`)) > 0, 'fallbacks seen')
    t.ok(max(await last(`sum(rate(ficus_upstream_errors_total{route="orders", backend="new", reason="reset"}[${RATE_INTERVAL}]))`)) > 0, 'resets of new seen')
    t.ok(max(await last(`sum(rate(ficus_shadow_dropped_total{route="orders", reason="timeout"}[${RATE_INTERVAL}]))`)) > 0, 'shadow copies cut by the timeout seen')
    t.equal(max(await last(`sum(increase(ficus_rollbacks_total{route="orders", trigger="manual"}[${range}]))`)) > 0.5, true, 'the rollback seen by increase()')
    t.equal(max(await last(`sum(increase(ficus_config_reloads_total{outcome="failure"}[${range}]))`)) > 0.5, true, 'the rejected reload seen by increase()')
    t.equal(max(await last('ficus_flag_source_ready')), 1, 'flag source ready')
    for (const outcome of ['delivered', 'retry']) {
      t.ok(max(await last(`sum(rate(ficus_sync_deliveries_total{route="orders", outcome="${outcome}"}[${RATE_INTERVAL}]))`)) > 0, `dual writes ${outcome} seen`)
    }
    // Order 7's first write is the only one to die (its later ones wait behind it), maybe before the first scrape: the count, not its rate.
    t.ok(max(await last('sum(ficus_sync_deliveries_total{route="orders", outcome="dead"})')) >= 1, 'the delivery that became a dead letter counted')
    t.ok(max(await last('max(ficus_sync_dead_letters{route="orders"})')) >= 1, 'the dead letter of order 7 seen')
    t.ok(max(await last('max(ficus_sync_pending{route="orders"})')) >= 1, 'writes waiting behind orders 7 and 8 seen')
    t.ok(max(await last('max(ficus_sync_lag_seconds{route="orders"})')) > 0, 'the lag seen')
    t.ok(max(await last(`histogram_quantile(0.5, sum by (le) (rate(ficus_sync_replication_seconds_bucket{route="orders"}[${RATE_INTERVAL}])))`)) > 0, 'replication latency seen')
    t.ok(max(await last('max(ficus_idmap_entries{entity="order"})')) >= 1, 'created orders in the id map')
    t.ok(max(await last(`sum(rate(ficus_sync_fences_total{route="orders", outcome=~"timeout|dead_letter"}[${RATE_INTERVAL}]))`)) > 0, 'requests behind a fence seen')
    t.ok(max(await last(`sum(rate(ficus_writes_refused_total{route="orders", reason="sync_behind"}[${RATE_INTERVAL}]))`)) > 0, 'writes refused behind a fence seen')
    t.equal(max(await last(`sum(increase(ficus_sync_unrecorded_total[${range}]))`)), 0, 'no write unrecorded')
    t.equal(max(await last('max(ficus_ramp_state{route="orders", state="running"})')), 1, 'the ramp ran')
    t.equal(max(await last('max(ficus_ramp_step_percent{route="orders"})')), 50, 'at its first step')
    t.equal(max(await last('count(max by (gate) (ficus_ramp_gate_verdict{route="orders"}))')), 7, 'every gate judged')
    t.ok(max(await last(`sum(rate(ficus_shadow_pairs_total{route="orders", new="slower"}[${RATE_INTERVAL}]))`)) > 0, 'paired requests where new was slower seen')
    t.equal((await last('max(ficus_ramp_state{route="orders", state="paused"})')).flatMap((x) => x.values).at(-1)?.[1], '1', 'the ramp paused by the rollback by hand')
  })

  await t.test('the shipped alerting rules evaluate on the real data without error', async (t) => {
    const { groups } = await prom.api<{ groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] }>('rules')
    const rules = groups.flatMap((g) => g.rules)
    t.ok(rules.length >= 25, `${rules.length} rules loaded`)
    for (const r of rules) t.equal(r.health, 'ok', `${r.name}: ${r.lastError ?? ''}`)
    // The dead letter of order 7 and the writes refused behind the fences are seen by their
    // alerts (pending: their minutes have not passed); nothing else of the sync group is.
    const { alerts } = await prom.api<{ alerts: { labels: Record<string, string>; state: string }[] }>('alerts')
    const sync = alerts.filter((a) => a.labels.alertname?.startsWith('FicusSync') === true)
    t.same([...new Set(sync.map((a) => a.labels.alertname))].sort(), ['FicusSyncDeadLetters', 'FicusSyncWritesBehind'], 'the sync alerts active')
    for (const a of sync) t.match(a, { labels: { route: 'orders' }, state: 'pending' }, `${a.labels.alertname} ${a.labels.route} ${a.labels.target ?? ''}: ${a.state}`)
  })

  ficus.child.kill('SIGTERM')
  t.equal(await ficus.exitCode(), 0)
})
