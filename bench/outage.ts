import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { startFicusProcess } from './ficus-process.js'

/**
 * `node dist/bench/outage.js`: what an outage of new costs users. Ficus (the built CLI, a
 * process of its own) serves one route fully on new (`new: 100`), with legacy behind it;
 * a bounded loop of clients on loopback sends reads (GET) and writes (POST with a body)
 * before, during and after an outage of new (after a warm-up that is not counted):
 *
 * - `--mode refused`: new's process is gone (its listener closed, its connections cut):
 *   connections are refused;
 * - `--mode hung`: new accepts and reads requests and never answers.
 *
 * Reported, per phase: requests, failures (any answer other than 2xx, or none) for reads,
 * for writes that never reached new, and for writes that did; p50/p99; and the time from the
 * outage's start to new's ejection (the breaker's log line) and from new's return to the
 * breaker closing. Timeouts are equal on both sides (`--timeout`, 10 s), as in the trial
 * that found the hung-new 504s. `--json` prints the result as JSON.
 */
const { values: opt } = parseArgs({
  options: {
    mode: { type: 'string', default: 'refused' },
    warmup: { type: 'string', default: '3' },
    before: { type: 'string', default: '10' },
    outage: { type: 'string', default: '30' },
    after: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '16' },
    writes: { type: 'string', default: '20' },
    'ejected-writes': { type: 'string', default: 'refuse' },
    timeout: { type: 'string', default: '10s' },
    json: { type: 'boolean', default: false }
  }
})
const mode = opt.mode === 'hung' ? 'hung' : 'refused'
const seconds = (s: string): number => Number(s) * 1000

type Phase = 'warmup' | 'before' | 'outage' | 'after'
/** `cut`: in flight when new went down or came back (the phase changed under it). */
interface Done { phase: Phase; method: string; ms: number; ok: boolean; reachedNew: boolean; cut: boolean }

/** An upstream on 127.0.0.1; new can be taken down (refused or hung) and brought back on the same port. */
class Backend {
  server: Server
  port = 0
  hung = false
  /** Request ids new received (a write that reached new). */
  readonly seen = new Set<string>()
  private readonly sockets = new Set<Socket>()

  constructor (private readonly name: string) {
    this.server = this.make()
  }

  private make (): Server {
    const server = createServer((req, res) => {
      const header = req.headers['x-bench-id']
      const id = typeof header === 'string' ? header : ''
      this.seen.add(id)
      req.resume()
      req.on('end', () => {
        if (this.hung) return // never answers
        const body = JSON.stringify({ served: this.name, id: req.method === 'POST' ? `${this.name}-${id}` : undefined })
        res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
    })
    server.keepAliveTimeout = 60_000
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    return server
  }

  async listen (): Promise<void> {
    this.server.listen(this.port, '127.0.0.1')
    await once(this.server, 'listening')
    this.port = (this.server.address() as AddressInfo).port
  }

  /** Nothing listens any more, open connections are cut: as when the process dies. */
  async kill (): Promise<void> {
    const closed = new Promise((resolve) => this.server.close(resolve))
    for (const s of this.sockets) s.destroy()
    await closed
    this.server = this.make()
  }

  release (): void {
    this.hung = false
    for (const s of this.sockets) s.destroy() // the held requests (Ficus gave up on them long ago)
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}

async function main (): Promise<void> {
  const legacy = new Backend('legacy')
  const next = new Backend('new')
  await legacy.listen()
  await next.listen()
  const dir = mkdtempSync(join(tmpdir(), 'ficus-outage-'))
  const file = join(dir, 'routes.yaml')
  writeFileSync(file, [
    'version: 1',
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    'upstreams:',
    `  legacy: { url: http://127.0.0.1:${legacy.port}, timeout: ${opt.timeout} }`,
    `  new: { url: http://127.0.0.1:${next.port}, timeout: ${opt.timeout} }`,
    'sticky: header:x-user-id',
    `fallback: { ejectedWrites: ${opt['ejected-writes'] === 'legacy' ? 'legacy' : 'refuse'} }`,
    'shutdown: { drainDelay: 0s }',
    'log: { level: info }',
    'routes:',
    '  - { name: orders, match: { path: /orders/* }, new: 100 }'
  ].join('\n'))
  const t0 = performance.now()
  const events: { at: number; breaker: string }[] = []
  const { child, traffic: trafficUrl } = await startFicusProcess(file, (l) => {
    if (typeof l.breaker === 'string') events.push({ at: performance.now() - t0, breaker: l.breaker })
  })

  const pool = new Pool(trafficUrl, { connections: Number(opt.concurrency), pipelining: 1 })
  const done: Done[] = []
  let phase: Phase = 'warmup'
  let running = true
  let seq = 0
  const body = JSON.stringify({ item: 'tea', qty: 2 })
  const writeShare = Number(opt.writes) / 100
  async function client (n: number): Promise<void> {
    while (running) {
      const id = `${n}-${++seq}`
      const method = Math.random() < writeShare ? 'POST' : 'GET'
      const at = phase
      const start = performance.now()
      let ok = false
      try {
        const r = await pool.request({
          path: method === 'POST' ? '/orders' : `/orders/${seq % 100}`,
          method,
          headers: { 'x-user-id': `u${seq % 1000}`, 'x-bench-id': id, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
          ...(method === 'POST' ? { body } : {}),
          headersTimeout: 60_000,
          bodyTimeout: 60_000
        })
        await r.body.text()
        ok = r.statusCode >= 200 && r.statusCode < 300
      } catch {
        ok = false
      }
      done.push({ phase: at, method, ms: performance.now() - start, ok, reachedNew: next.seen.has(id), cut: phase !== at })
    }
  }
  const clients = Array.from({ length: Number(opt.concurrency) }, async (_, i) => client(i))
  const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

  await sleep(seconds(opt.warmup)) // JIT and connection pools warm: not counted
  phase = 'before'
  await sleep(seconds(opt.before))
  phase = 'outage'
  const outageAt = performance.now() - t0
  if (mode === 'refused') await next.kill()
  else next.hung = true
  await sleep(seconds(opt.outage))
  const backAt = performance.now() - t0
  if (mode === 'refused') await next.listen()
  else next.release()
  phase = 'after'
  await sleep(seconds(opt.after))
  running = false
  await Promise.all(clients)
  await pool.close()
  child.kill('SIGTERM')
  await once(child, 'exit')
  await Promise.all([legacy.close(), next.close()])
  rmSync(dir, { recursive: true, force: true })

  const ejectedAt = events.find((e) => e.breaker === 'open' && e.at >= outageAt)?.at
  const closedAt = events.find((e) => e.breaker === 'closed' && e.at >= backAt)?.at
  const byPhase = (p: Phase): Record<string, number> => {
    const of = done.filter((d) => d.phase === p)
    const reads = of.filter((d) => d.method === 'GET')
    const writes = of.filter((d) => d.method === 'POST')
    const ms = of.map((d) => d.ms).sort((a, b) => a - b)
    return {
      requests: of.length,
      readsFailed: reads.filter((d) => !d.ok).length,
      // A write sent on a connection new's death cut may have been written before new could read
      // it: Ficus cannot tell it never arrived, so it is never sent to legacy (counted apart).
      writesFailedNeverReachedNew: writes.filter((d) => !d.ok && !d.reachedNew && !d.cut).length,
      writesFailedCutInFlight: writes.filter((d) => !d.ok && !d.reachedNew && d.cut).length,
      writesFailedReachedNew: writes.filter((d) => !d.ok && d.reachedNew).length,
      p50ms: Math.round(quantile(ms, 0.5) * 10) / 10,
      p99ms: Math.round(quantile(ms, 0.99) * 10) / 10,
      p999ms: Math.round(quantile(ms, 0.999) * 10) / 10,
      maxMs: Math.round((ms[ms.length - 1] ?? NaN) * 10) / 10,
      /** Requests that took over a second: those that waited for new's budget or timeout. */
      overOneSecond: ms.filter((x) => x > 1000).length
    }
  }
  const result = {
    mode,
    ejectedWrites: opt['ejected-writes'],
    seconds: { before: Number(opt.before), outage: Number(opt.outage), after: Number(opt.after) },
    concurrency: Number(opt.concurrency),
    phases: { before: byPhase('before'), outage: byPhase('outage'), after: byPhase('after') },
    ejectSeconds: ejectedAt === undefined ? null : Math.round(ejectedAt - outageAt) / 1000,
    recoverSeconds: closedAt === undefined ? null : Math.round(closedAt - backAt) / 1000,
    breakerEvents: events.map((e) => ({ at: Math.round(e.at - outageAt) / 1000, breaker: e.breaker }))
  }
  if (opt.json) {
    process.stdout.write(JSON.stringify(result) + '\n')
    return
  }
  process.stdout.write(`outage of new (${mode}, ejectedWrites: ${String(opt['ejected-writes'])}), ${opt.concurrency} clients, ${opt.writes} % writes\n`)
  for (const p of ['before', 'outage', 'after'] as const) {
    const r = result.phases[p]
    process.stdout.write(`  ${p.padEnd(7)} ${String(r.requests).padStart(7)} req  reads failed ${r.readsFailed}  writes failed (never reached new) ${r.writesFailedNeverReachedNew}  (cut in flight) ${r.writesFailedCutInFlight}  (reached new) ${r.writesFailedReachedNew}  p50 ${r.p50ms} ms  p99 ${r.p99ms} ms  max ${r.maxMs} ms  over 1 s ${r.overOneSecond}\n`)
  }
  process.stdout.write(`  ejected ${String(result.ejectSeconds)} s after the outage began; breaker closed ${String(result.recoverSeconds)} s after new was back\n`)
}

await main()
