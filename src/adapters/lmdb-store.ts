import { open, type Database, type RootDatabase } from 'lmdb'
import type { Backend } from '../core/types.js'
import type { Delivery, NewWrite, StoreStats, SyncStore } from './sync-store.js'

/**
 * The embedded sync store (`store: { kind: embedded, path }`), on LMDB: one file that every
 * process of one Ficus opens (`--workers`: LMDB serialises write transactions across
 * processes with its lock file, and readers never block). Opened with `overlappingSync:
 * false`: a write's promise resolves once its transaction is flushed to disk, so `append`
 * resolving means durable. Writes issued together are committed in one transaction (lmdb-js
 * batches them: a group commit).
 *
 * Layout: `outbox` seq → entry (seq order is append order, over all processes: the next seq
 * is read and written in the same write transaction as the entries); `meta` 'seq' → the last
 * seq; `ids` [entity, side, id] → the other side's id.
 */

/** A Delivery as stored (its seq is the key), with its claim. */
interface Entry extends Omit<Delivery, 'seq'> {
  /** Claimed until then (ms since the epoch); 0: not claimed. */
  readonly leasedUntil: number
}

/** Entries a claim looks at, at most, per call (the rest wait for the next call). */
const CLAIM_SCAN = 10_000

export class LmdbStore implements SyncStore {
  private readonly env: RootDatabase
  private readonly outbox: Database<Entry, number>
  private readonly meta: Database<number, string>
  private readonly ids: Database<string, (string | number)[]>

  constructor (path: string, private readonly clock: () => number = Date.now) {
    this.env = open({ path, overlappingSync: false, compression: false })
    this.outbox = this.env.openDB<Entry, number>({ name: 'outbox' })
    this.meta = this.env.openDB<number, string>({ name: 'meta' })
    this.ids = this.env.openDB<string, (string | number)[]>({ name: 'ids' })
  }

  async append (writes: readonly NewWrite[]): Promise<number[]> {
    if (writes.length === 0) return []
    const now = this.clock()
    return this.env.transaction(() => {
      let seq = this.meta.get('seq') ?? 0
      const seqs: number[] = []
      for (const w of writes) {
        seq++
        void this.outbox.put(seq, {
          route: w.route,
          key: w.key,
          target: w.target,
          method: w.method,
          path: w.path,
          headers: w.headers,
          body: w.body,
          createdAt: now,
          attempts: 0,
          notBefore: 0,
          state: 'pending',
          reason: null,
          leasedUntil: 0
        })
        seqs.push(seq)
      }
      void this.meta.put('seq', seq)
      return seqs
    })
  }

  async claim (now: number, limit: number, leaseMs: number): Promise<Delivery[]> {
    return this.env.transaction(() => {
      const seen = new Set<string>()
      const out: Delivery[] = []
      let scanned = 0
      for (const { key: seq, value } of this.outbox.getRange()) {
        if (out.length >= limit || ++scanned > CLAIM_SCAN) break
        if (seen.has(value.key)) continue // an older entry of this key comes first
        seen.add(value.key)
        if (value.state !== 'pending' || value.leasedUntil > now || value.notBefore > now) continue // blocks its key
        const claimed: Entry = { ...value, attempts: value.attempts + 1, leasedUntil: now + leaseMs }
        void this.outbox.put(seq, claimed)
        out.push(toDelivery(seq, claimed))
      }
      return out
    })
  }

  async delivered (seq: number): Promise<void> {
    await this.outbox.remove(seq)
  }

  async retry (seq: number, notBefore: number, reason: string): Promise<void> {
    await this.update(seq, (e) => ({ ...e, notBefore, reason, leasedUntil: 0 }))
  }

  async deadLetter (seq: number, reason: string): Promise<void> {
    await this.update(seq, (e) => ({ ...e, state: 'dead', reason, leasedUntil: 0 }))
  }

  async replay (seq: number): Promise<boolean> {
    return this.update(seq, (e) => (e.state === 'dead' ? { ...e, state: 'pending', notBefore: 0, attempts: 0, leasedUntil: 0 } : null))
  }

  async skip (seq: number): Promise<boolean> {
    return this.env.transaction(() => {
      if (this.outbox.get(seq) === undefined) return false
      void this.outbox.remove(seq)
      return true
    })
  }

  async get (seq: number): Promise<Delivery | null> {
    const e = this.outbox.get(seq)
    return e === undefined ? null : toDelivery(seq, e)
  }

  async deadLetters (limit: number): Promise<Delivery[]> {
    const out: Delivery[] = []
    for (const { key, value } of this.outbox.getRange()) {
      if (out.length >= limit) break
      if (value.state === 'dead') out.push(toDelivery(key, value))
    }
    return out
  }

  async stats (): Promise<StoreStats> {
    let pending = 0
    let dead = 0
    let oldestPending: number | null = null
    for (const { value } of this.outbox.getRange()) {
      if (value.state === 'dead') {
        dead++
      } else {
        pending++
        if (oldestPending === null || value.createdAt < oldestPending) oldestPending = value.createdAt
      }
    }
    return { pending, dead, oldestPending }
  }

  async mappedId (entity: string, side: Backend, id: string): Promise<string | null> {
    return this.ids.get([entity, side, id]) ?? null
  }

  async mapIds (entity: string, legacyId: string, newId: string): Promise<boolean> {
    return this.env.transaction(() => {
      const toNew = this.ids.get([entity, 'legacy', legacyId])
      const toLegacy = this.ids.get([entity, 'new', newId])
      if (toNew === newId && toLegacy === legacyId) return true // already known
      if (toNew !== undefined || toLegacy !== undefined) return false // either id is paired with another
      void this.ids.put([entity, 'legacy', legacyId], newId)
      void this.ids.put([entity, 'new', newId], legacyId)
      return true
    })
  }

  async close (): Promise<void> {
    await this.env.close()
  }

  /** Rewrites one entry in a write transaction; `change` returns null to leave it. False when there is no such entry, or nothing changed. */
  private async update (seq: number, change: (e: Entry) => Entry | null): Promise<boolean> {
    return this.env.transaction(() => {
      const e = this.outbox.get(seq)
      if (e === undefined) return false
      const next = change(e)
      if (next === null) return false
      void this.outbox.put(seq, next)
      return true
    })
  }
}

function toDelivery(seq: number, e: Entry): Delivery {
  const { leasedUntil, ...delivery } = e
  void leasedUntil // the claim is the store's own, not the caller's
  // msgpack hands a Uint8Array back: a Buffer, as the contract says.
  return { ...delivery, seq, body: e.body === null ? null : Buffer.from(e.body) }
}
