import fc from 'fast-check'
import t from 'tap'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'
import { uniformInt } from 'pure-rand/distribution/uniformInt'
import { compileCompare, type CompareConfig } from '../../src/core/compare-rules.js'
import { binomialCdf, percent, upperBound } from '../../src/core/stats.js'
import { canonical, pairsOf, recordDifferences, Reservoir, sampleStatement, toLegacyPaths, verdict, zeroCounts, type Counts } from '../../src/core/verify.js'

/** The pure part of `ficus verify` (core/verify.ts, core/stats.ts). */

const rules = (c?: CompareConfig) => compileCompare(c).rules

t.test('upperBound: the one-sided Clopper-Pearson bound, against known values', async (t) => {
  t.ok(Math.abs(upperBound(0, 3000) - 0.000998) < 0.000001, '0 of 3,000: 0.0998 %')
  t.ok(Math.abs(upperBound(1, 100) - 0.0466) < 0.0005, `1 of 100: 4.66 % (got ${upperBound(1, 100)})`)
  t.ok(Math.abs(upperBound(5, 1000) - 0.0105) < 0.0003, `5 of 1,000: 1.05 % (got ${upperBound(5, 1000)})`)
  t.ok(Math.abs(upperBound(10, 20, 0.95) - 0.6965) < 0.003, `10 of 20: 69.6 % (got ${upperBound(10, 20)})`)
  t.equal(upperBound(20, 20), 1)
  t.equal(upperBound(0, 0), 1, 'nothing seen: nothing can be said')
  t.ok(upperBound(3, 1000, 0.99) > upperBound(3, 1000, 0.95), 'more confidence, a wider bound')
  // The bound is where seeing k or fewer has probability 1 - confidence.
  t.ok(Math.abs(binomialCdf(7, 2000, upperBound(7, 2000)) - 0.05) < 1e-6)
  t.equal(binomialCdf(0, 10, 0), 1)
  t.ok(Math.abs(binomialCdf(0, 10, 0.5) - 1 / 1024) < 1e-12)
})

t.test('percent: as a person reads it', async (t) => {
  t.equal(percent(0.000998), '0.1 %')
  t.equal(percent(0.0466), '4.7 %')
  t.equal(percent(0.00013), '0.013 %')
  t.equal(percent(0.5), '50 %')
})

t.test('sampleStatement and verdict', async (t) => {
  const c = (over: Partial<Counts>): Counts => ({ ...zeroCounts(), ...over })
  t.equal(sampleStatement(c({ matched: 3000 })).text, '0 of 3,000 differ: below 0.1 % at 95 %')
  t.equal(sampleStatement(c({ matched: 99, mismatched: 1 })).text, '1 of 100 differ: below 4.7 % at 95 %')
  t.equal(sampleStatement(c({ unmapped: 4 })).text, 'no record was compared: nothing can be said of the rest')
  t.equal(verdict(c({ matched: 10 }), 'checksum', true), 'parity')
  t.equal(verdict(c({ matched: 10, missing_in_new: 1 }), 'checksum', true), 'differences')
  t.equal(verdict(c({ matched: 999, missing_in_new: 1 }), 'checksum', true, 0.001), 'parity', '1 in 1,000 within 0.1 %')
  t.equal(verdict(c({ matched: 10, unmapped: 1 }), 'checksum', true), 'incomplete', 'nothing shown about an unmapped record')
  t.equal(verdict(c({ matched: 10, in_flight: 1 }), 'checksum', true), 'incomplete')
  t.equal(verdict(c({ matched: 10 }), 'checksum', false), 'incomplete')
  t.equal(verdict(c({ matched: 10, mismatched: 1 }), 'checksum', false), 'differences', 'a difference found is reported even when the run did not end')
  t.equal(verdict(c({ matched: 3000 }), 'sample', true, 0.001), 'parity', 'the bound (0.0998 %) is under 0.1 %')
  t.equal(verdict(c({ matched: 2000 }), 'sample', true, 0.001), 'parity', 'a sample with no difference is parity whatever its bound')
  t.equal(verdict(c({ matched: 2999, mismatched: 1 }), 'sample', true, 0.001), 'differences', 'one in 3,000: the bound (0.16 %) is over 0.1 %')
  t.equal(verdict(zeroCounts(), 'count', true, 0, { legacy: 5, new: 5 }), 'parity')
  t.equal(verdict(zeroCounts(), 'count', true, 0, { legacy: 5, new: 4 }), 'differences')
  t.equal(verdict(zeroCounts(), 'count', true, 0, { legacy: null, new: 4 }), 'incomplete')
})

t.test('canonical: equal under the rules gives the same text; a real difference does not', async (t) => {
  const r = rules({ ignore: ['body.updated_at'], arrays: { 'body.tags': 'unordered' }, treatAsEqual: ['string-number', 'null-missing'], ids: { 'body.owner': 'user' } })
  const legacy = { id: 1, b: 1, a: { y: 2, x: 1 }, tags: ['a', 'b'], price: '12.50', updated_at: 'x', gone: null, owner: 26 }
  const next = { a: { x: 1, y: 2 }, b: 1, id: 1, tags: ['b', 'a'], price: 12.5, updated_at: 'y', owner: '909e' }
  const legacyOf = (entity: string, id: string): string | undefined => (entity === 'user' && id === '909e' ? '26' : undefined)
  const L = { side: 'legacy' } as const
  const N = { side: 'new', legacyIdOf: legacyOf } as const
  const same = { ...next, tags: ['a', 'b'], price: '12.50' }
  t.equal(canonical(legacy, r, L), canonical(same, r, N), 'key order, an ignored field, null-missing, an id through the map')
  t.not(canonical(legacy, r, L), canonical({ ...same, b: 2 }, r, N), 'a changed field')
  t.not(canonical(legacy, r, L), canonical(same, r, { side: 'new', legacyIdOf: () => undefined }), 'an id the map does not know: the comparison decides')
  t.not(canonical(legacy, r, L), canonical({ ...same, tags: ['b', 'a'] }, r, N), 'an unordered array in another order: the comparison decides (it pairs them)')
  t.not(canonical(legacy, r, L), canonical({ ...same, price: 12.5 }, r, N), 'string-number: the comparison decides')
  t.same(recordDifferences(legacy, { ...same, tags: ['b', 'a'], price: 12.5 }, r, pairsOf([['user', '26', '909e']])).differences, [], 'and it finds them equal')
  t.not(canonical({ tags: ['a', 'b'] }, rules()), canonical({ tags: ['b', 'a'] }, rules()), 'arrays keep their order unless the rules say otherwise')
  const deep: Record<string, unknown> = {}
  let at = deep
  for (let i = 0; i < 200; i++) at = (at.x = {})
  t.type(canonical(deep, rules()), 'string', 'a hostile nesting does not exhaust the stack')
})

t.test('recordDifferences: the paths and kinds of the shadow comparison; toLegacyPaths moves new\'s fields without changing them', async (t) => {
  const r = rules({ paths: [{ legacy: 'body.name', new: 'body.fullName' }] })
  const next = { id: 1, fullName: 'Ada' }
  const moved = toLegacyPaths(next, r)
  t.same(next, { id: 1, fullName: 'Ada' }, 'new\'s record is not changed in place')
  t.same(recordDifferences({ id: 1, name: 'Ada' }, moved, r).differences, [])
  t.same(recordDifferences({ id: 1, name: 'Ada', n: 1 }, toLegacyPaths({ id: 1, fullName: 'Bo', n: '1' }, r), r).differences.map((d) => [d.path, d.kind]),
    [['body.name', 'changed'], ['body.n', 'type']])
})

t.test('Reservoir: the same seed picks the same records; every record is equally likely', async (t) => {
  const pick = (seed: number, n: number, of: number): number[] => {
    const rng = xoroshiro128plus(seed)
    const r = new Reservoir<number>(n, (max) => uniformInt(rng, 0, max))
    for (let i = 0; i < of; i++) r.offer(i)
    return r.kept
  }
  t.same(pick(7, 50, 10_000), pick(7, 50, 10_000))
  t.not(JSON.stringify(pick(7, 50, 10_000)), JSON.stringify(pick(8, 50, 10_000)))
  t.same(pick(1, 10, 5).sort(), [0, 1, 2, 3, 4], 'fewer records than the sample: all of them')
  // 2,000 draws of 10 from 100: each record is expected 200 times.
  const hits = new Array<number>(100).fill(0)
  for (let s = 1; s <= 2000; s++) for (const x of pick(s, 10, 100)) hits[x] = (hits[x] as number) + 1
  t.ok(Math.min(...hits) > 140 && Math.max(...hits) < 260, `each record drawn 140-260 times of an expected 200 (got ${Math.min(...hits)}-${Math.max(...hits)})`)
})

t.test('canonical never makes equal what the comparison finds different (property, and the cases a review found)', async (t) => {
  const r = rules({ ignore: ['body.meta'], arrays: { 'body.tags': 'unordered', 'body.items': { key: 'sku' } }, treatAsEqual: ['string-number', 'null-missing'], numbers: { tolerance: 0.01 } })
  const differs = (a: unknown, b: unknown): boolean => recordDifferences(a, b, r).differences.length > 0
  for (const [a, b] of [
    [{ p: '1.50' }, { p: '1.5' }], [{ p: '-0' }, { p: '0' }], [{ p: '12345678901234567890' }, { p: '12345678901234567891' }],
    [{ p: '1e400' }, { p: null }], [{ items: [{ sku: 'a', v: 1 }, { sku: 'a', v: 2 }] }, { items: [{ sku: 'a', v: 2 }, { sku: 'a', v: 1 }] }]
  ] as const) {
    if (differs(a, b)) t.not(canonical(a, r), canonical(b, r), `${JSON.stringify(a)} against ${JSON.stringify(b)}`)
  }
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, fc.constantFrom(null, 0, 1, 1.5, '1.50', '1.5', 'a', true), fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b', 'meta', 'tags', 'items', 'sku', 'p'), tie('v'), { maxKeys: 4 }))
  })).v
  fc.assert(fc.property(value, value, (a, b) => !(canonical(a, r) === canonical(b, r) && differs(a, b))), { numRuns: 3000 })
  // Ids: legacy 7 and new "7" are one id only when the map pairs them.
  const ids = rules({ ids: { 'body.owner': 'user' } })
  t.not(canonical({ owner: 7 }, ids, { side: 'legacy' }), canonical({ owner: '7' }, ids, { side: 'new', legacyIdOf: () => undefined }), 'not paired: the comparison decides (a type difference)')
  t.equal(canonical({ owner: 7 }, ids, { side: 'legacy' }), canonical({ owner: 'x9' }, ids, { side: 'new', legacyIdOf: (_e, id) => (id === 'x9' ? '7' : undefined) }), 'paired: one id')
})
