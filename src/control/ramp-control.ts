import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { AuditEntry, AuditLog, RampAuditAction } from '../adapters/audit-log.js'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { ProcessStore } from '../adapters/open-store.js'
import type { SyncStore } from '../adapters/sync-store.js'
import type { LiveConfig } from '../config/live.js'
import { DEFAULT_TRIPWIRE } from '../config/ramp.js'
import type { FlagSource } from '../core/flags.js'
import type { GateResult } from '../core/gates.js'
import {
  ACTIVE, countsOf, evaluate, RAMP_PHASES, sampleOf, transition, tripwire, windowAt,
  type Evaluation, type MetricJson, type Move, type RampPlan, type RampRecord, type RampSample, type VerifyFact
} from '../core/ramp.js'
import { windowOf, type CountWindow } from '../core/window.js'
import { ControlError, type ControlPlane } from './control-plane.js'

/**
 * The ramp controller (docs/ramp.md; DESIGN.md "Ramp"). Every replica runs one; each
 * `evaluateEvery` it:
 * 1. reads its own counters (this process's registry, or a cluster's merged workers) into a
 *    sliding window per ramped route;
 * 2. reads the ramps' records from the shared store (`store:`), and applies a record's share
 *    of new to its own route table when the record asks for it (a revision it has not
 *    applied yet), through the ControlPlane like `ficus set` (state file, audit);
 * 3. watches its own trip-wire: new failing most of a few requests rolls back at once;
 * 4. takes or renews the lease `ramp` in the store: the one replica holding it drives. The
 *    driver judges each running ramp's gates on its window and advances, holds, fails (rolls
 *    back or pauses), and drives the Unleash flag of a flagged route.
 *
 * A person's change of a ramped route (ficus set, ficus rollback, the flag's rollout in
 * Unleash) pauses the ramp rather than being overwritten. Commands (start, pause, …) come
 * through the admin API of any replica and are applied there at once.
 */

/** Who the ramp's own changes are made as (audit log, RouteChange). */
export const RAMP_WHO = 'ramp'
/** The lease that makes one replica the driver. */
const LEASE = 'ramp'
/** The trip-wire looks at most this far back. */
const TRIP_WINDOW_MS = 60_000

export interface RampOptions {
  readonly live: LiveConfig
  readonly control: ControlPlane
  readonly store: ProcessStore
  readonly audit: AuditLog
  readonly log: Logger
  readonly metrics: Metrics
  /** This replica's counters (a Registry, or a cluster's merged ones). */
  readonly source: { getMetricsAsJSON(): Promise<readonly MetricJson[]> }
  /** The flags the control plane sees (flagged routes). */
  readonly flags?: FlagSource | undefined
  /** The last run of a verify job in this process, for the verify gate. */
  readonly verify?: ((job: string) => VerifyFact | null) | undefined
  readonly now?: () => number
  /** This replica's name in the lease (default: host, pid and a random suffix). */
  readonly id?: string
}

/** A ramp as GET /admin/ramp shows it. */
export interface RampView {
  readonly route: string
  /** The plan routes.yaml names for the route (null: the route has none any more). */
  readonly plan: string | null
  readonly phase: RampRecord['phase'] | 'none'
  /** 1-based, as people count steps; null with no ramp. */
  readonly step: number | null
  readonly steps: number | null
  readonly percent: number | null
  readonly stepStartedAt: string | null
  readonly heldSeconds: number | null
  readonly stepRequests: number | null
  readonly since: string | null
  readonly by: string | null
  readonly reason: string | null
  /** The replica that drives the ramps (the lease's holder, as this replica last saw it). */
  readonly driver: string | null
  /** When this replica's last complete round (counters, records, trip-wire, following, gates) began; null before the first. */
  readonly lastRound: string | null
  /** This replica's evaluation of the gates now (its own window). */
  readonly evaluation: { readonly action: Evaluation['action']; readonly gates: readonly GateResult[]; readonly missing: readonly string[] } | null
  /** `ficus ramp status`'s explanation. */
  readonly text: string
  /** The transitions, oldest first, with their times as ISO 8601. */
  readonly history: readonly (Omit<RampRecord['history'][number], 'at'> & { readonly at: string })[]
}

interface Held {
  readonly record: RampRecord
  readonly version: number
}

export class RampControl {
  private readonly now: () => number
  readonly id: string
  private store: SyncStore | null = null
  private timer: NodeJS.Timeout | null = null
  private ticking: Promise<void> | null = null
  private closed = false
  /** Records as last read (or written) here. */
  private records = new Map<string, Held>()
  /** Counters per ramped route. */
  private readonly windows = new Map<string, CountWindow>()
  /** Requests on new (the counter's value) per route at the last round, and those since the driver last counted them into its step. */
  private readonly lastNew = new Map<string, number>()
  private readonly newSince = new Map<string, number>()
  /** When this replica first saw each flagged route's revision (our own flag change takes a refresh or two to come back). */
  private readonly flagSeen = new Map<string, { revision: number; at: number }>()
  /** Flagged routes rolled back whose flag could not be set to 0 % yet. */
  private readonly flagRetry = new Set<string>()
  /** Trip-wires that fired while the store could not be written: rolled back here, their record to write. */
  private readonly pendingTrips = new Map<string, string>()
  /** The lease's holder, as last seen. */
  private driver: string | null = null
  /** When this replica's last complete round began (ms), or null before the first. */
  private roundAt: number | null = null
  private queue: Promise<unknown> = Promise.resolve()
  /** When this controller began (its process's counters were 0), and whether its first round ran. */
  private readonly startedAt: number
  private ticked = false
  /** A store that failed is said once until it answers again. */
  private storeFailing = false

  constructor (private readonly o: RampOptions) {
    this.now = o.now ?? Date.now
    this.startedAt = this.now()
    this.id = o.id ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    o.control.onChange((c) => {
      if (c.who === RAMP_WHO) return
      const held = this.records.get(c.route)
      if (held === undefined || (held.record.phase !== 'running' && held.record.phase !== 'holding')) return
      // A change of the shadow share alone leaves the ramp's share of new as it is.
      if (c.action === 'set' && c.after.new === held.record.percent) return
      const what = c.action === 'rollback' ? 'rolled it back' : `set new to ${c.after.new} %`
      this.act(c.route, { action: 'manual', by: c.who, reason: `${c.who} ${what} by hand: the ramp paused rather than overwrite it (ficus ramp resume ${c.route} to go on from step ${held.record.step + 1})` })
        .catch((err: unknown) => { o.log.error({ err, route: c.route }, 'could not pause the ramp after a change by hand') })
    })
  }

  private get plans (): Readonly<Record<string, RampPlan>> {
    return this.o.live.current.ramp.plans
  }

  /** The plan routes.yaml gives the route now, or undefined. */
  private planOf (route: string): RampPlan | undefined {
    const name = this.o.live.current.ramp.routes[route]
    return name === undefined ? undefined : this.plans[name]
  }

  /** Starts the ticks (nothing to do, and no store opened, while no route has a ramp and the store has none). */
  start (): void {
    const every = (): number => this.o.live.current.ramp.evaluateEveryMs
    const loop = (): void => {
      this.timer = setTimeout(() => {
        this.ticking = this.tick().catch((err: unknown) => { this.o.log.error({ err }, 'the ramp controller\'s tick failed') }).finally(() => {
          this.ticking = null
          if (!this.closed) loop()
        })
      }, every())
      this.timer.unref()
    }
    loop()
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    await this.ticking
    await this.queue.catch(() => {})
    if (this.store !== null) {
      // Hand the driving over at once rather than after the lease runs out.
      if (this.driver === this.id) await this.store.unlease(LEASE, this.id).catch(() => {})
      this.store = null
      await this.o.store.release()
    }
  }

  /** The store, opened on first need. */
  private opened (): SyncStore {
    this.store ??= this.o.store.acquire()
    return this.store
  }

  private get hasRamps (): boolean {
    return Object.keys(this.o.live.current.ramp.routes).length > 0 || this.records.size > 0
  }

  /**
   * One round: counters, records, the trip-wire (before following the records: a trip that
   * is waiting for the store must not be undone by the record it has not replaced yet),
   * following, the lease, and (driving) the gates.
   */
  async tick (): Promise<void> {
    const first = !this.ticked
    this.ticked = true
    if (!this.hasRamps) return
    const now = this.now()
    await this.sample(now, first)
    let store: SyncStore
    try {
      store = this.opened()
      await this.read(store)
      this.driver = await store.lease(LEASE, this.id, Math.max(3 * this.o.live.current.ramp.evaluateEveryMs, 2_000))
      if (this.storeFailing) this.o.log.info('the ramp controller reads its store again')
      this.storeFailing = false
    } catch (err) {
      if (!this.storeFailing) this.o.log.error({ err }, 'the ramp controller cannot read its store: ramps wait (each replica\'s trip-wire still acts on what it last read)')
      this.storeFailing = true
      await this.tripwires(now)
      return
    }
    // A ramp that became active since the last round (started on another replica): its counts start now, before this replica follows its share.
    await this.baseline(now, this.activeRoutes())
    await this.tripwires(now)
    await this.follow()
    for (const route of this.flagRetry) {
      const r = this.records.get(route)?.record
      if (r !== undefined) await this.retryFlag(route, r)
    }
    if (this.driver === this.id) {
      await this.drive(now)
    } else {
      // Another replica drives: its gauges say what the gates saw, not this one's stale ones.
      this.dropGates()
      this.gateSeries = new Map()
      this.newSince.clear()
    }
    this.gauges()
    this.roundAt = now
  }

  /**
   * Reads this replica's counters into the windows, and counts the requests on new since the
   * last round. Only routes whose ramp is under way are read (a step is judged on the window
   * since it began, and the trip-wire on its own): with none, the registry is not read at all,
   * so a plan nobody started costs nothing.
   */
  private async sample (now: number, first: boolean): Promise<void> {
    const routes = new Set(this.activeRoutes())
    // The first round, before the records are read: a ramp under way before a restart has its counts since the start.
    if (first) for (const route of Object.keys(this.o.live.current.ramp.routes)) routes.add(route)
    // A ramp that stopped: its window goes, so one started later does not count the time between.
    for (const route of [...this.windows.keys()]) {
      if (routes.has(route)) continue
      this.windows.delete(route)
      this.lastNew.delete(route)
      this.newSince.delete(route)
    }
    if (routes.size === 0) return
    const json = await this.o.source.getMetricsAsJSON()
    const { counts, gauges } = countsOf(json, routes)
    this.gaugesNow = gauges
    const keep = this.keepMs()
    for (const [route, c] of counts) {
      // Counters start at 0 with the process: at the first round, what came before counts too.
      windowOf(this.windows, route, keep, first ? this.startedAt : null).record(now, c)
      // The step's requests on new: the counters' own growth since the last round (a counter that went down was reset).
      const total = onNew(c)
      const before = this.lastNew.get(route) ?? (first ? 0 : total)
      this.lastNew.set(route, total)
      this.newSince.set(route, (this.newSince.get(route) ?? 0) + (total >= before ? total - before : total))
    }
  }

  private gaugesNow = new Map<string, { lag: number | null; dead: number | null }>()

  /** The longest window any gate or the trip-wire reads. */
  private keepMs (): number {
    return Math.max(TRIP_WINDOW_MS, ...Object.values(this.plans).map((p) => p.windowMs))
  }

  /** The routes whose ramp is under way, as this replica last read the records. */
  private activeRoutes (): string[] {
    return [...this.records].filter(([, held]) => ACTIVE.has(held.record.phase)).map(([route]) => route)
  }

  /**
   * The first snapshot of each of `routes` that has no window yet: taken before its share
   * applies here, so the trip-wire, the gates and the step's requests count every request on
   * new from then on. One read of the registry, only in the round (or the command) in which
   * a ramp becomes active.
   */
  private async baseline (now: number, routes: readonly string[]): Promise<void> {
    const fresh = new Set(routes.filter((route) => !this.windows.has(route)))
    if (fresh.size === 0) return
    const { counts } = countsOf(await this.o.source.getMetricsAsJSON(), fresh)
    for (const [route, c] of counts) {
      if (this.windows.has(route)) continue // a round made it meanwhile
      windowOf(this.windows, route, this.keepMs(), null).record(now, c)
      this.lastNew.set(route, onNew(c))
    }
  }

  /** The route's sample over the last `ms`. */
  private sampleFor (route: string, ms: number): RampSample {
    const w = this.windows.get(route)
    const inc = w?.increase(ms) ?? { coveredMs: 0, counts: new Map<string, number>() }
    return sampleOf(inc.coveredMs, inc.counts, this.gaugesNow.get(route))
  }

  /** Reads every record from the store. */
  private async read (store: SyncStore): Promise<void> {
    const next = new Map<string, Held>()
    for (const s of await store.ramps()) {
      const r = s.value as RampRecord
      if (r === null || typeof r !== 'object' || !RAMP_PHASES.includes(r.phase)) {
        this.o.log.error({ route: s.route }, 'a ramp record in the store is not one this Ficus can read: left alone')
        continue
      }
      next.set(s.route, { record: r, version: s.version })
    }
    this.records = next
  }

  /** When a person (not the ramp) last changed the route on this replica (ms), or null. */
  private personChanged (route: string): { at: number; by: string } | null {
    const change = this.o.control.currentOverrides[route]?.change
    if (change === undefined || change.by === RAMP_WHO) return null
    return { at: Date.parse(change.at), by: change.by }
  }

  /**
   * This replica's route as the records say: the share of new of a running, holding or
   * completed ramp, and 0 after a rollback or an abort; a paused ramp is left alone. Read from
   * the state of the route, not from memory, so that a restart or a new replica follows too. A
   * person's change made after the ramp last set the share stands (and pauses a running ramp).
   * On a flagged route the flag carries the share: a replica only applies a rollback (an
   * override that bypasses the flag) and clears it once the ramp runs again.
   */
  private async follow (): Promise<void> {
    const pauses: [string, Move][] = []
    // In the queue of moves: a move of this process applies its own change, never raced by this.
    await this.serial(async () => {
      for (const [route, { record: r }] of this.records) {
        if (r.phase === 'paused' || this.pendingTrips.has(route)) continue
        const rule = this.o.live.current.routes.find((x) => x.name === route)
        if (rule === undefined) continue
        const person = this.personChanged(route)
        if (person !== null && person.at > (r.percentAt ?? r.since)) {
          if (r.phase === 'running' || r.phase === 'holding') {
            pauses.push([route, { action: 'manual', by: person.by, reason: `${person.by} changed the route by hand after the ramp set it: the ramp paused rather than overwrite it (ficus ramp resume ${route} to go on from step ${r.step + 1})` }])
          }
          continue
        }
        const override = this.o.control.currentOverrides[route]
        const reason = `ramp ${r.phase.replace('_', ' ')}: step ${r.step + 1} (new ${r.percent} %), applied on this replica`
        try {
          if (rule.flag === null) {
            const effective = this.o.control.table.current.routes.find((x) => x.name === route)
            if (effective !== undefined && effective.new !== r.percent) await this.o.control.patch(route, { new: r.percent, reason }, RAMP_WHO)
          } else if (r.percent === 0) {
            if (override?.new !== 0) await this.o.control.rollback(route, reason, RAMP_WHO, null)
          } else if (override?.new !== undefined) {
            await this.o.control.patch(route, { new: null, reason }, RAMP_WHO)
          }
        } catch (err) {
          this.o.log.error({ err, route }, 'could not apply the ramp\'s share of new on this replica; trying again next round')
        }
      }
    })
    for (const [route, m] of pauses) {
      await this.act(route, m).catch((err: unknown) => {
        // Refused: the ramp is already paused (the change's own listener was first).
        if (!(err instanceof ControlError && err.code === 'FICUS_ERR_RAMP_STATE')) this.o.log.error({ err, route }, 'could not pause the ramp after a change by hand; trying again next round')
      })
    }
  }

  /**
   * Each replica's own trip-wire: new failing most of a few requests rolls the route back at
   * once. When the store cannot be written, this replica rolls back alone, once, and writes
   * the record as soon as the store answers.
   */
  private async tripwires (now: number): Promise<void> {
    for (const [route, { record: r }] of this.records) {
      const pending = this.pendingTrips.get(route)
      if (pending !== undefined) {
        await this.act(route, { action: 'trip', by: RAMP_WHO, reason: pending }).then(() => { this.pendingTrips.delete(route) }, (err: unknown) => {
          if (err instanceof ControlError && err.code === 'FICUS_ERR_RAMP_STATE') this.pendingTrips.delete(route) // the ramp ended meanwhile
        })
        continue
      }
      if (!ACTIVE.has(r.phase) || r.percent === 0) continue
      const tw = (this.plans[r.plan] ?? this.planOf(route))?.tripwire ?? DEFAULT_TRIPWIRE
      const s = this.sampleFor(route, Math.min(TRIP_WINDOW_MS, Math.max(0, now - r.stepStartedAt)))
      if (!tripwire(tw, s)) continue
      const reason = `trip-wire: new failed ${s.newFailed} of ${s.newTotal} requests in the last ${Math.round(s.coveredMs / 1000)} s on this replica (${this.id}), at least ${Math.round(tw.failureShare * 100)} % of at least ${tw.minRequests}`
      try {
        await this.act(route, { action: 'trip', by: RAMP_WHO, reason })
      } catch (err) {
        if (err instanceof ControlError && err.code !== 'FICUS_ERR_RAMP_STORE') {
          this.o.log.warn({ err, route }, 'the trip-wire fired on a ramp that another replica ended meanwhile')
          continue
        }
        // The store may be down: this replica rolls back all the same, and the record follows once the store answers.
        this.o.log.error({ err, route }, 'the trip-wire could not record the rollback in the store; rolling back on this replica')
        this.pendingTrips.set(route, reason)
        await this.o.control.rollback(route, reason.slice(0, 500), RAMP_WHO, 'ramp').catch((e: unknown) => { this.o.log.fatal({ err: e, route }, 'the trip-wire could not roll the route back') })
      }
    }
  }

  /** Gate series (route, gate) set by the last round of driving: those not set again are removed. */
  private gateSeries = new Map<string, { route: string; gate: string }>()

  /** Removes the gate gauges not in `keep` (all of them when this replica does not drive). */
  private dropGates (keep: ReadonlyMap<string, unknown> = new Map()): void {
    const m = this.o.metrics
    for (const [k, labels] of this.gateSeries) {
      if (keep.has(k)) continue
      m.rampGateObserved.remove(labels)
      m.rampGateThreshold.remove(labels)
      m.rampGateVerdict.remove(labels)
    }
  }

  /** The driver: each running ramp's gates, and what they decide; a flag a rollback could not set yet. */
  private async drive (now: number): Promise<void> {
    const m = this.o.metrics
    const set = new Map<string, { route: string; gate: string }>()
    for (const [route, held] of this.records) {
      const r = held.record
      if (r.phase !== 'running' && r.phase !== 'holding') continue
      const plan = this.planOf(route)
      if (plan === undefined || plan.name !== r.plan || plan.steps[r.step]?.new !== r.percent) {
        const why = plan === undefined ? `routes.yaml no longer gives ${route} a ramp plan` : plan.name !== r.plan ? `routes.yaml now gives ${route} the plan ${plan.name}, not ${r.plan}` : `plan ${plan.name} changed: its step ${r.step + 1} is no longer new ${r.percent} %`
        await this.act(route, { action: 'manual', by: RAMP_WHO, reason: `${why}: the ramp paused (ficus ramp resume ${route} goes on with the plan routes.yaml gives now, at the same step; ficus ramp abort ${route} ends it)` }).catch((err: unknown) => { this.o.log.error({ err, route }, 'could not pause a ramp whose plan changed') })
        continue
      }
      if (await this.flagChangedByHand(route, r)) continue
      const added = this.newSince.get(route) ?? 0
      this.newSince.set(route, 0)
      const counted = added > 0 ? { ...r, stepRequests: r.stepRequests + added } : r
      const ev = this.evaluation(route, counted, plan, now)
      for (const g of ev.gates) {
        set.set(`${route}\u0000${g.gate}`, { route, gate: g.gate })
        if (g.observed === null) m.rampGateObserved.remove({ route, gate: g.gate })
        else m.rampGateObserved.set({ route, gate: g.gate }, g.observed)
        m.rampGateThreshold.set({ route, gate: g.gate }, g.threshold)
        m.rampGateVerdict.set({ route, gate: g.gate }, g.verdict === 'pass' ? 1 : g.verdict === 'fail' ? -1 : 0)
      }
      try {
        if (ev.action === 'fail') {
          await this.act(route, { action: 'fail', by: RAMP_WHO, reason: `gates failed at step ${r.step + 1} (new ${r.percent} %): ${ev.missing.join('; ')}`, gates: ev.gates }, counted)
        } else if (ev.action === 'advance' && r.phase === 'running') {
          const last = r.step + 1 >= plan.steps.length
          await this.act(route, { action: 'advance', by: RAMP_WHO, reason: last ? `step ${r.step + 1} (new ${r.percent} %) held and every gate passed: the ramp is complete` : `step ${r.step + 1} (new ${r.percent} %) held and every gate passed`, gates: ev.gates }, counted)
        } else if (counted !== r) {
          await this.put(route, counted, held.version)
        }
      } catch (err) {
        // The requests counted are not lost: counted again next round.
        if (added > 0) this.newSince.set(route, (this.newSince.get(route) ?? 0) + added)
        this.o.log.error({ err, route }, 'the ramp could not act on its gates; trying again next round')
      }
    }
    this.dropGates(set)
    this.gateSeries = set
  }

  /** A flagged route whose rollout someone changed in Unleash: paused (true). */
  private async flagChangedByHand (route: string, r: RampRecord): Promise<boolean> {
    const rule = this.o.live.current.routes.find((x) => x.name === route)
    const flags = this.o.flags
    if (rule?.flag === null || rule === undefined || flags === undefined) return false
    // Our own change may take a refresh or two to reach this replica (a new driver starts the wait when it first sees the record).
    const settle = 2 * (this.o.live.current.unleash?.refreshIntervalMs ?? 0) + 2_000
    let seen = this.flagSeen.get(route)
    if (seen?.revision !== r.revision) this.flagSeen.set(route, seen = { revision: r.revision, at: this.now() })
    if (this.now() - seen.at < settle) return false
    const share = flags.state(rule.flag).share
    if (share === r.percent) return false
    await this.act(route, { action: 'manual', by: 'unleash', reason: `the flag ${rule.flag}'s rollout was changed in Unleash to ${share === null ? 'strategies that decide per user' : `${share} %`} (the ramp had set ${r.percent} %): the ramp paused rather than overwrite it (ficus ramp resume ${route} to set it back)` })
      .catch((err: unknown) => { this.o.log.error({ err, route }, 'could not pause the ramp after a change in Unleash') })
    return true
  }

  /** Sets a rolled back flagged route's flag to 0 % in Unleash, which failed when the ramp rolled it back. */
  private async retryFlag (route: string, r: RampRecord): Promise<void> {
    if (r.percent !== 0) {
      this.flagRetry.delete(route)
      return
    }
    try {
      await this.o.control.setFlagShare(route, 0, RAMP_WHO, `ramp ${r.phase.replace('_', ' ')}: the flag to 0 %, retried`)
      this.flagRetry.delete(route)
    } catch (err) {
      this.o.log.error({ err, route }, 'the flag of a rolled back route is still not at 0 % in Unleash; the other replicas still follow it; trying again next round')
    }
  }

  private evaluation (route: string, r: RampRecord, plan: RampPlan, now: number): Evaluation {
    const s = this.sampleFor(route, windowAt(plan, r, now))
    const perMinute = s.coveredMs >= 1000 ? (s.newTotal / s.coveredMs) * 60_000 : null
    const job = plan.gates.verify?.job
    return evaluate(plan, r, s, now, perMinute, job === undefined ? null : this.o.verify?.(job) ?? null)
  }

  /**
   * A transition of the route's ramp (a command, or the gates' decision), checked against the
   * record in the store, and made in the order that keeps users safe and the record true:
   * - a way down (a failure, the trip-wire, an abort: new 0 %): rolled back here first (at
   *   once, like ficus rollback), then the record, then the flag in Unleash (retried until it
   *   takes);
   * - a way up on a flagged route: the flag in Unleash first (refused, and nothing changed, if
   *   Unleash does not take it), then the record;
   * - otherwise: the record, then this replica's route (every other replica follows the record
   *   within a round).
   * A record another replica changed meanwhile is read again and the move judged again (three
   * times at most). One move at a time in this process.
   */
  async act (route: string, m: Move, counted?: RampRecord): Promise<RampView> {
    return this.serial(async () => this.move(route, m, counted))
  }

  /** Runs `fn` after the moves and follows already queued in this process. */
  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn)
    this.queue = run.catch(() => {})
    return run
  }

  private async move (route: string, m: Move, counted?: RampRecord): Promise<RampView> {
    const { control, log, metrics } = this.o
    const rule = control.known(route)
    for (let attempt = 1; ; attempt++) {
      let store: SyncStore
      try {
        store = this.opened()
        await this.read(store)
      } catch (err) {
        throw new ControlError('FICUS_ERR_RAMP_STORE', `the store could not be read (${(err as Error).message}); nothing was changed`)
      }
      const held = this.records.get(route)
      const base = attempt === 1 && counted !== undefined && held !== undefined && held.record.revision === counted.revision && held.record.phase === counted.phase ? counted : held?.record ?? null
      const plan = this.planFor(route, m, base)
      if (plan === undefined) {
        throw new ControlError('FICUS_ERR_RAMP_NO_PLAN', `route "${route}" has no ramp plan in routes.yaml (add ramp: <plan> to the route; plans: ${Object.keys(this.plans).join(', ') || 'none'})`)
      }
      const next = transition(plan, base, m, route, this.now())
      if ('refused' in next) throw new ControlError('FICUS_ERR_RAMP_STATE', next.refused)
      // Started or resumed here: its counts start before its share applies.
      if (ACTIVE.has(next.phase)) await this.baseline(this.now(), [route])
      const reason = `ramp ${m.action}${m.by === RAMP_WHO ? '' : ` by ${m.by}`}: ${m.reason ?? describe(plan, next)}`.slice(0, 500)
      const moves = next.revision !== (base?.revision ?? 0)
      if (moves && next.percent === 0) {
        await control.rollback(route, reason, RAMP_WHO, m.action === 'abort' && m.by !== RAMP_WHO ? 'manual' : 'ramp')
      } else if (moves && rule.flag !== null) {
        await control.setFlagShare(route, next.percent, RAMP_WHO, reason)
      }
      let version: number | null
      try {
        version = await store.putRamp(route, next, held?.version ?? 0)
      } catch (err) {
        throw new ControlError('FICUS_ERR_RAMP_STORE', `the store could not be written (${(err as Error).message})${moves && (next.percent === 0 || rule.flag !== null) ? '; the route WAS changed on this replica (or its flag), the ramp\'s record was not' : '; nothing was changed'}`)
      }
      if (version === null) {
        if (attempt < 3) continue
        throw new ControlError('FICUS_ERR_RAMP_STORE', `${route}'s ramp was changed by another replica at the same moment, three times; read it again (ficus ramp status ${route})`)
      }
      this.records.set(route, { record: next, version })
      if (moves) {
        this.newSince.delete(route)
        this.flagSeen.set(route, { revision: next.revision, at: this.now() })
        if (rule.flag !== null && next.percent === 0) {
          await control.setFlagShare(route, 0, RAMP_WHO, reason).catch((err: unknown) => {
            this.flagRetry.add(route)
            log.error({ err, route, flag: rule.flag }, 'the ramp rolled the route back on this replica and could not set its flag to 0 % in Unleash: the other replicas follow the flag until it takes (retried each round)')
          })
        } else if (rule.flag !== null) {
          // A rollback here (an override that bypasses the flag) ends with the ramp going up again.
          if (control.currentOverrides[route]?.new !== undefined) await control.patch(route, { new: null, reason }, RAMP_WHO)
        } else if (next.percent !== 0) {
          try {
            await control.patch(route, { new: next.percent, reason }, RAMP_WHO)
          } catch (err) {
            log.error({ err, route }, 'the ramp moved, and this replica could not apply it yet; it tries again each round')
            throw new ControlError('FICUS_ERR_STATE_WRITE', `the ramp moved (step ${next.step + 1}, new ${next.percent} %), and this replica could not apply it yet (${(err as Error).message}); it tries again each round, and the other replicas follow the ramp`)
          }
        }
      }
      await this.o.audit.append(this.entry(route, m, plan, base, next)).catch((err: unknown) => { log.error({ err, route }, 'could not write the audit log for a ramp transition (the transition was made; a change of traffic is audited on its own)') })
      metrics.rampTransitions.inc({ route, to: next.phase, reason: m.action })
      log[m.action === 'fail' || m.action === 'trip' ? 'warn' : 'info']({ route, action: m.action, by: m.by, phase: next.phase, step: next.step + 1, percent: next.percent, reason: m.reason }, 'ramp transition')
      this.gauges()
      return this.view(route)
    }
  }

  /**
   * The plan a move follows: for start and resume, the one routes.yaml gives the route now;
   * otherwise the ramp's own. A pause, an abort or the trip-wire needs no plan: a ramp whose
   * plan is gone can still be stopped.
   */
  private planFor (route: string, m: Move, base: RampRecord | null): RampPlan | undefined {
    const plan = m.action === 'start' || m.action === 'resume' ? this.planOf(route) : this.plans[base?.plan ?? ''] ?? this.planOf(route)
    if (plan !== undefined || base === null || !['pause', 'manual', 'abort', 'trip', 'fail'].includes(m.action)) return plan
    return { name: base.plan, steps: [], windowMs: 0, confidence: { advance: 0.95, rollback: 0.99 }, gates: { divergence: null, errors: null, latency: null, sync: null, verify: null }, tripwire: DEFAULT_TRIPWIRE, onFail: 'rollback' }
  }

  /** Writes a record if the store still has the version read; otherwise nothing is written. */
  private async put (route: string, r: RampRecord, version: number): Promise<void> {
    let v: number | null
    try {
      v = await this.opened().putRamp(route, r, version)
    } catch (err) {
      throw new ControlError('FICUS_ERR_RAMP_STORE', `the store could not be written (${(err as Error).message})`)
    }
    if (v === null) throw new ControlError('FICUS_ERR_RAMP_STORE', `${route}'s ramp was changed by another replica at the same moment; read it again (ficus ramp status ${route})`)
    this.records.set(route, { record: r, version: v })
  }

  private entry (route: string, m: Move, plan: RampPlan, before: RampRecord | null, after: RampRecord): AuditEntry {
    const where = (r: RampRecord | null): string => r === null ? 'no ramp' : `${r.phase.replace('_', ' ')}, step ${r.step + 1} of ${plan.steps.length}, new ${r.percent} %`
    return {
      time: new Date(this.now()).toISOString(),
      who: m.by,
      action: `ramp-${m.action}` as RampAuditAction,
      route,
      reason: m.reason,
      detail: `${where(before)} → ${where(after)}`,
      ...(m.gates === undefined ? {} : { gates: m.gates.map((g) => ({ gate: g.gate, verdict: g.verdict, observed: g.observed, threshold: g.threshold, n: g.n, why: g.why })) })
    }
  }

  private gauges (): void {
    const m = this.o.metrics
    const routes = new Set([...Object.keys(this.o.live.current.ramp.routes), ...this.records.keys()])
    m.rampStepPercent.reset()
    m.rampState.reset()
    for (const route of routes) {
      const r = this.records.get(route)?.record
      if (r !== undefined) m.rampStepPercent.set({ route }, r.percent)
      for (const state of [...RAMP_PHASES, 'none']) m.rampState.set({ route, state }, (r?.phase ?? 'none') === state ? 1 : 0)
    }
  }

  /** Every ramped route (configured, or with a record), as GET /admin/ramp shows it. */
  async list (): Promise<RampView[]> {
    await this.refresh()
    const routes = new Set([...Object.keys(this.o.live.current.ramp.routes), ...this.records.keys()])
    return [...routes].sort().map((r) => this.view(r))
  }

  /** One route's ramp. */
  async get (route: string): Promise<RampView> {
    this.o.control.known(route)
    await this.refresh()
    return this.view(route)
  }

  private async refresh (): Promise<void> {
    try {
      await this.read(this.opened())
    } catch (err) {
      throw new ControlError('FICUS_ERR_RAMP_STORE', `the store could not be read (${(err as Error).message})`)
    }
  }

  private view (route: string): RampView {
    const r = this.records.get(route)?.record ?? null
    const configured = this.o.live.current.ramp.routes[route] ?? null
    const plan = r === null ? this.planOf(route) : this.plans[r.plan]
    const now = this.now()
    const iso = (t: number): string => new Date(t).toISOString()
    let evaluation: RampView['evaluation'] = null
    let text: string
    if (r === null) {
      text = plan === undefined ? `${route}: no ramp plan` : `${route}: not ramping (plan ${plan.name}: ${plan.steps.map((s) => `${s.new} %`).join(' → ')}); ficus ramp start ${route}`
    } else if (plan === undefined) {
      text = `${route}: ${r.phase.replace('_', ' ')} at step ${r.step + 1} (new ${r.percent} %); its plan ${r.plan} is no longer in routes.yaml`
    } else if (ACTIVE.has(r.phase)) {
      const ev = this.evaluation(route, r, plan, now)
      evaluation = { action: ev.action, gates: ev.gates, missing: ev.missing }
      const lines = ev.text.split('\n')
      // Paused or holding: said right under the route's line, before the gates.
      if (r.phase !== 'running') lines.splice(1, 0, `  ${r.phase === 'paused' ? 'PAUSED' : 'HOLDING'} by ${r.by}${r.reason === null ? '' : `: ${r.reason}`}`)
      if (this.driver !== null && this.driver !== this.id) lines.push(`  (judged on this replica's traffic; ${this.driver} drives the ramps)`)
      text = lines.join('\n')
    } else {
      const last = r.history.at(-1)
      text = `${route}: ${r.phase === 'completed' ? 'completed: new answers 100 %' : r.phase === 'rolled_back' ? 'ROLLED BACK to new 0 %' : 'aborted: new 0 %'} at step ${r.step + 1} of ${plan.steps.length}, ${iso(r.since)} by ${r.by}${last?.reason === null || last === undefined ? '' : `: ${last.reason}`}`
    }
    return {
      route,
      plan: configured,
      phase: r?.phase ?? 'none',
      step: r === null ? null : r.step + 1,
      steps: plan?.steps.length ?? null,
      percent: r?.percent ?? null,
      stepStartedAt: r === null ? null : iso(r.stepStartedAt),
      heldSeconds: r === null ? null : Math.floor((now - r.stepStartedAt) / 1000),
      stepRequests: r?.stepRequests ?? null,
      since: r === null ? null : iso(r.since),
      by: r?.by ?? null,
      reason: r?.reason ?? null,
      driver: this.driver,
      lastRound: this.roundAt === null ? null : iso(this.roundAt),
      evaluation,
      text,
      history: (r?.history ?? []).map((h) => ({ ...h, at: iso(h.at) }))
    }
  }
}

function describe (plan: RampPlan, r: RampRecord): string {
  return `${r.phase.replace('_', ' ')} at step ${r.step + 1} of ${plan.steps.length} (new ${r.percent} %)`
}

/** A route's requests on new so far, by its counters: those new answered and those that fell back. */
function onNew (c: ReadonlyMap<string, number>): number {
  return (c.get('nA') ?? 0) + (c.get('fb') ?? 0)
}
