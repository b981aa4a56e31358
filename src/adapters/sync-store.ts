import type { Backend } from '../core/types.js'

/**
 * The durable store of dual writes (issue #20; DESIGN.md "Data-safe writes"): an outbox of
 * writes to deliver to the other side, in order per entity key, at least once, and the id
 * map between the two sides. One interface, two implementations: LMDB for one replica (its
 * `--workers` processes share the file: lmdb-store.ts) and PostgreSQL for a fleet. Both run
 * the same contract suite (test/integration/sync-store.test.ts).
 *
 * This file is the contract only: what a caller may rely on is said on each method.
 */

/** A write the primary accepted, to be delivered to `target`. */
export interface NewWrite {
  readonly route: string
  /** The entity key (`order:26`): deliveries of one key happen one at a time, in append order. */
  readonly key: string
  readonly target: Backend
  readonly method: string
  /** Path and query, as the target is to get them (ids already translated when they were known). */
  readonly path: string
  /** Header name/value pairs to send (credentials per sync.auth; hop-by-hop already removed). */
  readonly headers: readonly (readonly [string, string])[]
  readonly body: Buffer | null
}

/** An outbox entry as the store keeps it. */
export interface Delivery extends NewWrite {
  /** Assigned by the store at append: increasing over the whole store, never reused. */
  readonly seq: number
  /** When it was appended, ms since the epoch (the lag of its key is measured from it). */
  readonly createdAt: number
  /** Delivery attempts so far (claims). */
  readonly attempts: number
  /** Not claimed again before this time, ms since the epoch (a retry's backoff). */
  readonly notBefore: number
  readonly state: 'pending' | 'dead'
  /** Why the last attempt failed, or why it is a dead letter. */
  readonly reason: string | null
}

export interface StoreStats {
  readonly pending: number
  readonly dead: number
  /** createdAt of the oldest pending entry (the sync lag is now minus it), or null when none. */
  readonly oldestPending: number | null
}

export interface SyncStore {
  /**
   * Appends writes; resolves with their seqs once they are durable (on disk: a crash after
   * this resolves loses none of them). Appends made together are one commit (group commit).
   */
  append(writes: readonly NewWrite[]): Promise<number[]>
  /**
   * Claims up to `limit` entries due at `now`: for each entity key, only its oldest entry, and
   * only when that one is pending, due, and not claimed by anyone else (a claim is a lease
   * until `now + leaseMs`; a claimer that died leaves it to be claimed again after that). A
   * dead letter blocks its key: nothing after it is claimed until it is replayed or skipped.
   */
  claim(now: number, limit: number, leaseMs: number): Promise<Delivery[]>
  /** The target took it: the entry is gone, and the next one of its key becomes claimable. */
  delivered(seq: number): Promise<void>
  /** The attempt failed and may be retried from `notBefore` (ms since the epoch). */
  retry(seq: number, notBefore: number, reason: string): Promise<void>
  /** The entry cannot be delivered (a 4xx the target will always give, retries exhausted): it stays, blocking its key. */
  deadLetter(seq: number, reason: string): Promise<void>
  /** A dead letter becomes pending again, due at once; false when there is no such dead letter. */
  replay(seq: number): Promise<boolean>
  /** An entry is dropped without being delivered (an operator's decision, audited by the caller); false when there is none. */
  skip(seq: number): Promise<boolean>
  /** One entry, or null. */
  get(seq: number): Promise<Delivery | null>
  /** Dead letters, oldest first. */
  deadLetters(limit: number): Promise<Delivery[]>
  stats(): Promise<StoreStats>

  /** The id `id` of `side` has on the other side, for `entity`; null when not known. */
  mappedId(entity: string, side: Backend, id: string): Promise<string | null>
  /** Records that `legacyId` and `newId` are the same `entity`; durable once resolved. A pair never changes once set: a conflicting one is refused (false). */
  mapIds(entity: string, legacyId: string, newId: string): Promise<boolean>

  close(): Promise<void>
}
