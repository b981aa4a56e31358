import type { IncomingMessage, ServerResponse } from 'node:http'
import { startUpstream } from './upstream.js'

/**
 * A records API to verify against (test/integration/verify.test.ts): a real HTTP server on
 * 127.0.0.1, port 0 (test/helpers/upstream.ts, closed at the test's end), listing its records a page at a time the way real APIs do, each side its
 * own way: by cursor (`?limit&cursor`, `{ items, next_cursor, total }`), by offset
 * (`?limit&offset`, `{ items, total }`) or by link (`{ data, links: { next } }`), in
 * ascending or descending id order; and one record at `/api/items/:id`. Tests change its
 * records while a run reads them, and make it refuse (429, 5xx) for a while.
 */

export type Rec = Record<string, unknown> & { readonly id: string | number }

export interface CatalogOptions {
  readonly paging: 'cursor' | 'offset' | 'link'
  readonly pageSize: number
  readonly order?: 'asc' | 'desc'
  /** Each list page is answered this much later (a run a test can stop halfway). */
  readonly pageDelayMs?: number
}

export interface Catalog {
  readonly url: string
  readonly records: Map<string, Rec>
  /** GET requests served (lists and records), and refused. */
  readonly seen: { lists: number; gets: number; refused: number }
  /** When set, an answer to give instead of serving the request (null: serve it). */
  refuse: ((req: IncomingMessage) => { status: number; headers?: Record<string, string>; body?: string } | null) | null
  /** Called before each list page is answered (a test inserts or deletes records mid-run); the page waits for a promise it returns. */
  beforeList: ((page: number) => void | Promise<unknown>) | null
}

const byId = (a: Rec, b: Rec): number => {
  const x = String(a.id)
  const y = String(b.id)
  return /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x < y ? -1 : x > y ? 1 : 0
}

/** A Map that counts its changes, so that a list page sorts the records only when they changed since the page before. */
class CountingMap<K, V> extends Map<K, V> {
  changes = 0
  override set (key: K, value: V): this { this.changes++; return super.set(key, value) }
  override delete (key: K): boolean { this.changes++; return super.delete(key) }
  override clear (): void { this.changes++; super.clear() }
}

export async function startCatalog (t: { teardown(fn: () => unknown): void }, records: readonly Rec[], o: CatalogOptions): Promise<Catalog> {
  const map = new CountingMap<string, Rec>(records.map((r) => [String(r.id), r]))
  // The records in the catalog's order, sorted again only after a change (sorting 100,000 records for each page took seconds a run).
  let ordered: { changes: number; records: readonly Rec[] } | null = null
  const inOrder = (): readonly Rec[] => {
    if (ordered?.changes !== map.changes) {
      const sorted = [...map.values()].sort(byId)
      if (o.order === 'desc') sorted.reverse()
      ordered = { changes: map.changes, records: sorted }
    }
    return ordered.records
  }
  const state: { -readonly [K in keyof Catalog]: Catalog[K] } = { url: '', records: map, seen: { lists: 0, gets: 0, refused: 0 }, refuse: null, beforeList: null }
  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
    res.end(text)
  }
  const list = async (url: URL, res: ServerResponse): Promise<void> => {
    await state.beforeList?.(state.seen.lists)
    state.seen.lists++
    const limit = Number(url.searchParams.get('limit') ?? o.pageSize)
    const sorted = inOrder()
    if (o.paging === 'offset') {
      const offset = Number(url.searchParams.get('offset') ?? 0)
      send(res, 200, { items: sorted.slice(offset, offset + limit), total: sorted.length })
      return
    }
    if (o.paging === 'link') {
      const page = Number(url.searchParams.get('page') ?? 1)
      const items = sorted.slice((page - 1) * limit, page * limit)
      send(res, 200, { data: items, links: { next: page * limit < sorted.length ? `${state.url}/api/items?page=${page + 1}&limit=${limit}` : null } })
      return
    }
    // Cursor: the last id of the page before; stable whatever is inserted or deleted meanwhile.
    const cursor = url.searchParams.get('cursor')
    let from = 0
    if (cursor !== null) {
      const c: Rec = { id: cursor }
      from = sorted.findIndex((r) => (o.order === 'desc' ? byId(r, c) < 0 : byId(r, c) > 0))
      if (from === -1) from = sorted.length
    }
    const items = sorted.slice(from, from + limit)
    const last = items.at(-1)
    send(res, 200, { items, next_cursor: from + limit < sorted.length && last !== undefined ? String(last.id) : null, total: sorted.length })
  }
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x')
    const refused = state.refuse?.(req) ?? null
    if (refused !== null) {
      state.seen.refused++
      if (refused.body !== undefined) res.writeHead(refused.status, refused.headers).end(refused.body)
      else send(res, refused.status, { error: 'refused by the test' }, refused.headers)
      return
    }
    const one = /^\/api\/items\/([^/]+)$/.exec(url.pathname)
    if (one !== null) {
      state.seen.gets++
      const r = map.get(decodeURIComponent(one[1] as string))
      if (r === undefined) send(res, 404, { error: 'not found' })
      else send(res, 200, r)
      return
    }
    if (url.pathname !== '/api/items') send(res, 404, { error: 'no such path' })
    else if ((o.pageDelayMs ?? 0) > 0) setTimeout(() => { void list(url, res) }, o.pageDelayMs)
    else void list(url, res)
  }
  state.url = (await startUpstream(t, 'catalog', handler)).url
  return state
}
