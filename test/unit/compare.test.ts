import fc from 'fast-check'
import t from 'tap'
import { compare, idsToLookUp, sameBytes, sameJsonText, type ComparedSide, type Comparison } from '../../src/core/compare.js'
import { IdPairs, idsIn, MAX_ID_LOOKUPS } from '../../src/core/compare-ids.js'
import { Collector, MAX_PAIRING_TRIES, type Difference } from '../../src/core/difference.js'
import { diffJson } from '../../src/core/json-diff.js'
import { compileCompare, type CompareConfig, type CompareRules } from '../../src/core/compare-rules.js'
import { showTarget } from '../../src/core/redact.js'

const JSON_CT = { 'content-type': 'application/json' }
const side = (body: unknown, over: Partial<ComparedSide> = {}): ComparedSide => ({
  status: 200,
  headers: JSON_CT,
  body: Buffer.from(JSON.stringify(body)),
  ...over
})
const run = (a: unknown, b: unknown, c?: CompareConfig): Comparison => compare(side(a), side(b), compileCompare(c).rules)
const diffs = (r: Comparison): Pick<Difference, 'path' | 'kind' | 'legacy' | 'new'>[] =>
  r.outcome === 'diverged' ? r.differences.map(({ path, kind, legacy, new: n }) => ({ path, kind, legacy, new: n })) : []

t.test('each kind of difference is found, at its field path, from legacy to new', async (t) => {
  const legacy = { customer: { name: 'Ada', tier: 'gold' }, amount: '12.50', items: [{ sku: 'A', price: 1 }, { sku: 'B', price: 2 }], gone: 1 }
  const next = { customer: { name: 'Ada L.', tier: 'gold' }, amount: 12.5, items: [{ sku: 'A', price: 1 }, { sku: 'B', price: 3 }, { sku: 'C', price: 4 }], added: true }
  t.same(diffs(run(legacy, next)), [
    { path: 'body.customer.name', kind: 'changed', legacy: 'Ada', new: 'Ada L.' },
    { path: 'body.amount', kind: 'type', legacy: '12.50', new: 12.5 },
    { path: 'body.items', kind: 'length', legacy: 2, new: 3 },
    { path: 'body.items[1].price', kind: 'changed', legacy: 2, new: 3 },
    { path: 'body.gone', kind: 'missing', legacy: 1, new: undefined },
    { path: 'body.added', kind: 'extra', legacy: undefined, new: true }
  ])
  const r = run(legacy, next)
  t.equal(r.outcome, 'diverged')
  t.same(r.outcome === 'diverged' ? r.differences.map((d) => d.field) : [], [
    'body.customer.name', 'body.amount', 'body.items', 'body.items[*].price', 'body.gone', 'body.added'
  ], 'array positions are folded for per-field counts')
})

t.test('key order never matters; equal bodies match', async (t) => {
  t.same(run({ a: 1, b: { c: [1, 2], d: null } }, { b: { d: null, c: [1, 2] }, a: 1 }), { outcome: 'match' })
})

t.test('status and the chosen headers are compared; content-type by default', async (t) => {
  const r = compare(side({ a: 1 }, { status: 200, headers: { 'content-type': 'application/json', etag: '"1"' } }),
    side({ a: 1 }, { status: 404, headers: { 'content-type': 'application/problem+json', etag: '"2"' } }), compileCompare(undefined).rules)
  t.same(diffs(r), [
    { path: 'status', kind: 'changed', legacy: 200, new: 404 },
    { path: 'header.content-type', kind: 'changed', legacy: 'application/json', new: 'application/problem+json' }
  ])
  const withEtag = compare(side(1, { headers: { ...JSON_CT, etag: '"1"' } }), side(1, { headers: JSON_CT }), compileCompare({ headers: ['ETag'] }).rules)
  t.same(diffs(withEtag), [{ path: 'header.etag', kind: 'missing', legacy: '"1"', new: undefined }])
})

t.test('ignore: exact paths, * and ** wildcards, headers and status', async (t) => {
  const a = { meta: { generatedAt: 1, id: 'x' }, items: [{ id: 1, updatedAt: 'a' }, { id: 2, updatedAt: 'b' }], deep: { x: { updatedAt: 1 } } }
  const b = { meta: { generatedAt: 2, id: 'x' }, items: [{ id: 1, updatedAt: 'c' }, { id: 2, updatedAt: 'd' }], deep: { x: { updatedAt: 2 } } }
  t.equal(run(a, b).outcome, 'diverged')
  t.same(run(a, b, { ignore: ['body.meta.generatedAt', 'body.items[*].updatedAt', 'body.deep.**.updatedAt'] }), { outcome: 'match' })
  t.same(run(a, b, { ignore: ['body.**.generatedAt', 'body.**.updatedAt'] }), { outcome: 'match' })
  t.same(diffs(run(a, b, { ignore: ['body.meta', 'body.deep'] })).map((d) => d.path), ['body.items[0].updatedAt', 'body.items[1].updatedAt'])
  t.same(run({ x: 1 }, { y: 2 }, { ignore: ['body'] }), { outcome: 'match' }, 'ignoring body ignores it whole')
  t.same(compare(side(1, { status: 200 }), side(1, { status: 201 }), compileCompare({ ignore: ['status'] }).rules), { outcome: 'match' })
  t.same(compare(side(1, { headers: { 'content-type': 'application/json' } }), side(1, { headers: { 'content-type': 'application/json; charset=utf-8' } }),
    compileCompare({ ignore: ['header.Content-Type'] }).rules), { outcome: 'match' })
  t.same(run({ a: 1 }, {}, { ignore: ['body.a'] }), { outcome: 'match' }, 'an ignored field may also be missing')
})

t.test('arrays: unordered as a multiset, or matched by a key field', async (t) => {
  t.same(run({ tags: ['a', 'b', 'b'] }, { tags: ['b', 'a', 'b'] }, { arrays: { 'body.tags': 'unordered' } }), { outcome: 'match' })
  t.same(diffs(run({ tags: ['a', 'b', 'b'] }, { tags: ['b', 'a', 'c'] }, { arrays: { 'body.tags': 'unordered' } })), [
    { path: 'body.tags[2]', kind: 'missing', legacy: 'b', new: undefined },
    { path: 'body.tags[2]', kind: 'extra', legacy: undefined, new: 'c' }
  ])
  const legacy = { items: [{ sku: 'A', qty: 1 }, { sku: 'B', qty: 2 }, { sku: 'D', qty: 1 }] }
  const next = { items: [{ sku: 'B', qty: 5 }, { sku: 'A', qty: 1 }, { sku: 'C', qty: 1 }] }
  t.same(diffs(run(legacy, next, { arrays: { 'body.items': { key: 'sku' } } })), [
    { path: 'body.items[sku=B].qty', kind: 'changed', legacy: 2, new: 5 },
    { path: 'body.items[sku=D]', kind: 'missing', legacy: { sku: 'D', qty: 1 }, new: undefined },
    { path: 'body.items[sku=C]', kind: 'extra', legacy: undefined, new: { sku: 'C', qty: 1 } }
  ])
  t.same(run({ o: [{ id: 1, at: 1 }, { id: 2, at: 2 }] }, { o: [{ id: 2, at: 9 }, { id: 1, at: 8 }] },
    { arrays: { 'body.o': 'unordered' }, ignore: ['body.o[*].at'] }), { outcome: 'match' }, 'ignore rules apply inside unordered items')
})

t.test('numbers: tolerance; string-number and null-missing only when asked', async (t) => {
  t.equal(run({ p: 1.0001 }, { p: 1.0002 }).outcome, 'diverged')
  t.same(run({ p: 1.0001 }, { p: 1.0002 }, { numbers: { tolerance: 0.001 } }), { outcome: 'match' })
  t.equal(run({ p: 1 }, { p: 1.01 }, { numbers: { tolerance: 0.001 } }).outcome, 'diverged')
  t.equal(run({ amount: '12.50' }, { amount: 12.5 }).outcome, 'diverged', 'a type change is a divergence by default')
  t.same(run({ amount: '12.50' }, { amount: 12.5 }, { treatAsEqual: ['string-number'] }), { outcome: 'match' })
  t.equal(run({ amount: '12.5x' }, { amount: 12.5 }, { treatAsEqual: ['string-number'] }).outcome, 'diverged')
  t.same(run({ a: null }, {}, { treatAsEqual: ['null-missing'] }), { outcome: 'match' })
  t.same(run({}, { a: null }, { treatAsEqual: ['null-missing'] }), { outcome: 'match' })
  t.equal(run({ a: null }, {}).outcome, 'diverged')
})

t.test('non-JSON bodies are compared byte for byte; a JSON side that does not parse is a type change', async (t) => {
  const text = (s: string): ComparedSide => ({ status: 200, headers: { 'content-type': 'text/html' }, body: Buffer.from(s) })
  const rules = compileCompare(undefined).rules
  t.same(compare(text('<p>hi</p>'), text('<p>hi</p>'), rules), { outcome: 'match' })
  const r = compare(text('<p>hello world</p>'), text('<p>hello there</p>'), rules)
  t.match(diffs(r), [{ path: 'body', kind: 'changed', legacy: /18 bytes; at byte 9:/, new: /18 bytes; at byte 9:/ }])
  t.same(diffs(compare(side({ a: 1 }), { ...side(null), body: Buffer.from('{oops') }, rules)), [
    { path: 'body', kind: 'type', legacy: 'JSON', new: 'invalid JSON' }
  ])
  t.same(compare({ status: 204, headers: {}, body: Buffer.alloc(0) }, { status: 204, headers: {}, body: Buffer.alloc(0) }, rules), { outcome: 'match' })
})

t.test('a body too large to keep: skipped, unless status or headers already differ', async (t) => {
  const rules = compileCompare(undefined).rules
  t.same(compare(side(1), { ...side(1), body: null }, rules), { outcome: 'skipped', reason: 'body_too_large' })
  t.equal(compare(side(1, { status: 500 }), { ...side(1), body: null }, rules).outcome, 'diverged')
})

t.test('differences are bounded per comparison; deep nesting cannot exhaust the stack', async (t) => {
  const a = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, i]))
  const b = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, -i - 1]))
  const r = run(a, b)
  t.equal(r.outcome === 'diverged' && r.differences.length, 50)
  t.equal(r.outcome === 'diverged' && r.truncated, true)
  const nested = (leaf: string): ComparedSide => ({ ...side(null), body: Buffer.from(`${'['.repeat(100_000)}${leaf}${']'.repeat(100_000)}`) })
  t.same(diffs(compare(nested('1'), nested('2'), compileCompare(undefined).rules)), [
    { path: `body${'[0]'.repeat(64)}`, kind: 'changed', legacy: '(nested too deep to show)', new: '(nested too deep to show)' }
  ], '100,000 levels deep')
  t.same(compare(nested('1'), nested('1'), compileCompare(undefined).rules), { outcome: 'match' })
})

t.test('rules that cannot be read are reported', async (t) => {
  const problems: [string[], string][] = []
  compileCompare({ ignore: ['body.a', 'nope', 'body.[x]'], arrays: { 'header.x': 'unordered' }, redact: ['status'] }, problems)
  t.same(problems.map(([p]) => p.join('.')), ['arrays.header.x', 'ignore.1', 'ignore.2', 'redact.0'])
  t.match(problems.find(([p]) => p.join('.') === 'redact.0')?.[1], /body path .* or a query parameter/)
})

t.test('string-number: a numeric string and a number that differ in amount are a changed value, not a type change', async (t) => {
  const equal = { treatAsEqual: ['string-number'] } as const
  t.same(diffs(run({ amount: '1' }, { amount: 2 }, equal)), [{ path: 'body.amount', kind: 'changed', legacy: '1', new: 2 }])
  t.same(diffs(run({ amount: 2 }, { amount: '1.5' }, equal)), [{ path: 'body.amount', kind: 'changed', legacy: 2, new: '1.5' }])
  t.same(diffs(run({ amount: 'one' }, { amount: 1 }, equal)), [{ path: 'body.amount', kind: 'type', legacy: 'one', new: 1 }], 'text that is no number stays a type change')
  t.same(diffs(run({ amount: '1' }, { amount: 2 })), [{ path: 'body.amount', kind: 'type', legacy: '1', new: 2 }], 'without the rule, a type change')
})

t.test('arrays: unordered applies tolerance, string-number, null-missing and ignore to the items it pairs', async (t) => {
  const unordered = { arrays: { 'body.list': 'unordered' } } as const
  t.same(run({ list: [1.001] }, { list: [1.002] }, { numbers: { tolerance: 0.01 } }), { outcome: 'match' }, 'in order')
  t.same(run({ list: [1.001] }, { list: [1.002] }, { ...unordered, numbers: { tolerance: 0.01 } }), { outcome: 'match' }, 'unordered, the same')
  t.same(run({ list: [1.001, 5] }, { list: [5, 1.002] }, { ...unordered, numbers: { tolerance: 0.01 } }), { outcome: 'match' }, 'and reordered')
  t.same(run({ list: ['12.50', 3] }, { list: [3, 12.5] }, { ...unordered, treatAsEqual: ['string-number'] }), { outcome: 'match' })
  t.same(run({ list: [{ a: 1, b: null }] }, { list: [{ a: 1 }] }, { ...unordered, treatAsEqual: ['null-missing'] }), { outcome: 'match' })
  t.same(run({ list: [1, 2] }, { list: [2.5, 1] }, { ...unordered, numbers: { tolerance: 0.1 } }).outcome, 'diverged', 'beyond the tolerance still differs')
  t.same(diffs(run({ list: [1, 2] }, { list: [2, 3] }, unordered)), [
    { path: 'body.list[0]', kind: 'missing', legacy: 1, new: undefined },
    { path: 'body.list[1]', kind: 'extra', legacy: undefined, new: 3 }
  ])
})

t.test('content-type is compared by media type unless the route asks for the exact text', async (t) => {
  const ct = (v: string): ComparedSide => side({ a: 1 }, { headers: { 'content-type': v } })
  t.same(compare(ct('application/json; charset=utf-8'), ct('Application/JSON'), compileCompare(undefined).rules), { outcome: 'match' })
  t.same(diffs(compare(ct('application/json; charset=utf-8'), ct('application/json'), compileCompare({ contentType: 'exact' }).rules)), [
    { path: 'header.content-type', kind: 'changed', legacy: 'application/json; charset=utf-8', new: 'application/json' }
  ])
  t.same(diffs(compare(ct('application/json'), ct('application/problem+json; charset=utf-8'), compileCompare(undefined).rules)), [
    { path: 'header.content-type', kind: 'changed', legacy: 'application/json', new: 'application/problem+json; charset=utf-8' }
  ], 'another media type still differs, shown as sent')
})

t.test('compare.when: rules for answers with a given status (bodies of 404s ignored)', async (t) => {
  const rules = compileCompare({ when: [{ status: 404, ignore: ['body'] }, { status: ['5xx', 429], ignore: ['body.trace'] }] }).rules
  const at = (status: number, body: unknown): ComparedSide => side(body, { status })
  t.same(compare(at(404, { error: 'no such order' }), at(404, { message: 'Not Found' }), rules), { outcome: 'match' })
  t.same(diffs(compare(at(200, { a: 1 }), at(200, { a: 2 }), rules)), [{ path: 'body.a', kind: 'changed', legacy: 1, new: 2 }], 'other statuses compare bodies')
  t.same(diffs(compare(at(404, { a: 1 }), at(200, { a: 2 }), rules)), [{ path: 'status', kind: 'changed', legacy: 404, new: 200 }],
    'a status difference is still reported when one side is a 404')
  t.same(diffs(compare(at(503, { trace: 'x', code: 1 }), at(503, { trace: 'y', code: 2 }), rules)), [{ path: 'body.code', kind: 'changed', legacy: 1, new: 2 }], 'a class')
  t.same(compare(at(429, { trace: 'x' }), at(429, { trace: 'y' }), rules), { outcome: 'match' }, 'and a code in a list')
})

t.test('compare.paths: an envelope and renamed fields compare equal; differences are named at legacy\'s paths', async (t) => {
  const envelope = { paths: [{ legacy: 'body', new: 'body.data' }] }
  t.same(run({ id: 1, name: 'a' }, { data: { id: 1, name: 'a' }, meta: { page: 1 } }, envelope), { outcome: 'match' })
  t.same(diffs(run({ id: 1, name: 'a' }, { data: { id: 1, name: 'b' } }, envelope)), [{ path: 'body.name', kind: 'changed', legacy: 'a', new: 'b' }])
  t.same(diffs(run({ id: 1 }, { error: 'x' }, envelope)), [
    { path: 'body.id', kind: 'missing', legacy: 1, new: undefined },
    { path: 'body.error', kind: 'extra', legacy: undefined, new: 'x' }
  ], 'without the envelope nothing moves: the documents compare as they are')
  t.same(run({ data: { id: 1 } }, { id: 1 }, { paths: [{ legacy: 'body.data', new: 'body' }] }), { outcome: 'match' }, 'the other way round')
  const renamed = { paths: [{ legacy: 'body.customer_name', new: 'body.customerName' }, { legacy: 'body.items[*].qty', new: 'body.items[*].quantity' }] }
  t.same(run({ customer_name: 'Ada', items: [{ qty: 1 }, { qty: 2 }] }, { customerName: 'Ada', items: [{ quantity: 1 }, { quantity: 2 }] }, renamed), { outcome: 'match' })
  t.same(diffs(run({ customer_name: 'Ada', items: [{ qty: 1 }] }, { customerName: 'Eve', items: [{ quantity: 3 }] }, renamed)), [
    { path: 'body.customer_name', kind: 'changed', legacy: 'Ada', new: 'Eve' },
    { path: 'body.items[0].qty', kind: 'changed', legacy: 1, new: 3 }
  ])
  t.same(diffs(run({ customer_name: 'Ada' }, { customer_name: 'Ada', customerName: 'Eve' }, renamed)), [
    { path: 'body.customerName', kind: 'extra', legacy: undefined, new: 'Eve' }
  ], 'a value already where legacy has it is not overwritten')
})

t.test('rules for statuses, mapped paths and query redaction are checked at load', async (t) => {
  const problems: [(string | number)[], string][] = []
  compileCompare({
    when: [{ status: 'abc', ignore: ['body'] }, { status: 404, ignore: ['nope'] }],
    paths: [{ legacy: 'body', new: 'body' }, { legacy: 'body.**.a', new: 'body.b' }, { legacy: 'body.items[*].a', new: 'body.other[*].b' }, { legacy: 'body.a[0]', new: 'body.b' }, { legacy: 'header.x', new: 'body.x' }],
    redact: ['query.', 'query.token', 'body.x']
  }, problems)
  t.same(problems.map(([p]) => p.join('.')), ['when.0.status', 'when.1.ignore.0', 'paths.0', 'paths.1', 'paths.2', 'paths.3', 'paths.4', 'redact.0'])
  const c = compileCompare({ redact: ['query.token', 'body.x', 'query.*'] })
  t.same([c.redactQuery, c.redact.map((r) => r.source)], [['token', '*'], ['body.x']])
})

t.test('a sample\'s target keeps its query string, secret parameter values redacted', async (t) => {
  t.equal(showTarget('/posts?_page=2', []), '/posts?_page=2')
  t.equal(showTarget('/posts', ['*']), '/posts')
  t.equal(showTarget('/p?_page=2&access_token=abc&API_KEY=k&Sig=x&flag&q=a%3Db', []), '/p?_page=2&access_token=[redacted]&API_KEY=[redacted]&Sig=[redacted]&flag&q=a%3Db',
    'credentials and signatures by their usual names, in any case')
  t.equal(showTarget('/p?session%5Fid=s&user=bob&x=1', ['session_id'], ['user']), '/p?session%5Fid=[redacted]&user=[redacted]&x=1', 'the route\'s query rules (names decoded) and the sticky parameter')
  t.equal(showTarget('/p?a=1&b=2', ['*']), '/p?a=[redacted]&b=[redacted]', 'query.* hides every value')
  t.match(showTarget(`/p?x=${'y'.repeat(2000)}`, []), /^\/p\?x=y+… \(2005 chars\)$/, 'a long target is cut')
})

/* ---------- properties ---------- */

const json = fc.jsonValue({ maxDepth: 4 })
const rules = compileCompare(undefined).rules

/** The same value with every object's keys in another order. */
function reorder(v: unknown, seed: number): unknown {
  if (Array.isArray(v)) return v.map((x) => reorder(x, seed + 1))
  if (v === null || typeof v !== 'object') return v
  const entries = Object.entries(v as Record<string, unknown>)
  entries.sort((x, y) => ((x[0].length * 31 + seed) % 7) - ((y[0].length * 31 + seed) % 7))
  return Object.fromEntries(entries.reverse().map(([k, x]) => [k, reorder(x, seed + 1)]))
}

/** The same document in other bytes (leading space, indentation): never by the byte shortcut; by the whitespace one only when the keys kept their order. */
const respaced = (body: unknown): ComparedSide => side(body, { body: Buffer.from(' ' + JSON.stringify(body, null, 1)) })

t.test('property: any JSON value equals itself and any reordering of its keys', async (t) => {
  fc.assert(fc.property(json, fc.nat(), (v, seed) => {
    return compare(side(v), respaced(reorder(v, seed)), rules).outcome === 'match'
  }), { numRuns: 500 })
  t.pass('500 generated values')
})

t.test('sameJsonText: the same tokens whatever the whitespace between them; whitespace inside a string, or between two literals, counts', async (t) => {
  const same = (a: string, b: string): boolean => sameJsonText(Buffer.from(a), Buffer.from(b))
  t.ok(same('{"a":1,"b":[true,null]}', ' {\n  "a" : 1,\r\n\t"b": [ true , null ]\n} '))
  t.ok(same('"x\\" y"', '"x\\" y"'), 'an escaped quote does not end the string')
  t.notOk(same('"a b"', '"ab"'), 'inside a string every byte counts')
  t.notOk(same('"x\\" y"', '"x\\"y"'), 'also after an escaped quote')
  t.notOk(same('12', '1 2'), 'not the same tokens (and 1 2 is not JSON)')
  t.notOk(same('[1,2]', '[1,2] 3'), 'more tokens')
  t.notOk(same('{"a":1,"b":2}', '{"b":2,"a":1}'), 'another key order: the parse decides (equal documents)')
  t.notOk(same('1.0', '1'), 'another spelling of a number: the parse decides')
  t.notOk(same('', '  '), 'no body and whitespace: not the same (whitespace alone is not JSON)')
  t.notOk(same('', ''), 'two empty bodies: the byte comparison says so, not this')
})

t.test('property: a JSON value and itself indented are the same text; two values that stringify differently are not', async (t) => {
  fc.assert(fc.property(json, json, fc.integer({ min: 0, max: 4 }), (a, b, indent) => {
    const text = (v: unknown, n: number): Buffer => Buffer.from(`${' '.repeat(n)}${JSON.stringify(v, null, n)}\n`)
    if (!sameJsonText(text(a, 0), text(a, indent))) return false
    return JSON.stringify(a) === JSON.stringify(b) || !sameJsonText(text(a, 0), text(b, indent))
  }), { numRuns: 1000 })
  t.pass('1000 generated pairs')
})

t.test('property: comparing the other way round swaps missing and extra, and nothing else', async (t) => {
  const swap: Record<string, string> = { missing: 'extra', extra: 'missing' }
  fc.assert(fc.property(json, json, (a, b) => {
    const ab = compare(side(a), side(b), rules)
    const ba = compare(side(b), side(a), rules)
    if (ab.outcome !== ba.outcome) return false
    if (ab.outcome !== 'diverged' || ba.outcome !== 'diverged') return true
    const fwd = ab.differences.map((d) => `${d.path} ${swap[d.kind] ?? d.kind}`).sort()
    const back = ba.differences.map((d) => `${d.path} ${d.kind}`).sort()
    return JSON.stringify(fwd) === JSON.stringify(back)
  }), { numRuns: 500 })
  t.pass('500 generated pairs')
})

t.test('property: one changed leaf is exactly one difference, at its path', async (t) => {
  const obj = fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }).filter((k) => /^[a-z]+$/.test(k)), fc.integer(), { minKeys: 1 })
  fc.assert(fc.property(obj, fc.nat(), (o, n) => {
    const keys = Object.keys(o)
    const k = keys[n % keys.length] as string
    const r = compare(side(o), side({ ...o, [k]: (o[k] as number) + 1 }), rules)
    return r.outcome === 'diverged' && r.differences.length === 1 && r.differences[0]?.path === `body.${k}` && r.differences[0].kind === 'changed'
  }), { numRuns: 300 })
  t.pass('300 generated objects')
})

t.test('property: an unordered array equals any permutation of itself', async (t) => {
  fc.assert(fc.property(fc.array(json, { maxLength: 12 }), fc.nat(), (arr, seed) => {
    const shuffled = [...arr].sort((x, y) => ((JSON.stringify(x).length + seed) % 5) - ((JSON.stringify(y).length + seed) % 5))
    const unordered = compileCompare({ arrays: { 'body.list': 'unordered' } }).rules
    return compare(side({ list: arr }), respaced({ list: shuffled }), unordered).outcome === 'match'
  }), { numRuns: 300 })
  t.pass('300 generated arrays')
})

/** Cuts `buf` at the given offsets (sorted; a repeated offset makes an empty chunk). */
const cut = (buf: Buffer, at: number[]): Buffer[] => {
  const points = [0, ...at.map((n) => n % (buf.length + 1)).sort((x, y) => x - y), buf.length]
  return points.slice(1).map((end, i) => buf.subarray(points[i], end))
}
/** No offsets: the body as one Buffer rather than a list (compare takes both). */
const body = (buf: Buffer, at: number[]): Buffer | Buffer[] => at.length === 0 ? buf : cut(buf, at)
const offsets = fc.array(fc.nat(), { maxLength: 6 })

t.test('bodies in chunks: equal bytes are equal however they were cut; one differing byte is a difference', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), offsets, offsets, (bytes, cutsA, cutsB) => {
    const a = Buffer.from(bytes)
    return sameBytes(body(a, cutsA), body(Buffer.from(a), cutsB))
  }), { numRuns: 300 })
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), offsets, offsets, fc.nat(), (bytes, cutsA, cutsB, flip) => {
    // Same length, one byte flipped: also where it sits at a chunk boundary of either side.
    const a = Buffer.from(bytes)
    const b = Buffer.from(a)
    const at = [flip % b.length, ...cutsA, ...cutsB].map((n) => (n % (b.length + 1)) % b.length)[flip % (1 + cutsA.length + cutsB.length)] as number
    b[at] = (b[at] as number) ^ 0xff
    return !sameBytes(body(a, cutsA), body(b, cutsB)) && !sameBytes(body(b, cutsB), body(a, cutsA))
  }), { numRuns: 300 })
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), offsets, offsets, (bytes, cutsA, cutsB) => {
    const a = Buffer.from(bytes)
    return !sameBytes(body(a, cutsA), body(a.subarray(0, a.length - 1), cutsB))
  }), { numRuns: 300 })
  t.ok(sameBytes([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('c')], Buffer.from('abc')), 'empty chunks count for nothing')
  t.notOk(sameBytes([Buffer.from('ab'), Buffer.from('d')], [Buffer.from('a'), Buffer.from('bc')]), 'a difference right after a boundary')
  // Chunked bodies that differ are joined and compared as documents.
  const chunks = (v: unknown): Buffer[] => cut(Buffer.from(JSON.stringify(v)), [3, 7, 11])
  const r = compare(side(null, { body: chunks({ a: 1, b: [1, 2] }) }), side(null, { body: chunks({ a: 2, b: [1, 2] }) }), compileCompare(undefined).rules)
  t.same(diffs(r), [{ path: 'body.a', kind: 'changed', legacy: 1, new: 2 }])
  t.same(compare(side(null, { body: chunks({ a: 1 }) }), side({ a: 1 }), compileCompare(undefined).rules), { outcome: 'match' }, 'chunks vs one buffer')
})

/**
 * Items that cannot pair with any but their own counterpart (distinct ids, never ignored
 * or perturbed), so an array is "already in the same order" on both sides: each rule must
 * then give the same verdict in order and unordered.
 */
const leaf = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.double({ min: -5, max: 5, noNaN: true, noDefaultInfinity: true }), fc.constantFrom('1', '2.5', 'x', '', '0'), fc.constant(null), fc.boolean())
const item = fc.record({ v: leaf, w: leaf, at: leaf }, { requiredKeys: ['v'] })
/** How new's copy of a leaf may differ: not at all, slightly, as text, dropped when null, or replaced. */
const perturb = fc.constantFrom('same', 'nudge', 'text', 'number', 'drop-null', 'replace')
function perturbed(v: unknown, how: string, replacement: unknown): unknown {
  if (how === 'nudge' && typeof v === 'number') return v + 0.004
  if (how === 'text' && typeof v === 'number') return String(v)
  if (how === 'number' && typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v)
  if (how === 'replace') return replacement
  return v
}
const ruleSets: CompareConfig[] = [
  {},
  { numbers: { tolerance: 0.01 } },
  { treatAsEqual: ['string-number'] },
  { treatAsEqual: ['string-number'], numbers: { tolerance: 0.01 } },
  { treatAsEqual: ['null-missing'] },
  { ignore: ['body.list[*].at'] },
  { ignore: ['body.**.w'], treatAsEqual: ['null-missing', 'string-number'], numbers: { tolerance: 0.01 } }
]

t.test('property: every rule means the same in order and unordered when the arrays are already in the same order', async (t) => {
  const pairs = fc.array(fc.tuple(item, fc.dictionary(fc.constantFrom('v', 'w', 'at'), fc.tuple(perturb, leaf))), { maxLength: 6 })
  fc.assert(fc.property(pairs, fc.nat({ max: ruleSets.length - 1 }), (list, r) => {
    const legacy = list.map(([it], id) => ({ id, ...it }))
    const next = list.map(([it, changes], id) => {
      const out: Record<string, unknown> = { id }
      for (const [k, v] of Object.entries(it)) {
        const [how, replacement] = changes[k] ?? ['same', null]
        if (how === 'drop-null' && v === null) continue
        out[k] = perturbed(v, how, replacement)
      }
      return out
    })
    const base = ruleSets[r] as CompareConfig
    const ordered = run({ list: legacy }, { list: next }, base).outcome
    const unordered = run({ list: legacy }, { list: next }, { ...base, arrays: { 'body.list': 'unordered' } }).outcome
    return ordered === unordered
  }), { numRuns: 1000 })
  t.pass('1000 generated pairs under 7 rule sets')
})

t.test('nested unordered arrays: shuffled at both levels they match; a search under tolerance shares one bounded budget', async (t) => {
  const rules = (extra: CompareConfig = {}): CompareRules => compileCompare({ arrays: { body: 'unordered', 'body[*]': 'unordered' }, ...extra }).rules
  const n = 120
  const a = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => i * 1000 + j))
  const shuffled = [...a].reverse().map((x) => [...x].reverse())
  const exactOut = new Collector(50)
  diffJson(a, shuffled, rules(), exactOut)
  t.same(exactOut.list, [], 'equal: items pair by canonical form (unordered arrays sorted inside it)')
  t.equal(exactOut.tries.left, MAX_PAIRING_TRIES, 'with exact rules no pair is searched for')
  const near = a.map((x) => x.map((v) => v + 0.001)).reverse()
  const tolerant = new Collector(50)
  diffJson(a, near, rules({ numbers: { tolerance: 0.01 } }), tolerant)
  t.ok(tolerant.tries.left >= 0 && tolerant.tries.left < MAX_PAIRING_TRIES, `the search stopped within one budget for the whole comparison (${tolerant.tries.left} left)`)
  t.ok(tolerant.list.every((d) => d.kind === 'missing' || d.kind === 'extra'), 'what the budget could not pair is reported missing/extra')
})

/* ---------- compare.ids: ids the id map pairs are equal ---------- */

/** An id map as the store keeps it: entity → legacy id → new id. */
type FakeMap = Record<string, Record<string, string>>

/**
 * A comparison as the verdict stage runs it on a dual route: legacy's ids listed by
 * idsToLookUp, each looked up in `map`, the pairs found handed to compare.
 */
function translated(a: ComparedSide, b: ComparedSide, c: CompareConfig, map: FakeMap): Comparison & { lookups?: number } {
  const rules = compileCompare(c).rules
  const wanted = idsToLookUp(a, b, rules)
  if (wanted.kind !== 'lookup') return compare(a, b, rules)
  const pairs = new IdPairs()
  for (const q of wanted.ids) {
    const other = map[q.entity]?.[q.id]
    if (other !== undefined) pairs.add(q.entity, q.id, other)
  }
  return { ...compare(a, b, rules, { pairs, legacyDoc: wanted.legacyDoc }), lookups: wanted.ids.length }
}
const ids = (a: unknown, b: unknown, c: CompareConfig, map: FakeMap): Comparison & { lookups?: number } => translated(side(a), side(b), c, map)
const MAP: FakeMap = { order: { 1000: 'n-3e9', 1001: 'n-3ea', 1002: 'n-3eb' }, customer: { 7: 'c-7', 8: 'c-8' } }
const outcome = (r: Comparison): Comparison => (r.outcome === 'diverged' ? { outcome: r.outcome, differences: r.differences, truncated: r.truncated } : r.outcome === 'match' ? { outcome: 'match' } : r)

t.test('compare.ids: two ids the map pairs are equal, whatever their JSON types; the same answers diverge without the rule', async (t) => {
  const legacy = { id: '1000', customerId: 7, total: 12 }
  const next = { id: 'n-3e9', customerId: 'c-7', total: 12 }
  const rule: CompareConfig = { ids: { 'body.id': 'order', 'body.customerId': 'customer' } }
  const r = ids(legacy, next, rule, MAP)
  t.same(outcome(r), { outcome: 'match' })
  t.equal(r.lookups, 2, 'one lookup per id of legacy\'s answer')
  t.same(diffs(run(legacy, next)), [
    { path: 'body.id', kind: 'changed', legacy: '1000', new: 'n-3e9' },
    { path: 'body.customerId', kind: 'type', legacy: 7, new: 'c-7' }
  ], 'without compare.ids every id differs')
  t.same(diffs(ids(legacy, next, { ids: { 'body.id': 'order' } }, MAP)), [
    { path: 'body.customerId', kind: 'type', legacy: 7, new: 'c-7' }
  ], 'only the paths the rule names are translated')
  t.same(diffs(ids(legacy, { ...next, total: 13 }, rule, MAP)), [{ path: 'body.total', kind: 'changed', legacy: 12, new: 13 }],
    'a real difference next to paired ids still shows')
})

t.test('compare.ids: an id the map does not know, or pairs with another, compares as usual', async (t) => {
  const rule: CompareConfig = { ids: { 'body.id': 'order' } }
  t.same(diffs(ids({ id: '1000' }, { id: 'n-3ea' }, rule, MAP)), [{ path: 'body.id', kind: 'changed', legacy: '1000', new: 'n-3ea' }],
    'legacy 1000 is new n-3e9: n-3ea is another record')
  t.same(diffs(ids({ id: '5000' }, { id: 'n-999' }, rule, MAP)), [{ path: 'body.id', kind: 'changed', legacy: '5000', new: 'n-999' }],
    'an id the map does not know: a real divergence shows')
  t.same(outcome(ids({ id: 42 }, { id: 42 }, rule, MAP)), { outcome: 'match' }, 'an id the two sides share (not in the map) equals itself')
  t.same(diffs(ids({ id: 42 }, { id: '42' }, rule, MAP)), [{ path: 'body.id', kind: 'type', legacy: 42, new: '42' }], 'and its type is still compared')
  t.same(diffs(ids({ id: '1000', note: '1000' }, { id: 'n-3e9', note: 'n-3e9' }, rule, MAP)), [{ path: 'body.note', kind: 'changed', legacy: '1000', new: 'n-3e9' }],
    'the same value elsewhere is not an id')
  t.same(diffs(ids({ id: { n: '1000' } }, { id: { n: 'n-3e9' } }, rule, MAP)), [{ path: 'body.id.n', kind: 'changed', legacy: '1000', new: 'n-3e9' }],
    'only strings and numbers are ids')
  t.same(outcome(ids({ id: '1000' }, { id: 'n-3e9' }, { ids: { 'body.id': 'customer' } }, MAP)).outcome, 'diverged', 'pairs are per entity')
})

t.test('compare.ids: wildcards, lists in order, keyed by an id, unordered', async (t) => {
  const rule: CompareConfig = { ids: { 'body.items[*].orderId': 'order', 'body.**.customerId': 'customer' } }
  const legacy = { items: [{ orderId: 1000, q: 1 }, { orderId: 1001, q: 2 }], who: { customerId: 7 } }
  const next = { items: [{ orderId: 'n-3e9', q: 1 }, { orderId: 'n-3ea', q: 2 }], who: { customerId: 'c-7' } }
  const r = ids(legacy, next, rule, MAP)
  t.same(outcome(r), { outcome: 'match' })
  t.equal(r.lookups, 3)
  const shuffled = { ...next, items: [...next.items].reverse() }
  t.same(diffs(ids(legacy, shuffled, rule, MAP)).map((d) => d.path), ['body.items[0].orderId', 'body.items[0].q', 'body.items[1].orderId', 'body.items[1].q'], 'in order: position by position')
  t.same(outcome(ids(legacy, shuffled, { ...rule, arrays: { 'body.items': { key: 'orderId' } } }, MAP)), { outcome: 'match' },
    'keyed by an id: new\'s keys are paired with legacy\'s')
  t.same(outcome(ids(legacy, shuffled, { ...rule, arrays: { 'body.items': 'unordered' } }, MAP)), { outcome: 'match' }, 'unordered: items pair through their ids')
  const extra = { ...next, items: [...next.items, { orderId: 'n-777', q: 3 }] }
  t.same(diffs(ids(legacy, extra, { ...rule, arrays: { 'body.items': { key: 'orderId' } } }, MAP)), [
    { path: 'body.items[orderId=n-777]', kind: 'extra', legacy: undefined, new: { orderId: 'n-777', q: 3 } }
  ], 'an item only new has is named by new\'s own key')
  t.same(diffs(ids(legacy, { ...shuffled, items: [{ orderId: 'n-3ea', q: 9 }, shuffled.items[1]] }, { ...rule, arrays: { 'body.items': 'unordered' } }, MAP)), [
    { path: 'body.items[1]', kind: 'missing', legacy: { orderId: 1001, q: 2 }, new: undefined },
    { path: 'body.items[0]', kind: 'extra', legacy: undefined, new: { orderId: 'n-3ea', q: 9 } }
  ], 'unordered: a paired item that differs elsewhere does not pair')
  t.same(outcome(ids([{ id: 1000, v: 'a' }, { id: 5, v: 'b' }], [{ id: 5, v: 'b' }, { id: 1000, v: 'a' }], { ids: { 'body[*].id': 'order' }, arrays: { body: 'unordered' } }, MAP)),
    { outcome: 'match' }, 'unordered: an id the map knows, seen as it is on both sides, still pairs (by search, not by its canonical form)')
})

t.test('compare.ids: which ids are looked up, and when none are', async (t) => {
  const rules = compileCompare({ ids: { 'body.id': 'order', 'body.items[*].id': 'order', 'body.**.customerId': 'customer' } }).rules
  t.same(idsIn({ id: 1000, items: [{ id: '1001' }, { id: 1000 }, { id: null }, { id: {} }], a: { b: [{ customerId: 7 }] }, customerId: 8 }, rules.ids),
    [{ entity: 'order', id: '1000' }, { entity: 'order', id: '1001' }, { entity: 'customer', id: '8' }, { entity: 'customer', id: '7' }],
    'each id once per entity, as text; null, objects and empty strings are no ids')
  t.same(idsIn({ items: Array.from({ length: 5 }, (_, i) => ({ id: i })) }, rules.ids, 4), null, 'past the bound: null')
  t.same(idsIn({ items: Array.from({ length: 4 }, (_, i) => ({ id: i })) }, rules.ids, 4)?.length, 4)
  t.equal(MAX_ID_LOOKUPS, 1000)
  const a = side({ id: '1000' })
  t.same(idsToLookUp(a, side({ id: 'n-3e9' }), compileCompare(undefined).rules), { kind: 'none' }, 'no compare.ids: nothing')
  t.same(idsToLookUp(a, side({ id: '1000' }), rules), { kind: 'none' }, 'the same bytes: nothing')
  t.same(idsToLookUp(side({ x: 1 }), side({ x: 2 }), rules), { kind: 'none' }, 'no id at those paths: nothing')
  t.same(idsToLookUp(side('1000', { headers: { 'content-type': 'text/plain' } }), side('n-3e9', { headers: { 'content-type': 'text/plain' } }), rules), { kind: 'none' }, 'not JSON: nothing')
  t.same(idsToLookUp(side({ id: '1000' }, { status: 404 }), side({ id: 'n' }), compileCompare({ ids: { 'body.id': 'order' }, when: [{ status: 404, ignore: ['body'] }] }).rules),
    { kind: 'none' }, 'a body the rules ignore for this status: nothing')
  t.same(idsToLookUp(a, side({ id: 'n-3e9' }), rules), { kind: 'lookup', ids: [{ entity: 'order', id: '1000' }], legacyDoc: { id: '1000' } })
  const many = { items: Array.from({ length: MAX_ID_LOOKUPS + 1 }, (_, i) => ({ id: i })) }
  t.same(idsToLookUp(side(many), side({}), rules), { kind: 'too_many' })
})

t.test('compare.ids: paths are checked at load like compare.ignore\'s', async (t) => {
  const problems: [(string | number)[], string][] = []
  const c = compileCompare({ ids: { 'body.id': 'order', 'body.items[': 'order', 'header.location': 'order', 'id': 'order' } }, problems)
  t.same(c.rules.ids.map((r) => [r.path.source, r.entity]), [['body.id', 'order']])
  t.same(problems, [
    [['ids', 'body.items['], 'unclosed "[" at "["'],
    [['ids', 'header.location'], 'must be a body path (body.id, body.items[*].orderId)'],
    [['ids', 'id'], 'must start with body, header.<name> or be status']
  ])
})
