import t from 'tap'
import { applyPatch, effectiveRule, parsePatch, parseRollback } from '../../src/core/overrides.js'
import { rule as makeRule } from '../helpers/rule.js'

const rule = makeRule({ new: 10, shadow: 50 })
const change = { at: '2026-11-21T00:00:00.000Z', by: 'alice', reason: null }

t.test('an override wins over the file per knob; none leaves the rule as it is', async (t) => {
  t.equal(effectiveRule(rule, undefined), rule)
  t.equal(effectiveRule(rule, { change }), rule)
  t.match(effectiveRule(rule, { new: 0 }), { new: 0, shadow: 50 })
  t.match(effectiveRule(rule, { shadow: 100 }), { new: 10, shadow: 100 })
})

t.test('patches: a number sets, null clears, absent keeps', async (t) => {
  t.same(applyPatch(undefined, { new: 5 }, change), { new: 5, change })
  t.same(applyPatch({ new: 5, change }, { shadow: 20 }, change), { new: 5, shadow: 20, change })
  t.same(applyPatch({ new: 5, shadow: 20, change }, { new: null }, change), { shadow: 20, change })
  t.equal(applyPatch({ new: 5, change }, { new: null }, change), undefined, 'nothing overridden any more')
  t.same(applyPatch({ new: 5, change }, { new: 0 }, change), { new: 0, change }, '0 is a value, not a clear')
})

t.test('PATCH bodies are checked whole', async (t) => {
  t.same(parsePatch({ new: 5, shadow: 12.5, reason: 'r' }), { patch: { new: 5, shadow: 12.5, reason: 'r' } })
  t.same(parsePatch({ new: null }), { patch: { new: null } })
  t.same(parsePatch([]), { problems: ['the body must be a JSON object like {"new": 5, "reason": "…"}'] })
  t.same(parsePatch({ new: '5', shadow: -1, reason: 7, x: 1 }), {
    problems: [
      'unknown field "x" (fields: new, shadow, reason)',
      'new must be an integer from 0 to 100, or null to clear the override (got "5")',
      'shadow must be a number from 0 to 100, or null to clear the override (got -1)',
      'reason must be a text of at most 500 characters'
    ]
  })
  t.same(parsePatch({ reason: 'why' }), { problems: ['nothing to change: give new and/or shadow'] })
  t.same(parsePatch({ new: 101 }), { problems: ['new must be an integer from 0 to 100, or null to clear the override (got 101)'] })
})

t.test('rollback bodies: {} or { route?, reason? }, every problem at once', async (t) => {
  t.same(parseRollback(undefined), { rollback: {} }, 'no body: every route')
  t.match(parseRollback(null), { problems: [/must be a JSON object/] }, 'a JSON null is not "no body": refused rather than rolling back every route')
  t.same(parseRollback({ route: 'orders', reason: 'errors up' }), { rollback: { route: 'orders', reason: 'errors up' } })
  t.same(parseRollback([]), { problems: ['the body must be a JSON object like {"route": "orders", "reason": "…"}'] })
  t.same(parseRollback({ route: 5, reason: 'x'.repeat(501), all: true }), {
    problems: ['unknown field "all" (fields: route, reason)', 'route must be a route name', 'reason must be a text of at most 500 characters']
  })
})
