import type { StoreConfig } from '../config/schema.js'
import { LmdbStore } from './lmdb-store.js'
import { PgStore } from './pg-store.js'
import type { SyncStore } from './sync-store.js'

/** The sync store `store:` names: LMDB at its path (created when missing), or PostgreSQL at its URL (tables created on first use). */
export function openStore(c: StoreConfig): SyncStore {
  return c.kind === 'embedded' ? new LmdbStore(c.path) : new PgStore(c.url)
}

/**
 * The one handle of a process on its sync store, opened on first use and shared by every
 * user in the process (the traffic side's SyncRuntime, the admin API), closed when the last
 * lets go. One handle, not one each: two lmdb-js handles on one file in one process deadlock
 * (a handle opening its tables takes LMDB's write lock synchronously on the main thread,
 * while the other's write transaction holds it and waits for that same thread to run its
 * callback). Processes each have their own (`--workers`: LMDB's lock file serialises them).
 */
export class ProcessStore {
  private store: SyncStore | null = null
  private users = 0

  constructor (readonly config: StoreConfig, private readonly open: (c: StoreConfig) => SyncStore = openStore) {}

  /** The store, opened now if it is not (throws when it cannot be); each acquire is matched by a release. */
  acquire (): SyncStore {
    this.store ??= this.open(this.config)
    this.users++
    return this.store
  }

  /** One user is done; the last closes the store. */
  async release (): Promise<void> {
    if (this.users === 0) return
    if (--this.users > 0 || this.store === null) return
    const s = this.store
    this.store = null
    await s.close()
  }
}
