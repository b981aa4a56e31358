import { createServer, type IncomingHttpHeaders } from 'node:http'
import { Pool } from 'undici'

/**
 * The hand-tuned limit: raw node:http + undici Pool.stream, no framework, no routing, no log,
 * no metrics; hop-by-hop headers stripped. The same program as
 * ../shared/bench/anchors/proxy-undici.js. Env: PORT, LEGACY_URL.
 */
const pool = new Pool(process.env.LEGACY_URL as string, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

function strip(h: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const k in h) {
    const v = h[k]
    if (!HOP.has(k) && v !== undefined) out[k] = v
  }
  return out
}

const server = createServer((req, res) => {
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
  pool.stream({ path: req.url as string, method: req.method as 'GET', headers: strip(req.headers), body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers))
      return res
    },
    (err) => {
      if (err === null) return
      if (!res.headersSent) res.writeHead(502, { 'content-length': 0 }).end()
      else res.destroy(err)
    })
})
server.keepAliveTimeout = 65_000
server.listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
