import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AuditLog, SyncAction } from '../adapters/audit-log.js'
import type { Logger } from '../adapters/logger.js'
import type { ProcessStore } from '../adapters/open-store.js'
import type { Delivery, IdRef, StoreStats, SyncStore } from '../adapters/sync-store.js'
import type { LiveConfig } from '../config/live.js'
import type { Backend, RouteRule } from '../core/types.js'
import { auditFirst } from './admin-body.js'
import { ControlError } from './control-plane.js'

/**
 * The operator's side of dual writes (docs/sync.md "Operating dual writes"): what the outbox
 * holds and how far behind each side is, dead letters replayed or skipped, delivery paused,
 * resumed or waited for, and the id map read and set by hand. Every decision is audited (who,
 * why) before it is made, like a change of traffic.
 *
 * It reads the store through the process's handle, acquired on first use: in one process
 * the traffic side's (two lmdb-js handles in one process deadlock: open-store.ts), in a
 * cluster's primary one of its own (its workers, which deliver, have theirs; LMDB's lock file
 * serialises the processes, PostgreSQL is a pool each). It is the store as Ficus started
 * with it (a reload moves neither side's); which routes are dual is read from the config in
 * effect.
 */

export interface SyncControlOptions {
  readonly live: LiveConfig
  /** The process's handle on the store Ficus started with (traffic delivers from the same one). */
  readonly store: ProcessStore
  readonly audit: AuditLog
  readonly log: Logger
  /** Wall-clock ms (entries' times are wall clock). */
  readonly now?: () => number
}

/** One route's writes to one side. */
export interface SyncRouteStatus {
  readonly route: string
  readonly target: Backend
  readonly pending: number
  readonly deadLetters: number
  /** Seconds since the oldest pending write to `target` was recorded: how far behind `target` is on this route (0 when none waits). */
  readonly lagSeconds: number
  /** When that write was recorded (ISO 8601), or null. */
  readonly oldestPending: string | null
  /** Delivery of the route is paused (by its name or `*`): its writes are recorded and wait. */
  readonly paused: boolean
}

export interface SyncStatus {
  /** Where the outbox is (a PostgreSQL URL without its credentials). */
  readonly store: { readonly kind: 'embedded'; readonly path: string } | { readonly kind: 'postgres'; readonly database: string }
  /** Every dual route, to each side (and any other route the outbox still holds writes of). */
  readonly routes: SyncRouteStatus[]
  readonly pending: number
  readonly deadLetters: number
  /** Writes sent to their primary whose answer is not known yet (each blocks its record's later writes). */
  readonly intents: number
  /** The largest lag of any route. */
  readonly lagSeconds: number
  /** Paused routes (`*`: all). */
  readonly paused: string[]
  /** Pairs in the id map, per entity. */
  readonly ids: Record<string, number>
}

/** An outbox entry in a list. */
export interface EntrySummary {
  readonly seq: number
  readonly route: string
  /** The entity key its order is kept by (`note:1000`). */
  readonly key: string
  readonly target: Backend
  readonly method: string
  readonly path: string
  /** intent: its primary's answer is awaited; pending: to deliver; dead: a dead letter, waiting for an operator. */
  readonly state: Delivery['state']
  /** Why the last attempt failed, or why it is a dead letter. */
  readonly reason: string | null
  readonly attempts: number
  readonly createdAt: string
  readonly ageSeconds: number
  /** A pending entry's next attempt when it is held back (a retry's backoff), else null. */
  readonly nextAttempt: string | null
  readonly bodySize: number
}

/** One outbox entry, whole. */
export interface EntryView extends EntrySummary {
  /** As stored and sent (credentials are never stored: sync.auth decides what a delivery carries). */
  readonly headers: readonly (readonly [string, string])[]
  /** UTF-8 JSON as text, anything else in base64. */
  readonly body: null | { readonly size: number; readonly text: string } | { readonly size: number; readonly base64: string }
  /** The ids it carries as the side that took it knows them (translated through the id map at delivery), and where a create's id is learned from. */
  readonly ids: readonly IdRef[]
  readonly source: Backend | null
  readonly learn: string | null
}

export interface IdPairView {
  readonly entity: string
  readonly legacy: string
  readonly new: string
  /** The side that created the record. */
  readonly origin: Backend
}

export interface DrainResult {
  /** Nothing of the route (or of any route) is left to deliver. */
  readonly drained: boolean
  readonly route: string | null
  readonly waitedSeconds: number
  /** The wait ended because delivery of writes still pending is paused. */
  readonly paused: boolean
  readonly pending: number
  /** Dead letters are not waited for (they wait for an operator): how many there are. */
  readonly deadLetters: number
  /** Writes whose primary has not answered yet (all routes). */
  readonly intents: number
  readonly routes: SyncRouteStatus[]
  /** The oldest dead letters of the route (or all), at most DRAIN_DEAD_SHOWN. */
  readonly deadLetterEntries: EntrySummary[]
}

/** Between two reads of the outbox while draining (the deliverer looks every 100 ms). */
const DRAIN_POLL_MS = 100
const DRAIN_DEAD_SHOWN = 10
const SIDES: readonly Backend[] = ['legacy', 'new']

export class SyncControl {
  private handle: SyncStore | null = null
  private readonly closing = new AbortController()
  private readonly now: () => number

  constructor (private readonly o: SyncControlOptions) {
    this.now = o.now ?? Date.now
  }

  /** GET /admin/sync. */
  async status (): Promise<SyncStatus> {
    const store = this.store()
    const [st, paused, ids] = await this.read(async () => Promise.all([store.stats(), store.paused(), store.idCounts()]))
    const routes = this.rows(st, paused)
    return {
      store: this.where(),
      routes,
      pending: st.pending,
      deadLetters: st.dead,
      intents: st.intents,
      lagSeconds: Math.max(0, ...routes.map((r) => r.lagSeconds)),
      paused,
      ids
    }
  }

  /** GET /admin/sync/dead-letters: oldest first. */
  async deadLetters (limit: number): Promise<EntrySummary[]> {
    const store = this.store()
    const now = this.now()
    return (await this.read(async () => store.deadLetters(limit))).map((d) => summary(d, now))
  }

  /** GET /admin/sync/entries/:seq. */
  async entry (seq: number): Promise<EntryView> {
    return view(await this.existing(this.store(), seq), this.now())
  }

  /** POST /admin/sync/replay: a dead letter is due again at once (its key's later writes follow it). Audited. */
  async replay (seq: number, who: string, reason: string | null): Promise<EntryView> {
    const store = this.store()
    const d = await this.existing(store, seq)
    if (d.state !== 'dead') throw new ControlError('FICUS_ERR_SYNC_ENTRY_STATE', `entry ${seq} is ${stateText(d)}, not a dead letter: only a dead letter is replayed`)
    await this.audited('sync-replay', d.route, `replay ${describe(d)} (a dead letter: ${d.reason ?? 'no reason'})`, who, reason)
    if (!await this.change(async () => store.replay(seq))) throw new ControlError('FICUS_ERR_SYNC_ENTRY_STATE', `entry ${seq} changed meanwhile (another operator replayed or skipped it)`)
    this.o.log.info({ seq, route: d.route, key: d.key, who, reason }, 'sync: dead letter replayed')
    return this.entry(seq)
  }

  /**
   * POST /admin/sync/skip: an entry is dropped, never delivered; its key's later writes go on.
   * A dead letter or a pending write (one being delivered at this moment may still arrive);
   * not an intent (its primary has not answered: there is nothing to skip yet). Audited.
   */
  async skip (seq: number, who: string, reason: string | null): Promise<EntrySummary> {
    const store = this.store()
    const d = await this.existing(store, seq)
    if (d.state === 'intent') throw new ControlError('FICUS_ERR_SYNC_ENTRY_STATE', `entry ${seq} is ${stateText(d)}: wait for its answer (at most the request's timeout), then skip it if it must not be delivered`)
    await this.audited('sync-skip', d.route, `skip ${describe(d)} (${d.state === 'dead' ? `a dead letter: ${d.reason ?? 'no reason'}` : 'pending'}): never delivered`, who, reason)
    if (!await this.change(async () => store.skip(seq))) throw new ControlError('FICUS_ERR_SYNC_NO_ENTRY', `entry ${seq} was delivered or skipped meanwhile`)
    this.o.log.warn({ seq, route: d.route, key: d.key, target: d.target, who, reason }, `sync: write ${seq} skipped: ${d.target} will not get it`)
    return summary(d, this.now())
  }

  /**
   * POST /admin/sync/pause and /resume: delivery of one route (or all: `*`) waits, for every
   * process and replica on the store; its writes are still recorded. Resuming all clears every
   * pause. Audited. Returns the paused routes after the change.
   */
  async setPaused (route: string | undefined, paused: boolean, who: string, reason: string | null): Promise<string[]> {
    const store = this.store()
    const before = await this.read(async () => store.paused())
    // A route no longer dual may still be resumed (a reload took its sync: away while it was paused).
    if (route !== undefined && (paused || !before.includes(route))) this.dualRoute(route)
    const names = route !== undefined ? [route] : paused ? ['*'] : ['*', ...before.filter((r) => r !== '*')]
    const detail = paused
      ? `delivery of ${route === undefined ? 'every route (*)' : route} paused: its writes are recorded and wait`
      : `delivery of ${route === undefined ? `every route${before.length === 0 ? '' : ` (was paused: ${before.join(', ')})`}` : route} resumed`
    await this.audited(paused ? 'sync-pause' : 'sync-resume', route ?? null, detail, who, reason)
    await this.change(async () => { for (const n of names) await store.setPaused(n, paused) })
    this.o.log.info({ route: route ?? '*', who, reason }, `sync: ${detail}`)
    return this.read(async () => store.paused())
  }

  /**
   * POST /admin/sync/drain: waits until nothing of the route (or of any route) is pending, at
   * most `timeoutMs`. Dead letters are not waited for (they wait for an operator: reported),
   * nor writes whose route is paused (answered at once).
   */
  async drain (route: string | undefined, timeoutMs: number, signal: AbortSignal): Promise<DrainResult> {
    const store = this.store()
    if (route !== undefined) this.dualRoute(route)
    const started = performance.now()
    const stop = AbortSignal.any([signal, this.closing.signal])
    let said = false
    for (;;) {
      const [st, paused] = await this.read(async () => Promise.all([store.stats(), store.paused()]))
      const rows = this.rows(st, paused).filter((r) => route === undefined || r.route === route)
      const pending = rows.reduce((n, r) => n + r.pending, 0)
      const held = rows.some((r) => r.pending > 0 && r.paused)
      const waited = performance.now() - started
      if (pending === 0 || held || waited >= timeoutMs || stop.aborted) {
        const dead = rows.reduce((n, r) => n + r.deadLetters, 0)
        const deadLetterEntries = dead === 0
          ? []
          : (await this.read(async () => store.deadLetters(route === undefined ? DRAIN_DEAD_SHOWN : 1000)))
              .filter((d) => route === undefined || d.route === route).slice(0, DRAIN_DEAD_SHOWN).map((d) => summary(d, this.now()))
        return { drained: pending === 0, route: route ?? null, waitedSeconds: round(waited / 1000), paused: held, pending, deadLetters: dead, intents: st.intents, routes: rows, deadLetterEntries }
      }
      if (!said) this.o.log.debug({ route: route ?? '*', pending, timeoutMs }, 'sync: a drain waits for writes to be delivered')
      said = true
      await sleep(Math.min(DRAIN_POLL_MS, timeoutMs - waited), undefined, { signal: stop }).catch(() => undefined)
    }
  }

  /** GET /admin/ids/:entity/:side/:id (also before any route is dual: a backfill's pairs are set first). */
  async lookup (entity: string, side: Backend, id: string): Promise<IdPairView> {
    const store = this.store(false)
    const pair = await this.read(async () => store.lookupId(entity, side, id))
    if (pair === null) throw new ControlError('FICUS_ERR_ID_UNKNOWN', `the id map has no ${side} id ${JSON.stringify(id)} for ${entity}`)
    return side === 'legacy' ? { entity, legacy: id, new: pair.other, origin: pair.origin } : { entity, legacy: pair.other, new: id, origin: pair.origin }
  }

  /**
   * PUT /admin/ids: records that `legacy` and `next` are one record of `entity` (created on
   * `origin`). A pair never changes once set (deliveries were translated with it): one that
   * contradicts the map is refused, naming the pair there. Audited; setting a known pair again
   * changes nothing (`created: false`). Also before any route is dual, and for an entity no
   * dual route names yet (a backfill records its pairs before its routes go dual): the answer
   * then warns, in case the name is a typo.
   */
  async setIds (entity: string, legacy: string, next: string, origin: Backend, who: string, reason: string | null): Promise<{ pair: IdPairView; created: boolean; warning?: string }> {
    const store = this.store(false)
    const entities = this.entities()
    const warning = entities.includes(entity)
      ? undefined
      : `no dual route writes or rewrites "${entity}" yet (${entities.length === 0 ? 'no route is dual' : `entities: ${entities.join(', ')}`}): check the name if it should`
    const [toNew, toLegacy] = await this.read(async () => Promise.all([store.lookupId(entity, 'legacy', legacy), store.lookupId(entity, 'new', next)]))
    if (toNew?.other === next && toLegacy?.other === legacy) {
      return { pair: { entity, legacy, new: next, origin: toNew.origin }, created: false, ...(warning === undefined ? {} : { warning }) }
    }
    const clash = toNew !== null
      ? `legacy ${legacy} is already paired with new ${toNew.other} (created on ${toNew.origin})`
      : toLegacy !== null ? `new ${next} is already paired with legacy ${toLegacy.other} (created on ${toLegacy.origin})` : null
    if (clash !== null) throw new ControlError('FICUS_ERR_ID_CONFLICT', `${entity}: ${clash}; a pair never changes once set`)
    const text = `${entity}: legacy ${legacy} ↔ new ${next} (created on ${origin})`
    await this.audited('ids-set', null, `id pair set: ${text}`, who, reason)
    if (!await this.change(async () => store.mapIds(entity, legacy, next, origin))) {
      throw new ControlError('FICUS_ERR_ID_CONFLICT', `${entity}: a pair for legacy ${legacy} or new ${next} was learned meanwhile; read it with ficus ids get`)
    }
    this.o.log.info({ entity, legacy, new: next, origin, who, reason }, 'sync: id pair set by hand')
    return { pair: { entity, legacy, new: next, origin }, created: true, ...(warning === undefined ? {} : { warning }) }
  }

  /** Ends the waits in progress (drains answer with what is left). */
  abortWaits (): void {
    this.closing.abort()
  }

  async close (): Promise<void> {
    this.abortWaits()
    if (this.handle === null) return
    this.handle = null
    await this.o.store.release()
  }

  /** Dual routes of the config in effect. */
  private dualRoutes (): RouteRule[] {
    return this.o.live.current.routes.filter((r) => r.sync?.mode === 'dual')
  }

  /**
   * The store, opened on first use. The outbox calls need a dual route (FICUS_ERR_SYNC_OFF
   * otherwise: there is nothing to read, and an embedded store would be created for nothing);
   * the id map's do not (`requireDual` false).
   */
  private store (requireDual = true): SyncStore {
    if (requireDual && this.dualRoutes().length === 0) {
      throw new ControlError('FICUS_ERR_SYNC_OFF', 'no route has sync.mode: dual in routes.yaml, so no write is recorded for the other side (docs/sync.md)')
    }
    if (this.handle === null) {
      try {
        this.handle = this.o.store.acquire()
      } catch (err) {
        this.o.log.error({ err }, 'sync: the admin API could not open the sync store')
        throw storeError(err)
      }
    }
    return this.handle
  }

  /** `route` is dual; ControlError naming the dual routes otherwise. */
  private dualRoute (route: string): void {
    const dual = this.dualRoutes().map((r) => r.name)
    if (dual.includes(route)) return
    const known = this.o.live.current.routes.some((r) => r.name === route) || route === this.o.live.current.defaultRoute.name
    if (!known) throw new ControlError('FICUS_ERR_UNKNOWN_ROUTE', `no route named "${route}" (dual routes: ${dual.join(', ')})`)
    throw new ControlError('FICUS_ERR_SYNC_OFF', `route "${route}" does not have sync.mode: dual (dual routes: ${dual.join(', ')})`)
  }

  /** Entities the dual routes name (their records, and the ids they rewrite). */
  private entities (): string[] {
    const out = new Set<string>()
    for (const r of this.dualRoutes()) {
      const s = r.sync!
      out.add(s.entity)
      for (const p of s.pathIds) out.add(p.entity)
      for (const b of s.bodyIds) out.add(b.entity)
    }
    return [...out].sort()
  }

  /** Each dual route to each side, then any other route the outbox holds writes of. */
  private rows (st: StoreStats, paused: readonly string[]): SyncRouteStatus[] {
    const now = this.now()
    const all = paused.includes('*')
    const byKey = new Map(st.routes.map((r) => [`${r.route}\t${r.target}`, r]))
    const dual = new Set(this.dualRoutes().map((r) => r.name))
    const out: SyncRouteStatus[] = []
    for (const route of new Set([...dual, ...st.routes.map((r) => r.route)])) {
      for (const target of SIDES) {
        const s = byKey.get(`${route}\t${target}`)
        if (s === undefined && !dual.has(route)) continue
        const oldest = s?.oldestPending ?? null
        out.push({
          route,
          target,
          pending: s?.pending ?? 0,
          deadLetters: s?.dead ?? 0,
          lagSeconds: oldest === null ? 0 : round(Math.max(0, now - oldest) / 1000),
          oldestPending: oldest === null ? null : new Date(oldest).toISOString(),
          paused: all || paused.includes(route)
        })
      }
    }
    return out
  }

  private where (): SyncStatus['store'] {
    const s = this.o.store.config
    if (s.kind === 'embedded') return { kind: 'embedded', path: s.path }
    try {
      const u = new URL(s.url)
      return { kind: 'postgres', database: `${u.hostname}${u.port === '' ? '' : `:${u.port}`}${u.pathname}` }
    } catch {
      return { kind: 'postgres', database: '(unparsable URL)' }
    }
  }

  private async existing (store: SyncStore, seq: number): Promise<Delivery> {
    const d = await this.read(async () => store.get(seq))
    if (d === null) throw new ControlError('FICUS_ERR_SYNC_NO_ENTRY', `no outbox entry ${seq}: it was delivered or skipped, or never existed (ficus sync dead-letters lists the dead letters)`)
    return d
  }

  /** Audits a decision before it is made: an audit log that cannot be written refuses it. */
  private async audited (action: SyncAction, route: string | null, detail: string, who: string, reason: string | null): Promise<void> {
    await auditFirst(this.o.audit, this.o.log, { time: new Date(this.now()).toISOString(), who, action, route, reason, detail }, 'the sync change')
  }

  /** A read of the store; its failure is FICUS_ERR_SYNC_STORE. */
  private async read<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (err) {
      if (err instanceof ControlError) throw err
      this.o.log.error({ err }, 'sync: the store failed an admin read')
      throw storeError(err)
    }
  }

  /** A change of the store, once audited; its failure is FICUS_ERR_SYNC_STORE, saying it may not have been made. */
  private async change<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (err) {
      this.o.log.error({ err }, 'sync: the store failed an audited admin change')
      throw storeError(err, 'the change is audited but may not have been made: read it back')
    }
  }
}

function storeError(err: unknown, then?: string): ControlError {
  const e = err as { code?: unknown; message?: unknown }
  const what = typeof e.code === 'string' ? e.code : typeof e.message === 'string' ? e.message : String(err)
  return new ControlError('FICUS_ERR_SYNC_STORE', `${what}${then === undefined ? '' : `; ${then}`}`)
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000
}

/** `entry 7 (PATCH /api/notes/1000 to new, key note:1000)`. */
function describe(d: Delivery): string {
  return `entry ${d.seq} (${d.method} ${d.path} to ${d.target}, route ${d.route}, key ${d.key})`
}

function stateText(d: Delivery): string {
  if (d.state === 'dead') return `a dead letter (${d.reason ?? 'no reason'})`
  if (d.state === 'intent') return 'an intent (a write its primary has not answered yet)'
  return `pending (to be delivered${d.reason === null ? '' : `; its last attempt: ${d.reason}`})`
}

function summary(d: Delivery, now: number): EntrySummary {
  return {
    seq: d.seq,
    route: d.route,
    key: d.key,
    target: d.target,
    method: d.method,
    path: d.path,
    state: d.state,
    reason: d.reason,
    attempts: d.attempts,
    createdAt: new Date(d.createdAt).toISOString(),
    ageSeconds: round(Math.max(0, now - d.createdAt) / 1000),
    nextAttempt: d.state === 'pending' && d.notBefore > now ? new Date(d.notBefore).toISOString() : null,
    bodySize: d.body?.length ?? 0
  }
}

function view(d: Delivery, now: number): EntryView {
  return {
    ...summary(d, now),
    headers: d.headers,
    body: d.body === null ? null : bodyView(d.body),
    ids: d.plan?.ids ?? [],
    source: d.plan?.source ?? null,
    learn: d.plan?.learn?.from ?? null
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

function bodyView(b: Buffer): NonNullable<EntryView['body']> {
  try {
    const text = UTF8.decode(b)
    JSON.parse(text)
    return { size: b.length, text }
  } catch {
    return { size: b.length, base64: b.toString('base64') }
  }
}
