import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t from 'tap'
import { Agent, request } from 'undici'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A slowloris burst (docs/reliability.md "Slow and hostile clients"): hundreds of connections that
 * send their request head a few bytes at a time, never finishing it, plus slow-body
 * ("R-U-Dead-Yet") uploads that send one byte at a time, never quite idle. Ficus must cut
 * each at its configured limit and keep serving everyone else meanwhile. Loopback only.
 */

interface Attacker {
  readonly socket: Socket
  answer: string
  closedAfterMs: number | undefined
  readonly closed: Promise<void>
}

/**
 * Opens a connection that sends `head`, then `drip` every `everyMs` until the server answers;
 * `closed` resolves when the server has ended the connection.
 */
async function attacker(url: string, head: string, drip: string, everyMs: number): Promise<Attacker> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  const opened = performance.now()
  let resolveClosed!: () => void
  const a: Attacker = { socket, answer: '', closedAfterMs: undefined, closed: new Promise((resolve) => { resolveClosed = resolve }) }
  let timer: NodeJS.Timeout | undefined
  const over = (): void => {
    clearInterval(timer)
    a.closedAfterMs ??= performance.now() - opened
    resolveClosed()
  }
  socket.on('data', (d: Buffer) => {
    a.answer += d.toString('latin1')
    clearInterval(timer)
  })
  socket.on('error', () => {})
  socket.on('end', () => {
    over()
    socket.end()
  })
  socket.on('close', over)
  await waitFor(once(socket, 'connect'), { message: 'an attacker could not connect' })
  socket.write(head)
  // The drip starts after the head: started before, on a loaded machine it could go first (a 400 for a bad method, not a slow head).
  if (a.closedAfterMs === undefined && a.answer === '') timer = setInterval(() => { if (socket.writable) socket.write(drip) }, everyMs)
  return a
}

t.test('300 slowloris connections and 50 slow uploads (more than the backend connections): each cut at its limit with 408, while normal traffic is served', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const heads: string[] = []
  legacy.server.on('request', (req: import('node:http').IncomingMessage) => { heads.push(req.url ?? '') })
  // Fewer backend connections than slow uploads: were they to take one each, normal users would queue behind them.
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url, connections: 20 }, new: { url: legacy.url } },
    limits: { headTimeout: '1s', bodyIdleTimeout: '1s', requestTimeout: '2s' }
  })
  const slowHeads = await Promise.all(Array.from({ length: 300 }, async (_, i) =>
    attacker(f.url, `GET /loris/${i} HTTP/1.1\r\nHost: shop.example\r\n`, 'X-a: b\r\n', 100)))
  const slowBodies = await Promise.all(Array.from({ length: 50 }, async (_, i) =>
    attacker(f.url, `POST /rudy/${i} HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100000\r\n\r\n`, 'x', 100)))
  const attackers = [...slowHeads, ...slowBodies]
  let open = attackers.length
  for (const a of attackers) void a.closed.then(() => { open-- })

  // Normal users, on their own connections, for as long as the attack lasts.
  const agent = new Agent({ connections: 10 })
  t.teardown(() => agent.close())
  const served = { ok: 0, failed: [] as string[], latencies: [] as number[] }
  const user = async (id: number): Promise<void> => {
    while (open > 0) {
      const started = performance.now()
      try {
        const r = await request(`${f.url}/orders/${id}`, { dispatcher: agent })
        await r.body.dump()
        if (r.statusCode === 200) served.ok++
        else served.failed.push(String(r.statusCode))
      } catch (err) {
        served.failed.push((err as Error).message)
      }
      served.latencies.push(performance.now() - started)
    }
  }
  await waitFor(Promise.all([...Array.from({ length: 10 }, async (_, i) => user(i)), ...attackers.map(async (a) => a.closed)]),
    { timeoutMs: 30_000, message: () => `${open} of ${attackers.length} attackers were not cut off` })

  t.same(served.failed, [], 'no normal request failed during the attack')
  t.ok(served.ok > 0, `${served.ok} normal requests served during the attack`)
  const heads408 = slowHeads.filter((a) => /^HTTP\/1\.1 408 /.test(a.answer)).length
  const bodies408 = slowBodies.filter((a) => /^HTTP\/1\.1 408 /.test(a.answer)).length
  t.equal(heads408, 300, 'every slow head got 408 and was closed')
  t.equal(bodies408, 50, 'every slow upload got 408 and was closed')
  const slowest = Math.max(...attackers.map((a) => a.closedAfterMs ?? Infinity))
  // Node's own defaults would hold them for 60 s (head) and 300 s (request).
  t.ok(slowest < 10_000, `the last attacker was cut after ${Math.round(slowest)} ms`)
  t.same(heads.filter((u) => !u.startsWith('/orders/')), [], 'no attacker reached the backend, not even its head (limits.bodyBuffer)')
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'request_timeout' }), 350, 'each counted once')
  const sorted = served.latencies.sort((a, b) => a - b)
  const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? NaN
  t.comment(`slowloris: 300 heads cut (408) and 50 uploads cut (408), the last after ${Math.round(slowest)} ms; ${served.ok} normal requests served meanwhile, 0 failed, p50 ${(sorted[Math.floor(sorted.length / 2)] ?? NaN).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`)
})
