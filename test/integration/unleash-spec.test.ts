import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import t from 'tap'
import { startFeaturesServer, type FeaturesDoc } from '../helpers/features-server.js'
import { startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'

/**
 * Spec conformance through the proxy: the @unleash/client-specification cases that a
 * request can express (a userId = the sticky header, a remoteAddress = the client address
 * via X-Forwarded-For) are run against a Ficus whose flags come from a loopback endpoint
 * serving the spec's state. Each case's toggle is a route's flag; the backend that answered
 * must be new exactly when the spec expects the toggle enabled.
 */

interface SpecCase {
  readonly description: string
  readonly context: Record<string, unknown>
  readonly toggleName: string
  readonly expectedResult: boolean
}
interface Spec {
  readonly name: string
  readonly state: { readonly features?: readonly { name: string }[] }
  readonly tests?: SpecCase[]
}

const require = createRequire(import.meta.url)
const dir = join(dirname(require.resolve('@unleash/client-specification/package.json')), 'specifications')
const files = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as string[]

/**
 * A case the proxy can express: its context has only userId (a printable header value) and
 * remoteAddress (a proxied request always has an address, so a case without one must not
 * depend on it).
 */
function expressible(spec: Spec, c: SpecCase): boolean {
  const keys = Object.keys(c.context)
  if (!keys.every((k) => k === 'userId' || k === 'remoteAddress')) return false
  // A header value: printable ASCII, not empty (Ficus reads no key from an empty header).
  if (c.context.userId !== undefined && (typeof c.context.userId !== 'string' || !/^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(c.context.userId))) return false
  const toggle = spec.state.features?.find((f) => f.name === c.toggleName)
  return c.context.remoteAddress !== undefined || !JSON.stringify(toggle ?? {}).includes('remoteAddress')
}

let total = 0
for (const file of files) {
  const spec = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Spec
  if (!Array.isArray(spec.state.features)) continue // delta-format states: not a features document
  const cases = (spec.tests ?? []).filter((c) => expressible(spec, c))
  if (cases.length === 0) continue
  total += cases.length

  t.test(`${file}: ${cases.length} cases through the proxy`, async (t) => {
    const features = await startFeaturesServer(t, spec.state as FeaturesDoc)
    const legacy = await startUpstream(t, 'legacy')
    const next = await startUpstream(t, 'new')
    const toggles = [...new Set(cases.map((c) => c.toggleName))]
    const ficus = await startTestFicus(t, {
      upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
      exposeBackend: true,
      trustedHops: 1,
      unleash: { url: features.url, appName: 'ficus-spec', token: features.token, refreshInterval: '1s', backupPath: join(t.testdirName, 'backup.json') },
      routes: toggles.map((name, i) => ({ name: `t${i}`, match: { path: `/t/${i}` }, flag: name }))
    })
    t.ok(await ficus.running.ficus.flags?.whenSynchronized(5_000), 'synchronized with the spec state')
    for (const c of cases) {
      const headers: Record<string, string> = {}
      if (typeof c.context.userId === 'string') headers['x-user-id'] = c.context.userId
      if (typeof c.context.remoteAddress === 'string') headers['x-forwarded-for'] = c.context.remoteAddress
      const r = await ficus.fetch(`/t/${toggles.indexOf(c.toggleName)}`, { headers })
      t.equal(r.headers['x-ficus-backend'], c.expectedResult ? 'new' : 'legacy', c.description)
    }
  })
}

t.test('the specification has cases the proxy can express', async (t) => {
  t.ok(total >= 50, `${total} cases run`)
})
