import t from 'tap'
import { Agent, request } from 'undici'
import { run } from '../helpers/spawn.js'
import { startUpstream } from '../helpers/upstream.js'

// bench/baseline-undici-shadow.ts is the same-run limit Ficus's shadow is measured against:
// if it lost or skipped copies, every ratio against it would be wrong. Real upstream, real
// sockets; the upstream closes idle connections after 100 ms, so the second batch of
// requests reuses no connection of the first and a client must notice the closed ones.
const DOC = Buffer.from(JSON.stringify({ order: 42, items: Array.from({ length: 20 }, (_, i) => ({ id: i, sku: `SKU-${i}` })) }))

async function batch(url: string, n: number): Promise<number[]> {
  const agent = new Agent({ connections: 10 })
  try {
    return await Promise.all(Array.from({ length: n }, async () => {
      const r = await request(`${url}/doc.json`, { dispatcher: agent })
      await r.body.dump()
      return r.statusCode
    }))
  } finally {
    await agent.close()
  }
}

for (const copy of ['undici', 'raw']) {
  t.test(`undici-shadow100 (COPY=${copy}) copies and compares every GET, also over connections the upstream closed while idle`, async (t) => {
    const up = await startUpstream(t, 'doc', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': DOC.length })
      res.end(DOC)
    })
    up.server.keepAliveTimeout = 100
    const proxy = run(t, 'dist/bench/baseline-undici-shadow.js', [], { PORT: '0', LEGACY_URL: up.url, NEW_URL: up.url, COPY: copy })
    const port = /listening on (\d+)/.exec(await proxy.waitFor(/listening on \d+/))?.[1] as string
    const url = `http://127.0.0.1:${port}`
    t.same(new Set(await batch(url, 100)), new Set([200]), 'first batch answered')
    await up.allClosed({ message: 'the upstream did not close the first batch\'s idle connections, the copies\' too' })
    t.same(new Set(await batch(url, 100)), new Set([200]), 'second batch answered')
    t.equal(up.requests.filter((r) => r.headers['x-ficus-shadow'] === '1').length, 200, 'the upstream received 200 copies')
    proxy.child.kill('SIGTERM')
    const out = await proxy.waitFor(/undici-shadow \{.*\}/, { message: 'the baseline proxy did not print its counts on SIGTERM' })
    const counts = JSON.parse(/undici-shadow (\{.*\})/.exec(out)?.[1] ?? '{}') as Record<string, number>
    t.same(counts, { copy, shadowed: 200, equal: 200, diverged: 0, failed: 0, lost: 0 }, 'every copy was compared, and found equal')
  })
}
