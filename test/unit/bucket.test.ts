import { readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import t from 'tap'
import { bucket } from '../../src/core/bucket.js'

t.test('golden values shared by Unleash SDKs (node, java, go) never change', async (t) => {
  // unleash-client-node src/test/strategy/util.test.ts pins these across SDKs.
  t.equal(bucket('gr1', '123'), 73)
  t.equal(bucket('groupX', '999'), 25)
})

t.test('every bucket is an integer in 1..100', async (t) => {
  for (let i = 0; i < 5000; i++) {
    const b = bucket('orders', `user-${i}`)
    if (!Number.isInteger(b) || b < 1 || b > 100) t.fail(`bucket ${b} for user-${i}`)
  }
  t.pass('5000 keys in range')
})

t.test('raising the percentage never moves a user back to legacy', async (t) => {
  for (let i = 0; i < 2000; i++) {
    const b = bucket('checkout', String(i))
    let wasIn = false
    for (let pct = 0; pct <= 100; pct++) {
      const isIn = b <= pct
      if (wasIn && !isIn) t.fail(`user ${i} left new when going to ${pct}%`)
      wasIn = isIn
    }
  }
  t.pass('monotone for 2000 users')
})

t.test('the split is close to the percentage (within one point on 100k users, as Unleash tests)', async (t) => {
  const counts = new Array<number>(101).fill(0)
  const n = 100_000
  for (let i = 0; i < n; i++) counts[bucket('orders', `u${i}`)]!++
  let inAt = 0
  for (const pct of [1, 5, 10, 25, 50, 100]) {
    inAt = counts.slice(1, pct + 1).reduce((a, b) => a + b, 0)
    t.ok(Math.abs((inAt / n) * 100 - pct) <= 1, `${pct}% → ${((inAt / n) * 100).toFixed(2)}%`)
  }
})

t.test('the group decorrelates routes: a user\'s buckets on two routes are independent', async (t) => {
  let both = 0
  const n = 20_000
  for (let i = 0; i < n; i++) if (bucket('orders', String(i)) <= 50 && bucket('customers', String(i)) <= 50) both++
  t.ok(Math.abs(both / n - 0.25) < 0.02, `P(both in 50%) = ${(both / n).toFixed(3)}`)
})

/**
 * @unleash/client-specification: every feature whose single strategy is a percentage rollout
 * (flexibleRollout, gradualRolloutUserId/SessionId, custom stickiness) must evaluate the same
 * through `bucket(groupId, key) <= percentage`. Keyless cases are random in Unleash (default
 * stickiness) and in Ficus alike, so only the deterministic ones (0 % and 100 %) are checked.
 */
interface Strategy { name: string; parameters?: Record<string, string>; constraints?: unknown[]; segments?: unknown[] }
interface Feature { name: string; enabled: boolean; strategies?: Strategy[]; dependencies?: unknown[] }
interface Case { description: string; context: Record<string, unknown>; toggleName: string; expectedResult: boolean }
interface Spec { name: string; state?: { features?: Feature[] }; tests?: Case[] }

const ROLLOUTS = new Set(['flexibleRollout', 'gradualRolloutUserId', 'gradualRolloutSessionId'])

function rollout(s: Strategy): { percentage: number; group: string; stickiness: string } {
  const p = s.parameters ?? {}
  if (s.name === 'flexibleRollout') return { percentage: Number(p.rollout), group: p.groupId ?? '', stickiness: p.stickiness ?? 'default' }
  return { percentage: Number(p.percentage), group: p.groupId ?? '', stickiness: s.name === 'gradualRolloutUserId' ? 'userId' : 'sessionId' }
}

function keyOf(stickiness: string, ctx: Record<string, unknown>): string | undefined {
  const props = (ctx.properties ?? {}) as Record<string, unknown>
  const pick = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined)
  if (stickiness === 'default') return pick(ctx.userId) ?? pick(ctx.sessionId)
  if (stickiness === 'userId' || stickiness === 'sessionId') return pick(ctx[stickiness])
  return pick(ctx[stickiness]) ?? pick(props[stickiness])
}

t.test('bucket() answers every percentage case of @unleash/client-specification like Unleash', async (t) => {
  const require = createRequire(import.meta.url)
  const dir = join(dirname(require.resolve('@unleash/client-specification/package.json')), 'specifications')
  let checked = 0
  for (const file of readdirSync(dir).filter((f) => /^\d\d-.*\.json$/.test(f))) {
    const spec = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Spec
    for (const c of spec.tests ?? []) {
      const f = spec.state?.features?.find((x) => x.name === c.toggleName)
      const s = f?.strategies
      // Only features decided by one rollout strategy alone: no dependencies, constraints or segments.
      if (f === undefined || !f.enabled || s?.length !== 1 || (f.dependencies?.length ?? 0) > 0) continue
      const strategy = s[0] as Strategy
      if (!ROLLOUTS.has(strategy.name) || (strategy.constraints?.length ?? 0) > 0 || (strategy.segments?.length ?? 0) > 0) continue
      const r = rollout(strategy)
      const key = keyOf(r.stickiness, c.context)
      let ours: boolean
      if (key !== undefined) ours = r.percentage > 0 && bucket(r.group, key) <= r.percentage
      else if (r.percentage >= 100 && r.stickiness === 'default') ours = true // random bucket ≤ 100
      else if (r.percentage <= 0 || r.stickiness !== 'default') ours = false // nothing to hash: out
      else continue // random in both: nothing deterministic to compare
      t.equal(ours, c.expectedResult, `${file}: ${c.description}`)
      checked++
    }
  }
  // 03, 04, 10 and 12 together hold more than 20 deterministic cases; a filter bug must not hide them.
  t.ok(checked >= 20, `${checked} specification cases checked`)
})
