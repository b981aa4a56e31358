import type { Pool } from 'undici'
import type { Logger } from '../../adapters/logger.js'
import type { Delivery, SyncStore, WritePlan } from '../../adapters/sync-store.js'
import { unseal } from '../../adapters/sealed.js'
import { createPool } from '../../adapters/undici.js'
import type { UpstreamConfig } from '../../config/schema.js'
import { retryAfterMs, verdict, type RetryPolicy, type Verdict } from '../../core/delivery.js'
import { idOn, learnedId, parseLearn, replaceFields, replaceSegments, resolveId } from '../../core/sync.js'
import type { Backend } from '../../core/types.js'
import { reasonOf, toUpstreamError } from '../../errors.js'

/**
 * Delivers the outbox (issue #20; DESIGN.md "Data-safe writes"): claims due entries from the
 * sync store (each entity key's oldest only, under a lease), sends each to its target on
 * pools of its own (never the users' connections), and records the verdict of core/delivery.ts:
 * delivered, retried after a backoff, or a dead letter. Every delivery carries
 * `Idempotency-Key: ficus-<route>-<seq>`, the same on every attempt, and `x-ficus-sync: 1`
 * (which Ficus drops from client requests, so a backend calling back through Ficus makes no
 * echo). At least once: a delivery whose answer was lost is sent again, and the key lets the
 * target see it is the same write.
 * Off the request path: it costs users nothing but the store's own work.
 */

export interface DelivererOptions {
  readonly store: SyncStore
  /** The upstream that plays `target` for `route`; undefined: the route is gone (the entry waits). */
  readonly upstreamOf: (route: string, target: Backend) => UpstreamConfig | undefined
  readonly retry: RetryPolicy
  /** Deliveries in flight at most (all targets). */
  readonly concurrency: number
  /** How long a claim holds an entry before another process may take it, ms (longer than a delivery can take). */
  readonly leaseMs: number
  /** How often to look for due entries when nothing woke it, ms. */
  readonly pollMs: number
  readonly log: Logger
  /** Wall-clock ms (entries' times are wall clock: they outlive the process). */
  readonly now: () => number
  readonly random: () => number
  /** Told of each verdict (metrics, tests). */
  readonly onVerdict?: (d: Delivery, v: Verdict) => void
  /** An id the map does not know: wait for it (up to maxIdWaitMs, then a dead letter), or send it as it is (the sides share ids). */
  readonly unmappedIds: 'wait' | 'same'
  readonly maxIdWaitMs: number
  /** Headers every delivery carries (sync.auth: a service credential). */
  readonly extraHeaders: readonly (readonly [string, string])[]
  /** sync.auth passthrough: the key a write's sealed credentials open with; null: none are kept. */
  readonly sealKey: Buffer | null
  /** Told when an id was not in the map (the delivery waits for it). */
  readonly onIdMiss?: (d: Delivery) => void
}

/** How often intents past their expiry are turned into dead letters (ms). */
const EXPIRE_EVERY_MS = 1000

/** An answer body read to learn a created id from, at most (bytes). */
const LEARN_MAX_BYTES = 1024 * 1024

/** What a write becomes for its target: its path and body with the target's ids, or why it cannot be sent yet (or ever). */
type Prepared = { readonly path: string; readonly body: Buffer | null } | { readonly wait: string } | { readonly dead: string }

export class Deliverer {
  private readonly pools = new Map<string, Pool>()
  private inFlight = 0
  private timer: NodeJS.Timeout | null = null
  private running = false
  private ticking: Promise<void> | null = null
  private again = false
  private readonly active = new Set<Promise<void>>()
  /**
   * Deliveries their targets took, not yet dropped from the store: the next claim drops them
   * in its own transaction. One commit acknowledges every delivery that ended meanwhile and
   * claims their successors, instead of two commits per delivery taking the store's one
   * write lock (and the disk) from the users' writes waiting on it.
   */
  private acks: { readonly seq: number; readonly done: () => void; readonly failed: (err: unknown) => void }[] = []

  constructor (private readonly o: DelivererOptions) {}

  start (): void {
    this.running = true
    this.kick()
  }

  /** Looks for due entries now (an append happened). */
  kick (): void {
    if (!this.running && this.acks.length === 0) return
    if (this.ticking !== null) {
      this.again = true
      return
    }
    this.ticking = this.tick().finally(() => {
      this.ticking = null
      if (this.again) {
        this.again = false
        this.kick()
      }
    })
  }

  /** Stops claiming; resolves once the deliveries in flight ended, then closes the pools. */
  async stop (): Promise<void> {
    this.running = false
    if (this.timer !== null) clearTimeout(this.timer)
    await this.ticking
    await Promise.all([...this.active]) // the last ones' acknowledgements are committed by the ticks they kick
    await Promise.all([...this.pools.values()].map(async (p) => p.close()))
  }

  private lastExpire = 0

  private async tick (): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    const acks = this.acks.splice(0)
    try {
      const now = this.o.now()
      if (this.running && now - this.lastExpire >= EXPIRE_EVERY_MS) {
        this.lastExpire = now
        for (const d of await this.o.store.expire(now)) {
          this.o.log.error({ seq: d.seq, route: d.route, key: d.key, method: d.method, path: d.path },
            `sync: write ${d.seq} on ${d.route} was sent to its primary but Ficus stopped before the answer: a dead letter (outcome_unknown); its key ${d.key} waits for an operator`)
          this.o.onVerdict?.(d, { kind: 'dead', reason: 'outcome_unknown' })
        }
      }
      // A delivery waiting for its acknowledgement no longer needs its slot.
      const room = this.running ? this.o.concurrency - (this.inFlight - acks.length) : 0
      if (room > 0 || acks.length > 0) {
        const claimed = await this.o.store.claim(this.o.now(), Math.max(0, room), this.o.leaseMs, acks.map((a) => a.seq))
        for (const a of acks) a.done()
        for (const d of claimed) {
          const p = this.deliver(d).finally(() => {
            this.active.delete(p)
            this.kick() // a slot is free, and the key's next write may be due
          })
          this.active.add(p)
        }
      }
    } catch (err) {
      for (const a of acks) a.failed(err)
      this.o.log.error({ err }, 'sync: claiming from the store failed; trying again')
    }
    if (this.running) {
      this.timer = setTimeout(() => this.kick(), this.o.pollMs)
      this.timer.unref()
    }
  }

  /** Resolves once the store dropped the delivered entry (committed with the next claim). */
  private async acknowledge (seq: number): Promise<void> {
    const done = new Promise<void>((resolve, reject) => { this.acks.push({ seq, done: resolve, failed: reject }) })
    this.kick()
    await done
  }

  private async deliver (d: Delivery): Promise<void> {
    this.inFlight++
    try {
      const upstream = this.o.upstreamOf(d.route, d.target)
      if (upstream === undefined) {
        await this.o.store.retry(d.seq, this.o.now() + this.o.retry.maxMs, `no upstream plays ${d.target} for route ${d.route}`)
        return
      }
      const headers = this.headersOf(d)
      const prepared = 'dead' in headers ? headers : await this.prepare(d)
      let v: Verdict
      if ('dead' in prepared) {
        v = { kind: 'dead', reason: prepared.dead }
      } else if ('wait' in prepared) {
        // Its create has not been delivered (or learned) yet: try again soon, not counted as a failure of the target.
        this.o.onIdMiss?.(d)
        v = { kind: 'retry', afterMs: Math.min(this.o.retry.maxMs, Math.max(this.o.retry.baseMs, 1000)), reason: prepared.wait }
      } else {
        const result = await this.send(d, upstream, prepared, (headers as { list: string[] }).list)
        v = verdict(result, d.attempts, this.o.now() - d.createdAt, this.o.retry, this.o.random())
        if (v.kind === 'delivered' && d.plan?.learn != null && 'status' in result) v = await this.learn(d, d.plan, result)
      }
      if (v.kind === 'delivered') await this.acknowledge(d.seq)
      else if (v.kind === 'retry') await this.o.store.retry(d.seq, this.o.now() + v.afterMs, v.reason)
      else {
        await this.o.store.deadLetter(d.seq, v.reason)
        this.o.log.warn({ seq: d.seq, route: d.route, key: d.key, target: d.target, reason: v.reason }, `sync: write ${d.seq} to ${d.target} is a dead letter; its key ${d.key} waits`)
      }
      this.o.onVerdict?.(d, v)
    } catch (err) {
      // The store failed: the lease runs out and the entry is claimed again.
      this.o.log.error({ err, seq: d.seq }, 'sync: recording a delivery failed; it will be tried again')
    } finally {
      this.inFlight--
    }
  }

  /**
   * The delivery's request headers, its sealed credentials opened (each once), or why it
   * cannot be sent (another sync.auth.key, or altered: a dead letter, never sent without it).
   */
  private headersOf (d: Delivery): { list: string[] } | { dead: string } {
    const list: string[] = []
    for (const [name, value] of d.headers) {
      if (!value.startsWith('sealed:')) {
        list.push(name, value)
        continue
      }
      if (this.o.sealKey === null) return { dead: `credential_sealed: its ${name} header is sealed, and sync.auth passes no key now` }
      try {
        list.push(name, unseal(this.o.sealKey, value))
      } catch {
        return { dead: `credential_unreadable: its ${name} header does not open with sync.auth.key (changed since it was recorded?)` }
      }
    }
    for (const [n, v] of this.o.extraHeaders) list.push(n, v)
    list.push('idempotency-key', `ficus-${d.route}-${d.seq}`, 'x-ficus-sync', '1')
    return { list }
  }

  /** The write with its ids translated for the target through the id map. */
  private async prepare (d: Delivery): Promise<Prepared> {
    const plan = d.plan
    if (plan === null || plan.ids.length === 0) return { path: d.path, body: d.body }
    const segs = new Map<number, string>()
    const fields = new Map<string, string>()
    for (const ref of plan.ids) {
      const [asLegacy, asNew] = await Promise.all([this.o.store.lookupId(ref.entity, 'legacy', ref.id), this.o.store.lookupId(ref.entity, 'new', ref.id)])
      const r = resolveId(ref.id, asLegacy, asNew)
      if (r.kind === 'ambiguous') return { dead: `id_ambiguous: ${ref.entity} ${ref.id} is a legacy id of one record and a new id of another` }
      if (r.kind === 'unmapped' && this.o.unmappedIds === 'wait') {
        const where = ref.in === 'path' ? `path segment ${ref.segment + 1}` : `body field ${ref.field}`
        if (this.o.now() - d.createdAt > this.o.maxIdWaitMs) return { dead: `id_unmapped: ${ref.entity} ${ref.id} (${where}) has no ${d.target} id after sync.maxIdWait` }
        return { wait: `id_unmapped: ${ref.entity} ${ref.id} (${where})` }
      }
      const id = idOn(r, d.target)
      if (ref.in === 'path') segs.set(ref.segment, id)
      else fields.set(ref.field, id)
    }
    let body = d.body
    if (fields.size > 0 && body !== null) {
      let json: unknown
      try {
        json = JSON.parse(body.toString('utf8'))
      } catch {
        return { dead: 'body_not_json: its body ids cannot be translated' }
      }
      body = Buffer.from(JSON.stringify(replaceFields(json, fields)))
    }
    return { path: replaceSegments(d.path, segs), body }
  }

  /** A create was delivered: the target's id for it goes into the id map (or the entry is a dead letter saying why not). */
  private async learn (d: Delivery, plan: WritePlan, result: { status: number; location?: string | undefined; body?: Buffer | undefined }): Promise<Verdict> {
    const learn = plan.learn as NonNullable<WritePlan['learn']>
    const spec = parseLearn(learn.from)
    let json: unknown
    try {
      json = result.body === undefined ? undefined : JSON.parse(result.body.toString('utf8'))
    } catch { json = undefined }
    const got = spec === null ? null : learnedId(spec, result.location, json)
    if (got === null) {
      return { kind: 'dead', reason: `id_not_learned: ${d.target} took the create (${result.status}) but its answer has no id at ${learn.from}; set the pair (ficus ids set) and skip this entry` }
    }
    const [legacyId, newId] = plan.source === 'legacy' ? [learn.sourceId, got] : [got, learn.sourceId]
    if (!await this.o.store.mapIds(plan.entity, legacyId, newId, plan.source)) {
      return { kind: 'dead', reason: `id_conflict: ${plan.entity} legacy ${legacyId} ↔ new ${newId} contradicts a pair already in the id map` }
    }
    return { kind: 'delivered' }
  }

  private async send (d: Delivery, upstream: UpstreamConfig, w: { path: string; body: Buffer | null }, headers: string[]): Promise<{ status: number; retryAfterMs?: number; location?: string; body?: Buffer } | { failed: string }> {
    try {
      const r = await this.poolFor(upstream).request({ path: w.path, method: d.method, headers, body: w.body ?? undefined })
      let body: Buffer | undefined
      if (d.plan?.learn != null && r.statusCode >= 200 && r.statusCode < 300) {
        const chunks: Buffer[] = []
        let size = 0
        for await (const c of r.body) {
          size += (c as Buffer).length
          if (size > LEARN_MAX_BYTES) break
          chunks.push(c as Buffer)
        }
        body = Buffer.concat(chunks)
        if (size > LEARN_MAX_BYTES) await r.body.dump().catch(() => undefined)
      } else {
        await r.body.dump()
      }
      const ra = r.headers['retry-after']
      const loc = r.headers.location
      const out: { status: number; retryAfterMs?: number; location?: string; body?: Buffer } = { status: r.statusCode }
      const after = retryAfterMs(Array.isArray(ra) ? ra[0] : ra, this.o.now())
      if (after !== undefined) out.retryAfterMs = after
      const location = Array.isArray(loc) ? loc[0] : loc
      if (location !== undefined) out.location = location
      if (body !== undefined) out.body = body
      return out
    } catch (err) {
      return { failed: reasonOf(toUpstreamError(err, false).code) }
    }
  }

  private poolFor (u: UpstreamConfig): Pool {
    let p = this.pools.get(u.origin)
    if (p === undefined) {
      p = createPool(u.origin, { connections: this.o.concurrency, connectTimeoutMs: u.connectTimeoutMs, headersTimeoutMs: u.timeoutMs, bodyTimeoutMs: u.bodyTimeoutMs })
      this.pools.set(u.origin, p)
    }
    return p
  }
}
