import t from 'tap'
import { parseConfig } from '../../src/config/load-config.js'
import { ConfigError } from '../../src/config/problems.js'

/** `verify:` in routes.yaml (config/verify.ts): what a job becomes, and a clear message for each mistake. */

const base = `version: 1
sticky: header:x-user-id
upstreams:
  legacy: { url: 'http://127.0.0.1:1' }
  new: { url: 'http://127.0.0.1:2' }
routes:
  - name: orders
    match: { path: /api/orders/:id }
    new: 0
    compare: { ignore: [body.updated_at] }
`

function problems (yaml: string): string[] {
  try {
    parseConfig(base + yaml, '/tmp/routes.yaml', {})
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map((p) => `${p.path}: ${p.message}`)
  }
}

t.test('a job as the rest of Ficus reads it: each side\'s paging, the route\'s rules, defaults', async (t) => {
  const config = parseConfig(`${base}verify:
  orders:
    route: orders
    list:
      path: /api/orders
      query: { limit: '200' }
      items: body.items
      id: id
      next: body.next_cursor
      cursorParam: cursor
      total: body.total
      legacy: { offsetParam: offset, items: body.rows }
    listQuery: { new: { include_archived: 'true' } }
    get: /api/orders/:id
`, '/tmp/routes.yaml', {})
  const job = config.verify.orders
  t.ok(job !== undefined)
  t.same(job?.list.legacy.paging, { kind: 'offset', param: 'offset' }, 'a side that names its paging pages its own way')
  t.same(job?.list.legacy.items, ['rows'])
  t.same(job?.list.new.paging, { kind: 'cursor', next: ['next_cursor'], param: 'cursor' })
  t.same(job?.list.new.query, [['limit', '200'], ['include_archived', 'true']])
  t.same(job?.list.new.total, ['total'])
  t.equal(job?.mapped, false, 'the route is not dual: ids compare as they are')
  t.equal(job?.compare.ignore.length, 1, 'the route\'s rules')
  t.match(job, { concurrency: 4, ratePerSecond: 50, settleMs: 30_000, maxAttempts: 8, timeoutMs: 10_000, get: '/api/orders/:id' })
  t.match(job?.fingerprint, /^[0-9a-f]{16}$/)
})

t.test('each mistake is named, with what to write instead', async (t) => {
  const cases: [string, RegExp][] = [
    ['verify: { orders: { route: nope, list: { path: /a, items: body.items, id: id } } }', /verify\.orders\.route: no route is named "nope" \(routes: orders\)/],
    ['verify: { orders: { route: orders, list: { items: body.items, id: id } } }', /verify\.orders\.list: needs a path for legacy/],
    ['verify: { orders: { route: orders, list: { path: /a, id: id } } }', /needs items for legacy: where the records are in the answer/],
    ['verify: { orders: { route: orders, list: { path: /a, items: items, id: id } } }', /list\.items: must start with body/],
    ['verify: { orders: { route: orders, list: { path: /a, items: "body.items[*]", id: id } } }', /keys only/],
    ['verify: { orders: { route: orders, list: { path: /a, items: body.items, id: id, cursorParam: c } } }', /cursorParam needs next/],
    ['verify: { orders: { route: orders, list: { path: /a, items: body.items, id: id, offsetParam: o, cursorParam: c, next: body.n } } }', /not both/],
    ['verify: { orders: { route: orders, list: { path: /a, items: body.items, id: id }, get: /api/orders } }', /get: must be a path with :id/],
    ['verify: { orders: { route: orders, list: { path: /a, items: body.items, id: id }, rate: fast } }', /rate: must be requests per second like 50\/s/],
    ['verify: { orders: { route: orders, list: { path: /a, items: body.items, id: id }, colour: red } }', /colour/]
  ]
  for (const [yaml, expected] of cases) t.match(problems(yaml).join('\n'), expected, yaml)
})
