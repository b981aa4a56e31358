import t from 'tap'
import { compileRoutes } from '../../src/core/match-route.js'
import { matchesPattern, parsePattern } from '../../src/core/path-pattern.js'
import type { PathPattern, RouteRule } from '../../src/core/types.js'
import { rule as fixture } from '../helpers/rule.js'

function pattern(source: string): PathPattern {
  const p = parsePattern(source)
  if (typeof p === 'string') throw new Error(`${source}: ${p}`)
  return p
}

function rule(name: string, path: string, methods?: string[]): RouteRule {
  return fixture({ name, methods: methods === undefined ? null : new Set(methods), pattern: pattern(path), sticky: [{ kind: 'ip' }] })
}

t.test('patterns: exact, parameter and prefix', async (t) => {
  const table: [string, string, boolean][] = [
    ['/', '/', true],
    ['/', '/a', false],
    ['/orders', '/orders', true],
    ['/orders', '/orders/', false],
    ['/orders', '/orders/1', false],
    ['/orders', '/ordersX', false],
    ['/orders/', '/orders/', true],
    ['/orders/:id', '/orders/42', true],
    ['/orders/:id', '/orders/', false], // a parameter never matches an empty segment
    ['/orders/:id', '/orders/42/items', false],
    ['/orders/:id/items', '/orders/42/items', true],
    ['/orders/:id/items', '/orders//items', false],
    ['/orders/*', '/orders', true],
    ['/orders/*', '/orders/', true],
    ['/orders/*', '/orders/42/items', true],
    ['/orders/*', '/ordersX', false],
    ['/orders/*', '/order', false],
    ['/api/:v/orders/*', '/api/v2/orders/7', true],
    ['/api/:v/orders/*', '/api//orders/7', false],
    ['/*', '/', true],
    ['/*', '/anything/at/all', true],
    ['/%7Euser/*', '/~user/x', true]
  ]
  for (const [p, path, want] of table) t.equal(matchesPattern(pattern(p), path), want, `${p} ${want ? 'matches' : 'does not match'} ${path}`)
})

t.test('invalid patterns say what is wrong', async (t) => {
  t.match(parsePattern('orders'), /must start with "\/"/)
  t.match(parsePattern('/a/*/b'), /only allowed as the whole last segment/)
  t.match(parsePattern('/a*'), /only allowed as the whole last segment/)
  t.match(parsePattern('/a/:1x'), /bad parameter/)
  t.match(parsePattern('/a?b=1'), /without "\?"/)
  t.match(parsePattern('/a b'), /not allowed in a path/)
  t.match(parsePattern('/api/../admin/*'), /"\.\." segments never match/)
  t.match(parsePattern('/./x'), /"\." segments never match/)
})

t.test('first match wins, methods filter, no match is null', async (t) => {
  const match = compileRoutes([
    rule('order-writes', '/api/orders/*', ['POST', 'PUT']),
    rule('order', '/api/orders/:id', ['GET']),
    rule('orders', '/api/orders/*'),
    rule('root', '/')
  ])
  t.equal(match('POST', '/api/orders/1')?.name, 'order-writes')
  t.equal(match('GET', '/api/orders/1')?.name, 'order')
  t.equal(match('HEAD', '/api/orders/1')?.name, 'orders', 'HEAD is not GET: the next rule takes it')
  t.equal(match('GET', '/api/orders')?.name, 'orders')
  t.equal(match('GET', '/')?.name, 'root')
  t.equal(match('GET', '/api/customers/1'), null)
})
