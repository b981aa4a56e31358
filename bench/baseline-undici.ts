import { createServer } from 'node:http'
import { Pool } from 'undici'
import { strip } from './hop.js'

/**
 * The hand-tuned limit: raw node:http + undici Pool.stream, no framework, no routing, no log,
 * no metrics; hop-by-hop headers stripped. The same program as
 * ../shared/bench/anchors/proxy-undici.js. Env: PORT, LEGACY_URL.
 */
const pool = new Pool(process.env.LEGACY_URL as string, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })

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
