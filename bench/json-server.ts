import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'

/**
 * The benchmark backends' server: answers the JSON document `find` returns for a request
 * (404 when none), and keeps idle connections longer than Ficus's pools do, so no keep-alive
 * race closes a socket under a request. Used by bench/upstream.ts and bench/soak.ts.
 */
export function jsonServer(find: (req: IncomingMessage) => Buffer | undefined): Server {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const body = find(req)
    if (body === undefined) {
      res.writeHead(404, { 'content-length': 0 })
      res.end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
  server.keepAliveTimeout = 65_000
  return server
}
