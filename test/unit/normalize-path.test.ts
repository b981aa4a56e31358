import t from 'tap'
import { normalizePath, pathOf, queryOf } from '../../src/core/normalize-path.js'

t.test('routes on the path the backend resolves, keeping %2F opaque', async (t) => {
  const table: [string, string][] = [
    ['/api/orders/1', '/api/orders/1'],
    ['/api/%6Frders/1', '/api/orders/1'],
    ['/api/orders/%2e%2e/admin', '/api/admin'],
    ['/a/./b/../c', '/a/c'],
    ['/a/b/..', '/a/'],
    ['/../../etc', '/etc'],
    ['/a%2Fb', '/a%2Fb'],
    ['/a%2fb', '/a%2Fb'],
    ['/caf%C3%A9', '/caf%C3%A9'],
    ['/%7Euser', '/~user'],
    ['/.well-known/x', '/.well-known/x']
  ]
  for (const [raw, want] of table) t.equal(normalizePath(raw), want, raw)
})

t.test('path and query split', async (t) => {
  t.equal(pathOf('/a/b?x=1&y'), '/a/b')
  t.equal(queryOf('/a/b?x=1&y'), 'x=1&y')
  t.equal(pathOf('/a'), '/a')
  t.equal(queryOf('/a'), '')
})
