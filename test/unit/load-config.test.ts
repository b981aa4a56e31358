import { join } from 'node:path'
import t from 'tap'
import { loadConfig, parseConfig, warningsOf } from '../../src/config/load-config.js'
import { ConfigError } from '../../src/config/problems.js'
import { NAME_MESSAGE } from '../../src/config/schema.js'

const fixture = (name: string): string => join(import.meta.dirname, '..', 'fixtures', 'routes', name)

/** Every problem as `line:col path: message`, in file order. */
async function problems(file: string, env: Record<string, string> = {}): Promise<string[]> {
  try {
    await loadConfig(file, env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map((p) => (p.line > 0 ? `${p.line}:${p.col}: ` : '') + (p.path === '' ? p.message : `${p.path}: ${p.message}`))
  }
  throw new Error(`${file} loaded without problems`)
}

t.test('a minimal file gets the documented defaults', async (t) => {
  const c = await loadConfig(fixture('valid-minimal.yaml'), {})
  t.same(c.listen, { host: '0.0.0.0', port: 8080 })
  t.same(c.admin, { host: '127.0.0.1', port: 9090, tokens: [] })
  t.same(c.upstreams.legacy, {
    name: 'legacy', origin: 'http://legacy.internal:8080', authority: 'legacy.internal:8080',
    timeoutMs: 30_000, connectTimeoutMs: 5_000, bodyTimeoutMs: 30_000, connections: 128, maxQueue: 512, hostHeader: 'preserve'
  })
  t.equal(c.upstreams.new?.origin, 'https://new.internal')
  t.same(c.limits, { bodyBytes: 10 * 1024 * 1024, bodyBufferBytes: 64 * 1024, headerBytes: 16 * 1024, headTimeoutMs: 10_000, requestTimeoutMs: 300_000, bodyIdleTimeoutMs: 30_000, sendTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000, headerNames: 'drop', upgradeIdleTimeoutMs: 300_000, upgradeMaxLifetimeMs: 86_400_000 })
  t.same(c.defaultRoute.backends, { legacy: 'legacy', new: 'new' })
  t.equal(c.defaultRoute.new, 0)
  t.same(c.defaultRoute.sticky, [{ kind: 'cookie', name: 'session' }])
  t.equal(c.trustedHops, 0)
  t.equal(c.exposeBackend, false)
  t.equal(c.state, undefined)
  t.equal(c.log.level, 'info')
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.upstreams.legacy) && Object.isFrozen(c.limits), 'deep-frozen')
})

t.test('a full file: every key read, env expanded, per-route overrides applied', async (t) => {
  const c = await loadConfig(fixture('valid-full.yaml'), { LEGACY_URL: 'http://10.0.0.5:8080', PORT: '8181', FICUS_ADMIN_TOKEN: 'tok' })
  t.equal(c.listen.port, 8181, '${PORT:-8080} is the number 8181')
  t.same(c.admin.tokens, [{ name: 'admin', token: 'tok', role: 'operator' }])
  t.equal(c.upstreams.monolith?.origin, 'http://10.0.0.5:8080')
  t.same([c.upstreams.monolith?.timeoutMs, c.upstreams.monolith?.connectTimeoutMs, c.upstreams.monolith?.bodyTimeoutMs], [30_000, 2_000, 60_000])
  t.same([c.upstreams.monolith?.connections, c.upstreams.monolith?.maxQueue], [64, 100])
  t.equal(c.upstreams['orders-v2']?.timeoutMs, 1500)
  t.equal(c.upstreams['orders-v2']?.hostHeader, 'upstream')
  t.same(c.limits, { bodyBytes: 2 * 1024 * 1024, bodyBufferBytes: 16 * 1024, headerBytes: 32 * 1024, headTimeoutMs: 5_000, requestTimeoutMs: 120_000, bodyIdleTimeoutMs: 20_000, sendTimeoutMs: 15_000, keepAliveTimeoutMs: 10_000, headerNames: 'drop', upgradeIdleTimeoutMs: 90_000, upgradeMaxLifetimeMs: 0 })
  t.equal(c.trustedHops, 1)
  t.equal(c.exposeBackend, true)
  t.equal(c.log.level, 'warn')
  t.equal(c.state, join(import.meta.dirname, '..', 'fixtures', 'routes', 'state', '$ficus.json'), 'relative to the file; $$ is a literal $')
  const [order, orders, customers, prices] = c.routes
  t.same(order?.methods, new Set(['GET', 'HEAD']))
  t.equal(order?.shadow, 12.5)
  t.same(order?.sticky, [{ kind: 'header', name: 'x-user-id' }], 'header names are lower-cased')
  t.same(order?.backends, { legacy: 'monolith', new: 'orders-v2' }, 'top-level backends')
  t.equal(orders?.methods, null)
  t.same(customers?.sticky, [{ kind: 'query', name: 'uid' }])
  t.same(customers?.backends, { legacy: 'monolith', new: 'customers-v2' })
  t.equal(prices?.new, 5)
  t.equal(prices?.shadow, 0)
})

t.test('every problem of a broken file is reported at once, with line, column and path', async (t) => {
  t.same(await problems(fixture('invalid-many.yaml')), [
    '2:17: listen.port: must be integer',
    '4:18: upstreams.legacy.url: must be an http:// or https:// URL with a host and no path, like http://10.0.0.5:8080',
    '4:57: upstreams.legacy.timeout: must be a duration like 500ms, 30s or 2m',
    '5:38: upstreams.new.timout: unknown key',
    '6:9: sticky: must be header:<name>, cookie:<name>, query:<name> or ip, or a list of them like [header:x-user-id, ip]',
    '7:21: limits.bodySize: must be a size like 512KiB or 10MiB, or a number of bytes',
    '10:50: routes[0].match.methods[1]: must be an upper-case HTTP method such as GET, HEAD or POST',
    '13:11: routes[1].name: must be 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit',
    '15:10: routes[1].new: must be <= 100',
    '19:38: routes[2].backends.new: unknown upstream "nowhere" (upstreams: legacy, new); name the upstream that plays the new role',
    '21:20: routes[3].match.path: "*" is only allowed as the whole last segment ("/prefix/*")',
    '22:10: routes[3].new: environment variable NOT_SET_ANYWHERE is not set (use ${NOT_SET_ANYWHERE:-default} to give a default)',
    '23:5: routes[4].name: is required',
    '25:5: routes[4].colour: unknown key'
  ])
})

t.test('routes that can never match, reserved and duplicate names', async (t) => {
  t.same(await problems(fixture('invalid-unreachable.yaml')), [
    '11:12: routes[1].match: can never match: routes[0] ("all-reads", /*) takes every request it would',
    '13:11: routes[2].name: "default" is reserved for requests no route matches',
    '16:11: routes[3].name: duplicate route name "all-reads" (also routes[0])'
  ])
})

t.test('YAML syntax errors and non-mappings', async (t) => {
  t.same(await problems(fixture('invalid-yaml.yaml')), ['4:1: Flow map in block collection must be sufficiently indented and end with a }'])
  t.same(await problems(fixture('invalid-structure.yaml')), ['1:1: must be a YAML mapping (version: 1, upstreams: …, routes: …)'])
  t.same(await problems(fixture('does-not-exist.yaml')), ['file not found'])
})

const base = (extra: string): string => `version: 1
upstreams:
  legacy: { url: http://127.0.0.1:3001 }
  new: { url: http://127.0.0.1:3002 }
sticky: ip
routes: []
${extra}`

function errorsOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(text, 'x.yaml', env)
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map((p) => `${p.path}: ${p.message}`)
  }
}

t.test('${ENV} expansion', async (t) => {
  const admin = (token: string, env: Record<string, string>): string | undefined =>
    parseConfig(base(`admin: { token: ${token} }`), 'x.yaml', env).admin.tokens.find((x) => x.name === 'admin')?.token
  t.equal(admin('${T}', { T: 'abc' }), 'abc', 'inside a flow mapping')
  t.equal(admin('${T:-dflt}', {}), 'dflt', 'default when unset')
  t.equal(admin('${T:-dflt}', { T: '' }), 'dflt', 'default when empty')
  t.equal(admin('${T:-}', {}), undefined, 'empty default: no token')
  t.equal(admin('"x-${T}-y"', { T: 'mid' }), 'x-mid-y', 'inside a quoted string')
  t.equal(admin('"$${T}"', { T: 'no' }), '${T}', '$$ escapes')
  t.equal(admin('${T}', { T: 'a: b\nlisten: { port: 1 }' }), 'a: b\nlisten: { port: 1 }', 'a value never becomes YAML structure')
  t.equal(parseConfig(base('listen: { port: "${P}" }'), 'x.yaml', { P: '81' }).listen.port, 81, 'typed by the schema, quoted or not')
  t.same(errorsOf(base('listen: { port: ${P} }'), { P: 'eighty' }), ['listen.port: must be integer'])
  t.equal(admin('${T}', { T: '12345678' }), '12345678', 'an all-digit token stays a string')
  t.equal(admin('${T}', { T: 'true' }), 'true', 'so does "true"')
  t.equal(admin('"${A:-${B:-deep}}"', { B: 'b' }), 'b', 'a default may hold a reference')
  t.equal(admin('${A:-${B:-deep}}', {}), 'deep', 'nested defaults, unquoted in a flow mapping')
  t.equal(admin('"${A:-x$$y}"', {}), 'x$y')
  const notRef = 'admin.token: "${" starts no variable reference: write ${NAME} or ${NAME:-default}, or $$ for a literal $'
  t.same(errorsOf(base('admin: { token: "${UNCLOSED" }')), [notRef])
  t.same(errorsOf(base('admin: { token: "${1BAD}" }')), [notRef])
  t.same(errorsOf(base('# comment mentions ${UNSET_IN_COMMENT}\nexposeBackend: ${EXPOSE}'), { EXPOSE: 'true' }), [], 'comments are not expanded; booleans are re-typed')
})

t.test('limits and listeners that Node or the OS would refuse', async (t) => {
  t.same(errorsOf(base('limits: { headTimeout: 20s, requestTimeout: 10s }')), ['limits.headTimeout: must not be longer than limits.requestTimeout (10s)'])
  t.same(errorsOf(base('listen: { port: 9000 }\nadmin: { port: 9000 }')), ['admin.port: must differ from listen.port (9000)'])
  t.same(errorsOf(base('listen: { port: 0 }\nadmin: { port: 0 }')), [], 'two ephemeral ports are fine')
})

t.test('a sticky header whose name limits.headerNames drops or refuses is refused, saying what to change', async (t) => {
  const doc = (sticky: string, extra = '', routeSticky = 'header:x.tenant'): string => `version: 1
upstreams:
  legacy: { url: http://127.0.0.1:3001 }
  new: { url: http://127.0.0.1:3002 }
sticky: ${sticky}
routes:
  - { name: a, match: { path: /a }, new: 10, sticky: "${routeSticky}" }
${extra}`
  t.same(errorsOf(doc('header:x_user_id')), [
    'sticky: header "x_user_id" has characters other than letters, digits and "-", and limits.headerNames: drop leaves such headers out of every request (as nginx does), so the backend would not see the key users are kept on a side by; rename the header, or set limits.headerNames: pass',
    'routes[0].sticky: header "x.tenant" has characters other than letters, digits and "-", and limits.headerNames: drop leaves such headers out of every request (as nginx does), so the backend would not see the key users are kept on a side by; rename the header, or set limits.headerNames: pass'
  ])
  t.match(errorsOf(doc('header:x_user_id', 'limits: { headerNames: refuse }'))[0], /^sticky: header "x_user_id" .* limits.headerNames: refuse refuses every request that has such a header/)
  t.same(errorsOf(doc('header:x_user_id', 'limits: { headerNames: pass }')), [], 'pass forwards them: nothing to say')
  t.same(errorsOf(doc('cookie:x_session', '', 'query:x.user')), [], 'cookie and query names are not header names')
  t.equal(parseConfig(doc('header:x_user_id', 'limits: { headerNames: pass }'), 'x.yaml', {}).limits.headerNames, 'pass')
  t.same(errorsOf(base('limits: { headerNames: strip }')), ['limits.headerNames: must be drop, pass or refuse'])
})

t.test('upstream names and references', async (t) => {
  t.same(errorsOf(`version: 1
upstreams:
  Bad_Name: { url: http://a }
sticky: ip
routes: []`), [
    'upstreams.Bad_Name: is not a valid name: must be 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit',
    'upstreams: no upstream is named "legacy": add one, or say which plays that role with backends.legacy (upstreams: Bad_Name)',
    'upstreams: no upstream is named "new": add one, or say which plays that role with backends.new (upstreams: Bad_Name)'
  ])
  t.same(errorsOf(`version: 1
upstreams: {}
sticky: ip
routes: []`), ['upstreams: must define at least one upstream'])
  t.same(errorsOf(`version: 2
upstreams:
  legacy: { url: "ftp://x" }
  new: { url: "http://user:pw@x" }
sticky: ip
routes: []`), [
    'version: must be 1 (the only version this Ficus reads)',
    'upstreams.legacy.url: must be an http:// or https:// URL with a host and no path, like http://10.0.0.5:8080',
    'upstreams.new.url: must be an http:// or https:// URL with a host and no path, like http://10.0.0.5:8080'
  ])
})

t.test('shadow bounds and compare rules', async (t) => {
  const route = (extra: string): string => base(`shadow: { maxInFlight: 8, timeout: 2s, maxBodySize: 64KiB, samples: 5 }`)
    .replace('routes: []', `routes:\n  - name: orders\n    match: { path: /orders/* }\n    new: 0\n    shadow: 100\n${extra}`)
  const c = parseConfig(route(`    shadowWrites: true
    compare:
      headers: [Content-Type, ETag]
      ignore: [body.meta, header.date, 'body.items[*].updatedAt']
      arrays: { body.items: { key: sku }, body.tags: unordered }
      numbers: { tolerance: 0.001 }
      treatAsEqual: [string-number]
      redact: [body.customer.email]`), 'x.yaml', {})
  t.same(c.shadow, { maxInFlight: 8, timeoutMs: 2000, maxBodyBytes: 64 * 1024, samples: 5 })
  const r = c.routes[0]
  t.equal(r?.shadowWrites, true)
  t.same(r?.compare.rules.headers, ['content-type', 'etag'], 'header names lower-cased')
  t.same(r?.compare.rules.ignore.map((p) => p.source), ['body.meta', 'header.date', 'body.items[*].updatedAt'])
  t.same(r?.compare.rules.arrays.map((a) => [a.path.source, a.mode]), [['body.items', { key: 'sku' }], ['body.tags', 'unordered']])
  t.equal(r?.compare.rules.tolerance, 0.001)
  t.equal(r?.compare.rules.stringNumbers, true)
  t.equal(r?.compare.rules.nullMissing, false)
  t.same(r?.compare.redact.map((p) => p.source), ['body.customer.email'])

  const d = parseConfig(base(''), 'x.yaml', {})
  t.same(d.shadow, { maxInFlight: 64, timeoutMs: 5000, maxBodyBytes: 1024 * 1024, samples: 100 }, 'defaults')
  t.same(d.defaultRoute.compare.rules.headers, ['content-type'], 'content-type is compared by default')

  t.same(errorsOf(route(`    compare:
      ignore: ['body.items[', 'customer.name', 'header.']
      arrays: { body.items: sorted, 'items': unordered }
      numbers: { tolerance: -1 }
      treatAsEqual: [close-enough]
      redact: [header.authorization]
      extra: 1`)).sort(), [
    'routes[0].compare.extra: unknown key',
    'routes[0].compare.arrays.items: must start with body, header.<name> or be status',
    'routes[0].compare.redact[0]: must be a body path (body.…) or a query parameter (query.<name>)',
    'routes[0].compare.ignore[0]: unclosed "[" at "["',
    'routes[0].compare.ignore[1]: must start with body, header.<name> or be status',
    'routes[0].compare.ignore[2]: a header rule is header.<name>',
    'routes[0].compare.arrays["body.items"]: must be unordered or { key: <field> }',
    'routes[0].compare.numbers.tolerance: must be >= 0',
    'routes[0].compare.treatAsEqual[0]: must be string-number or null-missing'
  ].sort(), 'shape and rule paths, all at once')
  t.same(errorsOf(route(`    compare:
      ignore: ['body.items[', 'customer.name']
      arrays: { 'items': unordered }
      redact: [header.authorization]`)).sort(), [
    'routes[0].compare.arrays.items: must start with body, header.<name> or be status',
    'routes[0].compare.ignore[0]: unclosed "[" at "["',
    'routes[0].compare.ignore[1]: must start with body, header.<name> or be status',
    'routes[0].compare.redact[0]: must be a body path (body.…) or a query parameter (query.<name>)'
  ])
  t.same(errorsOf(route(`    compare:
      contentType: loose
      when:
        - { status: 700, ignore: ['body'] }
        - { status: [404, '4xx'], ignore: ['nope'] }
        - { status: 404 }
      paths:
        - { legacy: 'body', new: 'body.data' }
        - { legacy: 'body.**.a', new: 'body.a' }
        - { legacy: 'body.a' }
      redact: ['query.']`)).sort(), [
    'routes[0].compare.contentType: must be media-type or exact',
    'routes[0].compare.when[0].status: must be a status (404), a class (\'4xx\') or a list of them',
    'routes[0].compare.when[1].ignore[0]: must start with body, header.<name> or be status',
    'routes[0].compare.when[2].ignore: is required',
    'routes[0].compare.paths[1]: ** cannot be mapped: name the path, or use * for each item',
    'routes[0].compare.paths[2].new: is required',
    'routes[0].compare.redact[0]: a query rule is query.<name> (or query.* for every parameter)'
  ].sort(), 'statuses, mapped paths and query rules, each at its place')
  const w = parseConfig(route(`    compare:
      contentType: exact
      when: [{ status: '404', ignore: ['body'] }]
      paths: [{ legacy: 'body', new: 'body.data' }]
      redact: ['query.session', 'body.x']`), 'x.yaml', {}).routes[0]?.compare
  t.same([w?.rules.contentType, w?.rules.when[0]?.status, w?.rules.paths.length, w?.redactQuery, w?.redact.map((p) => p.source)],
    ['exact', { codes: [404], classes: [] }, 1, ['session'], ['body.x']])
  t.same(errorsOf(base('shadow: { maxInFlight: 0, timeout: soon, maxBodySize: big, samples: -1 }')).sort(), [
    'shadow.maxBodySize: must be a size like 512KiB or 10MiB, or a number of bytes',
    'shadow.maxInFlight: must be >= 1',
    'shadow.samples: must be >= 0',
    'shadow.timeout: must be a duration like 500ms, 30s or 2m'
  ])
  t.same(errorsOf(route('    shadowWrites: yes-please')), ['routes[0].shadowWrites: must be boolean'])
})

t.test('compare.ids: body paths to entities, on dual routes only', async (t) => {
  const routes = (orders: string, extra = ''): string => base('').replace('routes: []', `routes:
  - name: orders
    match: { path: /orders/:id }
    new: 0
    shadow: 100
${orders}
  - name: customers
    match: { path: /customers/:id }
    new: 0
    sync: { mode: dual, entity: customer, key: path.id }
${extra}`)
  const c = parseConfig(routes(`    sync: { mode: dual, entity: order, key: path.id }
    compare: { ids: { body.id: order, 'body.items[*].customerId': customer } }`), 'x.yaml', {})
  t.same(c.routes[0]?.compare.rules.ids.map((r) => [r.path.source, r.entity]), [['body.id', 'order'], ['body.items[*].customerId', 'customer']])
  t.same(warningsOf(c), [])
  t.same(c.routes[1]?.compare.rules.ids, [], 'none by default')
  t.same(errorsOf(routes(`    compare: { ids: { body.id: order } }`)), [
    'routes[0].compare.ids: needs the id map of a dual route, and it has no sync block: add sync: { mode: dual, entity: …, key: path.<param> } or remove compare.ids'
  ], 'a route without sync: an error that says what to add')
  t.same(errorsOf(routes(`    sync: { mode: mirror }
    compare: { ids: { body.id: order } }`)), [
    'routes[0].compare.ids: needs the id map of a dual route, and its sync.mode is mirror: add sync: { mode: dual, entity: …, key: path.<param> } or remove compare.ids'
  ])
  t.same(errorsOf(routes(`    sync: { mode: dual, entity: order, key: path.id }
    compare: { ids: { 'body.items[': order, header.location: order, id: order, body.x: 'not an entity' } }`)).sort(), [
    'routes[0].compare.ids["body.items["]: unclosed "[" at "["',
    'routes[0].compare.ids["body.x"]: must be an entity name: a letter, then letters, digits, "_" or "-" (like order)',
    'routes[0].compare.ids["header.location"]: must be a body path (body.id, body.items[*].orderId)',
    'routes[0].compare.ids.id: must start with body, header.<name> or be status'
  ].sort(), 'bad paths are reported like compare.ignore\'s, at their place')
  t.same(warningsOf(parseConfig(routes(`    sync: { mode: dual, entity: order, key: path.id }
    compare: { ids: { body.id: order, body.shopId: shop } }`), 'x.yaml', {})).map((w) => `${w.path}: ${w.message}`), [
    'routes[0].compare.ids["body.shopId"]: names entity shop, whose ids no dual route learns or rewrites (entities: order, customer): the map never pairs them, so they compare as usual'
  ], 'an entity no dual route gives: a warning')
})

t.test('admin tokens: named, unique, required off loopback', async (t) => {
  const c = parseConfig(base('admin: { host: 10.0.0.5, token: "${T}", tokens: { alice: a1, bob: "${B:-}", vera: { token: v1, role: viewer }, olga: { token: o1 } } }'), 'x.yaml', { T: 'root' })
  t.same(c.admin.tokens, [{ name: 'admin', token: 'root', role: 'operator' }, { name: 'alice', token: 'a1', role: 'operator' }, { name: 'vera', token: 'v1', role: 'viewer' }, { name: 'olga', token: 'o1', role: 'operator' }], 'an empty token is none; a role is operator unless viewer')
  t.match(errorsOf(base('admin: { tokens: { vera: { token: v1, role: admin } } }')), [/admin\.tokens\.vera.*must be a token, or \{ token, role: operator\|viewer \}|role: must be operator/])
  t.same(errorsOf(base('admin: { tokens: { alice: same, bob: same } }')), ['admin.tokens: two names share one token: the audit log could not tell who acted'])
  t.same(errorsOf(base('admin: { tokens: { Alice: x } }')), [`admin.tokens.Alice: is not a valid name: ${NAME_MESSAGE}`])
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) t.same(errorsOf(base(`admin: { host: "${host}" }`)), [], host)
  t.same(errorsOf(base('admin: { host: "::" }')), ['admin.host: :: is not a loopback address: set admin.token (or admin.tokens) so the admin API cannot be used by anyone who reaches the port'])
})

t.test('unleash: the block, per-route flags, and what would never work', async (t) => {
  const withRoutes = (unleash: string, routes: string): string => base(`state: ficus-state.json\n${unleash}`).replace('routes: []', `routes:\n${routes}`)
  const flagged = '  - { name: orders, match: { path: /orders }, flag: orders-new }'
  const c = parseConfig(withRoutes('unleash: { url: "https://unleash.example.com/api", appName: ficus, token: "${TOKEN}", admin: { token: "${ADMIN}" } }', flagged), '/etc/ficus/x.yaml', { TOKEN: 'default:production.abc', ADMIN: 'pat' })
  t.match(c.unleash, { url: 'https://unleash.example.com/api', appName: 'ficus', token: 'default:production.abc', refreshIntervalMs: 1000, syncTimeoutMs: 10_000, bootstrap: undefined, backupPath: '/etc/ficus/ficus-state.unleash-backup.json' })
  t.same(c.unleash?.admin, { url: 'https://unleash.example.com/api', token: 'pat', project: 'default', environment: 'production' }, 'the environment is read from the client token')
  t.match(c.routes[0], { name: 'orders', flag: 'orders-new', new: 0 })

  t.same(errorsOf(withRoutes('unleash: { url: "http://u/api", appName: ficus, token: t, refreshInterval: 0s }', flagged)),
    ['unleash.refreshInterval: must be more than 0: at 0 the Unleash client never fetches, so no flag change would ever reach Ficus'])
  t.same(errorsOf(withRoutes('', flagged)), ['routes[0].flag: reads an Unleash flag, but routes.yaml has no unleash: block (url, appName, token)'])
  t.same(errorsOf(withRoutes('unleash: { url: "http://u/api", appName: ficus, token: t }', '  - { name: orders, match: { path: /orders }, flag: f, new: 5 }')),
    ['routes[0].flag: a route takes its share of new from routes.yaml (new) or from an Unleash flag (flag), not both: remove one'])
  t.same(errorsOf(withRoutes('', '  - { name: orders, match: { path: /orders } }')),
    ['routes[0]: needs new (0-100, the share of users on new) or flag (an Unleash toggle that decides it)'])
  t.same(errorsOf(withRoutes('unleash: { url: "http://u/api", appName: ficus, token: opaque, admin: { token: a } }', flagged)),
    ['unleash.admin.environment: is needed: the client token does not name its environment (project:environment.secret), and the admin API changes one environment'])
  t.same(errorsOf(base('unleash: { url: "http://u/api", appName: ficus, token: t }')),
    ['unleash.backupPath: is needed when there is no state: file (this replica\'s copy of the last flags fetched; a shared temp directory would let another user plant flags)'])
  t.same(errorsOf(base('unleash: { url: "ftp://u", appName: ficus, token: "${T:-}", backupPath: b.json }')),
    ['unleash.url: must be an http:// or https:// URL, like https://unleash.example.com/api', 'unleash.token: must be an Unleash client (backend) token, like ${UNLEASH_TOKEN}: is the variable set?'])
})

t.test('fallback: defaults, a route overriding key by key, and what would never work', async (t) => {
  const route = (top: string, own: string): string => base(top)
    .replace('routes: []', `routes:\n  - name: orders\n    match: { path: /orders/* }\n    new: 10\n${own}\n  - name: rest\n    match: { path: /* }\n    new: 0`)
  const c = parseConfig(route('fallback: { newTimeout: 2s, breaker: { consecutiveFailures: 3 } }', '    fallback: { ejectedWrites: legacy, breaker: { window: 30s } }'), 'f.yaml', {})
  t.same(c.routes[0]?.fallback, {
    newTimeout: { ms: 2000 },
    ejectedWrites: 'legacy',
    breaker: { consecutiveFailures: 3, failureRate: 0.5, minRequests: 20, windowMs: 30_000, ejectionMs: 5_000, maxEjectionMs: 15_000, probes: 1 }
  }, 'the route\'s keys over the top level\'s, over the defaults')
  t.same(c.routes[1]?.fallback.newTimeout, { ms: 2000 }, 'a route without fallback: takes the top level\'s')
  t.same(parseConfig(route('', '    fallback: { breaker: false }'), 'f.yaml', {}).routes[0]?.fallback,
    { newTimeout: { share: 0.5 }, ejectedWrites: 'refuse', breaker: null }, 'breaker: false turns it off; newTimeout defaults to 50 % of legacy\'s timeout')
  t.same(errorsOf(route('fallback: { newTimeout: 0% }', '    fallback: { newTimeout: soon, ejectedWrites: maybe, breaker: { ejection: 10m, maxEjection: 1m, probes: 0 } }')), [
    'routes[0].fallback.newTimeout: must be a share of legacy\'s timeout like 50%, or a duration like 2s',
    'routes[0].fallback.ejectedWrites: must be refuse or legacy',
    'routes[0].fallback.breaker.ejection: must not be longer than maxEjection (1m)',
    'routes[0].fallback.breaker.probes: must be >= 1',
    'fallback.newTimeout: must be more than 0: new would never be given a chance to answer (to keep requests off new, set the route\'s new: 0)'
  ])
})

t.test('store and sync: defaults, a dual route compiled, and what would never work', async (t) => {
  const file = (top: string, routes: string): string => base(top).replace('routes: []', `routes:\n${routes}`)
  const dual = '  - name: notes\n    match: { path: /api/notes/:id }\n    new: 0\n    sync: { mode: dual, entity: note, key: path.id, rewrite: { body: { authorId: user } } }\n' +
    '  - name: notes-create\n    match: { path: /api/notes, methods: [POST] }\n    new: 0\n    sync: { mode: dual, entity: note, learn: response.header.location }'
  const c = parseConfig(file('', dual), '/etc/ficus/routes.yaml', {})
  t.same(c.store, { kind: 'embedded', path: '/etc/ficus/ficus.lmdb' }, 'an LMDB file beside routes.yaml when there is no state file')
  t.same(c.sync, {
    ack: 'durable', concurrency: 8, retry: { baseMs: 200, maxMs: 300_000, maxAttempts: 20, maxAgeMs: 86_400_000 }, maxPending: 1_000_000, onFull: 'reject',
    fenceTimeoutMs: 2000, maxIdWaitMs: 600_000, maxBodyBytes: 1024 * 1024, unmappedIds: 'wait', auth: { mode: 'none' }
  })
  t.same(c.routes[0]?.sync, {
    mode: 'dual', entity: 'note', key: { param: 'id', segment: 2, entity: 'note' }, learn: null,
    pathIds: [{ param: 'id', segment: 2, entity: 'note' }], bodyIds: [{ field: 'authorId', entity: 'user' }], learnText: null
  })
  t.match(c.routes[1]?.sync, { key: null, learn: { from: 'location' }, learnText: 'response.header.location' })
  const withState = parseConfig(file('state: ./var/ficus-state.json\nstore: { kind: postgres, url: "postgres://ficus@db/ficus" }\nsync: { ack: async, retry: { base: 1s }, auth: { mode: service, value: s3cret } }', dual), '/etc/ficus/routes.yaml', {})
  t.same(withState.store, { kind: 'postgres', url: 'postgres://ficus@db/ficus' })
  t.match(withState.sync, { ack: 'async', retry: { baseMs: 1000, maxMs: 300_000 }, auth: { mode: 'service', header: 'authorization', value: 's3cret' } })
  t.same(parseConfig(file('state: ./var/ficus-state.json', dual), '/etc/ficus/routes.yaml', {}).store, { kind: 'embedded', path: '/etc/ficus/var/ficus.lmdb' }, 'beside the state file')
  t.equal(parseConfig(file('', '  - name: r\n    match: { path: /r }\n    new: 0\n    sync: { mode: mirror }'), 'x.yaml', {}).routes[0]?.shadowWrites, true, 'mirror is shadowWrites')
  t.same(errorsOf(file('store: { kind: postgres }', '  - { name: r, match: { path: /r }, new: 0 }')), ['store.url: is required with kind: postgres (postgres://user:password@host:5432/db)'])
  t.same(errorsOf(file('store: { kind: embedded, url: "postgres://db/x" }', '  - { name: r, match: { path: /r }, new: 0 }')), ['store.url: is for kind: postgres; an embedded store has a path'])
  t.same(errorsOf(file('store: { kind: mysql }\nsync: { ack: eventually, onFull: drop }',
    '  - name: a\n    match: { path: /a/:id }\n    new: 0\n    sync: { mode: dual, key: path.uid, learn: body.id }\n' +
    '  - name: b\n    match: { path: /b/:id }\n    new: 0\n    shadowWrites: true\n    sync: { mode: mirror, key: path.id }\n' +
    '  - name: c\n    match: { path: /c }\n    new: 0\n    sync: { mode: dual, entity: c }')), [
    'routes[0].sync.entity: is required with mode: dual (the kind of record the route writes, like order)',
    'routes[0].sync.key: names :uid, which match.path (/a/:id) does not have (it has :id)',
    'routes[0].sync.learn: must be response.body.<field> (a dotted path in the JSON answer) or response.header.location',
    'routes[1].shadowWrites: and sync.mode: mirror both say what happens to writes: keep sync (shadowWrites: true is sync: { mode: mirror })',
    'routes[1].sync.mode: mirror copies writes as they are: key, learn and rewrite need mode: dual',
    'routes[2].sync.key: a dual route needs key: path.<param> (the entity its writes change) or learn: (where a create\'s answer gives the new id)',
    'store.kind: must be embedded (an LMDB file) or postgres',
    'sync.ack: must be durable or async',
    'sync.onFull: must be reject or passthrough'
  ])
})

t.test('sticky: one source or an ordered list of them, each checked', async (t) => {
  const file = (sticky: string, routes = '[]'): string => base('').replace('sticky: ip\nroutes: []\n', `sticky: ${sticky}\nroutes: ${routes}\n`)
  const c = parseConfig(file('[header:X-User-Id, cookie:sid, ip]', '[{ name: r, match: { path: /r }, new: 50, sticky: [cookie:sid] }]'), 'x.yaml', {})
  t.same(c.defaultRoute.sticky, [{ kind: 'header', name: 'x-user-id' }, { kind: 'cookie', name: 'sid' }, { kind: 'ip' }], 'in order, header names lower-cased')
  t.same(c.routes[0]?.sticky, [{ kind: 'cookie', name: 'sid' }], 'a route\'s own list replaces the top-level one')
  t.same(errorsOf(file('[header:x-user-id, session]')), ['sticky[1]: must be header:<name>, cookie:<name>, query:<name> or ip'])
  t.same(errorsOf(file('[]')), ['sticky: must be header:<name>, cookie:<name>, query:<name> or ip, or a list of them like [header:x-user-id, ip]'])
  t.same(errorsOf(file('[ip, cookie:sid]')), ['sticky[1]: is never read: every request has a client address, so the list stops at ip (put ip last)'])
  t.same(errorsOf(file('ip', '[{ name: r, match: { path: /r }, new: 50, sticky: [ip, header:x-u] }]')),
    ['routes[0].sticky[1]: is never read: every request has a client address, so the list stops at ip (put ip last)'])
  t.equal(errorsOf(file('[cookie:sid, cookie:sid]')).length, 1, 'a source named twice')
})

t.test('settings that cannot apply are warnings with their place, not errors', async (t) => {
  const file = fixture('valid-warnings.yaml')
  const config = await loadConfig(file, {})
  t.same(warningsOf(config).map((w) => `${w.line}:${w.col}: ${w.path}: ${w.message}`), [
    '12:19: routes[0].shadowWrites: has no effect: the route matches only reads (GET, HEAD), which are shadowed anyway',
    '14:17: routes[0].compare.headers[0]: header names are compared in lower case: write content-type (it is read as such)',
    '15:16: routes[0].compare.ignore[0]: header names are compared in lower case: write header.etag (it is read as such)',
    '15:31: routes[0].compare.ignore[1]: ignores a header this route does not compare (compare.headers: Content-Type, etag): it changes nothing',
    '16:38: routes[0].compare.when[0].ignore[0]: ignores a header this route does not compare (compare.headers: Content-Type, etag): it changes nothing',
    '24:20: routes[1].compare.contentType: applies to the content-type header, which this route does not compare (compare.headers: etag)'
  ], 'a route of every method may shadow writes; the rest is listed')
  t.same(warningsOf(await loadConfig('routes.yaml', {})), [], 'the shipped routes.yaml has none')
})
