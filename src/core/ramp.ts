import { errorsGate, explain, limitGate, shareGate, stepVerdict, tripped, type GateResult } from './gates.js'

/**
 * The ramp's decisions, pure (docs/ramp.md; DESIGN.md "Ramp"): what a route's counters over
 * the window say (`sampleOf`), each gate's verdict on it (`gatesOf`), the step's verdict and
 * its explanation (`evaluate`), and every transition of a ramp's record (`transition`). The
 * controller (control/ramp-control.ts) reads the counters, the store and the clock, and hands
 * them in.
 */

export interface RampStep {
  readonly new: number
  readonly holdMs: number
  readonly minRequests: number
  readonly requireVerify: boolean
}

/** A ramp plan as the rest of Ficus reads it: durations in ms, shares as fractions. */
export interface RampPlan {
  readonly name: string
  readonly steps: readonly RampStep[]
  readonly windowMs: number
  readonly confidence: { readonly advance: number; readonly rollback: number }
  readonly gates: {
    readonly divergence: { readonly max: number } | null
    /** new's error rate minus legacy's, as a fraction (0.5pp = 0.005). */
    readonly errors: { readonly maxIncrease: number } | null
    readonly latency: { readonly p99DeltaMs: number | null; readonly slowerByMs: number; readonly maxShare: number | null } | null
    readonly sync: { readonly maxLagS: number; readonly maxDeadLetters: number } | null
    readonly verify: { readonly job: string; readonly maxAgeMs: number; readonly maxMismatchRate: number } | null
  }
  readonly tripwire: { readonly failureShare: number; readonly minRequests: number }
  readonly onFail: 'rollback' | 'pause'
}

/** Where a ramp is. `running` advances on its gates; `holding` watches them (and fails) but does not advance; `paused` does neither (the trip-wire still acts). */
export type RampPhase = 'running' | 'holding' | 'paused' | 'completed' | 'rolled_back' | 'aborted'
export const RAMP_PHASES: readonly RampPhase[] = ['running', 'holding', 'paused', 'completed', 'rolled_back', 'aborted']
/** Phases in which the ramp watches the route. */
export const ACTIVE: ReadonlySet<RampPhase> = new Set(['running', 'holding', 'paused'])

/** The last decision of a ramp, with the gates it rested on. */
export interface RampDecision {
  readonly at: number
  readonly action: RampAction
  readonly by: string
  readonly reason: string | null
  readonly gates: readonly GateResult[]
}

/** A ramp's record, as the shared store keeps it (one per route; every replica reads it). */
export interface RampRecord {
  readonly route: string
  readonly plan: string
  readonly phase: RampPhase
  /** 0-based index of the step in `plan.steps`. */
  readonly step: number
  /** The share of new the ramp asks for now: the step's, or 0 after a rollback or an abort. */
  readonly percent: number
  /** Increased each time the ramp sets `percent` (a step, a rollback, an abort). */
  readonly revision: number
  /**
   * When the ramp last set `percent` (ms since the epoch): a replica whose route a person
   * changed after that keeps the person's change (absent in records of an earlier version: `since`).
   */
  readonly percentAt?: number
  /** When the step began (ms since the epoch): its hold counts from there. */
  readonly stepStartedAt: number
  /** Requests new answered (or failed) since the step began, as the driver counted them. */
  readonly stepRequests: number
  /** When the phase began, who put it there, and why. */
  readonly since: number
  readonly by: string
  readonly reason: string | null
  /** The transitions so far, newest last (at most HISTORY kept). */
  readonly history: readonly RampDecision[]
}

const HISTORY = 50

/* ---------------- the counters of a route over a window ---------------- */

/** What the gates read of a route, over the window (counts) or now (the sync gauges). */
export interface RampSample {
  /** How long a span the counts cover (ms). */
  readonly coveredMs: number
  /** Requests meant for new: answered by new, or fallen back to legacy (fallbacks count as new's failures). */
  readonly newTotal: number
  /** new's 5xx answers (Ficus's own errors on new's behalf among them) and fallbacks. */
  readonly newFailed: number
  readonly legacyTotal: number
  readonly legacyFailed: number
  /** Shadow comparisons that compared something (match + diverged), and the diverged. */
  readonly compared: number
  readonly diverged: number
  /** Shadowed requests with both sides' times, and those where new was slower by more than the route's `slowerBy`. */
  readonly paired: number
  readonly slower: number
  /** Cumulative duration buckets (le in seconds → count) of each side's answers to clients. */
  readonly latency: { readonly new: readonly Bucket[]; readonly legacy: readonly Bucket[] }
  /** The route's sync lag (s) and dead letters now; null: not a dual route, or not known. */
  readonly syncLagS: number | null
  readonly deadLetters: number | null
}

export interface Bucket {
  readonly le: number
  readonly count: number
}

/** One series of a metric as prom-client's getMetricsAsJSON() gives it (the shape only: core reads no library). */
export interface MetricJson {
  readonly name: string
  readonly values: readonly { readonly value: number; readonly labels: Readonly<Record<string, string | number | undefined>>; readonly metricName?: string }[]
}

/**
 * The cumulative counters of each route in `routes`, by key, from a metrics snapshot: what
 * a CountWindow records. Keys: `nA` `nF` (new answered, new's 5xx), `lA` `lF` (legacy), `fb`
 * (fallbacks), `cm` `cd` (match, diverged), `pp` `ps` (paired, new slower), `hn:<le>` `hl:<le>`
 * (duration buckets by side). Gauges (sync lag, dead letters) come apart, as they are.
 */
export function countsOf (json: readonly MetricJson[], routes: ReadonlySet<string>): { counts: Map<string, Map<string, number>>; gauges: Map<string, { lag: number | null; dead: number | null }> } {
  const counts = new Map<string, Map<string, number>>()
  const gauges = new Map<string, { lag: number | null; dead: number | null }>()
  const add = (route: string, key: string, v: number): void => {
    let m = counts.get(route)
    if (m === undefined) counts.set(route, m = new Map<string, number>())
    m.set(key, (m.get(key) ?? 0) + v)
  }
  const gauge = (route: string, which: 'lag' | 'dead', v: number): void => {
    let g = gauges.get(route)
    if (g === undefined) gauges.set(route, g = { lag: null, dead: null })
    g[which] = which === 'lag' ? Math.max(g.lag ?? 0, v) : (g.dead ?? 0) + v
  }
  for (const r of routes) counts.set(r, new Map())
  for (const m of json) {
    for (const s of m.values) {
      const route = s.labels.route
      if (typeof route !== 'string' || !routes.has(route)) continue
      const l = s.labels
      switch (m.name) {
        case 'ficus_requests_total':
          if (l.role !== 'primary' || (l.backend !== 'new' && l.backend !== 'legacy')) break
          add(route, l.backend === 'new' ? 'nA' : 'lA', s.value)
          if (Number(l.code) >= 500) add(route, l.backend === 'new' ? 'nF' : 'lF', s.value)
          break
        case 'ficus_fallbacks_total':
          add(route, 'fb', s.value)
          break
        case 'ficus_comparisons_total':
          if (l.outcome === 'match') add(route, 'cm', s.value)
          else if (l.outcome === 'diverged') add(route, 'cd', s.value)
          break
        case 'ficus_shadow_pairs_total':
          add(route, 'pp', s.value)
          if (l.new === 'slower') add(route, 'ps', s.value)
          break
        case 'ficus_request_duration_seconds':
          if (s.metricName !== 'ficus_request_duration_seconds_bucket' || l.role !== 'primary' || (l.backend !== 'new' && l.backend !== 'legacy')) break
          add(route, `${l.backend === 'new' ? 'hn' : 'hl'}:${String(l.le)}`, s.value)
          break
        case 'ficus_sync_lag_seconds':
          gauge(route, 'lag', s.value)
          break
        case 'ficus_sync_dead_letters':
          gauge(route, 'dead', s.value)
          break
      }
    }
  }
  return { counts, gauges }
}

/** A route's sample from its counters' increase over the window (CountWindow.increase) and its gauges now. */
export function sampleOf (coveredMs: number, c: ReadonlyMap<string, number>, g: { lag: number | null; dead: number | null } | undefined): RampSample {
  const v = (k: string): number => c.get(k) ?? 0
  const fb = v('fb')
  const buckets = (prefix: string): Bucket[] => {
    const out: Bucket[] = []
    for (const [k, count] of c) if (k.startsWith(prefix)) out.push({ le: k.endsWith('+Inf') ? Infinity : Number(k.slice(prefix.length)), count })
    return out.sort((a, b) => a.le - b.le)
  }
  return {
    coveredMs,
    newTotal: v('nA') + fb,
    newFailed: v('nF') + fb,
    // Requests legacy answered as new's fallback were new's users, not the control group's.
    legacyTotal: Math.max(0, v('lA') - fb),
    legacyFailed: Math.min(v('lF'), Math.max(0, v('lA') - fb)),
    compared: v('cm') + v('cd'),
    diverged: v('cd'),
    paired: v('pp'),
    slower: v('ps'),
    latency: { new: buckets('hn:'), legacy: buckets('hl:') },
    syncLagS: g?.lag ?? null,
    deadLetters: g?.dead ?? null
  }
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside the bucket it falls in,
 * as Prometheus's histogram_quantile does (so the dashboard and the gate agree); null with no
 * observations. A quantile in the last (+Inf) bucket is that bucket's lower bound.
 */
export function quantile (q: number, buckets: readonly Bucket[]): number | null {
  const total = buckets.at(-1)?.count ?? 0
  if (total <= 0) return null
  const rank = q * total
  let prevLe = 0
  let prevCount = 0
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe
      const inBucket = b.count - prevCount
      return inBucket <= 0 ? b.le : prevLe + (b.le - prevLe) * ((rank - prevCount) / inBucket)
    }
    prevLe = b.le
    prevCount = b.count
  }
  return prevLe
}

/** Observations per side a p99 needs before it means anything (one in a hundred is the tail). */
export const P99_MIN = 100

/** The last run of a verify job, as the ramp's verify gate reads it. */
export interface VerifyFact {
  /** As `ficus verify` exits: 0 parity, 1 differences, 2 incomplete. */
  readonly result: 0 | 1 | 2
  readonly completedAt: number
  /** Records that differed or were missing, over those checked. */
  readonly mismatchRate: number
  readonly checked: number
}

const ms = (x: number): string => `${Math.round(x * 10) / 10} ms`

/**
 * Each configured gate's verdict on a sample (gates not configured are not evaluated). The
 * verify gate is evaluated only when the next step requires it (`require: [verify]`): a
 * recent clean run before entering that step; a missing, old or failed run holds, it never
 * rolls back traffic.
 *
 * At new 100 % legacy answers no user: the gates that compare new with legacy's users (errors,
 * latency_p99) have no control group, and are not judged (a pass that says so, with n = 0);
 * divergence and paired latency still compare the same requests on both sides (shadowing goes
 * to legacy then), and the trip-wire still watches new's failures.
 */
export function gatesOf (plan: RampPlan, s: RampSample, verifyNext: boolean, verify: VerifyFact | null | undefined, now: number, stepPercent = 0): GateResult[] {
  const g = plan.gates
  const c = plan.confidence
  const out: GateResult[] = []
  const alone = stepPercent >= 100
  const notJudged = (gate: string, threshold: number): GateResult => ({ gate, verdict: 'pass', observed: null, bound: null, threshold, n: 0, needs: null, why: `${gate}: not judged at new 100 %: legacy answers no user, so there is nothing to compare with (the trip-wire still watches new's failures)` })
  if (g.divergence !== null) out.push(shareGate('divergence', 'shadow comparisons diverged', s.diverged, s.compared, g.divergence.max, c))
  if (g.errors !== null) out.push(alone ? notJudged('errors', g.errors.maxIncrease) : errorsGate(s.newFailed, s.newTotal, s.legacyFailed, s.legacyTotal, g.errors.maxIncrease, c))
  if (g.latency !== null) {
    const l = g.latency
    if (l.p99DeltaMs !== null && alone) {
      out.push(notJudged('latency_p99', l.p99DeltaMs))
    } else if (l.p99DeltaMs !== null) {
      const nNew = s.latency.new.at(-1)?.count ?? 0
      const nLegacy = s.latency.legacy.at(-1)?.count ?? 0
      const pn = quantile(0.99, s.latency.new)
      const pl = quantile(0.99, s.latency.legacy)
      if (nNew < P99_MIN || nLegacy < P99_MIN || pn === null || pl === null) {
        out.push({ gate: 'latency_p99', verdict: 'hold', observed: null, bound: null, threshold: l.p99DeltaMs, n: Math.min(nNew, nLegacy), needs: P99_MIN - Math.min(nNew, nLegacy), why: `latency p99: ${nNew} answers from new and ${nLegacy} from legacy in the window; a p99 needs ${P99_MIN} on each side` })
      } else {
        const delta = (pn - pl) * 1000
        const r = limitGate('latency_p99', Math.round(delta * 10) / 10, l.p99DeltaMs, 'ms', 'latency p99')
        out.push({ ...r, n: Math.min(nNew, nLegacy), why: `latency p99: new ${ms(pn * 1000)}, legacy ${ms(pl * 1000)}: new is ${delta >= 0 ? `${ms(delta)} slower` : `${ms(-delta)} faster`}, ${r.verdict === 'pass' ? 'within' : 'over'} ${ms(l.p99DeltaMs)}` })
      }
    }
    if (l.maxShare !== null) out.push(shareGate('latency_slower', `paired requests had new slower by more than ${ms(l.slowerByMs)}`, s.slower, s.paired, l.maxShare, c))
  }
  if (g.sync !== null) {
    out.push(limitGate('sync_lag', s.syncLagS, g.sync.maxLagS, 's', 'sync lag of dual writes'))
    out.push(limitGate('sync_dead_letters', s.deadLetters, g.sync.maxDeadLetters, 'dead letters', 'dead letters of dual writes'))
  }
  if (g.verify !== null && verifyNext) out.push(verifyGate(g.verify, verify, now))
  return out
}

function verifyGate (v: NonNullable<RampPlan['gates']['verify']>, fact: VerifyFact | null | undefined, now: number): GateResult {
  const base = { gate: 'verify', threshold: v.maxMismatchRate, bound: null, needs: null }
  if (fact === null || fact === undefined) return { ...base, verdict: 'hold', observed: null, n: 0, why: `verify: no run of job ${v.job} by this Ficus yet; the next step needs a clean one (POST /admin/verify/${v.job}/run, or its schedule)` }
  const age = now - fact.completedAt
  const n = fact.checked
  if (age > v.maxAgeMs) return { ...base, verdict: 'hold', observed: fact.mismatchRate, n, why: `verify: the last run of ${v.job} ended ${Math.round(age / 60_000)} min ago, older than ${Math.round(v.maxAgeMs / 60_000)} min: run it again` }
  if (fact.result === 2) return { ...base, verdict: 'hold', observed: null, n, why: `verify: the last run of ${v.job} was incomplete: run it again` }
  if (fact.mismatchRate > v.maxMismatchRate) return { ...base, verdict: 'hold', observed: fact.mismatchRate, n, why: `verify: ${(fact.mismatchRate * 100).toFixed(3)} % of ${n} records differed in the last run of ${v.job}, over ${(v.maxMismatchRate * 100).toFixed(3)} %: fix them and run it again` }
  return { ...base, verdict: 'pass', observed: fact.mismatchRate, n, why: `verify: the last run of ${v.job} (${Math.round(age / 60_000)} min ago) found ${fact.mismatchRate === 0 ? 'no difference' : `${(fact.mismatchRate * 100).toFixed(3)} % differing`} in ${n} records` }
}

/** What the gates' window is at a step: the plan's window, or the time since the step began if shorter (a step is judged on its own traffic). */
export function windowAt (plan: RampPlan, r: RampRecord, now: number): number {
  return Math.max(0, Math.min(plan.windowMs, now - r.stepStartedAt))
}

export interface Evaluation {
  readonly gates: readonly GateResult[]
  readonly action: 'advance' | 'hold' | 'fail'
  readonly missing: readonly string[]
  /** `ficus ramp status`'s text. */
  readonly text: string
}

/** The step's verdict on a sample: its gates, what is missing, and the explanation. `perMinute`: requests on new per minute lately. */
export function evaluate (plan: RampPlan, r: RampRecord, s: RampSample, now: number, perMinute: number | null, verify?: VerifyFact | null): Evaluation {
  const step = plan.steps[r.step] as RampStep
  const next = plan.steps[r.step + 1]
  const gates = gatesOf(plan, s, next?.requireVerify ?? false, verify, now, step.new)
  const state = { heldMs: now - r.stepStartedAt, holdMs: step.holdMs, requests: r.stepRequests, minRequests: step.minRequests }
  const v = stepVerdict(state, gates)
  const text = explain({ route: r.route, step: r.step, steps: plan.steps.length, percent: step.new, state, perMinute, gates })
  return { gates, action: v.action, missing: v.missing, text }
}

/** A plan's trip-wire on a sample (a short window): new failing most of a few requests. */
export function tripwire (tw: RampPlan['tripwire'], s: RampSample): boolean {
  return tripped(s.newFailed, s.newTotal, tw.failureShare, tw.minRequests)
}

/* ---------------- transitions ---------------- */

/**
 * What moves a ramp: an operator's command (start, pause, resume, hold, advance, abort), the
 * gates (advance, fail), the trip-wire (trip), or a person changing the route by other means
 * (manual).
 */
export type RampAction = 'start' | 'pause' | 'resume' | 'hold' | 'advance' | 'abort' | 'fail' | 'trip' | 'manual'

export interface Move {
  readonly action: RampAction
  readonly by: string
  readonly reason: string | null
  readonly gates?: readonly GateResult[]
  /** An operator's advance past the gates (`advance --force`). */
  readonly force?: boolean
}

/** The record after a move, or why it is refused (the record does not allow it). */
export function transition (plan: RampPlan, r: RampRecord | null, m: Move, route: string, now: number): RampRecord | { refused: string } {
  const phase = r?.phase ?? null
  const active = phase !== null && ACTIVE.has(phase)
  const decided = (x: Omit<RampRecord, 'history' | 'since' | 'by' | 'reason'>): RampRecord => ({
    ...x,
    since: now,
    by: m.by,
    reason: m.reason,
    history: [...(r?.history ?? []), { at: now, action: m.action, by: m.by, reason: m.reason, gates: m.gates ?? [] }].slice(-HISTORY)
  })
  const stepAt = (i: number, base: RampRecord | null): Omit<RampRecord, 'history' | 'since' | 'by' | 'reason'> => ({
    route, plan: plan.name, phase: 'running', step: i, percent: (plan.steps[i] as RampStep).new, revision: (base?.revision ?? 0) + 1, percentAt: now, stepStartedAt: now, stepRequests: 0
  })
  const none = `${route} has no ramp in progress${phase === null ? '' : ` (it is ${phase.replace('_', ' ')})`}: ficus ramp start ${route}`
  switch (m.action) {
    case 'start':
      if (active) return { refused: `${route} is already ramping (${phase}, step ${r!.step + 1} of ${plan.steps.length}): pause, resume or abort it` }
      // After an end (completed, rolled back, aborted) a start ramps again from the first step.
      return decided(stepAt(0, r))
    case 'pause':
    case 'manual':
      if (!active) return { refused: none }
      if (phase === 'paused') return { refused: `${route}'s ramp is already paused (${r!.reason ?? 'no reason given'}): ficus ramp resume ${route}` }
      return decided({ ...r!, phase: 'paused' })
    case 'hold':
      if (phase !== 'running') return { refused: phase === 'holding' ? `${route}'s ramp already holds at step ${r!.step + 1}` : phase === 'paused' ? `${route}'s ramp is paused: resume it first` : none }
      return decided({ ...r!, phase: 'holding' })
    case 'resume':
      if (phase !== 'paused' && phase !== 'holding') return { refused: phase === 'running' ? `${route}'s ramp is running` : none }
      if (r!.step >= plan.steps.length) return { refused: `${route}'s ramp is at step ${r!.step + 1}, and its plan ${plan.name} now has ${plan.steps.length} steps: abort it and start again` }
      // After a pause the route may have been changed meanwhile: the step is applied again and judged afresh.
      return decided(phase === 'paused' ? { ...stepAt(r!.step, r), stepRequests: 0 } : { ...r!, phase: 'running' })
    case 'advance': {
      if (!active) return { refused: none }
      if (m.force !== true && phase !== 'running') return { refused: `${route}'s ramp is ${phase}: only a forced advance moves it` }
      const next = r!.step + 1
      if (next >= plan.steps.length) return decided({ ...r!, phase: 'completed' })
      return decided(stepAt(next, r))
    }
    case 'fail':
      if (!active) return { refused: none }
      return plan.onFail === 'pause' ? decided({ ...r!, phase: 'paused' }) : decided({ ...r!, phase: 'rolled_back', percent: 0, revision: r!.revision + 1, percentAt: now })
    case 'trip':
    case 'abort':
      if (!active) return { refused: none }
      return decided({ ...r!, phase: m.action === 'trip' ? 'rolled_back' : 'aborted', percent: 0, revision: r!.revision + 1, percentAt: now })
  }
}
