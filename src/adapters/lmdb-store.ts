import { open, type Database, type RootDatabase } from 'lmdb'
import type { Backend } from '../core/types.js'
import type { Delivery, IdPair, NewWrite, RouteStats, StoreStats, SyncStore } from './sync-store.js'

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
 * seq] → the entry's target (the entries of one entity key, for a fence).
 */

/** A Delivery as stored (its seq is the key), with its claim. */
interface Entry extends Omit<Delivery, 'seq'> {
  /** Claimed until then (ms since the epoch); 0: not claimed. */
  readonly leasedUntil: number
}

/** Entries a claim looks at, at most, per call (the rest wait for the next call). */
const CLAIM_SCAN = 10_000

type State = Entry['state']

export class LmdbStore implements SyncStore {
  private readonly env: RootDatabase
  private readonly outbox: Database<Entry, number>
  private readonly intents: Database<[number, number], number>
  private readonly meta: Database<unknown, string>
  private readonly ids: Database<[string, Backend], string[]>
  private readonly keys: Database<Backend, [string, number]>

  constructor (path: string, private readonly clock: () => number = Date.now) {
    this.env = open({ path, overlappingSync: false, compression: false, eventTurnBatching: false })
    this.outbox = this.env.openDB<Entry, number>({ name: 'outbox' })
    this.intents = this.env.openDB<[number, number], number>({ name: 'intents' })
    this.meta = this.env.openDB<unknown, string>({ name: 'meta' })
    this.ids = this.env.openDB<[string, Backend], string[]>({ name: 'ids' })
    this.keys = this.env.openDB<Backend, [string, number]>({ name: 'keys' })
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
        void this.outbox.put(seq, entryOf(w, now, state, notBefore))
        void this.keys.put([w.key, seq], w.target)
        if (state === 'intent') void this.intents.put(seq, [notBefore, process.pid])
        seqs.push(seq)
      }
      void this.meta.put('seq', seq)
      for (const w of writes) this.count(state, 1, w)
      return seqs
    })
  }

  async settle (seq: number, write: NewWrite | null): Promise<boolean> {
    return this.write(() => {
      const e = this.outbox.get(seq)
      if (e === undefined || e.state !== 'intent') return false
      void this.intents.remove(seq)
      this.count('intent', -1, e)
      void this.keys.remove([e.key, seq])
      if (write === null) {
        void this.outbox.remove(seq)
      } else {
        void this.outbox.put(seq, entryOf(write, e.createdAt, 'pending', 0))
        void this.keys.put([write.key, seq], write.target)
        this.count('pending', 1, write)
      }
      return true
    })
  }

  async expire (now: number): Promise<Delivery[]> {
    return this.write(() => {
      const out: Delivery[] = []
      const alive = new Map<number, boolean>()
      for (const { key: seq, value: [expiresAt, pid] } of this.intents.getRange()) {
        if (expiresAt > now && isAlive(pid, alive)) continue
        void this.intents.remove(seq)
        const e = this.outbox.get(seq)
        if (e === undefined || e.state !== 'intent') continue
        const dead: Entry = { ...e, state: 'dead', reason: 'outcome_unknown', leasedUntil: 0 }
        void this.outbox.put(seq, dead)
        this.count('intent', -1, e)
        this.count('dead', 1, e)
        out.push(toDelivery(seq, dead))
      }
      return out
    })
  }

  async claim (now: number, limit: number, leaseMs: number): Promise<Delivery[]> {
    return this.write(() => {
      const paused = new Set((this.meta.get('paused') as string[] | undefined) ?? [])
      if (paused.has('*')) return []
      const seen = new Set<string>()
      const out: Delivery[] = []
      let scanned = 0
      for (const { key: seq, value } of this.outbox.getRange()) {
        if (out.length >= limit || ++scanned > CLAIM_SCAN) break
        if (seen.has(value.key)) continue // an older entry of this key comes first
        seen.add(value.key)
        if (value.state !== 'pending' || value.leasedUntil > now || value.notBefore > now || paused.has(value.route)) continue // blocks its key
        const claimed: Entry = { ...value, attempts: value.attempts + 1, leasedUntil: now + leaseMs }
        void this.outbox.put(seq, claimed)
        out.push(toDelivery(seq, claimed))
      }
      return out
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
    if (this.n('dead') === 0) return out
    for (const { key, value } of this.outbox.getRange()) {
      if (out.length >= limit) break
      if (value.state === 'dead') out.push(toDelivery(key, value))
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
      const now = new Set((this.meta.get('paused') as string[] | undefined) ?? [])
      if (paused) now.add(route)
      else now.delete(route)
      void this.meta.put('paused', [...now].sort())
    })
  }

  async paused (): Promise<string[]> {
    return (this.meta.get('paused') as string[] | undefined) ?? []
  }

  async lookupId (entity: string, side: Backend, id: string): Promise<IdPair | null> {
    const v = this.ids.get([entity, side, id])
    return v === undefined ? null : { other: v[0], origin: v[1] }
  }

  async lookupIds (entity: string, side: Backend, ids: readonly string[]): Promise<Map<string, IdPair>> {
    // Memory-mapped reads: no system call per id.
    const out = new Map<string, IdPair>()
    for (const id of ids) {
      const v = this.ids.get([entity, side, id])
      if (v !== undefined) out.set(id, { other: v[0], origin: v[1] })
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
      void this.outbox.remove(seq)
      void this.keys.remove([e.key, seq])
      if (e.state === 'intent') void this.intents.remove(seq)
      this.count(e.state, -1, e)
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
      void this.outbox.put(seq, next)
      if (next.state !== e.state) {
        if (e.state === 'intent') void this.intents.remove(seq)
        this.count(e.state, -1, e)
        this.count(next.state, 1, next)
      }
      return true
    })
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
