import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { parseArgs } from 'node:util'
import { createLogger } from '../src/adapters/logger.js'
import { createMetrics } from '../src/adapters/metrics-registry.js'
import { parseConfig } from '../src/config/load-config.js'
import { startFicus } from '../src/start.js'
import { freePort, ready, rssMb, runLoad, type LoadResult } from './procs.js'

/**
 * `npm run bench:shadow-hung` (node --expose-gc): is shadowing to a backend that never
 * answers free for users, and bounded in memory? Ficus runs in this process (to read its
 * heap after a full GC); the upstreams and the load generator are child processes.
 *
 * Two configurations, same run: `noshadow` (legacy answers, no copy) and `shadow-hung`
 * (legacy answers, every request copied to a backend that accepts and never answers).
 * Each gets `--requests` (10,000) requests on 50 connections. Reported: client latency
 * (p50/p99, and p99 relative to noshadow), the process RSS peak, the heap after a full GC
 * before the load, right after it, and once every shadow has timed out, and what happened
 * to the copies (dropped at the concurrency bound, timed out). `--json` prints the results as JSON.
 */
const { values: opt } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '50' },
    timeout: { type: 'string', default: '5s' },
    json: { type: 'boolean', default: false }
  }
})

const ROOT = join(import.meta.dirname, '..', '..')
const DIST = join(ROOT, 'dist')
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:shadow-hung does)')

const selfRssMb = (): number => rssMb('self') ?? process.memoryUsage().rss / 2 ** 20

const heapMb = (): number => {
  gc()
  return process.memoryUsage().heapUsed / 2 ** 20
}

async function load(url: string): Promise<LoadResult> {
  return runLoad('0', [process.execPath, join(DIST, 'bench', 'load.js')], { URL: url, CONNECTIONS: opt.connections, AMOUNT: opt.requests })
}

/** Access log on, as in production, into a sink that only counts. */
class NullSink extends Writable {
  override _write (_c: Buffer, _e: BufferEncoding, cb: () => void): void { cb() }
}

async function main(): Promise<void> {
  const [legacyPort, hungPort] = [await freePort(), await freePort()]
  const upstream = spawn(process.execPath, [join(DIST, 'bench', 'upstream.js')], { env: { ...process.env, PORTS: String(legacyPort), HANG_PORTS: String(hungPort) }, stdio: 'inherit' })
  const legacyUrl = `http://127.0.0.1:${legacyPort}`
  await ready(legacyUrl + '/1k.json')
  const yaml = readFileSync(join(ROOT, 'bench', 'ficus-bench.yaml'), 'utf8')
  const rows: string[] = []
  const results: { name: string; requests: number; failed: number; p50: number; p99: number; rssPeakMb: number; heapMb: [number, number, number]; timedOut: number; dropped: number }[] = []
  let base: LoadResult | null = null
  try {
    for (const [name, shadow] of [['noshadow', '0'], ['shadow-hung', '100']] as const) {
      const config = parseConfig(yaml.replace('admin: {', `shadow: { timeout: ${opt.timeout} }\nshutdown: { drainDelay: 0s }\nadmin: {`), 'ficus-bench.yaml', {
        PORT: '0', LEGACY_URL: legacyUrl, NEW_URL: `http://127.0.0.1:${hungPort}`, NEW_PERCENT: '0', SHADOW_PERCENT: shadow
      })
      const metrics = createMetrics()
      const ficus = await startFicus(config, { logger: createLogger('info', new NullSink()), metrics })
      const heap0 = heapMb()
      let peak = selfRssMb()
      const sampler = setInterval(() => { peak = Math.max(peak, selfRssMb()) }, 50)
      const r = await load(`${ficus.trafficUrl}/1k.json`)
      const heap1 = heapMb()
      peak = Math.max(peak, selfRssMb())
      const t0 = performance.now()
      await ficus.ficus.shadowing.idle()
      const drained = performance.now() - t0
      clearInterval(sampler)
      const heap2 = heapMb()
      const text = await metrics.register.metrics()
      const count = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 0)
      const dropped = count(/ficus_shadow_dropped_total\{route="bench",reason="concurrency"\} (\d+)/)
      const timedOut = count(/ficus_shadow_dropped_total\{route="bench",reason="timeout"\} (\d+)/)
      await ficus.stop()
      base ??= r
      results.push({ name, requests: r.total, failed: r.errors + r.non2xx, p50: r.p50, p99: r.p99, rssPeakMb: peak, heapMb: [heap0, heap1, heap2], timedOut, dropped })
      rows.push(`| ${name} | ${r.total} | ${r.errors + r.non2xx} | ${r.p50} | ${r.p99} | ${(r.p99 / Math.max(base.p99, 1)).toFixed(2)} | ${peak.toFixed(0)} | ` +
        `${heap0.toFixed(1)} → ${heap1.toFixed(1)} → ${heap2.toFixed(1)} | ${shadow === '0' ? '–' : `${timedOut} timed out, ${dropped} dropped (concurrency), drained in ${(drained / 1000).toFixed(1)} s`} |`)
      process.stderr.write(`  ${name}: ${r.total} requests, p99 ${r.p99} ms\n`)
    }
  } finally {
    upstream.kill('SIGTERM')
  }
  if (opt.json) {
    process.stdout.write(JSON.stringify(results) + '\n')
    return
  }
  process.stdout.write([
    `| config | requests | failed | p50 ms | p99 ms | p99 vs noshadow | RSS peak MB | heap MB after GC: before → after load → shadows drained | copies |`,
    '|---|---|---|---|---|---|---|---|---|',
    ...rows
  ].join('\n') + '\n')
}

await main()
