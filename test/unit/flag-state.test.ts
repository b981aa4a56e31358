import t from 'tap'
import { decide } from '../../src/core/decide.js'
import { flagState } from '../../src/core/flag-state.js'
import { effectiveRule } from '../../src/core/overrides.js'
import { rule } from '../helpers/rule.js'

const flexible = (rollout: unknown, extra: Record<string, unknown> = {}): { name: string; parameters: Record<string, unknown> } & Record<string, unknown> =>
  ({ name: 'flexibleRollout', parameters: { rollout, stickiness: 'default', groupId: 'orders' }, ...extra })

t.test('flagState: the share a flag gives, when it is one number', async (t) => {
  t.same(flagState('f', undefined), { name: 'f', known: false, enabled: false, strategies: [], share: 0, groupId: null }, 'unknown: off')
  t.match(flagState('f', { enabled: false, strategies: [flexible('40')] }), { known: true, enabled: false, share: 0, groupId: 'orders' }, 'off: 0 whatever the rollout')
  t.match(flagState('f', { enabled: true, strategies: [flexible('40')] }), { share: 40, strategies: ['flexibleRollout'] })
  t.match(flagState('f', { enabled: true, strategies: [] }), { share: 100 }, 'on with no strategy: everyone')
  t.match(flagState('f', { enabled: true, strategies: [{ name: 'default' }] }), { share: 100 })
  t.match(flagState('f', { enabled: true, strategies: [flexible('40', { disabled: true }), flexible('7')] }), { share: 7, strategies: ['flexibleRollout'] }, 'disabled strategies do not count')
  t.match(flagState('f', { enabled: true, strategies: [flexible('40', { constraints: [{ contextName: 'userId' }] })] }), { share: null }, 'constraints decide per user')
  t.match(flagState('f', { enabled: true, strategies: [flexible('40'), { name: 'userWithId' }] }), { share: null, strategies: ['flexibleRollout', 'userWithId'] })
  t.match(flagState('f', { enabled: true, strategies: [{ name: 'remoteAddress' }] }), { share: null })
  t.match(flagState('f', { enabled: true, strategies: [flexible('abc')] }), { share: null }, 'a rollout that is not a number')
})

t.test('decide on a flagged route: the flag\'s verdict; a rollback takes the flag out until cleared', async (t) => {
  const flagged = rule({ flag: 'orders-new', new: 0 })
  const never = (): number => { throw new Error('no random draw on a flagged route') }
  t.match(decide(flagged, 'GET', 'alice', never, true), { primary: 'new', bucketSource: 'flag', bucket: null })
  t.match(decide(flagged, 'GET', 'alice', never, false), { primary: 'legacy', bucketSource: 'flag' })
  t.match(decide(flagged, 'GET', undefined, never, undefined), { primary: 'legacy' }, 'no verdict (no flag source): legacy')
  const rolledBack = effectiveRule(flagged, { new: 0 })
  t.equal(rolledBack.flag, null)
  t.match(decide(rolledBack, 'GET', 'alice', never, true), { primary: 'legacy', bucketSource: 'none' }, 'the flag says new; the rollback wins')
  t.equal(effectiveRule(flagged, { shadow: 5 }).flag, 'orders-new', 'a shadow override leaves the flag in charge')
})
