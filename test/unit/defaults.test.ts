import t from 'tap'
import { withDefaults } from '../../src/config/defaults.js'
import type { RawConfig } from '../../src/config/schema.js'

// withDefaults also runs on files that failed the schema (the cross-checks go on), so these
// feed it what a broken routes.yaml parses to.
const broken = (raw: unknown): Partial<RawConfig> => raw as Partial<RawConfig>

t.test('a key left out, or left empty, gets its default; a key written is kept', async (t) => {
  const s = withDefaults(broken({ listen: { port: 81 }, limits: { headTimeout: null, requestTimeout: '5s' }, upstreams: { legacy: { url: 'http://l' } } }))
  t.same(s.listen, { host: '0.0.0.0', port: 81 })
  t.same(s.admin, { host: '127.0.0.1', port: 9090 })
  t.equal(s.limits.headTimeout, '10s', 'YAML null is a key left empty')
  t.equal(s.limits.requestTimeout, '5s', 'as written: text, not ms')
  t.same(s.upstreams, { legacy: { url: 'http://l', timeout: '30s', connectTimeout: '5s', bodyTimeout: '30s', connections: 128, maxQueue: 512, hostHeader: 'preserve' } })
  t.same([s.default, s.trustedHops, s.exposeBackend, s.log.level], ['legacy', 0, false, 'info'])
  t.same(s.shutdown, { drainDelay: '5s', timeout: '30s' })
  t.equal(s.unleash, undefined, 'no unleash: block, none made')
})

t.test('keys without a default pass through; the input is not changed', async (t) => {
  const raw: Partial<RawConfig> = { sticky: 'ip', state: 's.json', routes: [], admin: { token: 'a', tokens: { bob: 'b' } } }
  const copy = structuredClone(raw)
  const s = withDefaults(raw)
  t.same([s.sticky, s.state, s.routes], ['ip', 's.json', []])
  t.same(s.admin, { host: '127.0.0.1', port: 9090, token: 'a', tokens: { bob: 'b' } })
  t.same(raw, copy)
})

t.test('the unleash: block gets its own defaults, unleash.admin only when it is there', async (t) => {
  const u = { url: 'http://u/api', appName: 'ficus', token: 't' }
  t.match(withDefaults({ unleash: u }).unleash, { ...u, refreshInterval: '1s', syncTimeout: '10s', admin: undefined })
  t.same(withDefaults({ unleash: { ...u, refreshInterval: '0s', admin: { token: 'p' } } }).unleash?.admin, { project: 'default', token: 'p' })
})

t.test('backends keep the order legacy, new however they are written', async (t) => {
  t.same(Object.keys(withDefaults({ backends: { new: 'b', legacy: 'a' } }).backends), ['legacy', 'new'])
})

t.test('a file that failed the schema: blocks of the wrong shape count as absent, values are kept', async (t) => {
  const s = withDefaults(broken({ limits: 5, shadow: ['x'], shutdown: 'soon', listen: { port: 'eighty' }, admin: { host: ['a'], port: null } }))
  t.equal(s.limits.headTimeout, '10s')
  t.equal(s.shadow.maxInFlight, 64)
  t.equal(s.shutdown.timeout, '30s')
  t.equal(s.listen.port, 'eighty', 'the schema reported it; the cross-checks see it as written')
  t.same(s.admin, { host: '127.0.0.1', port: 9090 }, 'a host that is not text is no address off loopback')
  t.doesNotThrow(() => withDefaults(broken({ upstreams: { a: null, b: 'x', c: [] }, unleash: { admin: 3 }, backends: 'x', admin: 'x' })))
  t.equal(withDefaults(broken({ unleash: null })).unleash, undefined)
  t.same(withDefaults(broken({ upstreams: ['x'] })).upstreams, {})
})
