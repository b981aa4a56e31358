import t from 'tap'
import { stickyKey, type StickyFacts } from '../../src/core/sticky-key.js'

const facts = (over: Partial<StickyFacts>): StickyFacts => ({ headers: {}, query: '', clientIp: '10.0.0.7', ...over })

t.test('header', async (t) => {
  t.equal(stickyKey({ kind: 'header', name: 'x-user-id' }, facts({ headers: { 'x-user-id': 'alice' } })), 'alice')
  t.equal(stickyKey({ kind: 'header', name: 'x-user-id' }, facts({ headers: { 'x-user-id': '' } })), undefined, 'empty is missing')
  t.equal(stickyKey({ kind: 'header', name: 'x-user-id' }, facts({})), undefined)
})

t.test('cookie', async (t) => {
  const spec = { kind: 'cookie', name: 'sid' } as const
  t.equal(stickyKey(spec, facts({ headers: { cookie: 'a=1; sid=abc; b=2' } })), 'abc')
  t.equal(stickyKey(spec, facts({ headers: { cookie: 'sid="quoted"' } })), 'quoted')
  t.equal(stickyKey(spec, facts({ headers: { cookie: 'xsid=no; sid=yes' } })), 'yes', 'names match whole')
  t.equal(stickyKey(spec, facts({ headers: { cookie: 'sid=first; sid=second' } })), 'first')
  t.equal(stickyKey(spec, facts({ headers: { cookie: 'other=1' } })), undefined)
  t.equal(stickyKey(spec, facts({ headers: { cookie: 'sid=' } })), undefined)
})

t.test('UTF-8 bytes in a header or cookie are read as the text the app hashes', async (t) => {
  const asNodeReadsIt = Buffer.from('José', 'utf8').toString('latin1')
  t.equal(stickyKey({ kind: 'header', name: 'x-user-id' }, facts({ headers: { 'x-user-id': asNodeReadsIt } })), 'José')
  t.equal(stickyKey({ kind: 'cookie', name: 'sid' }, facts({ headers: { cookie: `sid=${asNodeReadsIt}` } })), 'José')
  t.equal(stickyKey({ kind: 'query', name: 'u' }, facts({ query: 'u=Jos%C3%A9' })), 'José')
})

t.test('query', async (t) => {
  const spec = { kind: 'query', name: 'user' } as const
  t.equal(stickyKey(spec, facts({ query: 'a=1&user=b%20c' })), 'b c')
  t.equal(stickyKey(spec, facts({ query: 'a=1' })), undefined)
  t.equal(stickyKey(spec, facts({ query: '' })), undefined)
})

t.test('ip', async (t) => {
  t.equal(stickyKey({ kind: 'ip' }, facts({})), '10.0.0.7')
})
