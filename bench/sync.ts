import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool, request } from 'undici'
import { startRecords, type Records } from '../demo/records.js'
import { LmdbStore } from '../src/adapters/lmdb-store.js'
import { startFicusProcess } from './ficus-process.js'

/**
 * `node dist/bench/sync.js`: what dual writes (issue #20, docs/sync.md) cost, against the
 * same route without sync measured in the same run. Two Ficus processes (the built CLI) in
 * front of the same two records APIs (demo/records.ts, in this process): `plain` routes
 * /api/notes without sync, `dual` with `sync: { mode: dual }` on an embedded (LMDB) store.
 *
 * 1. Writes at a fixed rate (`--rate` PUTs/s, open loop, for `--seconds`), alternating
 *    between the two Ficus in slices of one second: p50/p99 of each and the difference
 *    (the target of #20: p50 ≤ +1.5 ms, p99 ≤ +6 ms with `ack: durable`).
 * 2. Reads (GET, `--concurrency` clients in a loop) on the dual route and the plain one,
 *    alternating: throughput and p50/p99 (target: within 5 %).
 * 3. Delivery throughput: new down, `--backlog` writes recorded, new back: deliveries per
 *    second until the outbox is empty (target: ≥ 2,000/s from one process).
 * 4. Memory with the other side down: both Ficus run with their heap capped
 *    (`--heap-mib`, 64: `--max-old-space-size`), so a backlog held in memory would end it;
 *    its heap and RSS are read before and after the backlog. `--outage S` writes for S
 *    seconds instead of `--backlog` writes (the issue's ten minutes: `--outage 600`), and
 *    reads heap and RSS every 10 s.
 * 5. The floor: one durable LMDB commit (an append of one write, fsynced) on the same disk,
 *    measured in this process: a dual write makes two of them on the client's path (its
 *    intent, then its settlement), so twice this is what `ack: durable` cannot go below
 *    (`--commits`, 1,000, the first tenth not counted).
 * `--notes` (200) notes are created first. `--json` prints the results as JSON.
 */
const { values: opt } = parseArgs({
  options: {
    rate: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '16' },
    'read-seconds': { type: 'string', default: '6' },
    backlog: { type: 'string', default: '20000' },
    outage: { type: 'string', default: '0' },
    notes: { type: 'string', default: '200' },
    commits: { type: 'string', default: '1000' },
    ack: { type: 'string', default: 'durable' },
    'heap-mib': { type: 'string', default: '64' },
    json: { type: 'boolean', default: false }
  }
})
// Each side's first second is a warm-up, not measured: with fewer than 2 there would be nothing.
if (Number(opt.seconds) < 2 || Number(opt['read-seconds']) < 2) throw new Error('--seconds and --read-seconds must be at least 2 (the first second of each side is a warm-up)')

interface Ficus { readonly child: ChildProcess; readonly url: string; readonly admin: string; readonly pool: Pool }

async function startFicus (dir: string, name: string, legacy: Records, next: Records, dual: boolean): Promise<Ficus> {
  const file = join(dir, `${name}.yaml`)
  const sync = dual ? ', sync: { mode: dual, entity: note, key: path.id }' : ''
  const create = dual ? ', sync: { mode: dual, entity: note, learn: response.body.id }' : ''
  writeFileSync(file, [
    'version: 1',
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    'upstreams:',
    `  legacy: { url: ${legacy.url}, connections: 64 }`,
    `  new: { url: ${next.url}, connections: 64 }`,
    'sticky: header:x-user-id',
    `store: { kind: embedded, path: ${join(dir, `${name}.lmdb`)} }`,
    `sync: { ack: ${opt.ack === 'async' ? 'async' : 'durable'}, concurrency: 16, retry: { base: 20ms, max: 100ms, maxAttempts: 1000000 }, maxPending: 10000000 }`,
    'shutdown: { drainDelay: 0s }',
    'log: { level: warn }',
    'routes:',
    `  - { name: notes-create, match: { path: /api/notes, methods: [POST] }, new: 0${create} }`,
    `  - { name: notes, match: { path: /api/notes/:id }, new: 0${sync} }`
  ].join('\n'))
  // The same heap cap on both, so that reads compare like with like (NODE_OPTIONS of the bench's own run kept: --cpu-prof).
  const heap = { NODE_OPTIONS: [process.env.NODE_OPTIONS ?? '', `--max-old-space-size=${Number(opt['heap-mib'])}`].join(' ').trim() }
  const p = await startFicusProcess(file, () => {}, { ...process.env, FICUS_LOG_LEVEL: 'info', ...heap })
  return { child: p.child, url: p.traffic, admin: p.admin, pool: new Pool(p.traffic, { connections: Number(opt.concurrency) * 2 }) }
}

const body = (v: number): string => JSON.stringify({ text: 'a note of some length, as notes go', v })

async function put (f: Ficus, id: string, v: number): Promise<number> {
  const t0 = performance.now()
  const r = await f.pool.request({ path: `/api/notes/${id}`, method: 'PUT', headers: { 'content-type': 'application/json', 'x-user-id': 'bench' }, body: body(v) })
  await r.body.dump()
  if (r.statusCode !== 200) throw new Error(`PUT ${id}: ${r.statusCode}`)
  return performance.now() - t0
}

async function get (f: Ficus, id: string): Promise<number> {
  const t0 = performance.now()
  const r = await f.pool.request({ path: `/api/notes/${id}`, method: 'GET', headers: { 'x-user-id': 'bench' } })
  await r.body.dump()
  if (r.statusCode !== 200) throw new Error(`GET ${id}: ${r.statusCode}`)
  return performance.now() - t0
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN
}

/** A process's resident memory in two parts (Linux): anonymous (its heap, buffers, code's data) and file-backed (LMDB's memory map: page cache the kernel can drop). */
function rssParts (pid: number | undefined): { anonMiB: number; fileMiB: number } {
  let text = ''
  try {
    text = readFileSync(`/proc/${pid ?? 0}/status`, 'utf8')
  } catch {
    return { anonMiB: NaN, fileMiB: NaN }
  }
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024
  return { anonMiB: kb('RssAnon'), fileMiB: kb('RssFile') }
}

async function metric (f: Ficus, name: string): Promise<number> {
  const text = await (await request(`${f.admin}/metrics`)).body.text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return Number(line?.split(' ')[1] ?? NaN)
}

/** Writes at a fixed rate, open loop, alternating between the two Ficus each second. */
async function fixedRate (a: Ficus, b: Ficus, ids: string[]): Promise<{ lat: Record<string, number[]>; dualSent: number }> {
  const rate = Number(opt.rate)
  const lat: Record<string, number[]> = { plain: [], dual: [] }
  let dualSent = 0
  const inflight: Promise<void>[] = []
  let v = 0
  for (let s = 0; s < Number(opt.seconds) * 2; s++) {
    const [f, name] = s % 2 === 0 ? [a, 'plain'] : [b, 'dual']
    const start = performance.now()
    for (let i = 0; i < rate; i++) {
      const due = start + (i * 1000) / rate
      const wait = due - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      const id = ids[(v++) % ids.length] as string
      if (name === 'dual') dualSent++
      inflight.push(put(f, id, v).then((ms) => { if (s >= 2) lat[name]!.push(ms) })) // the first second of each: warm-up
    }
  }
  await Promise.all(inflight)
  return { lat, dualSent }
}

/** Reads in a closed loop, alternating between the two Ficus each second. */
async function reads (a: Ficus, b: Ficus, ids: string[]): Promise<Record<string, { n: number; lat: number[]; ms: number }>> {
  const out: Record<string, { n: number; lat: number[]; ms: number }> = { plain: { n: 0, lat: [], ms: 0 }, dual: { n: 0, lat: [], ms: 0 } }
  for (let s = 0; s < Number(opt['read-seconds']) * 2; s++) {
    const [f, name] = s % 2 === 0 ? [a, 'plain'] : [b, 'dual']
    const end = performance.now() + 1000
    const t0 = performance.now()
    await Promise.all(Array.from({ length: Number(opt.concurrency) }, async (_, c) => {
      let i = c
      while (performance.now() < end) {
        const ms = await get(f, ids[(i += 7) % ids.length] as string)
        if (s >= 2) {
          out[name]!.n++
          out[name]!.lat.push(ms)
        }
      }
    }))
    if (s >= 2) out[name]!.ms += performance.now() - t0
  }
  return out
}

async function main (): Promise<void> {
  const legacy = await startRecords('legacy')
  const next = await startRecords('new')
  const dir = mkdtempSync(join(tmpdir(), 'ficus-bench-sync-'))
  const plain = await startFicus(dir, 'plain', legacy, next, false)
  const dual = await startFicus(dir, 'dual', legacy, next, true)
  try {
    // Notes created through the dual Ficus: on both sides, paired in its id map.
    const ids: string[] = []
    for (let i = 0; i < Number(opt.notes); i++) {
      const r = await dual.pool.request({ path: '/api/notes', method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': 'bench' }, body: body(0) })
      ids.push((await r.body.json() as { id: string }).id)
    }
    const drained = async (): Promise<void> => {
      // Two minutes, or 2 ms a write for a long backlog (a ten-minute outage leaves hundreds of thousands).
      const limitMs = Math.max(120_000, (expected - next.applied.length) * 2)
      const deadline = performance.now() + limitMs
      while (next.applied.length < expected) {
        if (performance.now() > deadline) throw new Error(`new got ${next.applied.length} writes of the ${expected} expected within ${Math.round(limitMs / 1000)} s`)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
    const say = (what: string): void => { process.stderr.write(`bench/sync: ${what}\n`) }
    say(`${ids.length} notes created; writes at a fixed rate`)
    let expected = ids.length
    await drained()

    const { lat: w, dualSent } = await fixedRate(plain, dual, ids)
    expected += dualSent // every dual PUT is delivered to new
    await drained()
    say('reads')
    const r = await reads(plain, dual, ids)
    say(`new down; ${opt.backlog} writes`)

    // Delivery throughput, and memory while the other side is down.
    const heap0 = await metric(dual, 'nodejs_heap_size_used_bytes')
    const rss0 = await metric(dual, 'process_resident_memory_bytes')
    next.down = true
    const outageMs = Number(opt.outage) * 1000
    const until = performance.now() + outageMs
    let sent = 0
    const more = outageMs > 0 ? () => performance.now() < until : () => sent < Number(opt.backlog)
    // Heap and RSS every 10 s while new is down.
    const samples: { s: number; sent: number; heapMiB: number; rssMiB: number; anonMiB: number; fileMiB: number }[] = []
    const t00 = performance.now()
    const sample = async (): Promise<void> => {
      const { anonMiB, fileMiB } = rssParts(dual.child.pid)
      samples.push({ s: (performance.now() - t00) / 1000, sent, heapMiB: await metric(dual, 'nodejs_heap_size_used_bytes') / 2 ** 20, rssMiB: await metric(dual, 'process_resident_memory_bytes') / 2 ** 20, anonMiB, fileMiB })
      const x = samples.at(-1)!
      if (outageMs > 0) say(`new down ${x.s.toFixed(0)} s: ${sent} writes, heap ${x.heapMiB.toFixed(1)} MiB, RSS ${x.rssMiB.toFixed(1)} MiB (anonymous ${x.anonMiB.toFixed(1)}, the store's mapped file ${x.fileMiB.toFixed(1)})`)
    }
    const sampler = setInterval(() => { void sample() }, 10_000)
    await Promise.all(Array.from({ length: Number(opt.concurrency) }, async () => {
      while (more()) await put(dual, ids[(sent++) % ids.length] as string, sent)
    }))
    clearInterval(sampler)
    const backlog = sent
    const heap1 = await metric(dual, 'nodejs_heap_size_used_bytes')
    const rss1 = await metric(dual, 'process_resident_memory_bytes')
    const parts1 = rssParts(dual.child.pid)
    const before = next.applied.length
    const t0 = performance.now()
    next.down = false
    expected = before + backlog
    await drained()
    const deliverMs = performance.now() - t0

    // The floor: durable commits of one write each, one at a time, on the same disk.
    const floorStore = new LmdbStore(join(dir, 'floor.lmdb'))
    const commits: number[] = []
    // The first tenth (at most 100) warms the store up and is not counted.
    const warm = Math.min(100, Math.floor(Number(opt.commits) / 10))
    for (let i = 0; i < Number(opt.commits); i++) {
      const t1 = performance.now()
      await floorStore.append([{ route: 'notes', key: `note:${i % 50}`, target: 'new', method: 'PUT', path: '/api/notes/1', headers: [['content-type', 'application/json']], body: Buffer.from(body(i)), plan: null }])
      if (i >= warm) commits.push(performance.now() - t1)
    }
    await floorStore.close()

    const result = {
      writes: {
        rate: Number(opt.rate),
        ack: opt.ack,
        plain: { n: w.plain!.length, p50: pct(w.plain!, 0.5), p99: pct(w.plain!, 0.99) },
        dual: { n: w.dual!.length, p50: pct(w.dual!, 0.5), p99: pct(w.dual!, 0.99) }
      },
      reads: Object.fromEntries(Object.entries(r).map(([k, x]) => [k, { perSecond: (x.n * 1000) / x.ms, p50: pct(x.lat, 0.5), p99: pct(x.lat, 0.99) }])),
      delivery: { backlog, seconds: deliverMs / 1000, perSecond: backlog / (deliverMs / 1000) },
      commit: { p50: pct(commits, 0.5), p99: pct(commits, 0.99) },
      memory: {
        heapBeforeMiB: heap0 / 2 ** 20,
        heapWithBacklogMiB: heap1 / 2 ** 20,
        rssBeforeMiB: rss0 / 2 ** 20,
        rssWithBacklogMiB: rss1 / 2 ** 20,
        heapMaxMiB: Math.max(heap1, ...samples.map((x) => x.heapMiB * 2 ** 20)) / 2 ** 20,
        rssMaxMiB: Math.max(rss1, ...samples.map((x) => x.rssMiB * 2 ** 20)) / 2 ** 20,
        anonWithBacklogMiB: parts1.anonMiB,
        anonMaxMiB: Math.max(parts1.anonMiB, ...samples.map((x) => x.anonMiB)),
        fileWithBacklogMiB: parts1.fileMiB,
        samples
      }
    }
    if (opt.json) {
      process.stdout.write(JSON.stringify(result, null, 2) + '\n')
      return
    }
    const f = (x: number): string => x.toFixed(2)
    const { writes, reads: rd, delivery, memory, commit } = result
    process.stdout.write([
      `Writes, PUT at ${writes.rate}/s (open loop, ack ${writes.ack}; ${writes.plain.n} + ${writes.dual.n} measured)`,
      '| route | p50 ms | p99 ms |',
      '|---|---|---|',
      `| plain (no sync) | ${f(writes.plain.p50)} | ${f(writes.plain.p99)} |`,
      `| dual | ${f(writes.dual.p50)} | ${f(writes.dual.p99)} |`,
      `| added by dual | ${f(writes.dual.p50 - writes.plain.p50)} | ${f(writes.dual.p99 - writes.plain.p99)} |`,
      `| floor: two durable LMDB commits (one: p50 ${f(commit.p50)}, p99 ${f(commit.p99)}) | ${f(2 * commit.p50)} | ${f(2 * commit.p99)} |`,
      '',
      `Reads, GET, ${opt.concurrency} clients in a loop`,
      '| route | req/s | p50 ms | p99 ms |',
      '|---|---|---|---|',
      ...Object.entries(rd).map(([k, x]) => `| ${k} | ${x.perSecond.toFixed(0)} | ${f(x.p50)} | ${f(x.p99)} |`),
      `| dual / plain | ${((rd.dual!.perSecond / rd.plain!.perSecond) * 100).toFixed(1)} % | | |`,
      '',
      `Delivery: ${delivery.backlog} writes recorded while new was down, delivered in ${delivery.seconds.toFixed(2)} s: ${delivery.perSecond.toFixed(0)} deliveries/s`,
      `Memory of the dual Ficus (heap capped at ${opt['heap-mib']} MiB): heap ${memory.heapBeforeMiB.toFixed(1)} → ${memory.heapWithBacklogMiB.toFixed(1)} MiB (at most ${memory.heapMaxMiB.toFixed(1)}), RSS ${memory.rssBeforeMiB.toFixed(1)} → ${memory.rssWithBacklogMiB.toFixed(1)} MiB (at most ${memory.rssMaxMiB.toFixed(1)}) with ${delivery.backlog} writes pending${outageMs > 0 ? ` after ${opt.outage} s of writes with new down` : ''}, and it ran on`,
      `  of that RSS: anonymous (heap, buffers, code) ${memory.anonWithBacklogMiB.toFixed(1)} MiB (at most ${memory.anonMaxMiB.toFixed(1)}); the store's file, mapped (pages the kernel can drop) ${memory.fileWithBacklogMiB.toFixed(1)} MiB`,
      ''
    ].join('\n'))
  } finally {
    for (const f of [plain, dual]) {
      await f.pool.close()
      f.child.kill('SIGTERM')
    }
    await Promise.all([legacy.close(), next.close()])
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/sync: ${String(err)}\n`)
  process.exit(1)
})
