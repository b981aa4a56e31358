import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { ROOT, run, type Spawned } from '../helpers/spawn.js'

const SERVE = join(ROOT, 'dist', 'demo', 'serve-backend.js')

/** The URL the backend printed once it listened. */
async function listening(p: Spawned): Promise<string> {
  const out = await p.waitFor(/listening on http:\/\/\S+\n/)
  return /listening on (http:\/\/\S+)\n/.exec(out)?.[1] as string
}

t.test('serve-backend legacy|new: each side on its own, on loopback by default; exit 0 on SIGTERM', async (t) => {
  const legacy = run(t, SERVE, ['legacy', '--port', '0'])
  const legacyUrl = await listening(legacy)
  t.match(legacyUrl, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback unless --host says otherwise')
  await t.rejects(request(legacyUrl.replace('127.0.0.1', '127.0.0.2')), 'bound to 127.0.0.1 only: another loopback address is refused')
  t.match(await (await request(`${legacyUrl}/api/orders/1`)).body.json(), { id: 1, customer_name: 'Ada Lovelace', amount: '12.50' })

  const next = run(t, SERVE, ['new', '--port', '0', '--host', '127.0.0.1'])
  const nextUrl = await listening(next)
  const order = await (await request(`${nextUrl}/api/orders/1`)).body.json() as Record<string, unknown>
  t.match(order, { id: 1, customerName: 'Ada Lovelace', amount: 12.5 })
  t.notOk('customer_name' in order, 'the rewrite, not legacy')
  t.equal((await request(`${nextUrl}/api/customers/3`)).statusCode, 503, 'customer 3 is not migrated on new')

  legacy.child.kill('SIGTERM')
  next.child.kill('SIGTERM')
  t.equal(await legacy.exitCode(), 0)
  t.equal(await next.exitCode(), 0)
})

t.test('serve-backend --host: binds the address given (a container passes 0.0.0.0)', async (t) => {
  const p = run(t, SERVE, ['legacy', '--port', '0', '--host', '0.0.0.0'])
  const url = await listening(p)
  const port = /:(\d+)$/.exec(url)?.[1] as string
  t.equal(url, `http://0.0.0.0:${port}`, 'the address actually bound')
  const r = await request(`http://127.0.0.2:${port}/api/customers/1`)
  t.equal(r.statusCode, 200, 'reachable on an address the default binding refuses (every interface)')
  await r.body.dump()
  p.child.kill('SIGTERM')
  t.equal(await p.exitCode(), 0)
})

t.test('serve-backend: wrong usage exits 2, a port in use exits 1', async (t) => {
  for (const args of [[], ['both'], ['legacy', 'extra'], ['new', '--port', 'x'], ['new', '--port', '70000'], ['legacy', '--nope']]) {
    const p = run(t, SERVE, args)
    t.equal(await p.exitCode(), 2, args.join(' ') || '(no arguments)')
    t.match(p.stderr, /Usage: serve-backend legacy\|new/)
  }
  const first = run(t, SERVE, ['legacy', '--port', '0'])
  const port = /:(\d+)$/.exec(await listening(first))?.[1] as string
  const second = run(t, SERVE, ['new', '--port', port])
  t.equal(await second.exitCode(), 1)
  t.match(second.stderr, /already in use/)
  first.child.kill('SIGTERM')
  t.equal(await first.exitCode(), 0)
})
