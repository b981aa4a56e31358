import t from 'tap'
import { DivergenceStore, type ShadowedRequest } from '../../src/adapters/divergence-store.js'
import type { Difference } from '../../src/core/difference.js'

/** The divergence store on a clock the test moves: epochs, per-minute windows and `since`. */

const T0 = Date.parse('2026-03-01T10:00:00.000Z')
const MIN = 60_000

function rig() {
  const clock = { ms: T0 }
  const store = new DivergenceStore(10, () => clock.ms)
  const req = (path: string): ShadowedRequest => ({
    route: 'orders', method: 'GET', path, requestId: 'r', stickyKey: undefined, primary: 'legacy', status: { legacy: 200, new: 200 }, ms: { legacy: 1, new: 1 }
  })
  const diverged = (field: string): void => {
    const d: Difference = { path: field, field, area: 'body', kind: 'changed', legacy: 1, new: 2 }
    store.compared(req('/o?page=1'), { outcome: 'diverged', differences: [d], truncated: false }, new Set(['body']), [])
  }
  const matched = (): void => { store.compared(req('/o'), { outcome: 'match' }, new Set(), []) }
  return { clock, store, diverged, matched }
}

t.test('windows: the last 5 minutes and the last hour, to the minute; older minutes drop out', async (t) => {
  const { clock, store, diverged, matched } = rig()
  diverged('body.a') // 10:00
  clock.ms = T0 + 30 * MIN
  matched() // 10:30
  clock.ms = T0 + 57 * MIN
  diverged('body.b') // 10:57
  matched()
  store.unfinished('orders', 'skipped', 'concurrency')
  let [s] = store.summary('orders')
  t.match(s?.windows, { '5m': { comparisons: { match: 1, diverged: 1, skipped: 1 }, divergenceRate: 0.5 }, '1h': { comparisons: { match: 2, diverged: 2 }, divergenceRate: 0.5 } })
  t.match(s?.comparisons, { match: 2, diverged: 2, skipped: 1 }, 'since the epoch: everything')
  clock.ms = T0 + 62 * MIN // 11:02: 10:00 is out of the hour, 10:57 out of the 5 minutes
  ;[s] = store.summary('orders')
  t.match(s?.windows, { '5m': { comparisons: { match: 0, diverged: 0 }, divergenceRate: null }, '1h': { comparisons: { match: 2, diverged: 1 } } })
  t.match(s?.comparisons, { match: 2, diverged: 2 }, 'the epoch\'s counts do not age')
})

t.test('since a time: the counts and top fields of the minutes from then on', async (t) => {
  const { clock, store, diverged } = rig()
  for (let i = 0; i < 5; i++) diverged('body.old')
  clock.ms = T0 + 20 * MIN
  diverged('body.new')
  clock.ms = T0 + 25 * MIN
  const [s] = store.summary('orders', clock.ms - 10 * MIN)
  t.equal(s?.since, new Date(T0 + 15 * MIN).toISOString(), 'to the minute')
  t.same(s?.topFields.map((f) => [f.field, f.count]), [['body.new', 1]])
  t.match(s?.comparisons, { diverged: 1 })
  const [all] = store.summary('orders', T0 - 10 * MIN)
  t.equal(all?.since, all?.epoch.startedAt, 'a time before the epoch began means the epoch')
  t.same(all?.topFields.map((f) => [f.field, f.count]), [['body.old', 5], ['body.new', 1]])
  t.same(store.samples('orders', 10, T0 + 20 * MIN).length, 1, 'samples since a time')
})

t.test('a new epoch: counts and windows start over, samples stay marked with their epoch, the old noise no longer tops the list', async (t) => {
  const { clock, store, diverged } = rig()
  for (let i = 0; i < 5; i++) diverged('body.noise')
  t.same(store.summary('orders')[0]?.epoch, { n: 1, startedAt: new Date(T0).toISOString(), why: 'start', reason: null })
  clock.ms = T0 + 2 * MIN
  const [e] = store.newEpoch(['orders'], 'reload', null)
  t.same(e, { n: 2, startedAt: new Date(T0 + 2 * MIN).toISOString(), why: 'reload', reason: null })
  diverged('body.real')
  const [s] = store.summary('orders')
  t.same(s?.topFields.map((f) => f.field), ['body.real'])
  t.match(s, { epoch: e, since: e?.startedAt, comparisons: { diverged: 1 }, windows: { '5m': { comparisons: { diverged: 1 } } } })
  t.same(store.samples('orders', 10).map((x) => x.epoch), [2, 1, 1, 1, 1, 1], 'samples of the old epoch are kept')
  t.same(store.samples('orders', 10, 'epoch').map((x) => x.epoch), [2], 'since=epoch: this epoch\'s only')
  t.equal(store.samples('orders', 10)[0]?.path, '/o?page=1')
  t.same(store.newEpoch(['orders', 'other'], 'reset', 'fixed').map((x) => [x.n, x.why, x.reason]), [[3, 'reset', 'fixed'], [2, 'reset', 'fixed']])
  t.same(Object.keys(store.epochs()).sort(), ['orders', 'other'], 'what a new cluster worker adopts')
})

t.test('a sample\'s sticky key is shown only as its keyed hash, made when the sample is read: the same key, the same hash; the key itself never', async (t) => {
  const { store } = rig()
  const d: Difference = { path: 'body.a', field: 'body.a', area: 'body', kind: 'changed', legacy: 1, new: 2 }
  const record = (key: string | undefined): void => {
    store.compared({ route: 'orders', method: 'GET', path: '/o', requestId: 'r', stickyKey: key, primary: 'legacy', status: { legacy: 200, new: 200 }, ms: { legacy: 1, new: 1 } },
      { outcome: 'diverged', differences: [d], truncated: false }, new Set(['body']), [])
  }
  record('alice@example.com')
  record('bob@example.com')
  record('alice@example.com')
  record(undefined)
  const [none, alice2, bob, alice1] = store.samples('orders', 10)
  t.equal(none?.keyHash, null, 'no sticky key: no hash')
  t.match(alice1?.keyHash, /^[0-9a-f]{12}$/)
  t.equal(alice2?.keyHash, alice1?.keyHash, 'the same key, the same hash')
  t.not(bob?.keyHash, alice1?.keyHash)
  const shown = JSON.stringify(store.samples('orders', 10))
  t.notMatch(shown, /alice|bob|stickyKey/, 'the key is never in a sample')
  t.equal(store.samples('orders', 10)[1]?.keyHash, alice2?.keyHash, 'read again: the same hash')
})
