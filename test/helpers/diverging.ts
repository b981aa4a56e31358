import type { Test } from 'tap'
import { startTestFicus, type TestFicus } from './ficus.js'
import { startUpstream } from './upstream.js'

/** Ficus (admin token tok-1) with `orders` shadowed to a new that answers differently, after three reads. */
export async function diverging(t: Test): Promise<TestFicus> {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"served":"new"}')
  })
  const f = await startTestFicus(t, {
    admin: { host: '127.0.0.1', port: 0, token: 'tok-1' },
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0, shadow: 100 }, { name: 'rest', match: { path: '/*' }, new: 0 }]
  })
  for (let i = 0; i < 3; i++) await f.fetch('/orders/1')
  await f.shadowIdle()
  return f
}
