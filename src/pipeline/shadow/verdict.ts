import type { DivergenceStore } from '../../adapters/divergence-store.js'
import type { Logger } from '../../adapters/logger.js'
import type { Metrics } from '../../adapters/metrics-registry.js'
import type { CounterSeries } from '../../adapters/series-metrics.js'
import type { SyncStore } from '../../adapters/sync-store.js'
import { compare, idsToLookUp, type ComparedSide, type Comparison, type IdsWanted, type Translation } from '../../core/compare.js'
import { groupByEntity, IdPairs, type IdQuery } from '../../core/compare-ids.js'
import type { CompareRules } from '../../core/compare-rules.js'
import type { Difference } from '../../core/difference.js'
import { showDifference, showTarget } from '../../core/redact.js'
import type { Backend, RouteRule } from '../../core/types.js'
import type { Exchange } from '../exchange.js'
import { decoded, unencoded, type KeptAnswer } from './decode.js'

/** One side's answer as the copy kept it, and how long it took (ms; null: unknown). */
export interface TimedAnswer extends KeptAnswer {
  readonly ms: number | null
}

/** What the comparison of a dual route reads of the sync store: the id map (compare.ids). */
export type IdMap = Pick<SyncStore, 'lookupIds'>

/** The bounds a comparison keeps (those of its copy). */
export interface JudgeLimits {
  /** Bytes kept of a decoded body. */
  readonly maxBodyBytes: number
  /** The longest the id map may take to answer (compare.ids). */
  readonly timeoutMs: number
}

/**
 * Compare and record: the two answers of a shadowed request are compared with the route's
 * rules (core/compare.ts) and the verdict goes to ficus_comparisons_total and
 * ficus_divergences_total, the divergence store (samples, field counts) and, for a
 * divergence, a debug log line. A shadowed request that ends without a comparison is
 * recorded too (`unfinished`), with why.
 *
 * On a dual route with `compare.ids`, when the answers differ, legacy's ids at those paths
 * are first looked up in the id map (one store read per entity named, in parallel: LMDB
 * memory-mapped gets, or one PostgreSQL query each) and the pairs found go to the comparison.
 */
export class Verdicts {
  /** The id map failed its last read (logged once until it answers again). */
  private idMapFailing = false
  private readonly pairs = new Map<string, readonly [CounterSeries, CounterSeries]>()

  /** `idMap`: the sync store once it is open (null before, or without a dual route). */
  constructor (private readonly metrics: Metrics, private readonly store: DivergenceStore, private readonly log: Logger, private readonly idMap: () => IdMap | null = () => null) {}

  /**
   * A shadowed request that ends without a comparison. `dropped`: the bound that cut it
   * (concurrency, timeout, body_too_large), counted in ficus_shadow_dropped_total.
   */
  unfinished (route: string, outcome: 'skipped' | 'error', reason: string, dropped?: string): void {
    this.metrics.comparisons.inc({ route, outcome })
    if (dropped !== undefined) this.metrics.shadowDropped.inc({ route, reason: dropped })
    this.store.unfinished(route, outcome, reason)
  }

  /**
   * The copy to new ran past shadow.timeout after legacy answered the client in `legacyMs`:
   * no comparison, but a pair of times all the same (new took at least the timeout), so that
   * a new slower than the timeout counts as slower for the ramp's latency gate.
   */
  newTimedOut (rule: RouteRule, legacyMs: number, timeoutMs: number): void {
    if (timeoutMs - legacyMs > rule.slowerByMs) this.pairsOf(rule.name)[0].inc()
  }

  /** A route's ficus_shadow_pairs_total series (slower, not slower), looked up once and kept: no label key built per comparison. */
  private pairsOf (route: string): readonly [CounterSeries, CounterSeries] {
    let p = this.pairs.get(route)
    if (p === undefined) this.pairs.set(route, p = [this.metrics.shadowPairs.series({ route, new: 'slower' }), this.metrics.shadowPairs.series({ route, new: 'not_slower' })])
    return p
  }

  /**
   * Compares legacy's answer with new's and records the verdict; `done` is called once, after.
   * Synchronous when neither body is encoded (the usual case: no promise per side, which
   * cost ~5 µs of every shadowed request); decoding runs off the event loop. Never throws:
   * a failure here is an `error` comparison (recorded once), never the client's problem.
   */
  judge (ex: Exchange, epoch: number, answeredBy: Backend, fromLegacy: TimedAnswer, fromNew: TimedAnswer, limits: JudgeLimits, done: () => void): void {
    const a = unencoded(fromLegacy)
    const b = unencoded(fromNew)
    if (a !== null && b !== null) {
      this.compareNow(ex, epoch, answeredBy, fromLegacy, fromNew, a, b, limits, done)
      return
    }
    Promise.all([a ?? decoded(fromLegacy, limits.maxBodyBytes), b ?? decoded(fromNew, limits.maxBodyBytes)]).then(
      ([x, y]) => { this.compareNow(ex, epoch, answeredBy, fromLegacy, fromNew, x, y, limits, done) },
      (err: unknown) => { this.failed(ex, err, false, done) })
  }

  /** The route's current divergence epoch (a copy notes it when it begins). */
  epochOf (route: string): number {
    return this.store.epochOf(route).n
  }

  private compareNow (ex: Exchange, epoch: number, answeredBy: Backend, fromLegacy: TimedAnswer, fromNew: TimedAnswer, a: ComparedSide, b: ComparedSide, limits: JudgeLimits, done: () => void): void {
    const rules = ex.rule!.compare.rules
    let wanted: IdsWanted = { kind: 'none' }
    let map: IdMap | null = null
    try {
      // compare.ids: only a dual route has an id map, and only an open store can be asked.
      map = rules.ids.length > 0 && ex.rule!.sync?.mode === 'dual' ? this.idMap() : null
      if (map !== null) wanted = idsToLookUp(a, b, rules)
    } catch (err) {
      this.failed(ex, err, false, done)
      return
    }
    if (wanted.kind === 'lookup') {
      const { legacyDoc } = wanted
      this.translate(map as IdMap, wanted.ids, limits.timeoutMs).then(
        (pairs) => { this.conclude(ex, epoch, answeredBy, fromLegacy, fromNew, a, b, rules, { pairs, legacyDoc }, done) },
        (err: unknown) => { this.idMapFailed(ex, err, done) })
      return
    }
    if (wanted.kind === 'too_many') {
      // Half the ids translated would be a false divergence at every other one.
      this.conclude(ex, epoch, answeredBy, fromLegacy, fromNew, a, b, rules, 'too_many_ids', done)
      return
    }
    this.conclude(ex, epoch, answeredBy, fromLegacy, fromNew, a, b, rules, undefined, done)
  }

  /** Compares (with the id map's pairs, or skips for `skip`) and records; `done` is called once, after. */
  private conclude (ex: Exchange, epoch: number, answeredBy: Backend, fromLegacy: TimedAnswer, fromNew: TimedAnswer, a: ComparedSide, b: ComparedSide,
    rules: CompareRules, ids: Translation | 'too_many_ids' | undefined, done: () => void): void {
    let counted = false
    try {
      if (this.store.epochOf(ex.rule!.name).n !== epoch) {
        // The route's compare rules changed (or its counts were reset) while this copy was in
        // flight: it was begun under the old rules, so it is not counted in the new epoch.
        counted = true
        this.unfinished(ex.rule!.name, 'skipped', 'epoch_changed')
        done()
        return
      }
      if (ids === 'too_many_ids') {
        counted = true
        this.unfinished(ex.rule!.name, 'skipped', ids)
        done()
        return
      }
      const result = compare(a, b, rules, ids)
      counted = true
      this.record(ex, answeredBy, fromLegacy, fromNew, result)
    } catch (err) {
      this.failed(ex, err, counted, done)
      return
    }
    done()
  }

  /**
   * The pairs the id map knows among legacy's ids: one read per entity, all at once; rejects
   * when a read fails or the map has not answered within `timeoutMs`.
   */
  private async translate (map: IdMap, ids: readonly IdQuery[], timeoutMs: number): Promise<IdPairs> {
    const byEntity = groupByEntity(ids)
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`the id map did not answer within shadow.timeout (${timeoutMs} ms)`)) }, timeoutMs)
      timer.unref()
    })
    try {
      const answers = await Promise.race([Promise.all([...byEntity].map(async ([entity, list]) => [entity, await map.lookupIds(entity, 'legacy', list)] as const)), late])
      const pairs = new IdPairs()
      for (const [entity, found] of answers) for (const [id, pair] of found) pairs.add(entity, id, pair.other)
      if (this.idMapFailing) this.log.info('shadow: the id map answers again; compare.ids translates ids')
      this.idMapFailing = false
      return pairs
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The id map could not be read (or too late): an `error` comparison, never one without the
   * pairs, which would diverge at every id. Logged once until the map answers again.
   */
  private idMapFailed (ex: Exchange, err: unknown, done: () => void): void {
    try {
      if (!this.idMapFailing) this.log.warn({ err, reqId: ex.requestId, route: ex.rule?.name }, 'shadow: the id map could not be read; comparisons on routes with compare.ids are errors (idmap_unavailable) until it answers')
      this.idMapFailing = true
      this.unfinished(ex.rule?.name ?? 'default', 'error', 'idmap_unavailable')
    } catch {
      // The logger or the metrics failed as well: nothing left to do but go on.
    } finally {
      done()
    }
  }

  private record (ex: Exchange, answeredBy: Backend, fromLegacy: TimedAnswer, fromNew: TimedAnswer, result: Comparison): void {
    const { metrics, store, log } = this
    const rule = ex.rule!
    if (result.outcome === 'skipped') {
      // The comparator refused (a body past its bounds): counted like any other skip.
      this.unfinished(rule.name, 'skipped', result.reason, result.reason)
      return
    }
    metrics.comparisons.inc({ route: rule.name, outcome: result.outcome })
    const areas = result.outcome === 'diverged' ? new Set(result.differences.map((d) => d.area)) : new Set<Difference['area']>()
    for (const area of areas) metrics.divergences.inc({ route: rule.name, kind: area })
    // The same request's time on both sides: what the ramp's latency gate reads (maxShare).
    if (fromLegacy.ms !== null && fromNew.ms !== null) this.pairsOf(rule.name)[fromNew.ms - fromLegacy.ms > rule.slowerByMs ? 0 : 1].inc()
    const shadowed = {
      route: rule.name,
      method: ex.method,
      path: result.outcome === 'diverged' ? showTarget(ex.target, rule.compare.redactQuery, rule.sticky.flatMap((s) => (s.kind === 'query' ? [s.name] : []))) : '',
      requestId: ex.requestId,
      // Hashed by the store when a sample is read, not per divergence.
      stickyKey: result.outcome === 'diverged' ? ex.decision!.key : undefined,
      primary: answeredBy,
      status: { legacy: fromLegacy.status, new: fromNew.status },
      ms: { legacy: round(fromLegacy.ms), new: round(fromNew.ms) }
    }
    store.compared(shadowed, result, areas, rule.compare.redact)
    // The line is built only when it is written (its first difference redacted for it).
    if (result.outcome === 'diverged' && log.isLevelEnabled('debug')) {
      const first = result.differences[0] // shown as in samples: a keyed array's key may be redacted
      log.debug({ reqId: shadowed.requestId, route: shadowed.route, differences: result.differences.length, first: first === undefined ? undefined : showDifference(first, rule.compare.redact).path }, 'divergence')
    }
  }

  /**
   * An `error` comparison, logged and counted once (`counted`: the verdict was already
   * recorded, as when building the sample failed); `done` is called even if logging or
   * counting fails too. Never throws.
   */
  failed (ex: Exchange, err: unknown, counted: boolean, done: () => void): void {
    try {
      this.log.error({ err, reqId: ex.requestId, route: ex.rule?.name }, 'shadow comparison failed')
      if (!counted) this.unfinished(ex.rule?.name ?? 'default', 'error', 'exception')
    } catch {
      // The logger or the metrics failed as well: nothing left to do but go on.
    } finally {
      done()
    }
  }

}

function round(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 10) / 10
}
