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
  /** What the deliverer translates and learns (ids of a dual route); null: sent as it is. */
  readonly plan: WritePlan | null
}

/**
 * The ids a write carries, as the side that took it (`source`) knows them: the deliverer
 * translates each through the id map for the target, at delivery (by then the entity's
 * earlier writes, its create among them, have been delivered: ordering per key), and learns
 * the target's id of a created entity from its answer.
 */
export interface WritePlan {
  readonly source: Backend
  readonly entity: string
  readonly ids: readonly IdRef[]
  /** A create: where the target's answer holds the id it gave (`response.body.id`, `response.header.location`), and the id the source gave. */
  readonly learn: { readonly from: string; readonly sourceId: string } | null
}

/** One id in a write: a path segment (its index, 0 = the first after the leading `/`) or a JSON body field (a dotted path). */
export type IdRef =
  | { readonly in: 'path'; readonly segment: number; readonly entity: string; readonly id: string }
  | { readonly in: 'body'; readonly field: string; readonly entity: string; readonly id: string }

/** What the id map knows of an id: its counterpart on the other side, and which side created the entity. */
export interface IdPair {
  readonly other: string
  readonly origin: Backend
}

/** An outbox entry as the store keeps it. */
export interface Delivery extends NewWrite {
  /** Assigned by the store at append: increasing over the whole store, never reused. */
  readonly seq: number
  /** When it was appended, ms since the epoch (the lag of its key is measured from it). */
  readonly createdAt: number
  /** Delivery attempts so far (claims). */
  readonly attempts: number
  /** Not claimed again before this time, ms since the epoch (a retry's backoff; an intent's expiry). */
  readonly notBefore: number
  /**
   * `intent`: sent to the primary, its answer not yet known (it blocks its key, and becomes a
   * dead letter with reason `outcome_unknown` if it is not settled by its expiry: Ficus died
   * in between); `pending`: to deliver; `dead`: a dead letter.
   */
  readonly state: 'intent' | 'pending' | 'dead'
  /** Why the last attempt failed, or why it is a dead letter. */
  readonly reason: string | null
}

export interface StoreStats extends QueueStats {
  /** Writes whose primary answer is awaited (intents). */
  readonly intents: number
  /** The same, per route and target (only those with an entry). */
  readonly routes: readonly RouteStats[]
}

export interface QueueStats {
  readonly pending: number
  readonly dead: number
  /** createdAt of the oldest pending entry (the sync lag is now minus it), or null when none. */
  readonly oldestPending: number | null
}

export interface RouteStats extends QueueStats {
  readonly route: string
  readonly target: Backend
}

export interface SyncStore {
  /**
   * Appends writes; resolves with their seqs once they are durable (on disk: a crash after
   * this resolves loses none of them). Appends made together are one commit (group commit).
   */
  append(writes: readonly NewWrite[]): Promise<number[]>
  /**
   * Records writes about to be sent to their primary, durably, as intents that expire at
   * `expiresAt` (ms since the epoch): each blocks its key until it is settled.
   */
  intend(writes: readonly NewWrite[], expiresAt: number): Promise<number[]>
  /**
   * Settles an intent once the primary answered: `write` (2xx) makes it pending, as given
   * (its key, path and plan may now be known: a create's id); null (any other answer, or
   * nothing was sent) removes it. Durable once resolved. False when there is no such intent.
   */
  settle(seq: number, write: NewWrite | null): Promise<boolean>
  /**
   * Intents past their expiry become dead letters with reason `outcome_unknown`; returns them.
   * A store whose processes share a machine (LMDB) also expires at once the intents of a
   * process that is gone.
   */
  expire(now: number): Promise<Delivery[]>
  /**
   * Claims up to `limit` entries due at `now`: for each entity key, only its oldest entry, and
   * only when that one is pending, due, and not claimed by anyone else (a claim is a lease
   * until `now + leaseMs`; a claimer that died leaves it to be claimed again after that). A
   * dead letter blocks its key: nothing after it is claimed until it is replayed or skipped,
   * and so does an intent. Entries of a paused route (or all, when `*` is paused) wait.
   * `delivered` (entries this caller claimed and their targets took) are dropped first, in
   * the same transaction, as `delivered` would: a deliverer commits its acknowledgements and
   * its next claim at once (one commit, not one per delivery, on the disk users' writes wait for).
   */
  claim(now: number, limit: number, leaseMs: number, delivered?: readonly number[]): Promise<Delivery[]>
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
  /** Entries of entity key `key` still to reach `target`: pending, and dead letters (for a fence: has that side got every write of this record?). */
  waitingFor(key: string, target: Backend): Promise<{ readonly pending: number; readonly dead: number }>
  /** One entry, or null. */
  get(seq: number): Promise<Delivery | null>
  /** Dead letters, oldest first. */
  deadLetters(limit: number): Promise<Delivery[]>
  stats(): Promise<StoreStats>
  /** A durable write of nothing: resolves when the store can take writes, throws (disk full, unwritable, unreachable) when not. */
  probe(): Promise<void>
  /** Pauses (or resumes) delivery of one route's writes, or of all with `*`, for every process and replica on this store. */
  setPaused(route: string, paused: boolean): Promise<void>
  /** The paused routes (`*`: all). */
  paused(): Promise<string[]>

  /** What the id map knows of `side`'s id `id` for `entity`: its counterpart and the entity's origin; null when nothing. */
  lookupId(entity: string, side: Backend, id: string): Promise<IdPair | null>
  /** The same, at once, for a store that reads without waiting (LMDB: memory-mapped); absent otherwise. Throws when the store cannot be read. */
  readonly lookupIdSync?: (entity: string, side: Backend, id: string) => IdPair | null
  /**
   * lookupId for several of `side`'s ids of one entity at once (one query, not one per id:
   * a shadow comparison asks about every id of an answer): the ids the map knows, each with
   * what lookupId would give; an id it does not know is absent.
   */
  lookupIds(entity: string, side: Backend, ids: readonly string[]): Promise<Map<string, IdPair>>
  /**
   * Records that `legacyId` and `newId` are the same `entity`, created on `origin`; durable
   * once resolved. A pair never changes once set: a conflicting one is refused (false).
   */
  mapIds(entity: string, legacyId: string, newId: string, origin: Backend): Promise<boolean>
  /** Pairs in the id map, per entity. */
  idCounts(): Promise<Record<string, number>>

  /** The ramps' records (docs/ramp.md), each with its version (raised by every write): every replica reads them. */
  ramps(): Promise<StoredRamp[]>
  /**
   * Writes a ramp's record if its version is still `expected` (0: there is none yet); durable
   * once resolved. The new version, or null when another writer changed it first (nothing written).
   */
  putRamp(route: string, value: unknown, expected: number): Promise<number | null>
  /**
   * Takes or renews the lease `name` for `owner`, for `ttlMs` from now, when it is free,
   * expired or already `owner`'s; resolves with who holds it afterwards. Time is the store's
   * (PostgreSQL's clock for a fleet: replicas' clocks may differ).
   */
  lease(name: string, owner: string, ttlMs: number): Promise<string>
  /** Gives the lease up, if `owner` holds it (a replica stopping hands over at once). */
  unlease(name: string, owner: string): Promise<void>

  close(): Promise<void>
}

/** A ramp's record as the store keeps it. */
export interface StoredRamp {
  readonly route: string
  readonly version: number
  readonly value: unknown
}
