import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { hash as digest } from 'node:crypto'
import type { CompareRules } from '../src/core/compare-rules.js'
import { canonical } from '../src/core/verify.js'
import { parseConfig } from '../src/config/load-config.js'
import { runVerify } from '../src/control/verify.js'

/**
 * `node dist/bench/verify.js`: records `ficus verify` checks per second (checksum mode)
 * against two local records APIs, and how close that is to the APIs' own list throughput,
 * measured in the same run by a plain client that only pages through both sides at once (the
 * target of #21: ≥ 0.8×). Rounds alternate (list, verify, list, verify…) on a shared, noisy
 * machine; the medians are compared. Also the run's heap before and after, to show that what
 * it holds does not grow with the number of records (they wait on disk).
 */
const { values: opt } = parseArgs({
  options: {
    records: { type: 'string', default: '50000' },
    page: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '4' },
    static: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false }
  }
})
const N = Number(opt.records)
const PAGE = Number(opt.page)

/**
 * A records API with cursor paging. By default it writes each page's JSON when asked, as any
 * API does from its records; `--static` serves pages serialised once at start (an API at
 * the speed of a file server: the bench then measures Ficus against almost nothing).
 */
async function api (order: 'asc' | 'desc'): Promise<{ url: string; server: Server }> {
  const records = Array.from({ length: N }, (_, i) => ({ id: String(100000 + i), title: `item ${i}`, price: `${i}.50`, tags: ['a', 'b'], owner: { name: 'Ada', tier: 'gold' }, updated_at: '2026-12-07T10:00:00Z' }))
  if (order === 'desc') records.reverse()
  const pages = new Map<string, () => Buffer>()
  for (let at = 0; at < N; at += PAGE) {
    const page = (): Buffer => {
      const items = records.slice(at, at + PAGE)
      return Buffer.from(JSON.stringify({ items, next_cursor: at + PAGE < N ? items.at(-1)?.id : null, total: N }))
    }
    const cursor = at === 0 ? '' : String(records[at - 1]?.id)
    const once = opt.static ? page() : null
    pages.set(cursor, once === null ? page : () => once)
  }
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    const body = pages.get(u.searchParams.get('cursor') ?? '')?.() ?? Buffer.from('{"items":[],"next_cursor":null}')
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** Both sides paged through at once by a plain client, each page parsed and its records handed to `each`: records per second. */
async function pageThrough (urls: readonly string[], each: (item: unknown) => void): Promise<number> {
  const t0 = performance.now()
  let n = 0
  await Promise.all(urls.map(async (url) => {
    const pool = new Pool(url, { connections: 1 })
    let cursor: string | null = ''
    while (cursor !== null) {
      const r = await pool.request({ path: `/api/items?limit=${PAGE}${cursor === '' ? '' : `&cursor=${cursor}`}`, method: 'GET' })
      const page = await r.body.json() as { items: unknown[]; next_cursor: string | null }
      for (const item of page.items) each(item)
      n += page.items.length
      cursor = page.next_cursor
    }
    await pool.close()
  }))
  return n / ((performance.now() - t0) / 1000)
}

/** The baseline: the APIs' own listing. */
const listBoth = async (urls: readonly string[]): Promise<number> => pageThrough(urls, () => {})

/**
 * The floor of checking records, whatever the design: each page fetched (as the baseline
 * does), parsed, and each record made canonical under the route's rules and hashed, nothing
 * stored, no merge. A run cannot be faster than this in one thread.
 */
const floorOf = async (urls: readonly string[], rules: CompareRules): Promise<number> =>
  pageThrough(urls, (item) => { digest('sha256', canonical(item, rules), 'base64url') })

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

async function main (): Promise<void> {
  const legacy = await api('asc')
  const next = await api('desc')
  const dir = mkdtempSync(join(tmpdir(), 'ficus-bench-verify-'))
  const config = parseConfig(`version: 1
sticky: header:x-user-id
upstreams:
  legacy: { url: '${legacy.url}' }
  new: { url: '${next.url}' }
routes:
  - name: items
    match: { path: /api/items/:id }
    new: 0
    compare: { ignore: [body.updated_at], arrays: { body.tags: unordered } }
verify:
  items:
    route: items
    list: { path: /api/items, items: body.items, id: id, next: body.next_cursor, cursorParam: cursor, total: body.total, query: { limit: '${PAGE}' } }
    concurrency: ${Number(opt.concurrency)}
    rate: 1000000/s
`, join(dir, 'routes.yaml'), {})
  const job = config.verify.items!
  const lists: number[] = []
  const floors: number[] = []
  const verifies: number[] = []
  const heaps: { before: number; after: number; rss: number }[] = []
  try {
    for (let round = 1; round <= Number(opt.rounds); round++) {
      lists.push(await listBoth([legacy.url, next.url]))
      floors.push(await floorOf([legacy.url, next.url], job.compare))
      globalThis.gc?.()
      const before = process.memoryUsage().heapUsed
      let peak = before
      const t0 = performance.now()
      const report = await runVerify({
        job,
        mode: 'checksum',
        dir: join(dir, `run-${round}`),
        resume: false,
        idMap: null,
        signal: new AbortController().signal,
        onProgress: () => { peak = Math.max(peak, process.memoryUsage().heapUsed) }
      })
      const secs = (performance.now() - t0) / 1000
      if (report.counts.matched !== N) throw new Error(`round ${round}: ${report.counts.matched} of ${N} matched (${report.problems.join('; ')})`)
      verifies.push((2 * N) / secs)
      heaps.push({ before: before / 2 ** 20, after: peak / 2 ** 20, rss: process.memoryUsage().rss / 2 ** 20 })
      rmSync(join(dir, `run-${round}`), { recursive: true, force: true })
      process.stderr.write(`bench/verify: round ${round}: list ${lists.at(-1)?.toFixed(0)} records/s, floor ${floors.at(-1)?.toFixed(0)}, verify ${verifies.at(-1)?.toFixed(0)} records/s\n`)
    }
  } finally {
    await Promise.all([new Promise((resolve) => legacy.server.close(resolve)), new Promise((resolve) => next.server.close(resolve))])
    rmSync(dir, { recursive: true, force: true })
  }
  const result = {
    records: N,
    page: PAGE,
    listPerSecond: median(lists),
    floorPerSecond: median(floors),
    floorRatio: median(floors.map((f, i) => f / (lists[i] as number))),
    verifyPerSecond: median(verifies),
    ratio: median(verifies.map((v, i) => v / (lists[i] as number))),
    ratios: verifies.map((v, i) => v / (lists[i] as number)),
    heapMiB: heaps
  }
  if (opt.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    return
  }
  process.stdout.write([
    `ficus verify --mode checksum, ${N.toLocaleString('en-US')} records a side in pages of ${PAGE} (${opt.static ? 'served from memory' : 'serialised per request'}), the sides in opposite orders, concurrency ${opt.concurrency}, ${opt.rounds} rounds`,
    '| | records/s (median) |',
    '|---|---|',
    `| the APIs' own listing (both sides at once, each page parsed) | ${result.listPerSecond.toFixed(0)} |`,
    `| the floor: each record also made canonical and hashed, nothing stored (ratio ${result.floorRatio.toFixed(2)}) | ${result.floorPerSecond.toFixed(0)} |`,
    `| ficus verify | ${result.verifyPerSecond.toFixed(0)} |`,
    `| ratio (median of the rounds' ratios; target ≥ 0.8) | **${result.ratio.toFixed(2)}** [${Math.min(...result.ratios).toFixed(2)}–${Math.max(...result.ratios).toFixed(2)}] |`,
    `heap used: ${heaps.map((h) => `${h.before.toFixed(0)} → ${h.after.toFixed(0)} MiB`).join(', ')}; RSS at the end ${heaps.at(-1)?.rss.toFixed(0)} MiB`,
    ''
  ].join('\n'))
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/verify: ${String(err)}\n`)
  process.exit(1)
})
