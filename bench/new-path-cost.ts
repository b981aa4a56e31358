import { Breakers } from '../src/adapters/breakers.js'
import { createLogger } from '../src/adapters/logger.js'
import { createMetrics } from '../src/adapters/metrics-registry.js'
import { fallbackScope, newAttemptBudget } from '../src/core/fallback.js'
import type { RouteRule } from '../src/core/types.js'
import { compileCompare } from '../src/core/compare-rules.js'

/**
 * `node dist/bench/new-path-cost.js`: what a request on new pays for issue #19's stage, in
 * ns, measured in this process against an empty loop of the same shape: the fallback scope,
 * new's budget, the breaker's admission and verdict (a Ticket), and the budget timer armed
 * and cleared. The end-to-end run (`bench/run.ts --only ficus,ficus-new100`) is too noisy on
 * a shared 2-core machine to see a cost this size; this isolates it.
 */
const rule: RouteRule = {
  name: 'orders', methods: null, pattern: { source: '/*', segments: [], prefix: true }, new: 100, flag: null, shadow: 0,
  shadowWrites: false, sync: null, compare: compileCompare(undefined), sticky: [{ kind: 'header', name: 'x-user-id' }],
  backends: { legacy: 'legacy', new: 'new' },
  fallback: { newTimeout: { share: 0.5 }, ejectedWrites: 'refuse', breaker: { consecutiveFailures: 5, failureRate: 0.5, minRequests: 20, windowMs: 10_000, ejectionMs: 5_000, maxEjectionMs: 15_000, probes: 1 } },
  slowerByMs: 20
}
const breakers = new Breakers(createMetrics(), createLogger('silent'), () => performance.now())
const N = 2_000_000
let sink = 0

function empty (): void {
  for (let i = 0; i < N; i++) sink += i & 1
}

/** The decisions alone: scope, budget, the breaker's admission and its verdict. */
function decisions (): void {
  for (let i = 0; i < N; i++) {
    const scope = fallbackScope('new', 'GET', false)
    const [admission, ticket] = breakers.admit(rule)
    const budget = scope === 'any' ? newAttemptBudget(30_000, 30_000, rule.fallback.newTimeout) : 0
    ticket.succeeded()
    sink += admission === 'pass' ? budget : 0
  }
}

/** The same, and the budget timer armed and cleared (as an answer before the budget does). */
function stage (): void {
  for (let i = 0; i < N; i++) {
    const scope = fallbackScope('new', 'GET', false)
    const [admission, ticket] = breakers.admit(rule)
    const budget = scope === 'any' ? newAttemptBudget(30_000, 30_000, rule.fallback.newTimeout) : 0
    const timer = setTimeout(() => {}, budget)
    clearTimeout(timer)
    ticket.succeeded()
    sink += admission === 'pass' ? 1 : 0
  }
}

const ns = (f: () => void): number => {
  const t0 = process.hrtime.bigint()
  f()
  return Number(process.hrtime.bigint() - t0) / N
}
for (let round = 1; round <= 5; round++) {
  const base = ns(empty)
  const alone = ns(decisions)
  const cost = ns(stage)
  process.stdout.write(`round ${round}: ${(cost - base).toFixed(0)} ns per request on new, of which ${(alone - base).toFixed(0)} ns the decisions and ${(cost - alone).toFixed(0)} ns the budget timer\n`)
}
if (sink === -1) process.stdout.write('')
breakers.close()
