import t from 'tap'
import { keyFrom, stickyKey, type StickyFacts } from '../../src/core/sticky-key.js'

const facts = (over: Partial<StickyFacts>): StickyFacts => ({ headers: {}, query: '', clientIp: '10.0.0.7', ...over })

t.test('header', async (t) => {
  t.equal(keyFrom({ kind: 'header', name: 'x-user-id' }, facts({ headers: { 'x-user-id': 'alice' } })), 'alice')
  t.equal(keyFrom({ kind: 'header', name: 'x-user-id' }, facts({ headers: { 'x-user-id': '' } })), undefined, 'empty is missing')
  t.equal(keyFrom({ kind: 'header', name: 'x-user-id' }, facts({})), undefined)
})

t.test('cookie', async (t) => {
  const spec = { kind: 'cookie', name: 'sid' } as const
  t.equal(keyFrom(spec, facts({ headers: { cookie: 'a=1; sid=abc; b=2' } })), 'abc')
  t.equal(keyFrom(spec, facts({ headers: { cookie: 'sid="quoted"' } })), 'quoted')
  t.equal(keyFrom(spec, facts({ headers: { cookie: 'xsid=no; sid=yes' } })), 'yes', 'names match whole')
  t.equal(keyFrom(spec, facts({ headers: { cookie: 'sid=first; sid=second' } })), 'first')
  t.equal(keyFrom(spec, facts({ headers: { cookie: 'other=1' } })), undefined)
  t.equal(keyFrom(spec, facts({ headers: { cookie: 'sid=' } })), undefined)
})

t.test('UTF-8 bytes in a header or cookie are read as the text the app hashes', async (t) => {
  const asNodeReadsIt = Buffer.from('José', 'utf8').toString('latin1')
  t.equal(keyFrom({ kind: 'header', name: 'x-user-id' }, facts({ headers: { 'x-user-id': asNodeReadsIt } })), 'José')
  t.equal(keyFrom({ kind: 'cookie', name: 'sid' }, facts({ headers: { cookie: `sid=${asNodeReadsIt}` } })), 'José')
  t.equal(keyFrom({ kind: 'query', name: 'u' }, facts({ query: 'u=Jos%C3%A9' })), 'José')
})

t.test('query', async (t) => {
  const spec = { kind: 'query', name: 'user' } as const
  t.equal(keyFrom(spec, facts({ query: 'a=1&user=b%20c' })), 'b c')
  t.equal(keyFrom(spec, facts({ query: 'a=1' })), undefined)
  t.equal(keyFrom(spec, facts({ query: '' })), undefined)
})

t.test('ip', async (t) => {
  t.equal(keyFrom({ kind: 'ip' }, facts({})), '10.0.0.7')
})

t.test('a list of sources: the first one the request has gives the key', async (t) => {
  const sources = [{ kind: 'header', name: 'x-user-id' }, { kind: 'cookie', name: 'sid' }, { kind: 'ip' }] as const
  t.equal(stickyKey(sources, facts({ headers: { 'x-user-id': 'alice', cookie: 'sid=s1' } })), 'alice', 'the header when present')
  t.equal(stickyKey(sources, facts({ headers: { cookie: 'sid=s1' } })), 's1', 'the cookie when the header is missing')
  t.equal(stickyKey(sources, facts({ headers: { 'x-user-id': '', cookie: 'sid=' } })), '10.0.0.7', 'empty values count as missing: the address')
  t.equal(stickyKey(sources, facts({ clientIp: '' })), undefined, 'none present: no key')
  t.equal(stickyKey([{ kind: 'cookie', name: 'sid' }], facts({ headers: { cookie: 'sid=x' } })), 'x', 'one source, as a one-item list')
})
