import { open, type Database, type RootDatabase } from 'lmdb'
import type { Backend } from '../core/types.js'
import type { Delivery, IdPair, NewWrite, RouteStats, StoreStats, StoredRamp, SyncStore } from './sync-store.js'

/**
 * The embedded sync store (`store: { kind: embedded, path }`), on LMDB: one file that every
 * process of one Ficus opens (`--workers`: LMDB serialises write transactions across
 * processes with its lock file, and readers never block). Opened with `overlappingSync:
 * false`: a write's promise resolves once its transaction is flushed to disk, so `append`
 * resolving means durable. Writes issued together are committed in one transaction (lmdb-js
 * batches them: a group commit).
 *
 * Layout: `outbox` seq → entry (seq order is append order, over all processes: the next seq
 * is read and written in the same write transaction as the entries); `intents` seq →
 * [expiry, pid of the process that recorded it] (the intents, so expiring them reads only
 * those; all the processes of one store are on one machine, so an intent whose process is
 * gone is known at once, without waiting for its expiry); `meta`: 'seq' → the last seq, 'n:<state>'
 * → entries in that state (so stats read no entry), 'paused' → the paused routes; `ids`
 * [entity, side, id] → [the other side's id, the side that created the entity]; `keys` [key,
 * seq] → the entry's target (the entries of one entity key, oldest first: its head, and a
 * fence's count); `queue` [due, seq] → key: the head of every key whose head is pending, by
 * when it is due (its retry time or the end of its claim), and `heads` key → its place in
 * `queue`; `dead` seq → 1 (the dead letters). A claim reads only `queue` from its start, so
 * neither a record's long backlog behind a dead letter nor other records backing off keep
 * it from what is due. `put` keeps all of these in step with `outbox`, in the same
 * transaction.
 */

/** A Delivery as stored (its seq is the key), with its claim. */
interface Entry extends Omit<Delivery, 'seq'> {
  /** Claimed until then (ms since the epoch); 0: not claimed. */
  readonly leasedUntil: number
}

/** Due heads a claim looks at, at most, per call (the rest wait for the next call). */
const CLAIM_SCAN = 10_000
const MAX_SEQ = Number.MAX_SAFE_INTEGER
/** Where a paused route's heads wait in the queue (never due), until it is resumed. */
const PAUSED_DUE = Number.MAX_SAFE_INTEGER

type State = Entry['state']

export class LmdbStore implements SyncStore {
  private readonly env: RootDatabase
  private readonly outbox: Database<Entry, number>
  private readonly intents: Database<[number, number], number>
  private readonly meta: Database<unknown, string>
  private readonly ids: Database<[string, Backend], string[]>
  private readonly keys: Database<Backend, [string, number]>
  private readonly queue: Database<string, [number, number]>
  private readonly heads: Database<[number, number], string>
  private readonly deadIndex: Database<number, number>

  constructor (path: string, private readonly clock: () => number = Date.now) {
    this.env = open({ path, overlappingSync: false, compression: false, eventTurnBatching: false })
    this.outbox = this.env.openDB<Entry, number>({ name: 'outbox' })
    this.intents = this.env.openDB<[number, number], number>({ name: 'intents' })
    this.meta = this.env.openDB<unknown, string>({ name: 'meta' })
    this.ids = this.env.openDB<[string, Backend], string[]>({ name: 'ids' })
    this.keys = this.env.openDB<Backend, [string, number]>({ name: 'keys' })
    this.queue = this.env.openDB<string, [number, number]>({ name: 'queue' })
    this.heads = this.env.openDB<[number, number], string>({ name: 'heads' })
    this.deadIndex = this.env.openDB<number, number>({ name: 'dead' })
  }

  /** The paused routes (`*`: all), as the store holds them now. */
  private pausedNow (): string[] {
    return (this.meta.get('paused') as string[] | undefined) ?? []
  }

  /** One write transaction, resolved once it is on disk; rejects with the cause when the commit fails. */
  private async write<T>(run: () => T): Promise<T> {
    return committed(this.env.transaction(run))
  }

  async append (writes: readonly NewWrite[]): Promise<number[]> {
    return this.add(writes, 'pending', 0)
  }

  async intend (writes: readonly NewWrite[], expiresAt: number): Promise<number[]> {
    return this.add(writes, 'intent', expiresAt)
  }

  private async add (writes: readonly NewWrite[], state: 'pending' | 'intent', notBefore: number): Promise<number[]> {
    if (writes.length === 0) return []
    const now = this.clock()
    return this.write(() => {
      let seq = (this.meta.get('seq') as number | undefined) ?? 0
      const seqs: number[] = []
      for (const w of writes) {
        seq++
        this.put(seq, undefined, entryOf(w, now, state, notBefore))
        seqs.push(seq)
      }
      void this.meta.put('seq', seq)
      return seqs
    })
  }

  async settle (seq: number, write: NewWrite | null): Promise<boolean> {
    return this.write(() => {
      const e = this.outbox.get(seq)
      if (e === undefined || e.state !== 'intent') return false
      this.put(seq, e, write === null ? undefined : entryOf(write, e.createdAt, 'pending', 0))
      return true
    })
  }

  async expire (now: number): Promise<Delivery[]> {
    return this.write(() => {
      const out: Delivery[] = []
      const alive = new Map<number, boolean>()
      const gone = [...this.intents.getRange()].filter(({ value: [expiresAt, pid] }) => expiresAt <= now || !isAlive(pid, alive))
      for (const { key: seq } of gone) {
        const e = this.outbox.get(seq)
        if (e === undefined || e.state !== 'intent') {
          void this.intents.remove(seq)
          continue
        }
        const dead: Entry = { ...e, state: 'dead', reason: 'outcome_unknown', leasedUntil: 0 }
        this.put(seq, e, dead)
        out.push(toDelivery(seq, dead))
      }
      return out
    })
  }

  async claim (now: number, limit: number, leaseMs: number, delivered: readonly number[] = []): Promise<Delivery[]> {
    // Nothing to drop and nothing due: answered from a read, without a write transaction (a deliverer asks after every write).
    if (delivered.length === 0 && (limit <= 0 || this.queue.getKeysCount({ start: [0, 0], end: [now, MAX_SEQ], limit: 1 }) === 0)) return []
    return this.write(() => {
      for (const seq of delivered) {
        const e = this.outbox.get(seq)
        if (e !== undefined) this.put(seq, e, undefined)
      }
      if (limit <= 0) return []
      const paused = new Set(this.pausedNow())
      if (paused.has('*')) return []
      // The due heads first (read before any is moved: a claim moves its entry later in the queue).
      const due = [...this.queue.getRange({ start: [0, 0], end: [now, MAX_SEQ], limit: CLAIM_SCAN })].map(({ key }) => key)
      const out: Delivery[] = []
      for (const [, seq] of due) {
        if (out.length >= limit) break
        const e = this.outbox.get(seq)
        if (e === undefined || e.state !== 'pending' || paused.has(e.route)) continue
        const claimed: Entry = { ...e, attempts: e.attempts + 1, leasedUntil: now + leaseMs }
        this.put(seq, e, claimed)
        out.push(toDelivery(seq, claimed))
      }
      return out.sort((a, b) => a.seq - b.seq)
    })
  }

  async delivered (seq: number): Promise<void> {
    await this.drop(seq)
  }

  async retry (seq: number, notBefore: number, reason: string): Promise<void> {
    await this.update(seq, (e) => (e.state === 'pending' ? { ...e, notBefore, reason, leasedUntil: 0 } : null))
  }

  async deadLetter (seq: number, reason: string): Promise<void> {
    await this.update(seq, (e) => (e.state === 'dead' ? null : { ...e, state: 'dead', reason, leasedUntil: 0 }))
  }

  async replay (seq: number): Promise<boolean> {
    return this.update(seq, (e) => (e.state === 'dead' ? { ...e, state: 'pending', notBefore: 0, attempts: 0, leasedUntil: 0 } : null))
  }

  async skip (seq: number): Promise<boolean> {
    return this.drop(seq)
  }

  async waitingFor (key: string, target: Backend): Promise<{ pending: number; dead: number }> {
    let pending = 0
    let dead = 0
    for (const { key: [, seq], value } of this.keys.getRange({ start: [key, 0], end: [key, Number.MAX_SAFE_INTEGER] })) {
      if (value !== target) continue
      const state = this.outbox.get(seq)?.state
      if (state === 'pending') pending++
      else if (state === 'dead') dead++
    }
    return { pending, dead }
  }

  async get (seq: number): Promise<Delivery | null> {
    const e = this.outbox.get(seq)
    return e === undefined ? null : toDelivery(seq, e)
  }

  async deadLetters (limit: number): Promise<Delivery[]> {
    const out: Delivery[] = []
    for (const { key: seq } of this.deadIndex.getRange({ limit })) {
      const e = this.outbox.get(seq)
      if (e !== undefined) out.push(toDelivery(seq, e))
    }
    return out
  }

  async stats (): Promise<StoreStats> {
    const pending = this.n('pending')
    const perRoute = (this.meta.get('routes') as Record<string, [number, number]> | undefined) ?? {}
    const oldest = new Map<string, number>()
    const wanted = Object.entries(perRoute).filter(([, [p]]) => p > 0).length
    if (wanted > 0) {
      // Seq order is append order: a route's first pending entry is its oldest (dead letters and intents are passed over).
      for (const { value } of this.outbox.getRange()) {
        const rt = `${value.route}\t${value.target}`
        if (value.state === 'pending' && !oldest.has(rt)) {
          oldest.set(rt, value.createdAt)
          if (oldest.size === wanted) break
        }
      }
    }
    const routes: RouteStats[] = Object.entries(perRoute)
      .filter(([, [p, d]]) => p > 0 || d > 0)
      .map(([rt, [p, d]]) => {
        const [route, target] = rt.split('\t') as [string, Backend]
        return { route, target, pending: p, dead: d, oldestPending: oldest.get(rt) ?? null }
      })
    const oldestPending = oldest.size === 0 ? null : Math.min(...oldest.values())
    return { intents: this.n('intent'), pending, dead: this.n('dead'), oldestPending, routes }
  }

  async probe (): Promise<void> {
    await committed(this.meta.put('probe', this.clock()))
  }

  async setPaused (route: string, paused: boolean): Promise<void> {
    await this.write(() => {
      const now = new Set(this.pausedNow())
      if (paused) now.add(route)
      else now.delete(route)
      void this.meta.put('paused', [...now].sort())
      if (route === '*') return // a claim takes nothing while everything is paused: nothing to move
      // A paused route's heads wait at the far end of the queue, out of the way of the others; resumed, they take their place again.
      const moved = paused
        ? [...this.queue.getRange({ end: [PAUSED_DUE, 0] })].filter(({ key: [, seq] }) => this.outbox.get(seq)?.route === route)
        : [...this.queue.getRange({ start: [PAUSED_DUE, 0] })]
      for (const { value: key } of moved) this.requeue(key)
    })
  }

  async paused (): Promise<string[]> {
    return this.pausedNow()
  }

  async lookupId (entity: string, side: Backend, id: string): Promise<IdPair | null> {
    return this.lookupIdSync(entity, side, id)
  }

  readonly lookupIdSync = (entity: string, side: Backend, id: string): IdPair | null => {
    const v = this.ids.get([entity, side, id])
    return v === undefined ? null : { other: v[0], origin: v[1] }
  }

  async lookupIds (entity: string, side: Backend, ids: readonly string[]): Promise<Map<string, IdPair>> {
    // Memory-mapped reads: no system call per id.
    const out = new Map<string, IdPair>()
    for (const id of ids) {
      const pair = this.lookupIdSync(entity, side, id)
      if (pair !== null) out.set(id, pair)
    }
    return out
  }

  async mapIds (entity: string, legacyId: string, newId: string, origin: Backend): Promise<boolean> {
    return this.write(() => {
      const toNew = this.ids.get([entity, 'legacy', legacyId])
      const toLegacy = this.ids.get([entity, 'new', newId])
      if (toNew?.[0] === newId && toLegacy?.[0] === legacyId) return true // already known
      if (toNew !== undefined || toLegacy !== undefined) return false // either id is paired with another
      void this.ids.put([entity, 'legacy', legacyId], [newId, origin])
      void this.ids.put([entity, 'new', newId], [legacyId, origin])
      const counts = (this.meta.get('ids') as Record<string, number> | undefined) ?? {}
      void this.meta.put('ids', { ...counts, [entity]: (counts[entity] ?? 0) + 1 })
      return true
    })
  }

  async idCounts (): Promise<Record<string, number>> {
    return { ...((this.meta.get('ids') as Record<string, number> | undefined) ?? {}) }
  }

  async ramps (): Promise<StoredRamp[]> {
    const out: StoredRamp[] = []
    for (const { key, value } of this.meta.getRange({ start: 'ramp:', end: 'ramp;' })) {
      const v = value as { version: number; value: unknown }
      out.push({ route: key.slice('ramp:'.length), version: v.version, value: v.value })
    }
    return out
  }

  async putRamp (route: string, value: unknown, expected: number): Promise<number | null> {
    return this.write(() => {
      const at = `ramp:${route}`
      const version = (this.meta.get(at) as { version: number } | undefined)?.version ?? 0
      if (version !== expected) return null
      void this.meta.put(at, { version: version + 1, value })
      return version + 1
    })
  }

  async lease (name: string, owner: string, ttlMs: number): Promise<string> {
    return this.write(() => {
      const at = `lease:${name}`
      const now = this.clock()
      const held = this.meta.get(at) as { owner: string; until: number } | undefined
      if (held !== undefined && held.owner !== owner && held.until > now) return held.owner
      void this.meta.put(at, { owner, until: now + ttlMs })
      return owner
    })
  }

  async unlease (name: string, owner: string): Promise<void> {
    await this.write(() => {
      const at = `lease:${name}`
      if ((this.meta.get(at) as { owner: string } | undefined)?.owner === owner) void this.meta.remove(at)
    })
  }

  async close (): Promise<void> {
    await this.env.close()
  }

  /** Entries in `state` (kept in meta, in the transactions that change them). */
  private n (state: State): number {
    return (this.meta.get(`n:${state}`) as number | undefined) ?? 0
  }

  /** Within a write transaction: `delta` more entries in `state`, for `w`'s route and target. */
  private count (state: State, delta: number, w: { readonly route: string; readonly target: Backend }): void {
    void this.meta.put(`n:${state}`, this.n(state) + delta)
    if (state === 'intent') return
    const routes = (this.meta.get('routes') as Record<string, [number, number]> | undefined) ?? {}
    const rt = `${w.route}\t${w.target}`
    const [p, d] = routes[rt] ?? [0, 0]
    const next: [number, number] = state === 'pending' ? [p + delta, d] : [p, d + delta]
    void this.meta.put('routes', { ...routes, [rt]: next })
  }

  /** Removes an entry, whatever its state; false when there is none. */
  private async drop (seq: number): Promise<boolean> {
    return this.write(() => {
      const e = this.outbox.get(seq)
      if (e === undefined) return false
      this.put(seq, e, undefined)
      return true
    })
  }

  /** Rewrites one entry in a write transaction; `change` returns null to leave it. False when there is no such entry, or nothing changed. */
  private async update (seq: number, change: (e: Entry) => Entry | null): Promise<boolean> {
    return this.write(() => {
      const e = this.outbox.get(seq)
      if (e === undefined) return false
      const next = change(e)
      if (next === null) return false
      this.put(seq, e, next)
      return true
    })
  }

  /**
   * Within a write transaction: entry `seq` goes from `before` to `after` (undefined: absent),
   * and every index and count follows: the key's entries, intents, dead letters, the counts
   * per state and route, and the queue of due heads of the keys it was and is in.
   */
  private put (seq: number, before: Entry | undefined, after: Entry | undefined): void {
    if (after === undefined) void this.outbox.remove(seq)
    else void this.outbox.put(seq, after)
    if (before !== undefined && (after === undefined || after.key !== before.key)) void this.keys.remove([before.key, seq])
    if (after !== undefined && (before === undefined || after.key !== before.key || after.target !== before.target)) void this.keys.put([after.key, seq], after.target)
    if (before?.state === 'intent' && after?.state !== 'intent') void this.intents.remove(seq)
    if (after?.state === 'intent' && before?.state !== 'intent') void this.intents.put(seq, [after.notBefore, process.pid])
    if (before?.state === 'dead' && after?.state !== 'dead') void this.deadIndex.remove(seq)
    if (after?.state === 'dead' && before?.state !== 'dead') void this.deadIndex.put(seq, 1)
    if (before?.state !== after?.state || before?.route !== after?.route || before?.target !== after?.target) {
      if (before !== undefined) this.count(before.state, -1, before)
      if (after !== undefined) this.count(after.state, 1, after)
    }
    if (before !== undefined) this.requeue(before.key)
    if (after !== undefined && after.key !== before?.key) this.requeue(after.key)
  }

  /**
   * Puts `key`'s head (its oldest entry) in the queue when it is pending: at its due time, or
   * at the far end while its route is paused; and nowhere else.
   */
  private requeue (key: string): void {
    let want: [number, number] | undefined
    for (const { key: [, seq] } of this.keys.getRange({ start: [key, 0], end: [key, MAX_SEQ], limit: 1 })) {
      const head = this.outbox.get(seq)
      if (head?.state !== 'pending') continue
      const paused = this.pausedNow().includes(head.route)
      want = [paused ? PAUSED_DUE : Math.max(head.notBefore, head.leasedUntil), seq]
    }
    const queued = this.heads.get(key)
    if (queued !== undefined && want !== undefined && queued[0] === want[0] && queued[1] === want[1]) return
    if (queued !== undefined) {
      void this.queue.remove(queued)
      void this.heads.remove(key)
    }
    if (want !== undefined) {
      void this.queue.put(want, key)
      void this.heads.put(key, want)
    }
  }
}

/**
 * Awaits a write of lmdb-js; when its commit failed, handles the promise lmdb-js keeps the
 * cause in (`commitError`: left unhandled, it ends the process) and rejects with that cause
 * ("File too large", "No space left on device"…), not lmdb-js's "Commit failed (see
 * commitError for details)".
 */
async function committed<T>(write: Promise<T>): Promise<T> {
  try {
    return await write
  } catch (err) {
    const commitError = (err as { commitError?: unknown }).commitError
    if (!(commitError instanceof Promise)) throw err
    // It is rejected with the cause in the same turn as the write (or never, if LMDB gave none).
    const cause: unknown = await Promise.race([commitError.then(() => null, (e: unknown) => e), new Promise((resolve) => { setImmediate(resolve, null) })])
    const code = (cause as { code?: unknown } | null)?.code
    const message = cause instanceof Error ? cause.message : 'no cause given'
    throw Object.assign(new Error(`the sync store could not commit a write: ${message}`, { cause: cause ?? err }), code === undefined ? {} : { code })
  }
}

/** Whether the process `pid` (on this machine) still runs; answers kept in `seen`. */
function isAlive(pid: number, seen: Map<number, boolean>): boolean {
  let alive = seen.get(pid)
  if (alive === undefined) {
    try {
      process.kill(pid, 0)
      alive = true
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM' // it exists, owned by someone else
    }
    seen.set(pid, alive)
  }
  return alive
}

function entryOf(w: NewWrite, createdAt: number, state: 'pending' | 'intent', notBefore: number): Entry {
  return {
    route: w.route,
    key: w.key,
    target: w.target,
    method: w.method,
    path: w.path,
    headers: w.headers,
    body: w.body,
    plan: w.plan,
    createdAt,
    attempts: 0,
    notBefore,
    state,
    reason: null,
    leasedUntil: 0
  }
}

function toDelivery(seq: number, e: Entry): Delivery {
  const { leasedUntil, ...delivery } = e
  void leasedUntil // the claim is the store's own, not the caller's
  // msgpack hands a Uint8Array back: a Buffer, as the contract says.
  return { ...delivery, seq, body: e.body === null ? null : Buffer.from(e.body), plan: e.plan ?? null }
}
