import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:http'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, median, ready, spread } from './procs.js'

/**
 * `node dist/bench/upgrade.js [--json]`: what an Upgrade request (WebSocket, or any protocol
 * after a 101) costs through Ficus, against the limit: a hand-written node:http forwarder that
 * takes the `upgrade` event, dials the upstream, writes the request's head and pipes the two
 * sockets (no admission, no decision, no log, no metrics), and against no proxy at all
 * (`direct`). All three in front of the same upstream (an HTTP server that answers an Upgrade
 * with 101 and echoes every byte after it), measured in the same run, interleaved round by round:
 *
 * - `handshakes`: `--connections` clients in a loop, each: connect, Upgrade request, 101, one
 *   byte echoed, close. Tunnels opened per second (the cost of the stage: target rules,
 *   admission, the sticky decision, the dial, the 101 relayed, the access log line).
 * - `echo`: `--connections` tunnels open, each a ping-pong of `--message` bytes. Round trips
 *   per second (the cost per tunnelled chunk: two counter increments).
 *
 * Each proxy and the upstream are processes of their own; the clients run in this one.
 * Options: --rounds 3 --seconds 3 --connections 10 --message 1024 --json.
 * Env ROLE=upstream|limit (with PORT, UPSTREAM_PORT) runs one of the servers.
 */
const ROOT = join(import.meta.dirname, '..', '..')
const DIST = join(ROOT, 'dist')

if (process.env.ROLE === 'upstream') {
  const server = createServer((_req, res) => { res.end('ok') })
  server.on('upgrade', (_req, socket: Socket, head: Buffer) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
    if (head.length > 0) socket.write(head)
    socket.pipe(socket)
    socket.on('error', () => socket.destroy())
  })
  server.listen(Number(process.env.PORT), '127.0.0.1')
} else if (process.env.ROLE === 'limit') {
  const upstreamPort = Number(process.env.UPSTREAM_PORT)
  const server = createServer((_req, res) => { res.end('ok') })
  server.on('upgrade', (req, client: Socket, head: Buffer) => {
    const up = connect(upstreamPort, '127.0.0.1')
    const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`]
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i] ?? ''}: ${req.rawHeaders[i + 1] ?? ''}`)
    up.write(lines.join('\r\n') + '\r\n\r\n')
    if (head.length > 0) up.write(head)
    up.pipe(client)
    client.pipe(up)
    const end = (): void => { up.destroy(); client.destroy() }
    up.on('error', end)
    client.on('error', end)
    up.on('close', end)
    client.on('close', end)
  })
  server.listen(Number(process.env.PORT), '127.0.0.1')
} else {
  await drive()
}

process.on('SIGTERM', () => process.exit(0))

async function drive (): Promise<void> {
  const { values: opt } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '10' },
      message: { type: 'string', default: '1024' },
      json: { type: 'boolean', default: false }
    }
  })
  const children: ChildProcess[] = []
  const child = (argv: string[], env: Record<string, string>): void => {
    children.push(spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] }))
  }
  const [upstreamPort, limitPort, ficusPort] = [await freePort(), await freePort(), await freePort()]
  try {
    child([join(DIST, 'bench', 'upgrade.js')], { ROLE: 'upstream', PORT: String(upstreamPort) })
    child([join(DIST, 'bench', 'upgrade.js')], { ROLE: 'limit', PORT: String(limitPort), UPSTREAM_PORT: String(upstreamPort) })
    // Ficus as measured by `npm run bench`: access log at info, metrics on.
    // FICUS_BENCH_NODE_ARGS (as for bench/ficus-process.ts): node options for Ficus alone, like --cpu-prof.
    child([...(process.env.FICUS_BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''), join(DIST, 'src', 'cli.js'), 'start', '--config', join(ROOT, 'bench', 'ficus-bench.yaml')], {
      PORT: String(ficusPort), ADMIN_PORT: '0', LEGACY_URL: `http://127.0.0.1:${upstreamPort}`, FICUS_LOG_LEVEL: 'info'
    })
    const targets = { direct: upstreamPort, limit: limitPort, ficus: ficusPort }
    for (const port of Object.values(targets)) await ready(`http://127.0.0.1:${port}/`)
    const seconds = Number(opt.seconds)
    const message = Buffer.alloc(Number(opt.message), 'x')
    const runs: Record<keyof typeof targets, { handshakes: number[]; echo: number[] }> = { direct: { handshakes: [], echo: [] }, limit: { handshakes: [], echo: [] }, ficus: { handshakes: [], echo: [] } }
    for (const port of Object.values(targets)) await handshakes(port, 1, 0.3) // warm-up
    for (let round = 0; round < Number(opt.rounds); round++) {
      for (const [name, port] of Object.entries(targets) as [keyof typeof targets, number][]) {
        runs[name].handshakes.push(await handshakes(port, Number(opt.connections), seconds))
        runs[name].echo.push(await echo(port, Number(opt.connections), seconds, message))
        process.stderr.write(`  upgrade round ${round + 1} ${name.padEnd(6)} ${runs[name].handshakes.at(-1)?.toFixed(0)} handshakes/s, ${runs[name].echo.at(-1)?.toFixed(0)} round trips/s\n`)
      }
    }
    const vsLimit = (k: 'handshakes' | 'echo'): number[] => runs.ficus[k].map((x, i) => x / (runs.limit[k][i] as number))
    const result = {
      connections: Number(opt.connections),
      message: message.length,
      handshakes: { direct: median(runs.direct.handshakes), limit: median(runs.limit.handshakes), ficus: median(runs.ficus.handshakes), ficusVsLimit: vsLimit('handshakes') },
      echo: { direct: median(runs.direct.echo), limit: median(runs.limit.echo), ficus: median(runs.ficus.echo), ficusVsLimit: vsLimit('echo') }
    }
    if (opt.json) {
      process.stdout.write(JSON.stringify(result) + '\n')
    } else {
      process.stdout.write([
        `| Upgrade, ${result.connections} connections | direct | the limit | Ficus | Ficus ÷ the limit |`,
        '|---|---|---|---|---|',
        `| tunnels opened per second (handshake, one byte echoed, close) | ${result.handshakes.direct.toFixed(0)} | ${result.handshakes.limit.toFixed(0)} | ${result.handshakes.ficus.toFixed(0)} | ${spread(result.handshakes.ficusVsLimit)} |`,
        `| round trips per second of ${result.message} bytes in open tunnels | ${result.echo.direct.toFixed(0)} | ${result.echo.limit.toFixed(0)} | ${result.echo.ficus.toFixed(0)} | ${spread(result.echo.ficusVsLimit)} |`
      ].join('\n') + '\n')
    }
  } finally {
    for (const c of children) c.kill('SIGTERM')
  }
}

/** Opens a tunnel: resolves with the socket once the 101's head is read (what came after it, in `rest`). */
async function open (port: number): Promise<{ socket: Socket; rest: Buffer }> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let got = Buffer.alloc(0)
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d])
      const end = got.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      if (!got.subarray(0, 13).toString().startsWith('HTTP/1.1 101')) {
        socket.destroy()
        reject(new Error(`port ${port}: ${got.subarray(0, end).toString()}`))
        return
      }
      resolve({ socket, rest: got.subarray(end + 4) })
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write('GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\nx-user-id: bench\r\n\r\n')
  })
}

/** Reads until `n` bytes came (counting `already`), then resolves. */
async function receive (socket: Socket, n: number, already = 0): Promise<void> {
  if (already >= n) return
  await new Promise<void>((resolve, reject) => {
    let got = already
    const onData = (d: Buffer): void => {
      got += d.length
      if (got < n) return
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve()
    }
    const onClose = (): void => { socket.off('data', onData); reject(new Error(`the tunnel closed after ${got} of ${n} bytes`)) }
    socket.on('data', onData)
    socket.once('close', onClose)
  })
}

/** Tunnels opened, used for one byte and closed per second, by `c` clients in a loop for `seconds`. */
async function handshakes (port: number, c: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000
  const t0 = performance.now()
  let n = 0
  await Promise.all(Array.from({ length: c }, async () => {
    while (performance.now() < end) {
      const { socket, rest } = await open(port)
      socket.write('x')
      await receive(socket, 1, rest.length)
      socket.destroy()
      n++
    }
  }))
  return n / ((performance.now() - t0) / 1000)
}

/** Round trips of `message` per second over `c` open tunnels for `seconds`. */
async function echo (port: number, c: number, seconds: number, message: Buffer): Promise<number> {
  const tunnels = await Promise.all(Array.from({ length: c }, async () => await open(port)))
  const end = performance.now() + seconds * 1000
  const t0 = performance.now()
  let n = 0
  await Promise.all(tunnels.map(async ({ socket, rest }) => {
    let already = rest.length
    while (performance.now() < end) {
      socket.write(message)
      await receive(socket, message.length, already)
      already = 0
      n++
    }
  }))
  const ms = performance.now() - t0
  for (const { socket } of tunnels) socket.destroy()
  return n / (ms / 1000)
}
