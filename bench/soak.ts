import autocannon from 'autocannon'
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { jsonServer } from './json-server.js'
import { median as middle, ready } from './procs.js'
import { scrape, sum, type Series } from './prom-text.js'

/**
 * `npm run bench:soak`: does Ficus stay flat over a long run of shadowed traffic? Memory
 * (RSS, V8 heap), event-loop lag and client-visible errors are sampled from Ficus's own
 * admin /metrics while a steady load runs through a route in phase 2 (`new: 0`,
 * `shadow: 100`): every request is answered by legacy and copied to new, and the two JSON
 * answers are compared.
 *
 * - Backends (in this process, node:http on 127.0.0.1, port 0): `GET /api/users/<n>` answers
 *   a ~1 KB JSON document for user n (of 10,000). New answers the same document except for
 *   every 10th user (n % 10 === 0), whose `plan` and `loyaltyPoints` differ: ~10 % of the
 *   comparisons diverge, so the divergence counters and the sample store are exercised too;
 *   the other 90 % take the byte-identical shortcut.
 * - Ficus: a separate process, `node dist/src/cli.js start --config <temp yaml>`, with
 *   traffic and admin on port 0 (the ports are read from its "ficus listening" log line),
 *   access log at info (as users run it) into a file in the temp directory, scanned at the
 *   end for warn/error lines.
 * - Load: autocannon in this process at a fixed offered rate (default 1,000 req/s over 20
 *   keep-alive connections), each request for a random user with its `x-user-id`. A fixed
 *   rate, not an unbounded one: a soak looks for drift at a constant, realistic load, and the
 *   machine is shared (2 cores; the proxy at 100 % shadow costs ~0.3 ms of CPU per request,
 *   so 1,000 req/s is ~30 % of a core, leaving headroom for neighbours and for noise).
 * - Duration: `--warmup` seconds (30) to let the JIT, the connection pools, V8's heap sizing
 *   and malloc's arenas settle, then `--minutes` (10) measured. Metrics every `--interval`
 *   seconds (10). prom-client resets its event-loop-delay histogram on every scrape, so
 *   each row's lag p99/max covers the interval since the previous row (the histogram's
 *   resolution is 10 ms: an idle loop reads ~10 ms).
 *
 * Result: a table over time, then start (first sample at or after the warm-up) vs end (last
 * sample under load) for RSS, heap used and lag p99, totals, and PASS/FAIL against BOUNDS.
 * `--out file.json` also writes everything as JSON. Exit code 0 on PASS, 1 on FAIL.
 * Options: --minutes 10 --warmup 30 --interval 10 --rate 1000 --connections 20 --out <file> --keep
 */
const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '30' },
    interval: { type: 'string', default: '10' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '20' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false }
  }
})

const num = (name: string, text: string, min: number): number => {
  const n = Number(text)
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${text}`)
  return n
}
const MINUTES = num('minutes', opt.minutes, 0.05)
const WARMUP_S = num('warmup', opt.warmup, 0)
const INTERVAL_S = num('interval', opt.interval, 1)
const RATE = num('rate', opt.rate, 1)
const CONNECTIONS = num('connections', opt.connections, 1)
const TOTAL_S = WARMUP_S + MINUTES * 60

/**
 * The pass bounds, from the first sample after the warm-up to the last one under load.
 *
 * Everything Ficus keeps across requests is bounded by configuration, not by traffic: at
 * most `shadow.maxInFlight` (64) copies of ~1 KB bodies, 100 divergence samples per route,
 * per-field divergence counts over a fixed set of paths, metric series over fixed labels,
 * keep-alive pools of at most `connections` sockets. So after the warm-up the live heap has
 * nothing left to grow into and the expected growth is zero plus noise:
 * - heap used is read at whatever point of V8's GC cycle the scrape lands on: the young
 *   generation (up to 16 MiB semi-spaces) and old-space garbage not yet collected make
 *   single readings scatter. Measured over 10 minutes (61 samples, flat trend): 25–47 MB,
 *   σ 4.7 MB, so two readings differ by more than 20 MB in < 0.1 % of pairs. 20 MB still
 *   catches a leak of ~35 bytes per request at 1,000 req/s over 10 minutes (600,000
 *   requests); a leaked 1 KB body, header set or closure per request would be hundreds of
 *   MB. The least-squares trend printed next to it averages the scatter out on long runs.
 * - RSS also moves with V8 growing or shrinking its reserved heap and with glibc malloc
 *   arenas and fragmentation (undici and socket buffers live outside the V8 heap), which
 *   can add a plateau of a few tens of MB after the warm-up: 30 MB. A native leak of ~50
 *   bytes per request would exceed it. (Measured: RSS settles within the warm-up, then
 *   127–134 MB, σ 1.4 MB.)
 * Errors seen by clients are never acceptable: shadowing must not change or break a
 * user's answer, so any non-2xx, socket error or timeout fails the soak.
 */
const BOUNDS = { rssGrowthMb: 30, heapGrowthMb: 20, clientErrors: 0 }

const ROOT = join(import.meta.dirname, '..', '..')
const CLI = join(ROOT, 'dist', 'src', 'cli.js')
const USERS = 10_000
const DIVERGE_EVERY = 10
const MB = 2 ** 20

/* ---------- Backends ---------- */

/** User n's document as legacy (or new) answers it: ~1 KB of JSON. */
function userDoc(n: number, side: 'legacy' | 'new'): Buffer {
  const plan = ['free', 'pro', 'team'][n % 3] as string
  const diverges = side === 'new' && n % DIVERGE_EVERY === 0
  const doc = {
    id: n,
    name: `User ${n}`,
    email: `user${n}@example.com`,
    plan: diverges ? plan.toUpperCase() : plan,
    loyaltyPoints: ((n * 37) % 5000) + (diverges ? 1 : 0),
    createdAt: new Date(Date.UTC(2020, 0, 1) + (n % 1500) * 86_400_000).toISOString(),
    address: { street: `${(n % 200) + 1} Fig Street`, city: 'Springfield', zip: String(10_000 + (n % 89_999)), country: 'US' },
    preferences: { newsletter: n % 2 === 0, language: n % 5 === 0 ? 'fr' : 'en', currency: 'USD' },
    orders: Array.from({ length: 6 }, (_, i) => ({
      id: n * 10 + i,
      sku: `SKU-${String((n * 7 + i) % 100_000).padStart(6, '0')}`,
      qty: ((n + i) % 5) + 1,
      price: (((n + i) * 37) % 10_000 / 100).toFixed(2),
      status: i === 0 ? 'open' : 'delivered'
    }))
  }
  return Buffer.from(JSON.stringify(doc))
}

async function startBackend(side: 'legacy' | 'new'): Promise<{ server: Server; url: string; bytes: number }> {
  const bodies = Array.from({ length: USERS }, (_, n) => userDoc(n, side))
  const server = jsonServer((req) => {
    const m = /^\/api\/users\/(\d+)$/.exec((req.url ?? '/').split('?')[0] as string)
    return m === null ? undefined : bodies[Number(m[1])]
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const avg = bodies.reduce((s, b) => s + b.length, 0) / bodies.length
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bytes: Math.round(avg) }
}

/* ---------- Ficus ---------- */

interface Ficus { child: ChildProcess; trafficUrl: string; adminUrl: string; logFile: string; errFile: string; exited: Promise<number | null> }

async function startFicus(dir: string, legacyUrl: string, newUrl: string): Promise<Ficus> {
  const config = join(dir, 'soak.yaml')
  writeFileSync(config, [
    '# Written by bench/soak.ts: phase 2 of a migration (legacy answers, every request shadowed to new).',
    'version: 1',
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    'upstreams:',
    `  legacy: { url: ${legacyUrl} }`,
    `  new: { url: ${newUrl} }`,
    'sticky: header:x-user-id',
    'log: { level: info }',
    'shutdown: { drainDelay: 0s, timeout: 10s }',
    'routes:',
    '  - name: soak',
    '    match: { path: /api/users/:id }',
    '    new: 0',
    '    shadow: 100',
    ''
  ].join('\n'))
  const logFile = join(dir, 'ficus.log')
  const errFile = join(dir, 'ficus.stderr')
  const [out, err] = [openSync(logFile, 'a'), openSync(errFile, 'a')]
  const env = { ...process.env }
  delete env.FICUS_LOG_LEVEL // the file says info: measured as users run it
  delete env.FICUS_CONFIG
  const child = spawn(process.execPath, [CLI, 'start', '--config', config], { cwd: ROOT, env, stdio: ['ignore', out, err] })
  closeSync(out)
  closeSync(err)
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  let gone = false
  void exited.then(() => { gone = true })
  for (let i = 0; i < 300 && !gone; i++) {
    const line = readFileSync(logFile, 'utf8').split('\n').find((l) => l.includes('"ficus listening"'))
    if (line !== undefined) {
      const { traffic, admin } = JSON.parse(line) as { traffic: string; admin: string }
      await ready(`${admin}/readyz`)
      return { child, trafficUrl: traffic, adminUrl: admin, logFile, errFile, exited }
    }
    await sleep(100)
  }
  child.kill('SIGKILL')
  throw new Error(`Ficus did not start:\n${readFileSync(logFile, 'utf8').slice(-2000)}${readFileSync(errFile, 'utf8').slice(-2000)}`)
}

async function stopFicus(f: Ficus): Promise<void> {
  if (f.child.exitCode !== null || f.child.signalCode !== null) return
  f.child.kill('SIGTERM')
  const timer = setTimeout(() => f.child.kill('SIGKILL'), 15_000)
  await f.exited
  clearTimeout(timer)
}

/** Ficus's warn/error/fatal log lines (the access log is at info). */
async function scanLog(file: string): Promise<{ lines: number; bytes: number; byLevel: Record<string, number>; first: string[] }> {
  const byLevel: Record<string, number> = {}
  const first: string[] = []
  let lines = 0
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    lines++
    const m = /"level":"(warn|error|fatal)"/.exec(line)
    if (m === null) continue
    const level = m[1] as string
    byLevel[level] = (byLevel[level] ?? 0) + 1
    if (first.length < 5) first.push(line.slice(0, 400))
  }
  return { lines, bytes: statSync(file).size, byLevel, first }
}

/* ---------- Metrics ---------- */

interface FicusCounters {
  primary: number
  /** Primary answers other than 2xx, except 499 (counted apart: the client left first). */
  primaryNon2xx: number
  /** 499: the client closed its connection before the answer; expected only for the requests in flight when the load stops. */
  clientAborted: number
  shadowExchanges: number
  comparisons: number
  match: number
  diverged: number
  compareErrors: number
  skipped: number
  divergences: number
  shadowDropped: number
  upstreamErrors: number
  cpuSeconds: number
}

interface Sample {
  t: number
  phase: 'baseline' | 'warmup' | 'soak' | 'after'
  rssMb: number
  heapUsedMb: number
  heapTotalMb: number
  externalMb: number
  lagP99Ms: number
  lagMaxMs: number
  cpuPct: number
  openFds: number
  activeHandles: number
  ficus: FicusCounters
  client: ClientCounters
  /** Client responses per second over the interval since the previous sample. */
  rps: number
}

interface ClientCounters { responses: number; ok: number; non2xx: number; socketErrors: number }

function toSample(s: Series[], t: number, phase: Sample['phase'], client: ClientCounters, prev: Sample | undefined): Sample {
  const g = (name: string): number => sum(s, name)
  const route = (l: Record<string, string>): boolean => l.route === 'soak'
  const outcome = (o: string): number => sum(s, 'ficus_comparisons_total', (l) => route(l) && l.outcome === o)
  const ficus: FicusCounters = {
    primary: sum(s, 'ficus_requests_total', (l) => l.role === 'primary'),
    primaryNon2xx: sum(s, 'ficus_requests_total', (l) => l.role === 'primary' && !(l.code ?? '').startsWith('2') && l.code !== '499'),
    clientAborted: sum(s, 'ficus_requests_total', (l) => l.role === 'primary' && l.code === '499'),
    shadowExchanges: sum(s, 'ficus_requests_total', (l) => l.role === 'shadow'),
    comparisons: sum(s, 'ficus_comparisons_total', route),
    match: outcome('match'),
    diverged: outcome('diverged'),
    compareErrors: outcome('error'),
    skipped: outcome('skipped'),
    divergences: sum(s, 'ficus_divergences_total', route),
    shadowDropped: sum(s, 'ficus_shadow_dropped_total', route),
    upstreamErrors: g('ficus_upstream_errors_total'),
    cpuSeconds: g('process_cpu_seconds_total')
  }
  const dt = prev === undefined ? 0 : t - prev.t
  return {
    t,
    phase,
    rssMb: g('process_resident_memory_bytes') / MB,
    heapUsedMb: g('nodejs_heap_size_used_bytes') / MB,
    heapTotalMb: g('nodejs_heap_size_total_bytes') / MB,
    externalMb: g('nodejs_external_memory_bytes') / MB,
    lagP99Ms: g('nodejs_eventloop_lag_p99_seconds') * 1000,
    lagMaxMs: g('nodejs_eventloop_lag_max_seconds') * 1000,
    cpuPct: prev === undefined || dt <= 0 ? 0 : ((ficus.cpuSeconds - prev.ficus.cpuSeconds) / dt) * 100,
    openFds: g('process_open_fds'),
    activeHandles: g('nodejs_active_handles_total'),
    ficus,
    client: { ...client },
    rps: prev === undefined || dt <= 0 ? 0 : (client.responses - prev.client.responses) / dt
  }
}

/* ---------- Report ---------- */

const HEADER = '| t s | phase | req/s | client errors | RSS MB | heap used MB | heap total MB | external MB | lag p99 ms | lag max ms | CPU % | fds | comparisons | diverged | shadow drops |'
const f1 = (n: number): string => n.toFixed(1)
function row(s: Sample): string {
  const errors = s.client.non2xx + s.client.socketErrors
  return `| ${s.t.toFixed(0)} | ${s.phase} | ${s.phase === 'after' ? '–' : s.rps.toFixed(0)} | ${errors} | ${f1(s.rssMb)} | ${f1(s.heapUsedMb)} | ${f1(s.heapTotalMb)} | ${f1(s.externalMb)} | ` +
    `${f1(s.lagP99Ms)} | ${f1(s.lagMaxMs)} | ${s.cpuPct.toFixed(0)} | ${s.openFds} | ${s.ficus.comparisons} | ${s.ficus.diverged} | ${s.ficus.shadowDropped} |`
}

/** Least-squares slope of y over t, per minute. */
function slopePerMin(points: { t: number; y: number }[]): number {
  if (points.length < 2) return 0
  const mt = points.reduce((a, p) => a + p.t, 0) / points.length
  const my = points.reduce((a, p) => a + p.y, 0) / points.length
  const num = points.reduce((a, p) => a + (p.t - mt) * (p.y - my), 0)
  const den = points.reduce((a, p) => a + (p.t - mt) ** 2, 0)
  return den === 0 ? 0 : (num / den) * 60
}

const growth = (a: number, b: number): { start: number; end: number; growthMb: number; growthPct: number } =>
  ({ start: a, end: b, growthMb: b - a, growthPct: a === 0 ? 0 : ((b - a) / a) * 100 })

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
const out = (text: string): void => { process.stdout.write(text + '\n') }

/* ---------- Main ---------- */

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'ficus-soak-'))
  const legacy = await startBackend('legacy')
  const shadowSide = await startBackend('new')
  let ficus: Ficus | undefined
  let instance: autocannon.Instance | undefined
  const onSignal = (): void => {
    instance?.stop()
    ficus?.child.kill('SIGKILL')
    if (!opt.keep) rmSync(dir, { recursive: true, force: true })
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    ficus = await startFicus(dir, legacy.url, shadowSide.url)
    const f = ficus
    let ficusExit: number | null | undefined
    void f.exited.then((code) => { ficusExit = code })

    out(`soak: Ficus ${f.trafficUrl} (admin ${f.adminUrl}), route soak: new 0, shadow 100, JSON compared; ` +
      `legacy ${legacy.url}, new ${shadowSide.url} (~${legacy.bytes} B JSON per user, ${USERS} users, every ${DIVERGE_EVERY}th differs on new)`)
    out(`load: autocannon, ${RATE} req/s offered over ${CONNECTIONS} connections, random x-user-id; ` +
      `${WARMUP_S} s warm-up + ${MINUTES} min measured; /metrics every ${INTERVAL_S} s; temp dir ${dir}`)
    out(`bounds: RSS growth ≤ ${BOUNDS.rssGrowthMb} MB, heap used growth ≤ ${BOUNDS.heapGrowthMb} MB (first sample after warm-up → last), client errors = ${BOUNDS.clientErrors}`)
    out('')

    const client: ClientCounters = { responses: 0, ok: 0, non2xx: 0, socketErrors: 0 }
    const errorKinds = new Map<string, number>()
    const samples: Sample[] = []
    samples.push(toSample(await scrape(f.adminUrl), 0, 'baseline', client, undefined))
    out(HEADER)
    out('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    out(row(samples[0] as Sample))

    const done = new Promise<autocannon.Result>((resolve, reject) => {
      instance = autocannon({
        url: `${f.trafficUrl}/api/users/0`,
        connections: CONNECTIONS,
        overallRate: RATE,
        duration: TOTAL_S + 3600, // stopped by this script after the last sample
        requests: [{
          method: 'GET',
          setupRequest: (req) => {
            const n = Math.floor(Math.random() * USERS)
            return { ...req, path: `/api/users/${n}`, headers: { ...req.headers, 'x-user-id': `user-${n}` } }
          }
        }]
      }, (err: Error | null, r: autocannon.Result) => { if (err !== null && err !== undefined) reject(err); else resolve(r) })
      instance.on('response', (_c: unknown, status: number) => {
        client.responses++
        if (status >= 200 && status < 300) client.ok++
        else client.non2xx++
      })
      instance.on('reqError', (e: unknown) => {
        client.socketErrors++
        const kind = e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e)
        errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1)
      })
    })
    const t0 = performance.now()

    const times: number[] = []
    for (let t = INTERVAL_S; t < TOTAL_S - 1e-6; t += INTERVAL_S) times.push(t)
    times.push(TOTAL_S)
    for (const t of times) {
      await sleep(t0 + t * 1000 - performance.now())
      if (ficusExit !== undefined) break
      const now = (performance.now() - t0) / 1000
      const phase = t < WARMUP_S - 1e-6 ? 'warmup' : 'soak'
      const s = toSample(await scrape(f.adminUrl), now, phase, client, samples.at(-1))
      samples.push(s)
      out(row(s))
    }
    instance?.stop()
    const result = await done
    const loadSeconds = (performance.now() - t0) / 1000
    // Let the last copies finish, then read the final counters (not used for memory: no load).
    await sleep(2000)
    if (ficusExit === undefined) {
      const after = toSample(await scrape(f.adminUrl), (performance.now() - t0) / 1000, 'after', client, samples.at(-1))
      samples.push(after)
      out(row(after))
    }
    let divergenceSummary: unknown = null
    try {
      const r = await request(`${f.adminUrl}/admin/divergences/summary?route=soak`)
      divergenceSummary = await r.body.json()
    } catch { /* Ficus gone: reported below */ }
    const exitedEarly = ficusExit
    await stopFicus(f)
    const log = await scanLog(f.logFile)
    const stderr = readFileSync(f.errFile, 'utf8')

    return report({ samples, result, loadSeconds, errorKinds, ficusExit: exitedEarly, log, stderr, divergenceSummary, dir })
  } finally {
    if (ficus !== undefined) await stopFicus(ficus)
    await Promise.all([legacy, shadowSide].map(({ server }) => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) })))
    if (opt.keep) process.stderr.write(`soak: kept ${dir} (soak.yaml, ficus.log, ficus.stderr)\n`)
    else rmSync(dir, { recursive: true, force: true })
  }
}

interface Outcome {
  samples: Sample[]
  result: autocannon.Result
  loadSeconds: number
  errorKinds: Map<string, number>
  ficusExit: number | null | undefined
  log: Awaited<ReturnType<typeof scanLog>>
  stderr: string
  divergenceSummary: unknown
  dir: string
}

function report(o: Outcome): number {
  const underLoad = o.samples.filter((s) => s.phase === 'warmup' || s.phase === 'soak')
  const measured = o.samples.filter((s) => s.phase === 'soak')
  const start = measured[0]
  const end = measured.at(-1)
  const last = o.samples.at(-1) as Sample
  const lastLoad = underLoad.at(-1) ?? last
  const r = o.result
  const clientErrors = lastLoad.client.non2xx + lastLoad.client.socketErrors
  // After the load stopped: every response counted (autocannon's own totals agree with the events).
  const finalClient = { responses: r.requests.total, non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts }
  const allClientErrors = Math.max(clientErrors, last.client.non2xx + last.client.socketErrors, r.non2xx + r.errors)

  const rss = start !== undefined && end !== undefined ? growth(start.rssMb, end.rssMb) : null
  const heap = start !== undefined && end !== undefined ? growth(start.heapUsedMb, end.heapUsedMb) : null
  const lag = start !== undefined && end !== undefined ? { start: start.lagP99Ms, end: end.lagP99Ms } : null
  const trend = {
    rssMbPerMin: slopePerMin(measured.map((s) => ({ t: s.t, y: s.rssMb }))),
    heapUsedMbPerMin: slopePerMin(measured.map((s) => ({ t: s.t, y: s.heapUsedMb })))
  }
  const lagP99 = underLoad.map((s) => s.lagP99Ms)
  const lagMax = underLoad.map((s) => s.lagMaxMs)
  const worst = underLoad.reduce<Sample | undefined>((w, s) => (w === undefined || s.lagP99Ms > w.lagP99Ms ? s : w), undefined)
  const fc = last.ficus
  const peakRss = Math.max(...o.samples.map((s) => s.rssMb))

  const checks = [
    { name: 'Ficus ran to the end', ok: o.ficusExit === undefined, detail: o.ficusExit === undefined ? 'yes' : `exited with ${String(o.ficusExit)}` },
    { name: `client errors = ${BOUNDS.clientErrors}`, ok: allClientErrors <= BOUNDS.clientErrors, detail: `${allClientErrors} (non-2xx ${r.non2xx}, socket errors ${r.errors - r.timeouts}, timeouts ${r.timeouts})` },
    { name: `RSS growth ≤ ${BOUNDS.rssGrowthMb} MB`, ok: rss !== null && rss.growthMb <= BOUNDS.rssGrowthMb, detail: rss === null ? 'no sample after the warm-up' : `${rss.growthMb.toFixed(1)} MB` },
    { name: `heap used growth ≤ ${BOUNDS.heapGrowthMb} MB`, ok: heap !== null && heap.growthMb <= BOUNDS.heapGrowthMb, detail: heap === null ? 'no sample after the warm-up' : `${heap.growthMb.toFixed(1)} MB` },
    { name: 'shadow path exercised (comparisons and divergences > 0)', ok: fc.comparisons > 0 && fc.diverged > 0, detail: `${fc.comparisons} comparisons, ${fc.diverged} diverged` }
  ]
  const pass = checks.every((c) => c.ok)

  const pct = (a: number, b: number): string => (b === 0 ? '–' : `${((a / b) * 100).toFixed(1)} %`)
  const sign = (n: number, digits = 1): string => `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`
  const lines = ['', '## Summary', '']
  lines.push(`load: ${RATE} req/s offered, ${CONNECTIONS} connections, ${o.loadSeconds.toFixed(0)} s (${WARMUP_S} s warm-up + ${MINUTES} min); ` +
    `achieved ${(finalClient.responses / o.loadSeconds).toFixed(0)} req/s; client latency p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, max ${r.latency.max} ms`)
  if (start !== undefined && end !== undefined && rss !== null && heap !== null && lag !== null) {
    lines.push(`window: t = ${start.t.toFixed(0)} s (first sample after warm-up) → t = ${end.t.toFixed(0)} s (last sample under load)`, '')
    lines.push('| metric | start | end | growth | growth % | trend (least squares over the window) |', '|---|---|---|---|---|---|')
    lines.push(`| RSS MB | ${f1(rss.start)} | ${f1(rss.end)} | ${sign(rss.growthMb)} MB | ${sign(rss.growthPct)} % | ${sign(trend.rssMbPerMin, 2)} MB/min |`)
    lines.push(`| heap used MB | ${f1(heap.start)} | ${f1(heap.end)} | ${sign(heap.growthMb)} MB | ${sign(heap.growthPct)} % | ${sign(trend.heapUsedMbPerMin, 2)} MB/min |`)
    lines.push(`| event-loop lag p99 ms | ${f1(lag.start)} | ${f1(lag.end)} | ${sign(lag.end - lag.start)} ms | – | – |`)
    lines.push('')
  }
  lines.push(`RSS peak ${f1(peakRss)} MB; heap used range under load ${f1(Math.min(...underLoad.map((s) => s.heapUsedMb)))}–${f1(Math.max(...underLoad.map((s) => s.heapUsedMb)))} MB; ` +
    `open fds ${Math.min(...underLoad.map((s) => s.openFds))}–${Math.max(...underLoad.map((s) => s.openFds))}`)
  lines.push(`event-loop lag p99 per interval: median ${f1(median(lagP99))} ms, worst ${f1(Math.max(...lagP99))} ms` +
    `${worst === undefined ? '' : ` (t = ${worst.t.toFixed(0)} s)`}; max ${f1(Math.max(...lagMax))} ms; Ficus CPU ${f1(median(underLoad.slice(1).map((s) => s.cpuPct)))} % of a core (median)`)
  lines.push(`client: ${finalClient.responses} responses, ${allClientErrors} errors (non-2xx ${r.non2xx}, socket errors ${r.errors - r.timeouts}, timeouts ${r.timeouts})` +
    `${o.errorKinds.size === 0 ? '' : ` [${[...o.errorKinds].map(([k, v]) => `${k}: ${v}`).join(', ')}]`}`)
  lines.push(`ficus: ${fc.primary} primary responses (non-2xx ${fc.primaryNon2xx}; 499 ${fc.clientAborted}, of which under load ${lastLoad.ficus.clientAborted}: ` +
    `the rest were in flight when the load generator closed its connections), ${fc.shadowExchanges} shadow exchanges, upstream errors ${fc.upstreamErrors}`)
  lines.push(`comparisons: ${fc.comparisons} (${pct(fc.comparisons, fc.primary)} of primary): match ${fc.match}, diverged ${fc.diverged} (${pct(fc.diverged, fc.comparisons)}; expected ~${(100 / DIVERGE_EVERY).toFixed(0)} %), ` +
    `error ${fc.compareErrors}, skipped ${fc.skipped}; divergences by part ${fc.divergences}; shadow drops ${fc.shadowDropped}`)
  lines.push(`ficus log: ${o.log.lines} lines, ${(o.log.bytes / MB).toFixed(0)} MB; warn ${o.log.byLevel.warn ?? 0}, error ${o.log.byLevel.error ?? 0}, fatal ${o.log.byLevel.fatal ?? 0}` +
    `${o.stderr.trim() === '' ? '' : `; stderr: ${o.stderr.trim().slice(0, 500)}`}`)
  for (const l of o.log.first) lines.push(`  ${l}`)
  lines.push('')
  for (const c of checks) lines.push(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`)
  lines.push('', `${pass ? 'PASS' : 'FAIL'}: RSS growth ≤ ${BOUNDS.rssGrowthMb} MB, heap used growth ≤ ${BOUNDS.heapGrowthMb} MB, client errors = 0` +
    (rss !== null && heap !== null ? ` (measured ${sign(rss.growthMb)} MB, ${sign(heap.growthMb)} MB, ${allClientErrors})` : ''))
  out(lines.join('\n'))

  if (opt.out !== undefined) {
    writeFileSync(opt.out, JSON.stringify({
      date: new Date().toISOString(),
      node: process.version,
      options: { minutes: MINUTES, warmupSeconds: WARMUP_S, intervalSeconds: INTERVAL_S, rate: RATE, connections: CONNECTIONS },
      setup: { users: USERS, divergeEvery: DIVERGE_EVERY, route: { new: 0, shadow: 100 }, accessLog: 'info' },
      bounds: BOUNDS,
      pass,
      checks,
      summary: {
        window: start !== undefined && end !== undefined ? { startT: start.t, endT: end.t } : null,
        rss, heapUsed: heap, lagP99Ms: lag, trend, peakRssMb: peakRss,
        lagP99MsMedian: median(lagP99), lagP99MsWorst: Math.max(...lagP99), lagMaxMs: Math.max(...lagMax),
        loadSeconds: o.loadSeconds,
        client: { ...finalClient, errorsTotal: allClientErrors, errorKinds: Object.fromEntries(o.errorKinds), latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max } },
        ficus: fc,
        log: { lines: o.log.lines, bytes: o.log.bytes, byLevel: o.log.byLevel, first: o.log.first },
        ficusExit: o.ficusExit ?? null
      },
      divergenceSummary: o.divergenceSummary,
      samples: o.samples
    }, null, 2) + '\n')
  }
  return pass ? 0 : 1
}

const median = (xs: number[]): number => xs.length === 0 ? 0 : middle(xs)

process.exitCode = await main()
