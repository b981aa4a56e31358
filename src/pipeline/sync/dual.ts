import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from '../../adapters/logger.js'
import { seal } from '../../adapters/sealed.js'
import type { Metrics } from '../../adapters/metrics-registry.js'
import type { IdRef, NewWrite, SyncStore, WritePlan } from '../../adapters/sync-store.js'
import type { SyncConfig } from '../../config/schema.js'
import { SAFE_METHODS } from '../../core/decide.js'
import {
  canonicalId, entityKey, fieldOf, idOn, idText, learnedId, pathSegments, replaceSegments, resolveId, segmentId,
  type ResolvedId, type SyncRule
} from '../../core/sync.js'
import type { Backend } from '../../core/types.js'
import { ficusError, reasonOf, type FicusError } from '../../errors.js'
import type { Exchange, ResponseHold, UpstreamHeaders } from '../exchange.js'
import type { BodyGuard } from '../forward/body-guard.js'
import type { Forwarder } from '../forward/forwarder.js'
import { sendError } from '../respond.js'
import type { StoreWatch } from './watch.js'

/**
 * Stage 2b, sync (DESIGN.md "Data-safe writes"), for routes with `sync: { mode: dual }` only:
 * - every request: the ids in its path are looked up in the id map, so each side gets its
 *   own (`/orders/26` to legacy is `/orders/909e` to new); an id that names one record on
 *   each side is refused (409);
 * - a write: admitted only when the outbox can take it (503 before anything is sent); its
 *   body is read whole (up to sync.maxBody); an intent is recorded before it is forwarded (a
 *   crash in between leaves a dead letter, `outcome_unknown`, never a silent loss); its 2xx
 *   answer is held until the write, with the ids it carries and a created id, is recorded for
 *   the other side (`ack: durable`: on disk first).
 * Cost on the hot path: nothing on a route without sync; on a dual route, per path id two id
 * map reads (LMDB: memory-mapped, no system call; not cached: a pair never changes, but an id
 * known on one side may become another record's id on the other, and then it is ambiguous),
 * and the path rebuilt for a side whose id differs; per write two store commits (the
 * intent and its settlement: group-committed with concurrent writes) and the answer's bytes
 * held until the second one (bench/sync.ts measures it).
 */

/** How often a fence asks the store whether the record's writes arrived (ms). */
const FENCE_POLL_MS = 10

/**
 * Headers a stored write never keeps as they are: credentials (kept only sealed, when
 * sync.auth passes the client's own through: adapters/sealed.ts), framing, and Ficus's own.
 */
const CREDENTIALS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key', 'x-auth-token', 'x-access-token'])
const NOT_STORED = new Set(['content-length', 'transfer-encoding', 'expect', 'x-ficus-sync', 'idempotency-key', 'host'])

export interface DualOptions {
  readonly store: SyncStore
  readonly watch: StoreWatch
  readonly sync: SyncConfig
  /** The longest a write can take to be answered (its request, then the slowest upstream): an intent not settled by then means Ficus died. */
  readonly intentTtlMs: number
  readonly metrics: Metrics
  readonly log: Logger
  /** Wall-clock ms (stored times outlive the process). */
  readonly wallNow: () => number
  /** A write was recorded: deliver it soon. */
  readonly recorded: () => void
  /** sync.auth passthrough: the client's credential headers to keep, and the key they are sealed with; null: none is kept. */
  readonly passthrough: { readonly headers: ReadonlySet<string>; readonly key: Buffer } | null
}

const other = (side: Backend): Backend => (side === 'legacy' ? 'new' : 'legacy')

/** The resolved id of the route's key (`key: path.<param>`): compileSync puts it first among the path ids; undefined without one. */
const keyId = (rule: SyncRule, ids: readonly ResolvedId[]): ResolvedId | undefined => (rule.key === null ? undefined : ids[0])

export class Dual {
  constructor (private readonly o: DualOptions) {}

  /**
   * Serves a request on a dual route: translates its ids, then forwards it (a read) or
   * records and forwards it (a write). `start` forwards the request (and shadows it when the
   * decision says so) once it may go.
   */
  serve (ex: Exchange, forward: Forwarder, start: (body: BodyGuard | null) => void, internal: (err: unknown) => void): void {
    const rule = ex.rule!.sync as SyncRule
    const go = (ids: ResolvedId[] | null): void => {
      if (ids === null) return
      const read = SAFE_METHODS.has(ex.method)
      const next = (found: ResolvedId[]): void => {
        if (read) forward.receive(ex, start)
        else this.write(ex, rule, found, forward, start)
      }
      // No fence to ask about: on at once, in this turn (the usual case of a read).
      if (!this.fenced(ex, rule, ids)) {
        next(ids)
        return
      }
      void this.fence(ex, rule, ids, read).then(async (fenced) => {
        if (fenced === 'refused') return
        // The writes it waited for may have taught the map this record's id on this side (its create).
        const found = fenced === 'waited' ? this.apply(ex, rule, await this.lookup(ex, rule)) : ids
        if (found !== null) next(found)
      }).catch(internal)
    }
    try {
      const looked = this.lookup(ex, rule)
      if (Array.isArray(looked)) go(this.apply(ex, rule, looked))
      else looked.then((r) => { go(this.apply(ex, rule, r)) }).catch(internal)
    } catch (err) {
      internal(err)
    }
  }

  /** Whether this request may have to wait at a fence: it names a record, and its side may lack some of that record's writes. */
  private fenced (ex: Exchange, rule: SyncRule, ids: readonly ResolvedId[]): boolean {
    return keyId(rule, ids) !== undefined && this.o.watch.mayBeBehind(ex.decision!.primary)
  }

  /**
   * A fence (DESIGN.md "Data-safe writes"): when the record's earlier writes, taken by the
   * other side, have not reached the side that answers this request (a percentage change or
   * a rollback moved the record), wait for them up to sync.fenceTimeout. A read is then
   * served anyway (counted); a write is refused (503), since it would land before them and
   * be overwritten when they arrive. Free when the store's last read shows nothing pending
   * for that side. Says whether the request goes on at once, goes on after waiting, or was refused.
   */
  private async fence (ex: Exchange, rule: SyncRule, ids: readonly ResolvedId[], read: boolean): Promise<'go' | 'waited' | 'refused'> {
    const id = keyId(rule, ids)
    const side = ex.decision!.primary
    if (id === undefined) return 'go'
    const key = entityKey(rule.entity, canonicalId(id))
    const route = ex.rule!.name
    const deadline = this.o.wallNow() + this.o.sync.fenceTimeoutMs
    let waited = false
    for (;;) {
      let w: { pending: number; dead: number }
      try {
        w = await this.o.store.waitingFor(key, side)
      } catch (err) {
        this.o.watch.failed(err)
        if (read) return 'go'
        this.refuse(ex, 'FICUS_ERR_SYNC_UNAVAILABLE')
        return 'refused'
      }
      if (w.pending === 0 && w.dead === 0) {
        if (!waited) return 'go'
        this.o.metrics.syncFences.inc({ route, outcome: 'waited' })
        return 'waited'
      }
      const outcome = w.pending === 0 ? 'dead_letter' : this.o.wallNow() >= deadline ? 'timeout' : null
      if (outcome !== null) {
        this.o.metrics.syncFences.inc({ route, outcome })
        if (read) return waited ? 'waited' : 'go'
        this.refuse(ex, 'FICUS_ERR_SYNC_BEHIND', outcome === 'timeout' ? { 'retry-after': '1' } : undefined)
        return 'refused'
      }
      if (!waited) {
        this.o.recorded() // wake the deliverer: someone waits for this record
        this.o.log.debug({ reqId: ex.requestId, route, key, side, pending: w.pending }, 'sync: fence: waiting for the record\'s writes to reach the side that answers it')
      }
      waited = true
      await delay(FENCE_POLL_MS)
      if (ex.res.destroyed) return 'refused' // the client left while it waited
    }
  }

  /**
   * What the id map knows of each path id the route names: at once when the store reads
   * synchronously (LMDB: memory-mapped), else a promise. A store that cannot be read gives
   * every id as unmapped (reads go as the client sent them; writes are refused by admission).
   */
  private lookup (ex: Exchange, rule: SyncRule): ResolvedId[] | Promise<ResolvedId[]> {
    const { store } = this.o
    const segs = pathSegments(ex.target)
    const xs: { entity: string; id: string }[] = []
    for (const p of rule.pathIds) {
      const raw = segs[p.segment]
      if (raw === undefined) return []
      xs.push({ entity: p.entity, id: segmentId(raw) })
    }
    const unmapped = (err: unknown): ResolvedId[] => {
      this.o.watch.failed(err)
      return xs.map(({ id }) => ({ kind: 'unmapped' as const, id }))
    }
    if (store.lookupIdSync !== undefined) {
      try {
        return xs.map(({ entity, id }) => resolveId(id, store.lookupIdSync!(entity, 'legacy', id), store.lookupIdSync!(entity, 'new', id)))
      } catch (err) {
        return unmapped(err)
      }
    }
    return Promise.all(xs.map(async ({ entity, id }) => {
      const [asLegacy, asNew] = await Promise.all([store.lookupId(entity, 'legacy', id), store.lookupId(entity, 'new', id)])
      return resolveId(id, asLegacy, asNew)
    })).catch(unmapped)
  }

  /**
   * Sets the exchange's target per side from the ids resolved. Returns them, or null when
   * the request was refused (answered here: an id that names a record on each side).
   */
  private apply (ex: Exchange, rule: SyncRule, resolved: ResolvedId[]): ResolvedId[] | null {
    if (resolved.length === 0) return resolved
    if (resolved.some((r) => r.kind === 'ambiguous')) {
      this.o.metrics.idmapMisses.inc({ route: ex.rule!.name, where: 'ambiguous' })
      const err = ficusError('FICUS_ERR_ID_AMBIGUOUS')
      ex.fail(err)
      sendError(ex.res, err, ex.requestId, !ex.req.complete)
      return null
    }
    const segs = pathSegments(ex.target)
    const targetFor = (side: Backend): string | null => {
      let replace: Map<number, string> | null = null
      for (let i = 0; i < resolved.length; i++) {
        const r = resolved[i] as ResolvedId
        // An id the map does not know goes as it is to the side it came from; to the other only if ids are shared.
        if (r.kind === 'unmapped' && side !== ex.decision!.primary && this.o.sync.unmappedIds === 'wait') return null
        const { segment } = rule.pathIds[i] as { segment: number }
        const id = idOn(r, side)
        // The path is rebuilt only when an id differs from the client's on this side.
        if (id !== segmentId(segs[segment] as string)) (replace ??= new Map()).set(segment, id)
      }
      return replace === null ? ex.target : replaceSegments(ex.target, replace)
    }
    // The primary always gets a target: an id the map does not know goes as the client sent it.
    const primary = ex.decision!.primary
    const targets = { legacy: targetFor('legacy'), new: targetFor('new') }
    targets[primary] ??= ex.target
    ex.translated(targets)
    return resolved
  }

  /** A write: admission, the whole body, the intent, then forward with the answer held. */
  private write (ex: Exchange, rule: SyncRule, ids: ResolvedId[], forward: Forwarder, start: (body: BodyGuard | null) => void): void {
    const route = ex.rule!.name
    const { watch, sync, metrics } = this.o
    if (!watch.healthy) {
      this.refuse(ex, 'FICUS_ERR_SYNC_UNAVAILABLE')
      return
    }
    if (watch.waiting >= sync.maxPending) {
      if (sync.onFull === 'reject') {
        this.refuse(ex, 'FICUS_ERR_SYNC_FULL', { 'retry-after': '5' })
        return
      }
      metrics.syncUnsynced.inc({ route, reason: 'full' })
      forward.receive(ex, start)
      return
    }
    watch.admitted(ex.res)
    forward.receive(ex, (body) => {
      if (body === null) {
        this.record(ex, rule, ids, null, start, null)
        return
      }
      body.capture(sync.maxBodyBytes, (captured) => {
        // Read whole before `ready` was called: only a failure of the body (answered by the forward stage) leaves it without bytes.
        if (Buffer.isBuffer(captured)) this.record(ex, rule, ids, captured, start, body)
      })
    }, sync.maxBodyBytes)
  }

  private refuse (ex: Exchange, code: 'FICUS_ERR_SYNC_FULL' | 'FICUS_ERR_SYNC_UNAVAILABLE' | 'FICUS_ERR_SYNC_BEHIND', headers?: Record<string, string>): void {
    const err = ficusError(code)
    this.o.metrics.writesRefused.inc({ route: ex.rule!.name, reason: reasonOf(code) })
    ex.fail(err)
    sendError(ex.res, err, ex.requestId, !ex.req.complete, headers)
  }

  /** Records the intent, then forwards with the answer held by a DualWrite. */
  private record (ex: Exchange, rule: SyncRule, ids: ResolvedId[], bytes: Buffer | null, start: (body: BodyGuard | null) => void, body: BodyGuard | null): void {
    const write = new DualWrite(this.o, ex, rule, ids, bytes)
    const intent = this.o.store.intend([write.draft()], this.o.wallNow() + this.o.intentTtlMs)
    if (this.o.sync.ack === 'async') {
      write.intent = intent.then(([seq]) => seq as number)
      write.intent.catch((err: unknown) => { this.o.watch.failed(err) })
      ex.holding(write)
      start(body)
      return
    }
    intent.then(([seq]) => {
      write.intent = Promise.resolve(seq as number)
      if (ex.res.destroyed || ex.res.writableEnded) {
        write.closed() // the client left while it was recorded: nothing was sent
        return
      }
      ex.holding(write)
      start(body)
    }, (err: unknown) => {
      this.o.watch.failed(err)
      this.refuse(ex, 'FICUS_ERR_SYNC_UNAVAILABLE')
      body?.detach()
    })
  }
}

/**
 * One dual write on its way: its intent, then its settlement once the primary answered
 * (ResponseHold: the forward stage holds the answer until `commit` resolved).
 */
class DualWrite implements ResponseHold {
  intent: Promise<number> | null = null
  private state: 'open' | 'committed' | 'closed' = 'open'
  readonly maxBytes: number

  constructor (
    private readonly o: DualOptions,
    private readonly ex: Exchange,
    private readonly rule: SyncRule,
    private readonly ids: readonly ResolvedId[],
    private readonly body: Buffer | null
  ) {
    this.maxBytes = o.sync.maxBodyBytes
  }

  /** The intent as recorded before the answer is known (the side is the decision's; the key a placeholder for a create). */
  draft (): NewWrite {
    return this.entry(this.ex.decision!.primary, this.key(null) ?? `${this.rule.entity}:?${this.ex.requestId}`, null)
  }

  /** The entity key: the path id's one name, or a create's id as its creator gave it. */
  private key (created: string | null): string | null {
    const id = keyId(this.rule, this.ids)
    if (id !== undefined) return entityKey(this.rule.entity, canonicalId(id))
    return created === null ? null : entityKey(this.rule.entity, created)
  }

  private entry (source: Backend, key: string, created: string | null): NewWrite {
    const { ex, rule } = this
    const path = ex.targetOn(source) ?? ex.target
    const segs = pathSegments(path)
    const refs: IdRef[] = rule.pathIds.flatMap((p) => {
      const seg = segs[p.segment]
      return seg === undefined ? [] : [{ in: 'path' as const, segment: p.segment, entity: p.entity, id: segmentId(seg) }]
    })
    if (rule.bodyIds.length > 0 && this.body !== null) {
      const json = parseJson(this.body)
      for (const f of rule.bodyIds) {
        const id = idText(fieldOf(json, f.field))
        if (id !== null) refs.push({ in: 'body', field: f.field, entity: f.entity, id })
      }
    }
    const plan: WritePlan = {
      source,
      entity: rule.entity,
      ids: refs,
      learn: rule.learnText !== null && created !== null ? { from: rule.learnText, sourceId: created } : null
    }
    const headers: [string, string][] = []
    const h = ex.upstreamHeaders
    const pass = this.o.passthrough
    for (let i = 0; i < h.length; i += 2) {
      const name = (h[i] as string).toLowerCase()
      if (NOT_STORED.has(name)) continue
      if (pass !== null && pass.headers.has(name)) headers.push([name, seal(pass.key, h[i + 1] as string)])
      else if (!CREDENTIALS.has(name)) headers.push([name, h[i + 1] as string])
    }
    return { route: ex.rule!.name, key, target: other(source), method: ex.method, path, headers, body: this.body, plan }
  }

  head (_backend: Backend, status: number): 'head' | 'body' | null {
    if (this.state !== 'open') return null
    if (status >= 200 && status < 300) return this.rule.learn?.from === 'body' ? 'body' : 'head'
    this.close(null) // the primary did not take it: nothing to deliver
    return null
  }

  async commit (backend: Backend, status: number, headers: UpstreamHeaders, body: Buffer | null): Promise<FicusError | null> {
    if (this.state !== 'open') return null
    this.state = 'committed'
    const { rule, o, ex } = this
    const route = ex.rule!.name
    let created: string | null = null
    if (rule.learn !== null) {
      const loc = headers.location
      created = learnedId(rule.learn, Array.isArray(loc) ? loc[0] : loc, body === null ? undefined : parseJson(body))
    }
    const key = this.key(created)
    const settle = async (): Promise<void> => {
      const seq = await (this.intent as Promise<number>)
      if (key === null) {
        // Taken by the primary, but the id it gave is not where `learn` says: recorded, as a dead letter for an operator.
        await o.store.settle(seq, this.entry(backend, `${rule.entity}:?${seq}`, null))
        const reason = `id_not_learned: the ${backend} answer (${status}) has no id at ${rule.learnText ?? ''}${body === null ? ' (its body was not held: larger than sync.maxBody, or cut short)' : ''}`
        await o.store.deadLetter(seq, reason)
        o.log.error({ seq, route, reason }, `sync: write ${seq} on ${route} is a dead letter: ${reason}`)
        return
      }
      if (!await o.store.settle(seq, this.entry(backend, key, created))) {
        // Its intent expired meanwhile (the answer took longer than any should): it is a dead letter (outcome_unknown) an operator replays.
        o.log.error({ seq, route }, `sync: write ${seq} on ${route} was answered ${status} after its intent expired: it is a dead letter (outcome_unknown); replay it to deliver it`)
      }
    }
    if (o.sync.ack === 'async') {
      settle().then(() => { o.watch.recorded(); o.recorded() }, (err: unknown) => { this.unrecorded(err, backend) })
      return null
    }
    try {
      await settle()
      o.watch.recorded()
      o.recorded()
      return null
    } catch (err) {
      this.unrecorded(err, backend)
      return ficusError('FICUS_ERR_SYNC_UNRECORDED', { cause: err })
    }
  }

  /** The primary took the write and the store failed to record it: said loudly, with the write, for an operator to replay. */
  private unrecorded (err: unknown, backend: Backend): void {
    const { ex, o } = this
    o.watch.failed(err)
    o.metrics.syncUnrecorded.inc({ route: ex.rule!.name })
    o.log.error({ err, reqId: ex.requestId, route: ex.rule!.name, applied: backend, method: ex.method, path: ex.targetOn(backend), body: this.body?.toString('base64') ?? null },
      'sync: write applied but not recorded: the other side will not get it unless it is replayed by hand')
  }

  unknown (backend: Backend, reason: string): void {
    if (this.state !== 'open') return
    this.state = 'closed'
    void this.withSeq(async (seq) => {
      await this.o.store.deadLetter(seq, `outcome_unknown: ${reason} (sent to ${backend})`)
      this.o.log.warn({ seq, route: this.ex.rule!.name, reason }, `sync: write ${seq} reached ${backend} but its answer is unknown (${reason}): a dead letter`)
    })
  }

  /** The exchange is over: an intent still open was never answered by a primary (refused, or nothing was sent). */
  closed (): void {
    if (this.state === 'open') this.close(null)
  }

  private close (write: NewWrite | null): void {
    this.state = 'closed'
    void this.withSeq(async (seq) => { await this.o.store.settle(seq, write) })
  }

  private async withSeq (run: (seq: number) => Promise<void>): Promise<void> {
    try {
      if (this.intent === null) return
      await run(await this.intent)
    } catch (err) {
      // The intent stays; past its expiry it is a dead letter (outcome_unknown), never lost.
      this.o.watch.failed(err)
    }
  }
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'))
  } catch {
    return undefined
  }
}
