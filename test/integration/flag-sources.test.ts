import { join } from 'node:path'
import t, { type Test } from 'tap'
import { bucket } from '../../src/core/bucket.js'
import { admin } from '../helpers/admin.js'
import { rolloutFlag, startFeaturesServer } from '../helpers/features-server.js'
import { sample, startTestFicus, type TestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'

/**
 * One behavioural contract, two sources of a route's share of new: routes.yaml + the admin
 * API (static) and an Unleash flexibleRollout flag (unleash, served from a loopback
 * /api/client/features). Users see the same thing from either: the same users on new for
 * the same share (Ficus's bucket = Unleash's), stickiness, no user moving back when the
 * share grows, the rollback beating the source and clearing back to it.
 */

interface Rig {
  readonly ficus: TestFicus
  /** Changes the share the way a release manager would with this source, and returns once Ficus applies it. */
  setShare(n: number): Promise<void>
}

interface Source {
  readonly name: string
  start(t: Test, share: number): Promise<Rig>
}

const USERS = Array.from({ length: 200 }, (_, i) => `user-${i}`)

async function upstreams(t: Test): Promise<Record<string, unknown>> {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  return { legacy: { url: legacy.url }, new: { url: next.url } }
}

const sources: Source[] = [
  {
    name: 'static (routes.yaml + admin API)',
    async start (t, share) {
      const ficus = await startTestFicus(t, {
        upstreams: await upstreams(t),
        exposeBackend: true,
        routes: [{ name: 'orders', match: { path: '/orders/*' }, new: share }]
      })
      return {
        ficus,
        async setShare (n) {
          const r = await admin(ficus, 'PATCH', '/admin/routes/orders', { json: { new: n, reason: 'contract' } })
          if (r.status !== 200) throw new Error(`PATCH answered ${r.status}`)
        }
      }
    }
  },
  {
    name: 'unleash (flexibleRollout flag)',
    async start (t, share) {
      const features = await startFeaturesServer(t, { features: [rolloutFlag('orders-new', share, { groupId: 'orders' })] })
      const ficus = await startTestFicus(t, {
        upstreams: await upstreams(t),
        exposeBackend: true,
        unleash: { url: features.url, appName: 'ficus-contract', token: features.token, refreshInterval: '100ms', backupPath: join(t.testdirName, 'backup.json') },
        routes: [{ name: 'orders', match: { path: '/orders/*' }, flag: 'orders-new' }]
      })
      const flags = ficus.running.ficus.flags
      if (flags === undefined || !await flags.whenSynchronized(5_000)) throw new Error('not synchronized')
      return {
        ficus,
        async setShare (n) {
          features.set({ features: [rolloutFlag('orders-new', n, { groupId: 'orders' })] })
          if (!await flags.until(() => flags.state('orders-new').share === n, 5_000)) throw new Error(`share ${n} not seen`)
        }
      }
    }
  }
]

/** Which backend answered each user (one request each). */
async function sides(ficus: TestFicus, users: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const u of users) {
    const r = await ficus.fetch(`/orders/${u}`, { headers: { 'x-user-id': u } })
    out.set(u, String(r.headers['x-ficus-backend']))
  }
  return out
}

const expected = (share: number): Map<string, string> => new Map(USERS.map((u) => [u, bucket('orders', u) <= share ? 'new' : 'legacy']))

for (const source of sources) {
  t.test(`contract: ${source.name}`, async (t) => {
    t.test('0 % serves everyone from legacy, 100 % everyone from new', async (t) => {
      const zero = await source.start(t, 0)
      t.ok([...(await sides(zero.ficus, USERS.slice(0, 50))).values()].every((s) => s === 'legacy'), 'all legacy at 0 %')
      await zero.setShare(100)
      t.ok([...(await sides(zero.ficus, USERS.slice(0, 50))).values()].every((s) => s === 'new'), 'all new at 100 %')
    })

    t.test('the same users are on new as with Ficus\'s own bucketing, and stay there', async (t) => {
      const rig = await source.start(t, 30)
      const first = await sides(rig.ficus, USERS)
      t.same(first, expected(30), 'users on new = bucket(orders, user) <= 30')
      const onNew = [...first.values()].filter((s) => s === 'new').length
      t.ok(onNew > 30 && onNew < 90, `${onNew} of 200 users on new at 30 %`)
      t.same(await sides(rig.ficus, USERS), first, 'a second request of every user lands on the same side')
    })

    t.test('raising the share never moves a user back to legacy', async (t) => {
      const rig = await source.start(t, 30)
      const before = await sides(rig.ficus, USERS)
      await rig.setShare(50)
      const after = await sides(rig.ficus, USERS)
      t.same(after, expected(50), 'users on new = bucket <= 50')
      const back = USERS.filter((u) => before.get(u) === 'new' && after.get(u) !== 'new')
      t.same(back, [], 'nobody went from new back to legacy')
      t.ok(USERS.some((u) => before.get(u) === 'legacy' && after.get(u) === 'new'), 'some users joined new')
      const metrics = await rig.ficus.scrape()
      t.equal(sample(metrics, 'ficus_route_new_percent', { route: 'orders' }), 50, 'the gauge shows the share in effect')
    })

    t.test('a rollback beats the source until it is cleared', async (t) => {
      const rig = await source.start(t, 50)
      const rolled = await admin(rig.ficus, 'POST', '/admin/rollback', { json: { route: 'orders', reason: 'contract' } })
      t.equal(rolled.status, 200)
      t.ok([...(await sides(rig.ficus, USERS.slice(0, 60))).values()].every((s) => s === 'legacy'), 'all legacy after the rollback')
      const cleared = await admin(rig.ficus, 'PATCH', '/admin/routes/orders', { json: { new: null, reason: 'recovered' } })
      t.equal(cleared.status, 200)
      const view = (cleared.body as { route: { new: { value: number } } }).route
      t.equal(view.new.value, 50, 'the share is the source\'s again')
      t.same(await sides(rig.ficus, USERS), expected(50), 'the same users are back on new')
    })
  })
}
