import { connect, type Socket } from 'node:net'
import t from 'tap'
import { bucket } from '../../src/core/bucket.js'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'
import { acceptWebSockets, closed, openWebSocket } from '../helpers/ws-upstream.js'

/** legacy and new, each serving HTTP (answering with x-served-by) and WebSockets (echoing `<name>:<text>`). */
async function twoBackends (t: Parameters<typeof startUpstream>[0]) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  return {
    legacy, next,
    wsLegacy: acceptWebSockets(legacy.server, 'legacy'),
    wsNew: acceptWebSockets(next.server, 'new'),
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } }
  }
}

const wsUrl = (httpUrl: string, path: string): string => httpUrl.replace(/^http/, 'ws') + path

t.test('a WebSocket echoes through Ficus, on the side the route decides', async (t) => {
  const b = await twoBackends(t)
  const f = await startTestFicus(t, {
    upstreams: b.upstreams,
    routes: [{ name: 'old-ws', match: { path: '/old/*' }, new: 0, shadow: 100 }, { name: 'new-ws', match: { path: '/new/*' }, new: 100 }]
  })
  for (const [path, side] of [['/old/socket', 'legacy'], ['/new/socket', 'new']] as const) {
    const ws = await openWebSocket(wsUrl(f.url, path))
    ws.send('hello')
    t.equal(await ws.next(), `${side}:hello`, `${path}: echoed by ${side}`)
    ws.send('x'.repeat(70_000))
    t.equal(await ws.next(), `${side}:${'x'.repeat(70_000)}`, 'a message of 70 kB, in many TCP segments')
    ws.close(1000, 'done')
    t.equal(await closed(ws), 1000, 'the close handshake crosses Ficus both ways')
  }
  const up = b.wsLegacy.upgrades[0]!
  t.equal(up.url, '/old/socket')
  t.equal(up.headers.upgrade, 'websocket')
  t.match(up.headers.connection, /upgrade/i)
  t.equal(up.headers['x-forwarded-for'], '127.0.0.1', 'forwarded headers as for any request')
  t.ok(typeof up.headers['sec-websocket-key'] === 'string', 'the handshake\'s own headers pass')
  t.equal(b.legacy.requests.length + b.next.requests.length, 0, 'no plain request reached a backend: never shadowed')
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.path === '/new/socket')
  t.match(line, { status: 101, route: 'new-ws', backend: 'new', outcome: 'ok', upgrade: 'websocket', closedBy: 'upstream' })
  t.ok((line.bytesIn as number) > 70_000 && (line.bytesOut as number) > 70_000, `bytes each way in the access line (${String(line.bytesIn)}, ${String(line.bytesOut)})`)
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_upgrades_total', { route: 'old-ws', backend: 'legacy', outcome: 'switched' }), 1)
  t.equal(sample(m, 'ficus_requests_total', { route: 'new-ws', backend: 'new', role: 'primary', code: '101' }), 1)
  t.ok((sample(m, 'ficus_upgrade_bytes_total', { route: 'new-ws', backend: 'new', direction: 'to_client' }) ?? 0) > 70_000)
  await waitFor(async () => sample(await f.scrape(), 'ficus_upgraded_connections', { route: 'new-ws', backend: 'new' }) === 0, { message: 'the gauge of open tunnels did not go back to 0' })
  t.equal(sample(await f.scrape(), 'ficus_upgrades_closed_total', { route: 'new-ws', backend: 'new', reason: 'upstream' }), 1)
})

t.test('at 50 %, a user\'s WebSocket lands on the side of its HTTP requests', async (t) => {
  const b = await twoBackends(t)
  const f = await startTestFicus(t, { upstreams: b.upstreams, routes: [{ name: 'app', match: { path: '/*' }, new: 50, shadow: 100 }] })
  const sides = new Set<string>()
  for (let i = 0; i < 12; i++) {
    const user = `user-${i}`
    const http = (await f.fetch('/page', { headers: { 'x-user-id': user } })).headers['x-served-by'] as string
    t.equal(http, bucket('app', user) <= 50 ? 'new' : 'legacy', `${user}: HTTP by its bucket`)
    const ws = await openWebSocket(wsUrl(f.url, '/live'), { 'x-user-id': user })
    ws.send('hi')
    t.equal(await ws.next(), `${http}:hi`, `${user}: the WebSocket on the same side`)
    ws.close()
    await closed(ws)
    sides.add(http)
  }
  t.same([...sides].sort(), ['legacy', 'new'], 'both sides have users')
  await f.shadowIdle()
  t.equal(b.wsLegacy.upgrades.length + b.wsNew.upgrades.length, 12, 'each WebSocket reached one backend once: upgrades are never shadowed')
})

/** A raw client: sends `head`, resolves with the socket once the answer's head (and what came with it) is in. */
async function rawUpgrade (url: string, head: string): Promise<{ socket: Socket; answer: string }> {
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  socket.write(head)
  let answer = ''
  await waitFor(new Promise<void>((resolve) => {
    const onData = (c: Buffer): void => {
      answer += c.toString('latin1')
      if (answer.includes('\r\n\r\n')) {
        socket.off('data', onData)
        socket.pause()
        resolve()
      }
    }
    socket.on('data', onData)
  }), { message: 'no answer to the upgrade request' })
  return { socket, answer }
}

const upgradeHead = (path: string, protocol = 'websocket', extra = ''): string =>
  `GET ${path} HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n` +
  (protocol === 'websocket' ? 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' : '') + `${extra}\r\n`

t.test('a backend that declines the upgrade is answered as it said, and the connection closes', async (t) => {
  // new has no WebSocket endpoint: Node answers an Upgrade request there like any request.
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', 'x-reason': 'no' })
    res.end('upgrade somewhere else')
  })
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: next.url } }, routes: [{ name: 'ws', match: { path: '/*' }, new: 100 }] })
  const { socket, answer } = await rawUpgrade(f.url, upgradeHead('/live'))
  socket.resume()
  let rest = ''
  socket.on('data', (c: Buffer) => { rest += c.toString() })
  await waitFor(new Promise((resolve) => socket.once('close', resolve)), { message: 'Ficus did not close the connection after the declined upgrade' })
  t.match(answer, /^HTTP\/1\.1 426 /, 'the backend\'s status')
  t.match(answer, /x-reason: no/i)
  t.match(answer, /connection: close/i)
  t.match(answer + rest, /upgrade somewhere else/, 'and its body')
  t.equal(sample(await f.scrape(), 'ficus_upgrades_total', { route: 'ws', backend: 'new', outcome: 'declined' }), 1)
})

t.test('new refuses the connection: the upgrade falls back to legacy; legacy refuses too: a clean 502', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const wsLegacy = acceptWebSockets(legacy.server, 'legacy')
  const gone = await startUpstream(t, 'gone')
  await gone.close() // a port where nothing listens
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: gone.url }, dead: { url: gone.url } },
    routes: [
      { name: 'ws', match: { path: '/ws' }, new: 100 },
      { name: 'dead', match: { path: '/dead' }, new: 0, backends: { legacy: 'dead', new: 'legacy' } }
    ]
  })
  const ws = await openWebSocket(wsUrl(f.url, '/ws'))
  ws.send('a')
  t.equal(await ws.next(), 'legacy:a', 'legacy took it')
  ws.close()
  await closed(ws)
  t.equal(wsLegacy.upgrades.length, 1)
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.path === '/ws')
  t.match(line, { status: 101, backend: 'legacy', outcome: 'fallback', fallback: 'refused' })

  const { socket, answer } = await rawUpgrade(f.url, upgradeHead('/dead'))
  socket.destroy()
  t.match(answer, /^HTTP\/1\.1 502 /)
  t.match(answer, /FICUS_ERR_UPSTREAM_REFUSED/, 'a catalogue error, not a stack')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_upgrades_total', { route: 'dead', backend: 'legacy', outcome: 'failed' }), 1)
  t.equal(sample(m, 'ficus_fallbacks_total', { route: 'ws', reason: 'refused' }), 1)
})

t.test('an idle tunnel is closed after limits.upgradeIdleTimeout; any tunnel after limits.upgradeMaxLifetime', async (t) => {
  for (const [limits, reason] of [[{ upgradeIdleTimeout: '200ms', upgradeMaxLifetime: '0s' }, 'idle'], [{ upgradeIdleTimeout: '0s', upgradeMaxLifetime: '300ms' }, 'max_lifetime']] as const) {
    const b = await twoBackends(t)
    const f = await startTestFicus(t, { upstreams: b.upstreams, limits, routes: [{ name: 'ws', match: { path: '/*' }, new: 100 }] })
    const ws = await openWebSocket(wsUrl(f.url, '/live'))
    ws.send('one')
    t.equal(await ws.next(), 'new:one')
    t.equal(await closed(ws), 1006, `${reason}: Ficus closes the connection (it does not parse frames, so no close frame: 1006 for the client)`)
    await b.wsNew.allClosed({ message: `${reason}: the backend's side of the tunnel was not closed` })
    const line = await f.logs.waitFor((l) => l.msg === 'request' && l.upgrade === 'websocket')
    t.match(line, { status: 101, closedBy: reason, outcome: 'ok' })
    await waitFor(async () => sample(await f.scrape(), 'ficus_upgrades_closed_total', { route: 'ws', backend: 'new', reason }) === 1, { message: `the ${reason} close was not counted` })
  }
})

t.test('back-pressure: a client that does not read holds the backend back, and gets every byte once it reads', async (t) => {
  const total = 64 * 1024 * 1024
  const legacy = await startUpstream(t, 'legacy')
  // Any protocol passes (frames are not parsed): this one is a raw byte stream.
  let flushed = false
  legacy.server.on('upgrade', (_req, socket: Socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\nConnection: Upgrade\r\n\r\n')
    socket.end(Buffer.alloc(total, 97), () => { flushed = true })
  })
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, routes: [] })
  const { socket, answer } = await rawUpgrade(f.url, upgradeHead('/raw', 'x-raw'))
  t.match(answer, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  t.match(answer, /\r\nUpgrade: x-raw\r\n/)
  const already = Buffer.byteLength(answer.slice(answer.indexOf('\r\n\r\n') + 4), 'latin1')
  // The client reads nothing more. Wait until Ficus stops reading from the backend (its byte count holds for 5 checks).
  const relayed = async (): Promise<number> => sample(await f.scrape(), 'ficus_upgrade_bytes_total', { route: 'default', backend: 'legacy', direction: 'to_client' }) ?? 0
  let last = -1
  let same = 0
  const held = await waitFor(async () => {
    const n = await relayed()
    same = n === last ? same + 1 : 0
    last = n
    return same >= 5 && n
  }, { message: 'Ficus never stopped reading from the backend', intervalMs: 50 })
  t.ok(held < total / 2, `Ficus read ${(held / 2 ** 20).toFixed(1)} MiB of 64 MiB for a client that reads nothing (kernel buffers, not Ficus's memory)`)
  t.notOk(flushed, 'the backend could not flush its 64 MiB')
  let got = already
  socket.on('data', (c: Buffer) => { got += c.length })
  socket.resume()
  await waitFor(new Promise((resolve) => socket.once('end', resolve)), { message: `the client did not get the whole stream (${got} bytes)` })
  t.equal(got, total, 'every byte, once the client reads')
  socket.destroy()
})

t.test('stopping Ficus ends open tunnels, once the drain delay is over', async (t) => {
  const b = await twoBackends(t)
  const f = await startTestFicus(t, { upstreams: b.upstreams, routes: [{ name: 'ws', match: { path: '/*' }, new: 100 }] })
  const ws = await openWebSocket(wsUrl(f.url, '/live'))
  ws.send('before')
  t.equal(await ws.next(), 'new:before')
  const stopped = f.running.stop()
  t.equal(await closed(ws), 1006, 'the client\'s connection is ended')
  await b.wsNew.allClosed({ message: 'the backend\'s side was not ended' })
  await waitFor(stopped, { message: 'Ficus did not stop while a tunnel was open' })
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.upgrade === 'websocket')
  t.match(line, { status: 101, closedBy: 'drain' })
})

t.test('a backend that never closes its side cannot hold a tunnel open once the client has left', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  let upstreamEnded = false
  legacy.server.on('upgrade', (_req, socket: Socket) => {
    socket.on('error', () => {})
    socket.on('end', () => { upstreamEnded = true })
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\nConnection: Upgrade\r\n\r\n')
    // never ends its side, reads nothing: a half-open peer
  })
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } }, routes: [] })
  const { socket } = await rawUpgrade(f.url, upgradeHead('/raw', 'x-raw'))
  socket.end() // the client leaves (FIN)
  const line = await f.logs.waitFor((l) => l.msg === 'request' && l.upgrade === 'x-raw', { message: 'the tunnel was not closed after the client left' })
  t.match(line, { status: 101, closedBy: 'client' })
  t.ok(upstreamEnded, 'Ficus passed the FIN on to the backend')
  // Both of Ficus's sockets closed (the backend's never ended its side): the gauge counts a tunnel until then.
  await waitFor(async () => sample(await f.scrape(), 'ficus_upgraded_connections', { route: 'default', backend: 'legacy' }) === 0, { message: 'the tunnel to a half-open backend stayed open' })
})

t.test('upgrades go through new\'s breaker: a refusing new is ejected, and then not even tried; a hung new gets only its budget', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const wsLegacy = acceptWebSockets(legacy.server, 'legacy')
  const hung = await startUpstream(t, 'hung', () => { /* never answers */ })
  hung.server.on('upgrade', () => { /* takes the upgrade, never answers */ })
  const gone = await startUpstream(t, 'gone')
  await gone.close()
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url, timeout: '2s' }, new: { url: gone.url }, hung: { url: hung.url, timeout: '30s' } },
    fallback: { breaker: { consecutiveFailures: 2, ejection: '1m' } },
    routes: [
      { name: 'ws', match: { path: '/ws' }, new: 100 },
      { name: 'slow', match: { path: '/slow' }, new: 100, backends: { legacy: 'legacy', new: 'hung' }, fallback: { breaker: false } }
    ]
  })
  for (let i = 0; i < 3; i++) {
    const ws = await openWebSocket(wsUrl(f.url, '/ws'))
    ws.send(`m${i}`)
    t.equal(await ws.next(), `legacy:m${i}`, `upgrade ${i + 1}: legacy answers`)
    ws.close()
    await closed(ws)
  }
  t.equal(wsLegacy.upgrades.length, 3)
  const wsLines = () => f.logs.lines.filter((l) => l.msg === 'request' && l.path === '/ws')
  await waitFor(() => wsLines().length === 3, { message: () => `${wsLines().length} access lines for /ws, not 3 (each is written when its tunnel closes)` })
  const lines = wsLines()
  t.same(lines.map((l) => l.fallback), ['refused', 'refused', 'ejected'], 'two refusals eject new; the third upgrade goes to legacy without trying it')
  t.equal(sample(await f.scrape(), 'ficus_breaker_ejections_total', { route: 'ws' }), 1)

  // new accepts the upgrade and never answers: it gets half of legacy's 2 s, not its own 30 s.
  const ws = await openWebSocket(wsUrl(f.url, '/slow'))
  ws.send('s')
  t.equal(await ws.next(), 'legacy:s', 'legacy answers once new used up its budget')
  ws.close()
  await closed(ws)
  t.match(await f.logs.waitFor((l) => l.msg === 'request' && l.path === '/slow'), { status: 101, backend: 'legacy', fallback: 'timeout' })
})

t.test('an Upgrade request with a body is refused (501): its body could not be forwarded whole', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const wsLegacy = acceptWebSockets(legacy.server, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.url }, new: { url: legacy.url } } })
  const { socket, answer } = await rawUpgrade(f.url, 'POST /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello')
  socket.destroy()
  t.match(answer, /^HTTP\/1\.1 501 /)
  t.match(answer, /FICUS_ERR_UPGRADE_BODY/)
  t.equal(wsLegacy.upgrades.length + legacy.started(), 0, 'nothing reached the backend')
  t.equal(sample(await f.scrape(), 'ficus_client_errors_total', { reason: 'upgrade_body' }), 1)
})
