import type { StoreConfig } from '../config/schema.js'
import { LmdbStore } from './lmdb-store.js'
import { PgStore } from './pg-store.js'
import type { SyncStore } from './sync-store.js'

/** The sync store `store:` names: LMDB at its path (created when missing), or PostgreSQL at its URL (tables created on first use). */
export function openStore(c: StoreConfig): SyncStore {
  return c.kind === 'embedded' ? new LmdbStore(c.path) : new PgStore(c.url)
}
