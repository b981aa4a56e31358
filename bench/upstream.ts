import { createServer } from 'node:http'
import { jsonServer } from './json-server.js'

/**
 * The benchmark upstream: node:http serving fixed JSON bodies of ~1 KB and ~64 KB on two
 * ports. The second port (new) answers the same document with one value changed, so a
 * shadow comparison takes its expensive path: both bodies parsed and walked, a divergence
 * recorded. Env: PORTS="p1,p2"; HANG_PORTS="p3" serve a backend that accepts connections
 * and requests and never answers.
 */
export function jsonBody(bytes: number, order = 42): Buffer {
  const items: { id: number; sku: string; qty: number; price: string }[] = []
  let text = ''
  for (let i = 0; ; i++) {
    items.push({ id: i, sku: `SKU-${String(i).padStart(6, '0')}`, qty: (i % 7) + 1, price: ((i * 37) % 1000 / 10).toFixed(2) })
    const next = JSON.stringify({ order, items })
    if (next.length > bytes) break
    text = next
  }
  return Buffer.from(text)
}

const BODIES: Record<string, Buffer>[] = [
  { '/1k.json': jsonBody(1024), '/64k.json': jsonBody(65536) },
  { '/1k.json': jsonBody(1024, 43), '/64k.json': jsonBody(65536, 43) }
]

for (const [i, port] of (process.env.PORTS ?? '').split(',').filter(Boolean).entries()) {
  const bodies = BODIES[Math.min(i, 1)] as Record<string, Buffer>
  jsonServer((req) => bodies[(req.url ?? '/').split('?')[0] as string]).listen(Number(port), '127.0.0.1')
}
for (const port of (process.env.HANG_PORTS ?? '').split(',').filter(Boolean)) {
  const server = createServer(() => { /* never answers */ })
  server.headersTimeout = 0
  server.requestTimeout = 0
  server.listen(Number(port), '127.0.0.1')
}
process.on('SIGTERM', () => process.exit(0))
