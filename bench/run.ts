import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, HAS_TASKSET, pinned, ready, runLoad, treeUsage, type LoadResult } from './procs.js'
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
 * Options: --rounds 3 --duration 10 --warmup 2 (0: none) --connections 50 --size 1k|64k
 *          --rate 0 (fixed offered load in req/s, for latency at equal load)
 *          --only direct,fastify,undici,undici-shadow100,ficus,ficus-split50,ficus-shadow100
 *          (also: undici-shadow100-raw, ficus-shadow10, ficus-workers2, ficus-nolog, ficus-new100)
 *          --pin proxy (the proxy alone on CPU 1) | none (no pinning: for ficus vs ficus-workers2)
 */
const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '50' },
    size: { type: 'string', default: '1k' },
    rate: { type: 'string', default: '0' },
    only: { type: 'string', default: 'direct,fastify,undici,undici-shadow100,ficus,ficus-split50,ficus-shadow100' },
    pin: { type: 'string', default: 'proxy' }
  }
})

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
 * shutdown waits out a drain delay).
 */
interface Config { name: string; cmd?: string[]; env?: Record<string, string>; base?: string; limit?: string; counts?: true }
const FICUS = [join(DIST, 'src', 'cli.js'), 'start', '--config', join(ROOT, 'bench', 'ficus-bench.yaml')]
const UNDICI_SHADOW = [join(DIST, 'bench', 'baseline-undici-shadow.js')]
const CONFIGS = ([
  { name: 'direct' },
  { name: 'fastify', cmd: [join(DIST, 'bench', 'baseline-fastify.js')] },
  { name: 'undici', cmd: [join(DIST, 'bench', 'baseline-undici.js')], base: 'undici' },
  { name: 'undici-shadow100', cmd: UNDICI_SHADOW, base: 'undici', counts: true },
  { name: 'ficus', cmd: FICUS, env: { NEW_PERCENT: '0' }, base: 'ficus', limit: 'undici' },
  { name: 'ficus-split50', cmd: FICUS, env: { NEW_PERCENT: '50' }, base: 'ficus', limit: 'undici' },
  { name: 'ficus-shadow100', cmd: FICUS, env: { NEW_PERCENT: '0', SHADOW_PERCENT: '100' }, base: 'ficus', limit: 'undici-shadow100' },
  // Not in the default set: the shadowing limit with a minimal hand-written HTTP client for
  // the copies (the floor of a copy's cost), Ficus shadowing a sample, two workers (compare
  // with ficus under --pin none), and Ficus with the access log off (log level warn, a diagnostic).
  { name: 'undici-shadow100-raw', cmd: UNDICI_SHADOW, env: { COPY: 'raw' }, base: 'undici', counts: true },
  { name: 'ficus-shadow10', cmd: FICUS, env: { NEW_PERCENT: '0', SHADOW_PERCENT: '10' }, base: 'ficus', limit: 'undici' },
  { name: 'ficus-workers2', cmd: [...FICUS, '--workers', '2'], env: { NEW_PERCENT: '0' }, base: 'ficus' },
  { name: 'ficus-nolog', cmd: FICUS, env: { NEW_PERCENT: '0', FICUS_LOG_LEVEL: 'warn' }, base: 'ficus', limit: 'undici' },
  // Every request on new (the same upstream): what a route on new adds, its breaker admission and budget timer included.
  { name: 'ficus-new100', cmd: FICUS, env: { NEW_PERCENT: '100' }, base: 'ficus', limit: 'undici' }
] as Config[]).filter((c) => opt.only.split(',').includes(c.name))

interface Run { name: string; round: number; rps: number; p50: number; p99: number; cpuUs: number | null; rssMb: number | null; errors: number; non2xx: number; copies: Copies | null }

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
  const [legacyPort, newPort] = [await freePort(), await freePort()]
  const upstream = start(CPU_LOAD, [process.execPath, join(DIST, 'bench', 'upstream.js')], { PORTS: `${legacyPort},${newPort}` })
  const legacyUrl = `http://127.0.0.1:${legacyPort}`
  const path = `/${opt.size}.json`
  await ready(legacyUrl + path)
  const runs: Run[] = []
  process.stderr.write(`bench: ${opt.rounds} rounds × ${CONFIGS.map((c) => c.name).join(', ')}; ${opt.duration}s each, ${opt.connections} connections, ${opt.size}, ` +
    `load: ${HAS_WRK && opt.rate === '0' ? 'wrk' : 'autocannon'}` +
    `${opt.rate === '0' ? '' : `, ${opt.rate} req/s`}; pinned: ${HAS_TASKSET && CPU_PROXY !== null ? `proxy on CPU ${CPU_PROXY}, load + upstream on CPU ${CPU_LOAD}` : CPU_PROXY === null ? 'no (--pin none)' : 'no (taskset missing)'}\n`)
  try {
    for (let round = 1; round <= Number(opt.rounds); round++) {
      for (const c of CONFIGS) {
        let proxy: ChildProcess | null = null
        let url = legacyUrl + path
        // A shadowing Ficus: its admin port, to read what it did with its copies.
        const adminPort = c.env?.SHADOW_PERCENT !== undefined ? await freePort() : null
        if (c.cmd !== undefined) {
          const port = await freePort()
          proxy = start(CPU_PROXY, [process.execPath, ...c.cmd], {
            PORT: String(port), LEGACY_URL: legacyUrl, NEW_URL: `http://127.0.0.1:${newPort}`, FICUS_LOG_LEVEL: 'info',
            ...(adminPort === null ? {} : { ADMIN_PORT: String(adminPort) }), ...c.env
          })
          url = `http://127.0.0.1:${port}${path}`
          await ready(url)
        }
        if (Number(opt.warmup) > 0) await load(url, opt.warmup)
        const before = treeUsage(proxy?.pid)
        const r = await load(url, opt.duration)
        const after = treeUsage(proxy?.pid)
        const copies = adminPort === null ? null : await copiesOf(adminPort)
        if (proxy !== null) await stop(proxy, c.counts === true)
        const cpuUs = before === null || after === null || r.total === 0 ? null : (after.cpuUs - before.cpuUs) / r.total
        runs.push({ name: c.name, round, rps: r.rps, p50: r.p50, p99: r.p99, cpuUs, rssMb: after?.rssMb ?? null, errors: r.errors, non2xx: r.non2xx, copies })
        process.stderr.write(`  round ${round} ${c.name.padEnd(14)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99} ms` +
          `${cpuUs === null ? '' : `  ${cpuUs.toFixed(0)} µs CPU/req`}${r.errors + r.non2xx > 0 ? `  ERRORS ${r.errors} non2xx ${r.non2xx}` : ''}` +
          `${copies === null ? '' : `  copies of ${copies.requests} requests: ${Object.entries(copies.outcomes).map(([k, v]) => `${k} ${v}`).join(', ')}; dropped ${copies.dropped}`}\n`)
      }
    }
  } finally {
    upstream.kill('SIGTERM')
  }
  report(runs)
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

function report(runs: Run[]): void {
  const rounds = [...new Set(runs.map((r) => r.round))]
  const ratio = (name: string, base: string, f: (r: Run) => number | null): number[] => rounds.flatMap((round) => {
    const a = runs.find((r) => r.round === round && r.name === name)
    const b = runs.find((r) => r.round === round && r.name === base)
    const x = a === undefined ? null : f(a)
    const y = b === undefined ? null : f(b)
    return x === null || y === null || y === 0 ? [] : [x / y]
  })
  const fmt = (xs: number[], digits = 2): string => xs.length === 0 ? '–' : `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}]`
  const lines = [
    `| config | req/s (median [min–max]) | p99 ms | CPU µs/req | RSS MB | vs the limit (req/s) | vs the limit (CPU/req) | vs fastify (req/s) | vs fastify (CPU/req) | vs pass-through (req/s) | vs pass-through (CPU/req) | errors + non-2xx |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const c of CONFIGS) {
    const mine = runs.filter((r) => r.name === c.name)
    const cpu = mine.flatMap((r) => (r.cpuUs === null ? [] : [r.cpuUs]))
    const rss = mine.flatMap((r) => (r.rssMb === null ? [] : [r.rssMb]))
    const vs = (f: (r: Run) => number | null): string => fmt(c.base === undefined ? [] : ratio(c.name, c.base, f))
    const limit = (f: (r: Run) => number | null): string => fmt(c.limit === undefined ? [] : ratio(c.name, c.limit, f))
    lines.push(`| ${c.name} | ${fmt(mine.map((r) => r.rps), 0)} | ${fmt(mine.map((r) => r.p99), 0)} | ${fmt(cpu, 0)} | ${fmt(rss, 0)} | ` +
      `${limit((r) => r.rps)} | ${limit((r) => r.cpuUs)} | ` +
      `${fmt(ratio(c.name, 'fastify', (r) => r.rps))} | ${fmt(ratio(c.name, 'fastify', (r) => r.cpuUs))} | ${vs((r) => r.rps)} | ${vs((r) => r.cpuUs)} | ${mine.reduce((n, r) => n + r.errors + r.non2xx, 0)} |`)
  }
  const limited = CONFIGS.filter((c) => c.limit !== undefined && CONFIGS.some((x) => x.name === c.limit))
  if (limited.length > 0) lines.push('', `vs the limit, in the same round: ${limited.map((c) => `${c.name} ÷ ${c.limit as string}`).join(', ')} (the hand-tuned forwarder doing the same work; targets in docs/benchmarks.md).`)
  const based = CONFIGS.filter((c) => c.base !== undefined && c.base !== c.name)
  if (based.length > 0) lines.push('', `vs pass-through, in the same round: ${based.map((c) => `${c.name} ÷ ${c.base as string}`).join(', ')}.`)
  // A copy dropped at a bound is a copy not made: the ratio then measures a sample.
  const dropping = runs.filter((r) => r.copies !== null && r.copies.dropped > 0)
  if (dropping.length > 0) lines.push('', `Copies dropped at a shadow bound (those runs shadowed less than their share): ${dropping.map((r) => `${r.name} round ${r.round}: ${r.copies?.dropped} of ${r.copies?.requests}`).join(', ')}.`)
  const failed = runs.filter((r) => r.errors + r.non2xx > 0)
  process.stdout.write(lines.join('\n') + '\n')
  if (failed.length > 0) {
    process.stdout.write(`\nFAILED: ${failed.length} runs had errors or non-2xx answers (${failed.map((r) => `${r.name} round ${r.round}`).join(', ')}): their numbers measure something else\n`)
    process.exitCode = 1
  }
}

await main()
