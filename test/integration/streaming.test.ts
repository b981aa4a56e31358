import { spawn } from 'node:child_process'
import type { ServerResponse } from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { sample, startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Server-sent events reach the client one by one (docs/protocols.md "Server-sent events and
 * long streaming responses"). The backend sends event n+1 only once the client has received
 * event n: if anything on the way held bytes back, the client would never see an event and
 * the wait's deadline fails the test.
 */

const EVENTS = 5

/** A backend that streams `data: n` events, each after the client has said it saw the one before. */
async function sseBackend (t: Parameters<typeof startUpstream>[0], name: string) {
  let seen: (n: number) => void = () => {}
  const upstream = await startUpstream(t, name, (_req, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-served-by': name })
    let n = 0
    const send = (): void => {
      res.write(`data: ${n}\n\n`)
      n++
    }
    seen = (k) => {
      if (k !== n - 1) return
      if (n === EVENTS) res.end()
      else send()
    }
    send()
  })
  return { upstream, seen: (n: number) => seen(n) }
}

/** Reads events from a text stream; calls `onEvent(n)` for each `data: n` block as it completes. */
function eventReader (onEvent: (n: number) => void): (chunk: string) => void {
  let buf = ''
  return (chunk) => {
    buf += chunk
    let end: number
    while ((end = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, end)
      buf = buf.slice(end + 2)
      const m = /^data: (\d+)$/m.exec(block)
      if (m !== null) onEvent(Number(m[1]))
    }
  }
}

async function streamThrough (url: string, seen: (n: number) => void): Promise<number[]> {
  const r = await request(url)
  const got: number[] = []
  const read = eventReader((n) => {
    got.push(n)
    seen(n) // the backend sends the next event only now
  })
  r.body.setEncoding('utf8')
  await waitFor((async () => { for await (const chunk of r.body) read(chunk as string) })(), { message: () => `the stream stalled after events ${JSON.stringify(got)}: something buffered it` })
  return got
}

t.test('an SSE stream reaches the client event by event, with no buffering', async (t) => {
  const legacy = await sseBackend(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.upstream.url }, new: { url: next.url } }, routes: [{ name: 'events', match: { path: '/events' }, new: 0 }] })
  t.same(await streamThrough(f.url + '/events', legacy.seen), [0, 1, 2, 3, 4])
})

t.test('a shadowed SSE stream is not held back by its copy', async (t) => {
  const legacy = await sseBackend(t, 'legacy')
  // new answers the copy with a whole stream at once.
  const next = await startUpstream(t, 'new', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end([0, 1, 2, 3, 4].map((n) => `data: ${n}\n\n`).join(''))
  })
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.upstream.url }, new: { url: next.url } }, routes: [{ name: 'events', match: { path: '/events' }, new: 0, shadow: 100 }] })
  t.same(await streamThrough(f.url + '/events', legacy.seen), [0, 1, 2, 3, 4])
  await f.shadowIdle()
  t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'events', outcome: 'match' }), 1, 'and the copy was compared')
})

t.test('curl -N gets each event before the next is sent', async (t) => {
  const legacy = await sseBackend(t, 'legacy')
  const f = await startTestFicus(t, { upstreams: { legacy: { url: legacy.upstream.url }, new: { url: legacy.upstream.url } }, routes: [] })
  const curl = spawn('curl', ['-sSN', f.url + '/events'])
  t.teardown(() => { curl.kill() })
  const got: number[] = []
  const read = eventReader((n) => {
    got.push(n)
    legacy.seen(n)
  })
  curl.stdout.setEncoding('utf8')
  curl.stdout.on('data', read)
  const code = await waitFor(new Promise<number | null>((resolve) => curl.once('close', resolve)), { message: () => `curl's stream stalled after events ${JSON.stringify(got)}` })
  t.equal(code, 0)
  t.same(got, [0, 1, 2, 3, 4])
})
