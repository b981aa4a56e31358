import t from 'tap'
import { bucket } from '../../src/core/bucket.js'
import { decide } from '../../src/core/decide.js'
import { rule } from '../helpers/rule.js'

const base = rule()
const never = (): number => { throw new Error('random must not be drawn') }
/** A random source that returns the given values in turn. */
function seq(...values: number[]): () => number {
  return () => {
    const v = values.shift()
    if (v === undefined) throw new Error('random drawn more often than expected')
    return v
  }
}

t.test('0 % and 100 % need no key and no randomness', async (t) => {
  t.same(decide({ ...base, new: 0 }, 'GET', 'alice', never), { route: 'orders', primary: 'legacy', bucket: null, bucketSource: 'none', key: 'alice', shadow: false })
  t.same(decide({ ...base, new: 100 }, 'GET', undefined, never), { route: 'orders', primary: 'new', bucket: null, bucketSource: 'none', key: undefined, shadow: false })
})

t.test('a split puts a user on new iff bucket(route, key) <= new', async (t) => {
  for (let i = 0; i < 500; i++) {
    const key = `user-${i}`
    const d = decide({ ...base, new: 30 }, 'GET', key, never)
    const b = bucket('orders', key)
    t.equal(d.bucket, b)
    t.equal(d.primary, b <= 30 ? 'new' : 'legacy')
    t.equal(d.bucketSource, 'key')
  }
})

t.test('without a key the bucket comes from the random source', async (t) => {
  t.same(decide({ ...base, new: 10 }, 'GET', undefined, seq(0.05)), { route: 'orders', primary: 'new', bucket: 6, bucketSource: 'random', key: undefined, shadow: false })
  t.same(decide({ ...base, new: 10 }, 'GET', undefined, seq(0.1)), { route: 'orders', primary: 'legacy', bucket: 11, bucketSource: 'random', key: undefined, shadow: false })
  t.equal(decide({ ...base, new: 99 }, 'GET', undefined, seq(0.999999)).bucket, 100)
})

t.test('shadow: sampled per request, safe methods only', async (t) => {
  t.equal(decide({ ...base, shadow: 100 }, 'GET', undefined, never).shadow, true, '100 % draws nothing')
  t.equal(decide({ ...base, shadow: 0 }, 'GET', undefined, never).shadow, false)
  t.equal(decide({ ...base, shadow: 25 }, 'GET', undefined, seq(0.2)).shadow, true)
  t.equal(decide({ ...base, shadow: 25 }, 'GET', undefined, seq(0.3)).shadow, false)
  for (const m of ['HEAD', 'OPTIONS']) t.equal(decide({ ...base, shadow: 100 }, m, undefined, never).shadow, true, m)
  for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) t.equal(decide({ ...base, shadow: 100 }, m, undefined, never).shadow, false, `${m} is a write`)
  for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    t.equal(decide({ ...base, shadow: 100, shadowWrites: true }, m, undefined, never).shadow, true, `${m} with shadowWrites`)
  }
  t.equal(decide({ ...base, shadow: 0, shadowWrites: true }, 'POST', undefined, never).shadow, false, 'shadowWrites alone shadows nothing')
})
