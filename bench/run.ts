import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, HAS_TASKSET, median, pinned, ready, runLoad, spread, treeUsage, type LoadResult } from './procs.js'
import { scrape, sum } from './prom-text.js'

/**
 * `npm run bench`: direct-to-upstream, bare fastify + @fastify/http-proxy, a hand-tuned
 * node:http + undici forwarder (the limit) and the same forwarder shadowing every GET (the
 * limit of shadowing), and Ficus (pass-through, 50 % split, 100 % shadow with JSON
 * comparison) measured in the same run, interleaved round by round, each proxy alone on its
 * own CPU (load generator and upstream share the other), and reported as ratios to the
 * fastify baseline and to the pass-through each configuration is built on (ficus for Ficus's,
 * undici for undici-shadow100) and to the hand-tuned limit of the same work (undici, or
 * undici-shadow100 for shadowing) in the same round: the machines are shared and noisy, so only
 * same-run ratios mean something. CPU per request is the proxy's user+system time (from
 * /proc, summed over its workers) divided by the requests it served.
 *
 * Load: wrk when installed (apt-get install wrk), else autocannon (which saturates its own core first).
 * A run with errors or non-2xx answers measured something else: they are in the table, and
 * the exit code is 1.
 *
 * Then, unless `--parts` leaves them out, the rest of issue #24's measures, each by its own
 * script as a child process (`--json`), and one table of every target with Ficus beside its
 * limit: `compare` (bench/compare.ts: two equal 64 KB JSON bodies against JSON.parse of both),
 * `writes` (bench/sync.ts: a dual route's added p50/p99 with `ack: durable` at a fixed rate,
 * reads on a dual route, delivery throughput, memory with new down), `memory`
 * (bench/shadow-hung.ts: RSS with 100 % shadow to a backend that never answers), `upgrade`
 * (bench/upgrade.ts: tunnels opened and round trips in open tunnels, against a hand-written
 * upgrade forwarder).
 *
 * Options: --rounds 3 --duration 8 --warmup 2 (0: none) --connections 50 --size 1k,64k
 *          --rate 0 (fixed offered load in req/s, for latency at equal load)
 *          --only direct,fastify,undici,undici-shadow100,undici-required,ficus,ficus-split50,ficus-shadow100,
 *                 ficus-stages,ficus-new100,ficus-ramp
 *          (also: undici-shadow100-raw, ficus-shadow10, ficus-workers2, ficus-nolog, and
 *          undici-shadow100-equal, ficus-shadow100-equal: both sides answer the same bytes)
 *          --pin proxy (the proxy alone on CPU 1) | none (no pinning: for ficus vs ficus-workers2)
 *          --parts throughput,compare,writes,memory,upgrade
 *          --write-rate 300 --write-seconds 10 --read-seconds 6 --backlog 20000 (bench/sync.ts's
 *          --rate, --seconds, --read-seconds, --backlog)
 *          --outage 0 (seconds of writes with new down instead of --backlog; the issue's ten minutes: 600)
 *          --hung-requests 10000 (bench/shadow-hung.ts's --requests)
 *          --upgrade-seconds 3 (bench/upgrade.ts's --seconds, for each of its two measures)
 *          --smoke (every part as short as it goes: what CI runs to see that the bench works)
 */
const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    size: { type: 'string', default: '1k,64k' },
    rate: { type: 'string', default: '0' },
    only: { type: 'string', default: 'direct,fastify,undici,undici-shadow100,undici-required,ficus,ficus-split50,ficus-shadow100,ficus-stages,ficus-new100,ficus-ramp' },
    pin: { type: 'string', default: 'proxy' },
    parts: { type: 'string', default: 'throughput,compare,writes,memory,upgrade' },
    'write-rate': { type: 'string', default: '300' },
    'write-seconds': { type: 'string', default: '10' },
    'read-seconds': { type: 'string', default: '6' },
    backlog: { type: 'string', default: '20000' },
    outage: { type: 'string', default: '0' },
    'hung-requests': { type: 'string', default: '10000' },
    'upgrade-seconds': { type: 'string', default: '3' },
    smoke: { type: 'boolean', default: false }
  }
})
/** `--smoke`: every part as short as it goes (CI's check that the bench works; its numbers mean nothing). */
const SMOKE = opt.smoke
if (SMOKE) {
  Object.assign(opt, {
    rounds: '1', duration: '1', warmup: '0', connections: '10', size: '1k',
    'write-rate': '50', 'write-seconds': '2', 'read-seconds': '2', backlog: '300', 'hung-requests': '300', 'upgrade-seconds': '1'
  })
}

const ROOT = join(import.meta.dirname, '..', '..')
const DIST = join(ROOT, 'dist')
/** wrk (apt-get install wrk) is the better load generator: autocannon needs a whole core at ~15k req/s here. */
const HAS_WRK = spawnSync('wrk', ['--version']).error === undefined
if (opt.pin !== 'proxy' && opt.pin !== 'none') throw new Error('--pin is proxy or none')
/** CPUs for taskset; null (`--pin none`): not pinned. */
const CPU_LOAD = opt.pin === 'proxy' ? '0' : null
const CPU_PROXY = opt.pin === 'proxy' ? '1' : null

/**
 * `base`: the pass-through this configuration adds to, for the "vs pass-through" ratios.
 * `counts`: stopped with SIGTERM, on which it prints what it did (Ficus is killed: its graceful
 * shutdown waits out a drain delay). `scratch`: env naming files in a fresh directory of its
 * own (a store, a state file). `setup`: run against its admin URL once it serves, before the load.
 */
interface Config {
  name: string; cmd?: string[]; env?: Record<string, string>; base?: string; limit?: string; counts?: true
  scratch?: (dir: string) => Record<string, string>; setup?: (admin: string) => Promise<void>
  /** new is legacy's port: the same document on both sides, so every comparison matches. */
  equal?: true
}
const ficus = (yaml = 'ficus-bench.yaml'): string[] => [join(DIST, 'src', 'cli.js'), 'start', '--config', join(ROOT, 'bench', yaml)]
const FICUS = ficus()
const UNDICI_SHADOW = [join(DIST, 'bench', 'baseline-undici-shadow.js')]
const CONFIGS = ([
  { name: 'direct' },
  { name: 'fastify', cmd: [join(DIST, 'bench', 'baseline-fastify.js')] },
  { name: 'undici', cmd: [join(DIST, 'bench', 'baseline-undici.js')], base: 'undici' },
  { name: 'undici-shadow100', cmd: UNDICI_SHADOW, base: 'undici', counts: true },
  // The limit also doing what the tests require of Ficus's every request (headers, log line, metrics).
  { name: 'undici-required', cmd: [join(DIST, 'bench', 'baseline-undici.js')], env: { REQUIRED: '1' }, base: 'undici' },
  { name: 'ficus', cmd: FICUS, env: { NEW_PERCENT: '0' }, base: 'ficus', limit: 'undici' },
  { name: 'ficus-split50', cmd: FICUS, env: { NEW_PERCENT: '50' }, base: 'ficus', limit: 'undici' },
  { name: 'ficus-shadow100', cmd: FICUS, env: { NEW_PERCENT: '0', SHADOW_PERCENT: '100' }, base: 'ficus', limit: 'undici-shadow100' },
  // Every stage added since #18 switched on for other routes (a dual route and its store, a
  // ramped and shadowed route with compare rules): what they cost a route that does not use
  // them (target: ≤ 3 % of pass-through).
  { name: 'ficus-stages', cmd: ficus('ficus-bench-stages.yaml'), env: { NEW_PERCENT: '0' }, base: 'ficus', limit: 'undici', scratch: (d) => ({ FICUS_STORE: join(d, 'store') }) },
  // Every request on new (the same upstream): what a route on new adds, its breaker admission and budget timer included.
  { name: 'ficus-new100', cmd: FICUS, env: { NEW_PERCENT: '100' }, base: 'ficus', limit: 'undici' },
  // The route under a ramp, started before the load (5 % on new): the controller's rounds and gates.
  {
    name: 'ficus-ramp', cmd: ficus('ficus-bench-ramp.yaml'), base: 'ficus', limit: 'undici', scratch: (d) => ({ FICUS_STATE: join(d, 'state.json') }),
    setup: async (admin) => {
      const r = await fetch(`${admin}/admin/ramp/bench/start`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"reason":"bench"}' })
      if (!r.ok) throw new Error(`ficus-ramp: starting the ramp answered ${r.status}: ${await r.text()}`)
    }
  },
  // Not in the default set: the shadowing limit with a minimal hand-written HTTP client for
  // the copies (the floor of a copy's cost), Ficus shadowing a sample, two workers (compare
  // with ficus under --pin none), and Ficus with the access log off (log level warn, a diagnostic).
  { name: 'undici-shadow100-raw', cmd: UNDICI_SHADOW, env: { COPY: 'raw' }, base: 'undici', counts: true },
  { name: 'ficus-shadow10', cmd: FICUS, env: { NEW_PERCENT: '0', SHADOW_PERCENT: '10' }, base: 'ficus', limit: 'undici' },
  { name: 'ficus-workers2', cmd: [...FICUS, '--workers', '2'], env: { NEW_PERCENT: '0' }, base: 'ficus' },
  { name: 'ficus-nolog', cmd: FICUS, env: { NEW_PERCENT: '0', FICUS_LOG_LEVEL: 'warn' }, base: 'ficus', limit: 'undici' },
  // 100 % shadow where both sides answer the same bytes (the common case once new is right): no divergence to keep.
  { name: 'undici-shadow100-equal', cmd: UNDICI_SHADOW, base: 'undici', counts: true, equal: true },
  { name: 'ficus-shadow100-equal', cmd: FICUS, env: { NEW_PERCENT: '0', SHADOW_PERCENT: '100' }, base: 'ficus', limit: 'undici-shadow100-equal', equal: true }
] as Config[]).filter((c) => opt.only.split(',').includes(c.name))
const SIZES = opt.size.split(',')
if (SIZES.some((x) => x !== '1k' && x !== '64k')) throw new Error('--size is 1k, 64k or 1k,64k')
const PARTS = opt.parts.split(',')
/** Connections of bench/shadow-hung.ts's load. */
const HUNG_CONNECTIONS = SMOKE ? '10' : '50'
for (const p of PARTS) if (!['throughput', 'compare', 'writes', 'memory', 'upgrade'].includes(p)) throw new Error(`--parts: ${p}? (throughput, compare, writes, memory, upgrade)`)

interface Run { name: string; size: string; round: number; rps: number; p50: number; p99: number; cpuUs: number | null; rssMb: number | null; errors: number; non2xx: number; copies: Copies | null }

/** What a shadowing Ficus did with its copies, from its /metrics (warm-up included). */
interface Copies { requests: number; outcomes: Record<string, number>; dropped: number }

async function copiesOf(adminPort: number): Promise<Copies> {
  const s = await scrape(`http://127.0.0.1:${adminPort}`)
  const outcomes: Record<string, number> = {}
  for (const x of s) if (x.name === 'ficus_comparisons_total') outcomes[x.labels.outcome ?? ''] = (outcomes[x.labels.outcome ?? ''] ?? 0) + x.value
  return {
    requests: sum(s, 'ficus_requests_total', (l) => l.role === 'primary'),
    outcomes,
    dropped: sum(s, 'ficus_shadow_dropped_total')
  }
}

function start(cpu: string | null, argv: string[], env: Record<string, string>): ChildProcess {
  const [cmd, args] = pinned(cpu, argv)
  // Its own process group: the kill below reaches a Ficus primary's workers too.
  return spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'], detached: true })
}

/**
 * Stops a proxy: SIGKILL to its whole process group (a Ficus primary's workers too); first
 * SIGTERM when it prints its `counts` then, waiting 5 s at most for it to exit.
 */
async function stop(proxy: ChildProcess, counts: boolean): Promise<void> {
  const pid = proxy.pid
  if (pid === undefined) return // it never started
  if (counts && proxy.exitCode === null && proxy.signalCode === null) {
    const exited = new Promise((resolve) => proxy.once('exit', resolve))
    proxy.kill('SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())])
  }
  try { process.kill(-pid, 'SIGKILL') } catch { /* the group is gone */ }
}

/** One load run from a child process pinned to the load CPU: wrk if installed (not with --rate), else autocannon. */
async function load(url: string, seconds: string): Promise<LoadResult> {
  const useWrk = HAS_WRK && opt.rate === '0'
  const argv = useWrk
    ? ['wrk', '-t1', `-c${opt.connections}`, `-d${seconds}s`, '-s', join(ROOT, 'bench', 'wrk.lua'), url]
    : [process.execPath, join(DIST, 'bench', 'load.js')]
  return runLoad(CPU_LOAD, argv, { URL: url, CONNECTIONS: opt.connections, DURATION: seconds, RATE: opt.rate }, useWrk ? 'WRKJSON ' : undefined)
}

async function main(): Promise<void> {
  const runs: Run[] = []
  if (PARTS.includes('throughput')) {
    for (const size of SIZES) runs.push(...await throughput(size))
  }
  // Printed now: a part that fails below does not lose them.
  if (runs.length > 0) process.stdout.write(SIZES.map((size) => report(runs.filter((r) => r.size === size), size)).join('\n') + '\n')
  const failures: string[] = runs.filter((r) => r.errors + r.non2xx > 0).map((r) => `${r.name} ${r.size} round ${r.round}: errors or non-2xx answers`)
  /** A part that throws is reported (FAILED below, exit code 1) and the others still run. */
  const part = async <T>(name: string, run: () => Promise<T>): Promise<T | null> => {
    if (!PARTS.includes(name)) return null
    try {
      return await run()
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`)
      return null
    }
  }
  const extra: Extra = {
    compare: await part('compare', async () => await child<CompareResult>('compare', ['--json', '--size', '64k', ...(SMOKE ? ['--rounds', '1', '--n', '30'] : [])])),
    writes: await part('writes', async () => await child<SyncResult>('sync', ['--json', '--rate', opt['write-rate'], '--seconds', opt['write-seconds'], '--read-seconds', opt['read-seconds'], '--backlog', opt.backlog, '--outage', opt.outage, ...(SMOKE ? ['--notes', '20', '--commits', '150'] : [])])),
    hung: await part('memory', async () => await child<HungResult>('shadow-hung', ['--json', '--requests', opt['hung-requests'], '--connections', HUNG_CONNECTIONS, ...(SMOKE ? ['--timeout', '1s'] : [])], ['--expose-gc'])),
    upgrade: await part('upgrade', async () => await child<UpgradeResult>('upgrade', ['--json', '--rounds', opt.rounds, '--seconds', opt['upgrade-seconds']]))
  }
  process.stdout.write('\n' + targets(runs, extra, failures))
  if (failures.length > 0) {
    process.stdout.write(`\nFAILED: ${failures.join('; ')}: those numbers measure something else, or are missing\n`)
    process.exitCode = 1
  }
}

/** `--rounds` rounds of every configuration at one body size, interleaved. */
async function throughput(size: string): Promise<Run[]> {
  const [legacyPort, newPort] = [await freePort(), await freePort()]
  const upstream = start(CPU_LOAD, [process.execPath, join(DIST, 'bench', 'upstream.js')], { PORTS: `${legacyPort},${newPort}` })
  const legacyUrl = `http://127.0.0.1:${legacyPort}`
  const path = `/${size}.json`
  const runs: Run[] = []
  const scratch = mkdtempSync(join(tmpdir(), 'ficus-bench-'))
  try {
    await ready(legacyUrl + path)
    process.stderr.write(`bench: ${opt.rounds} rounds × ${CONFIGS.map((c) => c.name).join(', ')}; ${opt.duration}s each, ${opt.connections} connections, ${size}, ` +
      `load: ${HAS_WRK && opt.rate === '0' ? 'wrk' : 'autocannon'}` +
      `${opt.rate === '0' ? '' : `, ${opt.rate} req/s`}; pinned: ${HAS_TASKSET && CPU_PROXY !== null ? `proxy on CPU ${CPU_PROXY}, load + upstream on CPU ${CPU_LOAD}` : CPU_PROXY === null ? 'no (--pin none)' : 'no (taskset missing)'}\n`)
    for (let round = 1; round <= Number(opt.rounds); round++) {
      for (const c of CONFIGS) {
        let proxy: ChildProcess | null = null
        let url = legacyUrl + path
        // A Ficus: its admin port, to read what it did with its copies or to start its ramp.
        const adminPort = c.env !== undefined || c.setup !== undefined ? await freePort() : null
        try {
          if (c.cmd !== undefined) {
            const port = await freePort()
            const dir = c.scratch === undefined ? null : mkdtempSync(join(scratch, `${c.name}-`))
            proxy = start(CPU_PROXY, [process.execPath, ...c.cmd], {
              PORT: String(port), LEGACY_URL: legacyUrl, NEW_URL: c.equal === true ? legacyUrl : `http://127.0.0.1:${newPort}`, FICUS_LOG_LEVEL: 'info',
              ...(adminPort === null ? {} : { ADMIN_PORT: String(adminPort) }), ...c.env, ...(dir === null ? {} : c.scratch?.(dir))
            })
            url = `http://127.0.0.1:${port}${path}`
            await ready(url)
            if (c.setup !== undefined) await c.setup(`http://127.0.0.1:${adminPort as number}`)
          }
          if (Number(opt.warmup) > 0) await load(url, opt.warmup)
          const before = treeUsage(proxy?.pid)
          const r = await load(url, opt.duration)
          const after = treeUsage(proxy?.pid)
          const copies = c.env?.SHADOW_PERCENT === undefined || adminPort === null ? null : await copiesOf(adminPort)
          const cpuUs = before === null || after === null || r.total === 0 ? null : (after.cpuUs - before.cpuUs) / r.total
          runs.push({ name: c.name, size, round, rps: r.rps, p50: r.p50, p99: r.p99, cpuUs, rssMb: after?.rssMb ?? null, errors: r.errors, non2xx: r.non2xx, copies })
          process.stderr.write(`  ${size} round ${round} ${c.name.padEnd(16)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99} ms` +
            `${cpuUs === null ? '' : `  ${cpuUs.toFixed(0)} µs CPU/req`}${r.errors + r.non2xx > 0 ? `  ERRORS ${r.errors} non2xx ${r.non2xx}` : ''}` +
            `${copies === null ? '' : `  copies of ${copies.requests} requests: ${Object.entries(copies.outcomes).map(([k, v]) => `${k} ${v}`).join(', ')}; dropped ${copies.dropped}`}\n`)
        } finally {
          // Whatever failed (its start, its ramp, the load), no proxy outlives its run.
          if (proxy !== null) await stop(proxy, c.counts === true)
        }
      }
    }
  } finally {
    upstream.kill('SIGTERM')
    rmSync(scratch, { recursive: true, force: true })
  }
  return runs
}

/** Another bench script's `--json` result (its stdout); its progress goes to our stderr. */
async function child<T>(script: string, args: string[], nodeArgs: string[] = []): Promise<T> {
  process.stderr.write(`bench: ${script} ${args.join(' ')}\n`)
  const p = spawn(process.execPath, [...nodeArgs, join(DIST, 'bench', `${script}.js`), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  p.stdout.on('data', (d: Buffer) => { out += d.toString() })
  // 'close', not 'exit': the child's stdout is read to its end.
  const [code] = await once(p, 'close') as [number | null]
  if (code !== 0) throw new Error(`bench/${script}.js ${args.join(' ')} exited with ${String(code)}`)
  return JSON.parse(out) as T
}

/** What bench/compare.ts, bench/sync.ts and bench/shadow-hung.ts print with --json (the parts read here). */
interface CompareResult { size: string; cases: Record<string, { us: number; parseUs: number; vsParse: number; min: number; max: number; equal: boolean; outcome: string }> }
interface Latency { p50: number; p99: number }
interface SyncResult {
  writes: { rate: number; plain: Latency; dual: Latency }
  reads: Record<'plain' | 'dual', { perSecond: number } & Latency>
  delivery: { backlog: number; seconds: number; perSecond: number }
  commit: Latency
  memory: { rssMaxMiB: number; anonMaxMiB: number }
}
type HungResult = { name: string; requests: number; failed: number; p50: number; p99: number; rssPeakMb: number }[]
interface Rates { direct: number; limit: number; ficus: number; ficusVsLimit: number[] }
interface UpgradeResult { connections: number; message: number; handshakes: Rates; echo: Rates }
interface Extra { compare: CompareResult | null; writes: SyncResult | null; hung: HungResult | null; upgrade: UpgradeResult | null }


/** Per round, `name`'s f ÷ `base`'s f (rounds where either is missing left out). */
function ratios(runs: Run[], name: string, base: string, f: (r: Run) => number | null): number[] {
  return [...new Set(runs.map((r) => r.round))].flatMap((round) => {
    const a = runs.find((r) => r.round === round && r.name === name)
    const b = runs.find((r) => r.round === round && r.name === base)
    const x = a === undefined ? null : f(a)
    const y = b === undefined ? null : f(b)
    return x === null || y === null || y === 0 ? [] : [x / y]
  })
}

/** The table of one body size's runs. */
function report(runs: Run[], size: string): string {
  const ratio = (name: string, base: string, f: (r: Run) => number | null): number[] => ratios(runs, name, base, f)
  const lines = [
    `### ${size === '1k' ? '1 KB' : '64 KB'} answers`, '',
    `| config | req/s (median [min–max]) | p99 ms | CPU µs/req | RSS MiB | vs the limit (req/s) | vs the limit (CPU/req) | vs fastify (req/s) | vs fastify (CPU/req) | vs pass-through (req/s) | vs pass-through (CPU/req) | errors + non-2xx |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const c of CONFIGS) {
    const mine = runs.filter((r) => r.name === c.name)
    const cpu = mine.flatMap((r) => (r.cpuUs === null ? [] : [r.cpuUs]))
    const rss = mine.flatMap((r) => (r.rssMb === null ? [] : [r.rssMb]))
    const vs = (f: (r: Run) => number | null): string => spread(c.base === undefined ? [] : ratio(c.name, c.base, f))
    const limit = (f: (r: Run) => number | null): string => spread(c.limit === undefined ? [] : ratio(c.name, c.limit, f))
    lines.push(`| ${c.name} | ${spread(mine.map((r) => r.rps), 0)} | ${spread(mine.map((r) => r.p99), 0)} | ${spread(cpu, 0)} | ${spread(rss, 0)} | ` +
      `${limit((r) => r.rps)} | ${limit((r) => r.cpuUs)} | ` +
      `${spread(ratio(c.name, 'fastify', (r) => r.rps))} | ${spread(ratio(c.name, 'fastify', (r) => r.cpuUs))} | ${vs((r) => r.rps)} | ${vs((r) => r.cpuUs)} | ${mine.reduce((n, r) => n + r.errors + r.non2xx, 0)} |`)
  }
  const limited = CONFIGS.filter((c) => c.limit !== undefined && CONFIGS.some((x) => x.name === c.limit))
  if (limited.length > 0) lines.push('', `vs the limit, in the same round: ${limited.map((c) => `${c.name} ÷ ${c.limit as string}`).join(', ')} (the hand-tuned forwarder doing the same work; targets in docs/benchmarks.md).`)
  const based = CONFIGS.filter((c) => c.base !== undefined && c.base !== c.name)
  if (based.length > 0) lines.push('', `vs pass-through, in the same round: ${based.map((c) => `${c.name} ÷ ${c.base as string}`).join(', ')}.`)
  // A copy dropped at a bound is a copy not made: the ratio then measures a sample.
  const dropping = runs.filter((r) => r.copies !== null && r.copies.dropped > 0)
  if (dropping.length > 0) lines.push('', `Copies dropped at a shadow bound (those runs shadowed less than their share): ${dropping.map((r) => `${r.name} round ${r.round}: ${r.copies?.dropped} of ${r.copies?.requests}`).join(', ')}.`)
  return lines.join('\n') + '\n'
}

/**
 * Issue #24's targets, each with Ficus's number, its limit's (the work's floor measured in the
 * same run) and whether it holds. A ratio is the median of the rounds' ratios [min–max].
 */
function targets(runs: Run[], x: Extra, failures: string[]): string {
  const rows: string[] = []
  /** verdict: met when `ok`, not met otherwise; '–' when nothing was measured or no target applies. */
  const row = (measure: string, ficus: string, limit: string, ratio: string, target: string, ok: boolean | null): void => {
    rows.push(`| ${measure} | ${ficus} | ${limit} | ${ratio} | ${target} | ${ok === null ? '–' : ok ? 'met' : 'NOT MET'} |`)
  }
  const med = (xs: number[]): number | null => xs.length === 0 ? null : median(xs)
  for (const size of SIZES) {
    const at = runs.filter((r) => r.size === size)
    if (at.length === 0) continue
    const rps = (name: string): string => { const m = med(at.filter((r) => r.name === name).map((r) => r.rps)); return m === null ? '–' : `${m.toFixed(0)} req/s` }
    const cpu = (name: string): string => { const m = med(at.flatMap((r) => r.name === name && r.cpuUs !== null ? [r.cpuUs] : [])); return m === null ? '–' : `${m.toFixed(0)} µs CPU/req` }
    const vs = (name: string, base: string, f: (r: Run) => number | null, target: string, ok: (m: number) => boolean | null, measure: string, show: (n: string) => string): void => {
      const xs = ratios(at, name, base, f)
      const m = med(xs)
      if (!at.some((r) => r.name === name) || !at.some((r) => r.name === base)) return
      row(`${measure}, ${size}`, show(name), show(base), spread(xs), target, m === null ? null : ok(m))
    }
    vs('ficus', 'undici', (r) => r.rps, '≥ 0.90', (m) => m >= 0.9, 'pass-through req/s (ficus ÷ undici)', rps)
    vs('ficus', 'undici', (r) => r.cpuUs, '≤ 1.10', (m) => m <= 1.1, 'pass-through CPU per request (ficus ÷ undici)', cpu)
    vs('ficus', 'undici-required', (r) => r.rps, '–', () => null, 'pass-through req/s beside the limit doing the required work (ficus ÷ undici-required)', rps)
    vs('ficus', 'undici-required', (r) => r.cpuUs, '–', () => null, 'pass-through CPU per request (ficus ÷ undici-required)', cpu)
    vs('ficus-shadow100', 'undici-shadow100', (r) => r.rps, '≥ 1.00', (m) => m >= 1, '100 % shadow req/s (ficus-shadow100 ÷ undici-shadow100)', rps)
    vs('ficus-shadow100-equal', 'undici-shadow100-equal', (r) => r.rps, '–', () => null, '100 % shadow, equal answers (ficus-shadow100-equal ÷ undici-shadow100-equal)', rps)
    vs('ficus-stages', 'ficus', (r) => r.rps, '≥ 0.97', (m) => m >= 0.97, 'every later stage on, on other routes (ficus-stages ÷ ficus)', rps)
    vs('ficus-new100', 'ficus', (r) => r.rps, '–', () => null, 'in use: a route on new, its breaker (ficus-new100 ÷ ficus)', rps)
    vs('ficus-ramp', 'ficus', (r) => r.rps, '–', () => null, 'in use: a ramp under way at 5 % (ficus-ramp ÷ ficus)', rps)
  }
  if (x.compare !== null) {
    const c = x.compare
    for (const [name, r] of Object.entries(c.cases)) {
      // Equal or not by construction (bench/compare.ts): a comparison that says otherwise is a bug, not a number.
      if ((r.outcome === 'match') !== r.equal) failures.push(`compare, ${name}: ${r.outcome} for ${r.equal ? 'equal' : 'different'} documents`)
      row(`compare two ${r.equal ? 'equal' : 'different'} ${c.size} JSON bodies: ${name}`, `${r.us.toFixed(0)} µs`, `${r.parseUs.toFixed(0)} µs (JSON.parse of both)`, `${r.vsParse.toFixed(2)} [${r.min.toFixed(2)}–${r.max.toFixed(2)}]`,
        r.equal ? '≤ 1.00' : '–', r.outcome === 'match' !== r.equal ? false : r.equal ? r.vsParse <= 1 : null)
    }
  }
  if (x.writes !== null) {
    const w = x.writes
    const ms = (v: number): string => `${v.toFixed(2)} ms`
    row(`dual writes, ack: durable, ${w.writes.rate} PUT/s: added p50`, ms(w.writes.dual.p50 - w.writes.plain.p50), `${ms(2 * w.commit.p50)} (two durable LMDB commits)`, '–', '≤ +1.5 ms', w.writes.dual.p50 - w.writes.plain.p50 <= 1.5)
    row(`dual writes, ack: durable, ${w.writes.rate} PUT/s: added p99`, ms(w.writes.dual.p99 - w.writes.plain.p99), `${ms(2 * w.commit.p99)} (2 × one durable LMDB commit's p99)`, '–', '≤ +6 ms', w.writes.dual.p99 - w.writes.plain.p99 <= 6)
    row('in use: reads on a dual route (dual ÷ plain)', `${w.reads.dual.perSecond.toFixed(0)} req/s`, `${w.reads.plain.perSecond.toFixed(0)} req/s (the route without sync)`, (w.reads.dual.perSecond / w.reads.plain.perSecond).toFixed(2), '≥ 0.95', w.reads.dual.perSecond / w.reads.plain.perSecond >= 0.95)
    row(`delivery of ${w.delivery.backlog} pending writes, new back`, `${w.delivery.perSecond.toFixed(0)} /s`, '–', '–', '≥ 2,000 /s', w.delivery.perSecond >= 2000)
    row(`RSS, dual-write target down (${Number(opt.outage) > 0 ? `${opt.outage} s of writes` : `${w.delivery.backlog} writes pending`})`,
      `${w.memory.anonMaxMiB.toFixed(0)} MiB anonymous (${w.memory.rssMaxMiB.toFixed(0)} MiB with the store's mapped file)`, '–', '–', '≤ 200 MB', w.memory.anonMaxMiB * 1.048576 <= 200)
  }
  if (x.hung !== null) {
    const hung = x.hung.find((r) => r.name === 'shadow-hung')
    const plain = x.hung.find((r) => r.name === 'noshadow')
    for (const r of x.hung) if (r.failed > 0) failures.push(`memory, ${r.name}: ${r.failed} of ${r.requests} requests failed`)
    if (hung !== undefined && plain !== undefined) {
      // rssMb() reads VmRSS in MiB; the target is in MB.
      row(`RSS peak, 100 % shadow to a hung backend, ${hung.requests} requests on ${HUNG_CONNECTIONS} connections`, `${hung.rssPeakMb.toFixed(0)} MiB`, `${plain.rssPeakMb.toFixed(0)} MiB (no shadow)`, '–', '≤ 200 MB',
        hung.failed === 0 && hung.rssPeakMb * 1.048576 <= 200)
      row('client p99 with 100 % shadow to a hung backend (÷ no shadow)', `${hung.p99} ms`, `${plain.p99} ms`, (hung.p99 / Math.max(plain.p99, 1)).toFixed(2), '–', null)
    }
  }
  if (x.upgrade !== null) {
    const u = x.upgrade
    row(`in use: Upgrade tunnels opened per second (${u.connections} clients)`, `${u.handshakes.ficus.toFixed(0)} /s`, `${u.handshakes.limit.toFixed(0)} /s (a hand-written upgrade forwarder)`, spread(u.handshakes.ficusVsLimit), '–', null)
    row(`in use: round trips of ${u.message} bytes in open tunnels`, `${u.echo.ficus.toFixed(0)} /s`, `${u.echo.limit.toFixed(0)} /s`, spread(u.echo.ficusVsLimit), '–', null)
  }
  return [
    '### Against the targets (issue #24)', '',
    'Ficus and the limit: medians over the rounds; ratio: the median [min–max] of the same-round ratios (so not always Ficus ÷ the limit of the two medians).',
    ...(failures.length > 0 ? ['', `FAILED parts or runs: ${failures.join('; ')}.`] : []), '',
    '| measure | Ficus | the limit | ratio | target | |',
    '|---|---|---|---|---|---|',
    ...rows
  ].join('\n') + '\n'
}

await main()
