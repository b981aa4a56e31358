import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A small records API as a legacy system and its rewrite both have one: `/api/notes` with
 * create, read, update, delete, where each side gives its own ids, the way real rewrites do
 * (legacy counts from 1000, new gives hex ids like `n-3e9`). It honours `Idempotency-Key`
 * (a write seen with a key is answered again, not applied twice), which is what makes
 * Ficus's at-least-once delivery exactly-once here. Used by the demo, the dual-write tests
 * and bench/sync.ts.
 */

export type Side = 'legacy' | 'new'

export interface Note {
  readonly id: string
  readonly [field: string]: unknown
}

export interface Records {
  readonly url: string
  readonly server: Server
  /** The records it holds, by id. */
  readonly notes: Map<string, Note>
  /** Writes applied, in order (method, id, the JSON body sent), duplicates by Idempotency-Key left out. */
  readonly applied: { readonly method: string; readonly id: string; readonly key: string | undefined; readonly body: Record<string, unknown> }[]
  /** Requests answered from the idempotency cache (a delivery sent again). */
  readonly deduped: () => number
  /** While true, every request gets 503 (the side is down). */
  down: boolean
  /** When set, a status to answer a request with instead of serving it (null: serve it). */
  refuse: ((method: string, path: string) => number | null) | null
  /**
   * When set, called for each write once it is applied (and its answer kept for its
   * Idempotency-Key), before it is answered: the answer waits for the promise it returns
   * (null: answered at once). Its caller may be gone by then; the write stays applied. Tests
   * use it to stop a write at a known point (the answer on its way, a delivery in flight).
   */
  hold: ((req: IncomingMessage, method: string, id: string) => Promise<void> | null) | null
  close(): Promise<void>
}

/** The id the side gives its `n`-th record. */
export function idOf(side: Side, n: number): string {
  return side === 'legacy' ? String(999 + n) : `n-${(0x3e8 + n).toString(16)}`
}

/** The records API without a server of its own: what demo/backends.ts mounts under /api/notes. */
export interface RecordsApi extends Omit<Records, 'url' | 'server' | 'close'> {
  /** Answers one request whose body (`raw`) has been read. */
  handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): void
}

export function recordsApi(side: Side): RecordsApi {
  const notes = new Map<string, Note>()
  const applied: Records['applied'] = []
  const seen = new Map<string, { status: number; body: unknown; headers: Record<string, string> }>()
  let created = 0
  let deduped = 0
  const state: { down: boolean; refuse: Records['refuse']; hold: Records['hold'] } = { down: false, refuse: null, hold: null }

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = body === undefined ? '' : JSON.stringify(body)
    res.writeHead(status, { ...(text === '' ? {} : { 'content-type': 'application/json' }), 'content-length': Buffer.byteLength(text), 'x-served-by': side, ...headers })
    res.end(text)
  }

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer): void => {
    if (state.down) {
      send(res, 503, { error: `${side} is down` })
      return
    }
    const path = (req.url ?? '/').split('?')[0] as string
    const method = req.method ?? 'GET'
    const refused = state.refuse?.(method, path) ?? null
    if (refused !== null) {
      send(res, refused, { error: `refused by the test (${refused})` })
      return
    }
    const key = req.headers['idempotency-key'] as string | undefined
    const one = /^\/api\/notes\/([^/]+)$/.exec(path)
    const id = one === null ? null : decodeURIComponent(one[1] as string)
    if (method === 'GET' && path === '/api/notes') {
      send(res, 200, { notes: [...notes.values()] })
      return
    }
    if (method === 'GET' && id !== null) {
      const n = notes.get(id)
      if (n === undefined) send(res, 404, { error: `no note ${id}` })
      else send(res, 200, n)
      return
    }
    if (key !== undefined && seen.has(`${method} ${path} ${key}`)) {
      const again = seen.get(`${method} ${path} ${key}`)!
      deduped++
      send(res, again.status, again.body, again.headers)
      return
    }
    let body: Record<string, unknown> = {}
    if (raw.length > 0) {
      try {
        const parsed: unknown = JSON.parse(raw.toString())
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
        body = parsed as Record<string, unknown>
      } catch {
        send(res, 400, { error: 'the body must be a JSON object' })
        return
      }
    }
    const answer = (status: number, out: unknown, headers: Record<string, string> = {}): void => {
      if (key !== undefined) seen.set(`${method} ${path} ${key}`, { status, body: out, headers })
      const held = status < 300 ? state.hold?.(req, method, (out as Note | undefined)?.id ?? id ?? '') ?? null : null
      if (held === null) send(res, status, out, headers)
      else void held.then(() => { send(res, status, out, headers) })
    }
    if (method === 'POST' && path === '/api/notes') {
      const note: Note = { ...body, id: idOf(side, ++created) }
      notes.set(note.id, note)
      applied.push({ method, id: note.id, key, body })
      answer(201, note, { location: `/api/notes/${encodeURIComponent(note.id)}` })
      return
    }
    if (id === null) {
      send(res, 404, { error: `no route ${method} ${path}` })
      return
    }
    const existing = notes.get(id)
    if (existing === undefined) {
      answer(404, { error: `no note ${id}` })
      return
    }
    if (method === 'PUT' || method === 'PATCH') {
      const note: Note = method === 'PUT' ? { ...body, id } : { ...existing, ...body, id }
      notes.set(id, note)
      applied.push({ method, id, key, body })
      answer(200, note)
    } else if (method === 'DELETE') {
      notes.delete(id)
      applied.push({ method, id, key, body })
      answer(204, undefined)
    } else {
      send(res, 405, { error: `${method} is not allowed here` })
    }
  }

  return {
    handle,
    notes,
    applied,
    deduped: () => deduped,
    get down () { return state.down },
    set down (v: boolean) { state.down = v },
    get refuse () { return state.refuse },
    set refuse (v: Records['refuse']) { state.refuse = v },
    get hold () { return state.hold },
    set hold (v: Records['hold']) { state.hold = v }
  }
}

/** The records API on a server of its own, on `host`:`port` (0: any free port). */
export async function startRecords(side: Side, port = 0, host = '127.0.0.1'): Promise<Records> {
  const api = recordsApi(side)
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => { api.handle(req, res, Buffer.concat(chunks)) })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const { port: bound } = server.address() as AddressInfo
  return {
    url: `http://${host}:${bound}`,
    server,
    notes: api.notes,
    applied: api.applied,
    deduped: api.deduped,
    get down () { return api.down },
    set down (v: boolean) { api.down = v },
    get refuse () { return api.refuse },
    set refuse (v: Records['refuse']) { api.refuse = v },
    get hold () { return api.hold },
    set hold (v: Records['hold']) { api.hold = v },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
