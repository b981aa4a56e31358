import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { recordsApi } from './records.js'

/**
 * Two small JSON APIs for the demo: a legacy "orders & customers" service and its rewrite.
 * The rewrite differs on purpose, the way real rewrites do:
 * - orders: `customer_name` is renamed `customerName`, `amount` is the number 12.5 instead
 *   of the string "12.50", line items come in another order, `meta.generatedAt` differs;
 * - customers: id 3 is not migrated yet, so new answers 503 and Ficus falls back to legacy;
 * - reports: the rewrite is ten times slower;
 * - notes (demo/records.ts): each side gives its own ids (legacy 1000, new n-3e9), which
 *   is what Ficus's dual writes and id map are for.
 */

interface Item { sku: string; qty: number }
interface Order { id: number; customerId: number; customer: string; amount: string; status: string; items: Item[] }

const CUSTOMERS = [
  { id: 1, name: 'Ada Lovelace', email: 'ada@example.com', tier: 'gold' },
  { id: 2, name: 'Grace Hopper', email: 'grace@example.com', tier: 'silver' },
  { id: 3, name: 'Edsger Dijkstra', email: 'edsger@example.com', tier: 'gold' }
]
const ORDERS: Order[] = [
  { id: 1, customerId: 1, customer: 'Ada Lovelace', amount: '12.50', status: 'shipped', items: [{ sku: 'TEA-01', qty: 2 }, { sku: 'CUP-07', qty: 1 }] },
  { id: 2, customerId: 2, customer: 'Grace Hopper', amount: '99.00', status: 'paid', items: [{ sku: 'COB-42', qty: 1 }] },
  { id: 3, customerId: 1, customer: 'Ada Lovelace', amount: '7.25', status: 'new', items: [{ sku: 'INK-02', qty: 5 }, { sku: 'PEN-11', qty: 2 }, { sku: 'PAD-03', qty: 1 }] }
]

export type Side = 'legacy' | 'new'

function legacyOrder(o: Order): unknown {
  return { id: o.id, customer_id: o.customerId, customer_name: o.customer, amount: o.amount, currency: 'EUR', status: o.status, items: o.items }
}

function newOrder(o: Order): unknown {
  return { id: o.id, customer_id: o.customerId, customerName: o.customer, amount: Number(o.amount), currency: 'EUR', status: o.status, items: [...o.items].reverse() }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

function handler(side: Side) {
  const created: unknown[] = []
  const notes = recordsApi(side)
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] as string
    if (path === '/api/notes' || path.startsWith('/api/notes/')) {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => { notes.handle(req, res, Buffer.concat(chunks)) })
      return
    }
    const meta = { generatedAt: new Date().toISOString(), servedBy: `${side}-demo` }
    const order = /^\/api\/orders\/(\d+)$/.exec(path)
    const customer = /^\/api\/customers\/(\d+)$/.exec(path)
    if (req.method === 'GET' && path === '/api/orders') {
      send(res, 200, { orders: ORDERS.map(side === 'legacy' ? legacyOrder : newOrder), meta })
    } else if (req.method === 'GET' && order !== null) {
      const o = ORDERS.find((x) => x.id === Number(order[1]))
      if (o === undefined) send(res, 404, { error: 'no such order' })
      else send(res, 200, { ...(side === 'legacy' ? legacyOrder(o) : newOrder(o)) as object, meta })
    } else if (req.method === 'POST' && path === '/api/orders') {
      let body = ''
      req.on('data', (c: Buffer) => { body += c.toString() })
      req.on('end', () => {
        created.push(body)
        send(res, 201, { id: 100 + created.length, status: 'new' })
      })
    } else if (req.method === 'GET' && customer !== null) {
      const c = CUSTOMERS.find((x) => x.id === Number(customer[1]))
      if (side === 'new' && c?.id === 3) send(res, 503, { error: 'customer 3 is not migrated yet' })
      else if (c === undefined) send(res, 404, { error: 'no such customer' })
      else send(res, 200, c)
    } else if (req.method === 'GET' && path === '/api/reports/daily') {
      setTimeout(() => send(res, 200, { date: '2026-11-21', orders: ORDERS.length, revenue: '118.75' }), side === 'legacy' ? 20 : 200)
    } else {
      send(res, 404, { error: `no route ${req.method ?? ''} ${path}` })
    }
  }
}

/** The demo's ports unless told otherwise (LEGACY_PORT / NEW_PORT, --port). */
export const DEFAULT_PORTS: Readonly<Record<Side, number>> = { legacy: 3001, new: 3002 }

export interface DemoBackend { readonly url: string; readonly server: Server }

/**
 * Starts one side on `host`:`port` (0 = any free port). Loopback unless told otherwise: a
 * container (deploy/docker-compose.yml) passes 0.0.0.0 so the proxy's container reaches it.
 */
export async function startBackend(side: Side, port: number, host = '127.0.0.1'): Promise<DemoBackend> {
  const server = createServer(handler(side))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  const { address, family, port: bound } = server.address() as AddressInfo
  return { url: `http://${family === 'IPv6' ? `[${address}]` : address}:${bound}`, server }
}
