import { isObject } from './defaults.js'
import type { Path } from './problems.js'
import type { RampPlan, RawRamp } from './ramp-schema.js'
import { parseDuration } from './units.js'

/**
 * `ramp:` plans (docs/ramp.md): the cross-checks the schema cannot make, and the plans the
 * rest of Ficus reads. Defaults are DESIGN.md's: a 5 m window, confidence 0.95 to advance and
 * 0.99 to fail, a trip-wire at 50 % of 20 requests, rollback on failure.
 */

export const RAMP_DEFAULTS = {
  evaluateEvery: '5s',
  window: '5m',
  confidence: { advance: 0.95, rollback: 0.99 },
  hold: '0s',
  minRequests: 0,
  tripwire: { failureShare: '50%', minRequests: 20 },
  onFail: 'rollback',
  latency: { slowerBy: '20ms' },
  sync: { maxLag: '30s', maxDeadLetters: 0 },
  verify: { maxAge: '24h', maxMismatchRate: 0 }
} as const

type Report = (path: Path, message: string) => void

/** `2%` → 0.02, `0.5pp` → 0.005. */
const share = (text: string): number => Number(text.replace(/(%|pp)$/, '')) / 100

/** The trip-wire of a plan that says none, as the plans have it (the controller uses it for a ramp whose plan is gone). */
export const DEFAULT_TRIPWIRE = { failureShare: share(RAMP_DEFAULTS.tripwire.failureShare), minRequests: RAMP_DEFAULTS.tripwire.minRequests }

/** Cross-checks: steps climb to 100, what a step requires is configured, plans and jobs named exist, the routes that use them can. */
export function checkRamp (data: { ramp?: unknown; routes?: unknown; verify?: unknown; unleash?: unknown }, report: Report): void {
  const plans = isObject(data.ramp) && isObject(data.ramp.plans) ? data.ramp.plans : {}
  const jobs = isObject(data.verify) ? Object.keys(data.verify) : []
  for (const [name, plan] of Object.entries(plans)) {
    if (!isObject(plan)) continue
    const at = (...p: (string | number)[]): Path => ['ramp', 'plans', name, ...p]
    const steps = Array.isArray(plan.steps) ? plan.steps.filter(isObject) : []
    let last = 0
    steps.forEach((s, i) => {
      if (typeof s.new !== 'number' || s.new < 1 || s.new > 100) return // the schema says so
      if (s.new <= last) report(at('steps', i, 'new'), `must be more than the step before (${last}): a ramp only climbs; a way down is a rollback`)
      last = s.new
      if (Array.isArray(s.require) && s.require.includes('verify') && !(isObject(plan.gates) && isObject(plan.gates.verify))) {
        report(at('steps', i, 'require'), 'names verify, and the plan has no gates.verify: say which job, like gates: { verify: { job: orders } }')
      }
    })
    if (steps.length > 0 && last !== 100) report(at('steps'), `must end at new: 100 (the last step is ${last}): a ramp ends with new answering alone`)
    const verify = isObject(plan.gates) && isObject(plan.gates.verify) ? plan.gates.verify : null
    if (verify !== null && typeof verify.job === 'string' && !jobs.includes(verify.job)) {
      report(at('gates', 'verify', 'job'), `no verify job named "${verify.job}" (${jobs.length === 0 ? 'routes.yaml has no verify: block' : `jobs: ${jobs.join(', ')}`})`)
    }
    const latency = isObject(plan.gates) && isObject(plan.gates.latency) ? plan.gates.latency : null
    if (latency !== null && latency.p99Delta === undefined && latency.maxShare === undefined) {
      report(at('gates', 'latency'), 'needs p99Delta (new\'s p99 at most this much over legacy\'s), maxShare (of paired requests where new is slower by slowerBy), or both')
    }
    const c = isObject(plan.confidence) ? plan.confidence : {}
    if (typeof c.advance === 'number' && typeof c.rollback === 'number' && c.rollback < c.advance) {
      report(at('confidence', 'rollback'), `must be at least confidence.advance (${c.advance}): failing a step on noise costs more than waiting`)
    }
  }
  if (!Array.isArray(data.routes)) return
  data.routes.forEach((r, i) => {
    if (!isObject(r) || typeof r.ramp !== 'string') return
    const plan = plans[r.ramp]
    if (!isObject(plan)) {
      const names = Object.keys(plans)
      report(['routes', i, 'ramp'], `no ramp plan named "${r.ramp}" (${names.length === 0 ? 'routes.yaml has no ramp: block' : `plans: ${names.join(', ')}`})`)
      return
    }
    if (typeof r.flag === 'string' && !(isObject(data.unleash) && isObject(data.unleash.admin))) {
      report(['routes', i, 'ramp'], `the route takes its share of new from the Unleash flag "${r.flag}": its ramp sets the flag's rollout through Unleash's admin API, so unleash.admin (url and token) is needed`)
    }
    const gates = isObject(plan.gates) ? plan.gates : {}
    if (isObject(gates.sync) && !(isObject(r.sync) && r.sync.mode === 'dual')) {
      report(['routes', i, 'ramp'], `plan "${r.ramp}" has a sync gate, and the route's writes are not dual (sync: { mode: dual }): nothing to gate on`)
    }
    if ((isObject(gates.divergence) || isObject(gates.latency)) && !(typeof r.shadow === 'number' && r.shadow > 0)) {
      report(['routes', i, 'ramp'], `plan "${r.ramp}" gates on ${isObject(gates.divergence) ? 'divergence' : 'latency'} of shadowed requests, and the route shadows none: set shadow (like shadow: 100)`)
    }
  })
}

/** The plans, durations in ms and shares as fractions (after every check passed). */
export function buildRamp (raw: unknown): Record<string, RampPlan> {
  const out: Record<string, RampPlan> = {}
  if (!isObject(raw) || !isObject(raw.plans)) return out
  for (const [name, value] of Object.entries((raw as RawRamp).plans)) {
    const p = value
    const g = p.gates ?? {}
    const ms = (d: string | undefined, fallback: string): number => parseDuration(d ?? fallback) as number
    out[name] = {
      name,
      steps: p.steps.map((s) => ({ new: s.new, holdMs: ms(s.hold, RAMP_DEFAULTS.hold), minRequests: s.minRequests ?? RAMP_DEFAULTS.minRequests, requireVerify: s.require?.includes('verify') ?? false })),
      windowMs: ms(p.window, RAMP_DEFAULTS.window),
      confidence: { advance: p.confidence?.advance ?? RAMP_DEFAULTS.confidence.advance, rollback: p.confidence?.rollback ?? RAMP_DEFAULTS.confidence.rollback },
      gates: {
        divergence: g.divergence === undefined ? null : { max: share(g.divergence.max) },
        errors: g.errors === undefined ? null : { maxIncrease: share(g.errors.maxIncrease) },
        latency: g.latency === undefined
          ? null
          : { p99DeltaMs: g.latency.p99Delta === undefined ? null : ms(g.latency.p99Delta, '0s'), slowerByMs: ms(g.latency.slowerBy, RAMP_DEFAULTS.latency.slowerBy), maxShare: g.latency.maxShare === undefined ? null : share(g.latency.maxShare) },
        sync: g.sync === undefined ? null : { maxLagS: ms(g.sync.maxLag, RAMP_DEFAULTS.sync.maxLag) / 1000, maxDeadLetters: g.sync.maxDeadLetters ?? RAMP_DEFAULTS.sync.maxDeadLetters },
        verify: g.verify === undefined ? null : { job: g.verify.job, maxAgeMs: ms(g.verify.maxAge, RAMP_DEFAULTS.verify.maxAge), maxMismatchRate: g.verify.maxMismatchRate ?? RAMP_DEFAULTS.verify.maxMismatchRate }
      },
      tripwire: { failureShare: p.tripwire?.failureShare === undefined ? DEFAULT_TRIPWIRE.failureShare : share(p.tripwire.failureShare), minRequests: p.tripwire?.minRequests ?? DEFAULT_TRIPWIRE.minRequests },
      onFail: p.onFail ?? RAMP_DEFAULTS.onFail
    }
  }
  return out
}
