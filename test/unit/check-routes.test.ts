import t from 'tap'
import { checkRoutes } from '../../src/core/check-routes.js'
import { parsePattern } from '../../src/core/path-pattern.js'
import type { PathPattern, RouteRule } from '../../src/core/types.js'
import { rule as fixture } from '../helpers/rule.js'

function rule(name: string, path: string, methods?: string[]): RouteRule {
  return fixture({ name, methods: methods === undefined ? null : new Set(methods), pattern: parsePattern(path) as PathPattern, sticky: [{ kind: 'ip' }] })
}

t.test('a route behind a wider one is reported with the route that hides it', async (t) => {
  const cases: [RouteRule[], string][] = [
    [[rule('all', '/*'), rule('x', '/x')], 'routes[0] ("all", /*)'],
    [[rule('p', '/api/*'), rule('q', '/api/orders/:id')], 'routes[0] ("p", /api/*)'],
    [[rule('p', '/api/*'), rule('q', '/api')], 'routes[0] ("p", /api/*)'],
    [[rule('p', '/o/:id'), rule('q', '/o/42')], 'routes[0] ("p", /o/:id)'],
    [[rule('p', '/o/:id'), rule('q', '/o/:x')], 'routes[0] ("p", /o/:id)'],
    [[rule('p', '/a', ['GET', 'HEAD']), rule('q', '/a', ['GET'])], 'routes[0] ("p", /a)'],
    [[rule('p', '/a'), rule('q', '/a', ['POST'])], 'routes[0] ("p", /a)']
  ]
  for (const [rules, hidden] of cases) {
    const problems = checkRoutes(rules)
    t.equal(problems.length, 1, `${rules.map((r) => r.pattern.source).join(' then ')}`)
    t.equal(problems[0]?.index, 1)
    t.match(problems[0]?.message, `can never match: ${hidden}`)
  }
})

t.test('routes that can still match are not reported', async (t) => {
  const cases: RouteRule[][] = [
    [rule('q', '/api/orders/:id'), rule('p', '/api/*')], // narrow first: fine
    [rule('p', '/a', ['GET']), rule('q', '/a', ['POST'])],
    [rule('p', '/a', ['GET']), rule('q', '/a')],
    [rule('p', '/o/42'), rule('q', '/o/:id')],
    [rule('p', '/o/:id'), rule('q', '/o/')], // a parameter does not match an empty segment
    [rule('p', '/a'), rule('q', '/a/*')],
    [rule('p', '/a/*'), rule('q', '/b/*')],
    [rule('p', '/:x/*'), rule('q', '/')]
  ]
  for (const rules of cases) t.same(checkRoutes(rules), [], rules.map((r) => r.pattern.source).join(' then '))
})

t.test('duplicate names are reported', async (t) => {
  const problems = checkRoutes([rule('a', '/x'), rule('a', '/y')])
  t.same(problems, [{ index: 1, field: 'name', message: 'duplicate route name "a" (also routes[0])' }])
})
