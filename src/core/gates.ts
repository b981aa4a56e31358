/**
 * The ramp's gate statistics (DESIGN.md "Ramp"; docs/ramp.md), pure: no I/O, clock or
 * randomness. Each gate gives pass, hold or fail from counts the caller read over the same
 * window for both sides, with a confidence bound, so that a step advances only when the data
 * shows the gate holds, fails only when it shows it does not, and otherwise holds. No data is
 * never a pass.
 *
 * - A share (divergences among comparisons, requests new answered slower than legacy by more
 *   than X among paired ones): the Wilson score interval.
 * - The increase of new's error rate over legacy's: Newcombe's hybrid score interval of a
 *   difference of two proportions (method 10 of Newcombe 1998), sound when either rate is 0:
 *   a zero-error baseline with a failing new fails, it does not pass.
 */

export type Verdict = 'pass' | 'hold' | 'fail'

export interface GateResult {
  readonly gate: string
  readonly verdict: Verdict
  /** The value seen over the window (a share, a difference of shares, ms, s, a count); null: no data. */
  readonly observed: number | null
  /** The bound the verdict rests on: the upper bound for pass, the lower for fail; null when none applies. */
  readonly bound: number | null
  readonly threshold: number
  /** Sample size the statistic rests on. */
  readonly n: number
  /** About how many more samples would let it pass, when it holds for want of data and the rate seen allows it; null otherwise. */
  readonly needs: number | null
  /** One sentence, for a person. */
  readonly why: string
}

/**
 * The standard normal quantile (the inverse of its CDF): Peter Acklam's rational
 * approximation, relative error under 1.15e-9 over (0, 1), far below what a confidence level
 * needs. The libraries at hand either approximate it to three digits (simple-statistics'
 * probit gives 1.9572 for 1.9600) or pull in a native build (@stdlib).
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`a probability strictly between 0 and 1 (got ${p})`)
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239] as const
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1] as const
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783] as const
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416] as const
  const tail = (q: number): number => (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
  const low = 0.02425
  if (p < low) return tail(Math.sqrt(-2 * Math.log(p)))
  if (p > 1 - low) return -tail(Math.sqrt(-2 * Math.log(1 - p)))
  const q = p - 0.5
  const r = q * q
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
}

/** z of a two-sided interval at `confidence` (0.95 → 1.96): its upper bound is what DESIGN.md's "95 % Wilson bound" means. */
export function zOf(confidence: number): number {
  return normalQuantile(1 - (1 - confidence) / 2)
}

/** The Wilson score interval of k successes in n trials at z. n = 0: [0, 1]. */
export function wilson(k: number, n: number, z: number): { readonly lower: number; readonly upper: number } {
  if (n <= 0) return { lower: 0, upper: 1 }
  const p = k / n
  const z2 = z * z
  const centre = p + z2 / (2 * n)
  const spread = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))
  const denominator = 1 + z2 / n
  return { lower: Math.max(0, (centre - spread) / denominator), upper: Math.min(1, (centre + spread) / denominator) }
}

/**
 * Newcombe's hybrid score interval of p1 − p2 (k1 of n1 against k2 of n2) at z, from the two
 * Wilson intervals: sound at 0 and 1, unlike the normal approximation (which gives a zero
 * baseline no uncertainty at all).
 */
export function differenceInterval(k1: number, n1: number, k2: number, n2: number, z: number): { readonly lower: number; readonly upper: number } {
  const p1 = n1 > 0 ? k1 / n1 : 0
  const p2 = n2 > 0 ? k2 / n2 : 0
  const w1 = wilson(k1, n1, z)
  const w2 = wilson(k2, n2, z)
  const d = p1 - p2
  return {
    lower: d - Math.sqrt((p1 - w1.lower) ** 2 + (w2.upper - p2) ** 2),
    upper: d + Math.sqrt((w1.upper - p1) ** 2 + (p2 - w2.lower) ** 2)
  }
}

/** The smallest n at which k/n = `rate` gives a Wilson upper bound at or under `max` (null when the rate itself is not under max). */
export function samplesFor(rate: number, max: number, z: number): number | null {
  if (!(rate < max)) return null
  let hi = 1
  while (wilson(rate * hi, hi, z).upper > max) {
    hi *= 2
    if (hi > 1e12) return null
  }
  let lo = Math.max(1, hi / 2)
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    if (wilson(rate * mid, mid, z).upper <= max) hi = mid
    else lo = mid + 1
  }
  return hi
}

export interface Confidence {
  /** A gate passes when the bound at this confidence shows it holds (0.95). */
  readonly advance: number
  /** A gate fails when the bound at this confidence shows it does not (0.99): failing is the costlier mistake to make on noise. */
  readonly rollback: number
}

const n0 = (x: number): string => Math.round(x).toLocaleString('en-US')
const pct = (x: number): string => `${(x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1)} %`

/**
 * A share that must stay at or under `max` (divergences among comparisons; paired requests
 * where new was slower by more than X): pass when its upper bound at `advance` is under max,
 * fail when its lower bound at `rollback` is over it, else hold.
 */
export function shareGate(gate: string, what: string, k: number, n: number, max: number, c: Confidence): GateResult {
  const base = { gate, threshold: max, n }
  if (n === 0) return { ...base, verdict: 'hold', observed: null, bound: null, needs: null, why: `no ${what} in the window: no data is never a pass` }
  const rate = k / n
  const up = wilson(k, n, zOf(c.advance)).upper
  const low = wilson(k, n, zOf(c.rollback)).lower
  if (low > max) return { ...base, verdict: 'fail', observed: rate, bound: low, needs: null, why: `${pct(rate)} of ${n0(n)} ${what}: even its lower bound (${pct(low)}, ${c.rollback * 100} %) is over ${pct(max)}` }
  if (up <= max) return { ...base, verdict: 'pass', observed: rate, bound: up, needs: null, why: `${pct(rate)} of ${n0(n)} ${what}: its upper bound (${pct(up)}, ${c.advance * 100} %) is under ${pct(max)}` }
  const total = samplesFor(rate, max, zOf(c.advance))
  const needs = total === null ? null : Math.max(1, total - n)
  return { ...base, verdict: 'hold', observed: rate, bound: up, needs, why: `${pct(rate)} of ${n0(n)} ${what}: its upper bound (${pct(up)}) is over ${pct(max)}${needs === null ? '; at this rate it never passes' : `; about ${n0(needs)} more would show it is under`}` }
}

/**
 * new's error rate against legacy's over the same window (fallbacks and Ficus's own errors
 * count as new's failures): pass when the upper bound of the increase (new − legacy) at
 * `advance` is at or under `maxIncrease`, fail when its lower bound at `rollback` is over it.
 */
export function errorsGate(newFailed: number, newTotal: number, legacyFailed: number, legacyTotal: number, maxIncrease: number, c: Confidence): GateResult {
  const base = { gate: 'errors', threshold: maxIncrease, n: newTotal }
  if (newTotal === 0 || legacyTotal === 0) {
    return { ...base, verdict: 'hold', observed: null, bound: null, needs: null, why: `${newTotal === 0 ? 'new' : 'legacy'} answered no request in the window: no baseline to compare with` }
  }
  const d = newFailed / newTotal - legacyFailed / legacyTotal
  const up = differenceInterval(newFailed, newTotal, legacyFailed, legacyTotal, zOf(c.advance)).upper
  const low = differenceInterval(newFailed, newTotal, legacyFailed, legacyTotal, zOf(c.rollback)).lower
  const rates = `new ${pct(newFailed / newTotal)} of ${n0(newTotal)}, legacy ${pct(legacyFailed / legacyTotal)} of ${n0(legacyTotal)}`
  if (low > maxIncrease) return { ...base, verdict: 'fail', observed: d, bound: low, needs: null, why: `errors: ${rates}; new is worse by at least ${pct(low)} (${c.rollback * 100} %), more than ${pct(maxIncrease)}` }
  if (up <= maxIncrease) return { ...base, verdict: 'pass', observed: d, bound: up, needs: null, why: `errors: ${rates}; new is worse by at most ${pct(Math.max(0, up))} (${c.advance * 100} %), within ${pct(maxIncrease)}` }
  return { ...base, verdict: 'hold', observed: d, bound: up, needs: null, why: `errors: ${rates}; new may be worse by up to ${pct(up)}, over ${pct(maxIncrease)}: more requests will tell` }
}

/** A value that must stay at or under a limit, measured directly (sync lag, dead letters, a p99 difference): no statistic, and no data holds. */
export function limitGate(gate: string, observed: number | null, max: number, unit: string, what: string): GateResult {
  const base = { gate, threshold: max, n: observed === null ? 0 : 1, needs: null, bound: observed }
  if (observed === null) return { ...base, verdict: 'hold', observed: null, bound: null, why: `${what}: not known yet` }
  if (observed <= max) return { ...base, verdict: 'pass', observed, why: `${what}: ${observed} ${unit}, within ${max} ${unit}` }
  return { ...base, verdict: 'fail', observed, why: `${what}: ${observed} ${unit}, over ${max} ${unit}` }
}

/**
 * The trip-wire: new failing most of a small number of requests is acted on at once, without
 * statistics (every replica watches its own).
 */
export function tripped(newFailed: number, newTotal: number, failureShare: number, minRequests: number): boolean {
  return newTotal >= minRequests && newFailed / newTotal >= failureShare
}

export interface StepState {
  /** How long the step has been held (ms). */
  readonly heldMs: number
  readonly holdMs: number
  /** Requests new answered since the step began. */
  readonly requests: number
  readonly minRequests: number
}

/**
 * The step's verdict from its gates: `fail` when any gate fails; `advance` when the hold and
 * the minimum requests are met and every gate passes; `hold` otherwise, with what is missing.
 */
export function stepVerdict(step: StepState, gates: readonly GateResult[]): { readonly action: 'advance' | 'hold' | 'fail'; readonly missing: readonly string[] } {
  const failed = gates.filter((g) => g.verdict === 'fail')
  if (failed.length > 0) return { action: 'fail', missing: failed.map((g) => g.why) }
  const missing: string[] = []
  if (step.heldMs < step.holdMs) missing.push(`held ${Math.floor(step.heldMs / 1000)} s of ${Math.floor(step.holdMs / 1000)} s`)
  if (step.requests < step.minRequests) missing.push(`${step.requests} requests on new of the ${step.minRequests} the step needs`)
  for (const g of gates) if (g.verdict === 'hold') missing.push(g.why)
  return { action: missing.length === 0 ? 'advance' : 'hold', missing }
}

export interface Explained {
  readonly route: string
  /** 0-based index of the step the route is in, and how many the plan has. */
  readonly step: number
  readonly steps: number
  readonly percent: number
  readonly state: StepState
  /** Requests on new per minute lately (for "how long"); null when unknown. */
  readonly perMinute: number | null
  readonly gates: readonly GateResult[]
}

const minutes = (ms: number): string => (ms < 60_000 ? `${Math.ceil(ms / 1000)} s` : `${Math.ceil(ms / 60_000)} min`)

/**
 * A ramp's state as a person explains it (`ficus ramp status`): the step, what it has held and
 * seen, each gate's verdict with its numbers, what is missing, and the verdict.
 */
export function explain (e: Explained): string {
  const { state: s } = e
  const requests = s.minRequests > 0 ? `${n0(s.requests)} of ${n0(s.minRequests)} requests on new` : `${n0(s.requests)} requests on new`
  const lines = [`${e.route}: step ${e.step + 1} of ${e.steps} (new ${e.percent} %), held ${minutes(s.heldMs)} of ${minutes(s.holdMs)}, ${requests}`]
  const width = Math.max(10, ...e.gates.map((g) => g.gate.length))
  for (const g of e.gates) lines.push(`  ${g.gate.padEnd(width)} ${g.verdict.padEnd(4)}  ${g.why}`)
  const v = stepVerdict(s, e.gates)
  if (v.action === 'fail') {
    lines.push(`  verdict: fail: ${e.gates.filter((g) => g.verdict === 'fail').map((g) => g.gate).join(', ')}`)
  } else if (v.action === 'advance') {
    lines.push(`  verdict: advance${e.step + 1 < e.steps ? ` to step ${e.step + 2}` : ': the ramp is complete'}`)
  } else {
    const wants: string[] = []
    const more = s.minRequests - s.requests
    if (more > 0) wants.push(`~${n0(more)} more requests on new${e.perMinute !== null && e.perMinute > 0 ? ` (~${minutes((more / e.perMinute) * 60_000)} at the current ${n0(e.perMinute)}/min)` : ''}`)
    if (s.heldMs < s.holdMs) wants.push(`${minutes(s.holdMs - s.heldMs)} more of the hold`)
    const holding = e.gates.filter((g) => g.verdict === 'hold').map((g) => g.gate)
    if (holding.length > 0) wants.push(`${holding.join(', ')} to show ${holding.length === 1 ? 'it holds' : 'they hold'}`)
    lines.push(`  verdict: hold: needs ${wants.join('; ')}`)
  }
  return lines.join('\n')
}
