import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { Counter, Histogram, Registry } from 'prom-client'
import { Pool } from 'undici'
import { strip } from './hop.js'

/**
 * The hand-tuned limit: raw node:http + undici Pool.stream, no framework, no routing, no log,
 * no metrics; hop-by-hop headers stripped. The same program as
 * ../shared/bench/anchors/proxy-undici.js. Env: PORT, LEGACY_URL.
 *
 * REQUIRED=1 (`undici-required` in bench/run.ts): the same forwarder also doing what the tests
 * require of every request Ficus forwards, written the shortest way: the six upstream header
 * fields (Via, X-Forwarded-For/-Proto/-Host, Forwarded, X-Request-Id made with randomUUID),
 * one JSON access-log line to stdout (lines batched per tick, as Ficus's), and a request
 * counter and a duration histogram (prom-client). Ficus ÷ this is what Ficus costs beyond
 * its required behaviours (routing, the sticky decision, limits, the header rules' checks).
 */
const pool = new Pool(process.env.LEGACY_URL as string, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const REQUIRED = process.env.REQUIRED === '1'

const registry = new Registry()
const requests = new Counter({ name: 'requests_total', help: 'requests', labelNames: ['route', 'status'], registers: [registry] })
const duration = new Histogram({ name: 'request_duration_seconds', help: 'duration', labelNames: ['route'], registers: [registry] })
let lines: string[] = []
const flush = (): void => {
  process.stdout.write(lines.join(''))
  lines = []
}

const server = createServer((req, res) => {
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
  const headers = strip(req.headers)
  let start = 0
  let id = ''
  if (REQUIRED) {
    start = performance.now()
    const peer = req.socket.remoteAddress ?? ''
    const host = req.headers.host ?? ''
    id = typeof req.headers['x-request-id'] === 'string' ? req.headers['x-request-id'] : randomUUID()
    headers.via = '1.1 bench'
    headers['x-forwarded-for'] = peer
    headers['x-forwarded-proto'] = 'http'
    headers['x-forwarded-host'] = host
    headers.forwarded = `for=${peer};host=${host};proto=http`
    headers['x-request-id'] = id
  }
  pool.stream({ path: req.url as string, method: req.method as 'GET', headers, body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers))
      return res
    },
    (err) => {
      if (REQUIRED) {
        const status = err === null ? res.statusCode : 502
        requests.inc({ route: 'bench', status })
        const ms = performance.now() - start
        duration.observe({ route: 'bench' }, ms / 1000)
        if (lines.length === 0) setImmediate(flush)
        lines.push(`{"level":"info","time":${Date.now()},"reqId":${JSON.stringify(id)},"method":${JSON.stringify(req.method)},"status":${status},"ms":${Math.round(ms * 10) / 10},"path":${JSON.stringify(req.url)},"msg":"request"}\n`)
      }
      if (err === null) return
      if (!res.headersSent) res.writeHead(502, { 'content-length': 0 }).end()
      else res.destroy(err)
    })
})
server.keepAliveTimeout = 65_000
server.listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
