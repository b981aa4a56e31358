import { parseArgs } from 'node:util'
import { DEFAULT_PORTS, startBackend, type Side } from './backends.js'

/**
 * One demo backend on its own, for a container of its own (deploy/docker-compose.yml):
 * `node dist/demo/serve-backend.js legacy|new [--port N] [--host H]`. Port: 3001 for legacy
 * and 3002 for new, as `npm run demo` (0 = any free port); host: 127.0.0.1 (a container
 * passes 0.0.0.0). Prints its URL once it listens; SIGTERM or SIGINT: requests in flight
 * finish, then exit 0. Exit 2 on wrong usage, 1 when it cannot listen.
 */

const USAGE = 'Usage: serve-backend legacy|new [--port N] [--host H]\n'
/** How long a stop waits for busy keep-alive connections before cutting them, in ms. */
const STOP_GRACE_MS = 5_000

async function main(argv: string[]): Promise<number> {
  let side: Side
  let port: number
  let host: string
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { port: { type: 'string' }, host: { type: 'string' } }
    })
    const [name, ...extra] = positionals
    if ((name !== 'legacy' && name !== 'new') || extra.length > 0) throw new Error('name one side: legacy or new')
    side = name
    const rawPort = values.port ?? String(DEFAULT_PORTS[side])
    if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) > 65535) throw new Error(`--port must be a number from 0 to 65535, not "${rawPort}"`)
    port = Number(rawPort)
    host = values.host ?? '127.0.0.1'
    if (host === '') throw new Error('--host must not be empty')
  } catch (err) {
    process.stderr.write(`serve-backend: ${(err as Error).message}\n${USAGE}`)
    return 2
  }

  const backend = await startBackend(side, port, host)
  process.stdout.write(`${side} demo backend listening on ${backend.url}\n`)
  const stop = (): void => {
    // close() stops listening and ends the idle keep-alive connections; a busy one finishes
    // its answer and is closed by Node's keep-alive timeout (5 s) or, at the latest, past the grace.
    backend.server.close(() => process.exit(0))
    setTimeout(() => backend.server.closeAllConnections(), STOP_GRACE_MS).unref()
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  return -1 // keeps running
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code)
}, (err: unknown) => {
  const e = err as NodeJS.ErrnoException
  process.stderr.write(`serve-backend: ${e.code === 'EADDRINUSE' ? 'the port is already in use (--port N; 0 = any free port)' : e.message}\n`)
  process.exit(1)
})
