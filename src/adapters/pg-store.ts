import pg from 'pg'
import type { Backend } from '../core/types.js'
import type { Delivery, NewWrite, StoreStats, SyncStore } from './sync-store.js'

/**
 * The fleet's sync store (`store: { kind: postgres, url }`): several Ficus replicas share one
 * PostgreSQL database. The outbox is a table ordered by a sequence; what makes it safe with
 * several writers and claimers:
 * - appends of one entity key are serialised by a transaction-scoped advisory lock on the key,
 *   so for each key the sequence order is the commit order (a later write can never commit
 *   under a smaller seq than one a claimer has already seen);
 * - a claim takes each key's oldest entry, and locks it with `FOR UPDATE SKIP LOCKED`,
 *   re-checking the lease on the row it locked: two replicas never claim one entry, and a
 *   replica that died leaves its claims to be taken again once their lease ends;
 * - `append` resolves once its transaction committed (synchronous_commit as the server has it:
 *   `on`, PostgreSQL's default, is durable).
 */

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ficus_outbox (
  seq bigserial PRIMARY KEY,
  route text NOT NULL,
  key text NOT NULL,
  target text NOT NULL,
  method text NOT NULL,
  path text NOT NULL,
  headers jsonb NOT NULL,
  body bytea,
  created_at bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  not_before bigint NOT NULL DEFAULT 0,
  state text NOT NULL DEFAULT 'pending',
  reason text,
  leased_until bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ficus_outbox_key_seq ON ficus_outbox (key, seq);
CREATE TABLE IF NOT EXISTS ficus_ids (
  entity text NOT NULL,
  side text NOT NULL,
  id text NOT NULL,
  other text NOT NULL,
  PRIMARY KEY (entity, side, id)
);`

interface Row {
  seq: string
  route: string
  key: string
  target: Backend
  method: string
  path: string
  headers: [string, string][]
  body: Buffer | null
  created_at: string
  attempts: number
  not_before: string
  state: 'pending' | 'dead'
  reason: string | null
}

export class PgStore implements SyncStore {
  private readonly pool: pg.Pool
  private ready: Promise<void> | null = null

  constructor (url: string, private readonly clock: () => number = Date.now) {
    this.pool = new pg.Pool({ connectionString: url, max: 8 })
    this.pool.on('error', () => { /* an idle client lost its connection: the pool makes another */ })
  }

  /** Creates the tables once (idempotent: replicas starting together agree). */
  private async schema (): Promise<void> {
    this.ready ??= (async () => {
      const c = await this.pool.connect()
      try {
        // One replica at a time: CREATE ... IF NOT EXISTS races on the catalog otherwise.
        await c.query('BEGIN')
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['ficus_schema'])
        await c.query(SCHEMA)
        await c.query('COMMIT')
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined)
        this.ready = null
        throw err
      } finally {
        c.release()
      }
    })()
    return this.ready
  }

  private async tx<T>(run: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.schema()
    const c = await this.pool.connect()
    try {
      await c.query('BEGIN')
      const out = await run(c)
      await c.query('COMMIT')
      return out
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined)
      throw err
    } finally {
      c.release()
    }
  }

  async append (writes: readonly NewWrite[]): Promise<number[]> {
    if (writes.length === 0) return []
    const now = this.clock()
    return this.tx(async (c) => {
      // Per key, in a fixed order (no deadlock between two appends of the same keys).
      for (const key of [...new Set(writes.map((w) => w.key))].sort()) {
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ficus_outbox:${key}`])
      }
      const seqs: number[] = []
      for (const w of writes) {
        const r = await c.query<{ seq: string }>(
          `INSERT INTO ficus_outbox (route, key, target, method, path, headers, body, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`,
          [w.route, w.key, w.target, w.method, w.path, JSON.stringify(w.headers), w.body, now])
        seqs.push(Number(r.rows[0]?.seq))
      }
      return seqs
    })
  }

  async claim (now: number, limit: number, leaseMs: number): Promise<Delivery[]> {
    return this.tx(async (c) => {
      const r = await c.query<Row>(
        `WITH heads AS (
           SELECT DISTINCT ON (key) seq, state, leased_until, not_before FROM ficus_outbox ORDER BY key, seq
         ), due AS (
           SELECT seq FROM heads WHERE state = 'pending' AND leased_until <= $1 AND not_before <= $1 ORDER BY seq LIMIT $2
         ), locked AS (
           SELECT seq FROM ficus_outbox
           WHERE seq IN (SELECT seq FROM due) AND state = 'pending' AND leased_until <= $1
           FOR UPDATE SKIP LOCKED
         )
         UPDATE ficus_outbox o SET attempts = o.attempts + 1, leased_until = $1 + $3
         FROM locked WHERE o.seq = locked.seq
         RETURNING o.*`,
        [now, limit, leaseMs])
      return r.rows.map(toDelivery).sort((a, b) => a.seq - b.seq)
    })
  }

  async delivered (seq: number): Promise<void> {
    await this.schema()
    await this.pool.query('DELETE FROM ficus_outbox WHERE seq = $1', [seq])
  }

  async retry (seq: number, notBefore: number, reason: string): Promise<void> {
    await this.schema()
    await this.pool.query('UPDATE ficus_outbox SET not_before = $2, reason = $3, leased_until = 0 WHERE seq = $1', [seq, notBefore, reason])
  }

  async deadLetter (seq: number, reason: string): Promise<void> {
    await this.schema()
    await this.pool.query('UPDATE ficus_outbox SET state = \'dead\', reason = $2, leased_until = 0 WHERE seq = $1', [seq, reason])
  }

  async replay (seq: number): Promise<boolean> {
    await this.schema()
    const r = await this.pool.query('UPDATE ficus_outbox SET state = \'pending\', not_before = 0, attempts = 0, leased_until = 0 WHERE seq = $1 AND state = \'dead\'', [seq])
    return r.rowCount === 1
  }

  async skip (seq: number): Promise<boolean> {
    await this.schema()
    const r = await this.pool.query('DELETE FROM ficus_outbox WHERE seq = $1', [seq])
    return r.rowCount === 1
  }

  async get (seq: number): Promise<Delivery | null> {
    await this.schema()
    const r = await this.pool.query<Row>('SELECT * FROM ficus_outbox WHERE seq = $1', [seq])
    const row = r.rows[0]
    return row === undefined ? null : toDelivery(row)
  }

  async deadLetters (limit: number): Promise<Delivery[]> {
    await this.schema()
    const r = await this.pool.query<Row>('SELECT * FROM ficus_outbox WHERE state = \'dead\' ORDER BY seq LIMIT $1', [limit])
    return r.rows.map(toDelivery)
  }

  async stats (): Promise<StoreStats> {
    await this.schema()
    const r = await this.pool.query<{ pending: string; dead: string; oldest: string | null }>(
      `SELECT count(*) FILTER (WHERE state = 'pending') AS pending, count(*) FILTER (WHERE state = 'dead') AS dead,
              min(created_at) FILTER (WHERE state = 'pending') AS oldest FROM ficus_outbox`)
    const row = r.rows[0]
    return { pending: Number(row?.pending ?? 0), dead: Number(row?.dead ?? 0), oldestPending: row?.oldest == null ? null : Number(row.oldest) }
  }

  async mappedId (entity: string, side: Backend, id: string): Promise<string | null> {
    await this.schema()
    const r = await this.pool.query<{ other: string }>('SELECT other FROM ficus_ids WHERE entity = $1 AND side = $2 AND id = $3', [entity, side, id])
    return r.rows[0]?.other ?? null
  }

  async mapIds (entity: string, legacyId: string, newId: string): Promise<boolean> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ficus_ids:${entity}`])
      const r = await c.query<{ side: string; other: string }>(
        'SELECT side, other FROM ficus_ids WHERE entity = $1 AND ((side = \'legacy\' AND id = $2) OR (side = \'new\' AND id = $3))', [entity, legacyId, newId])
      const toNew = r.rows.find((x) => x.side === 'legacy')?.other
      const toLegacy = r.rows.find((x) => x.side === 'new')?.other
      if (toNew === newId && toLegacy === legacyId) return true
      if (toNew !== undefined || toLegacy !== undefined) return false
      await c.query('INSERT INTO ficus_ids (entity, side, id, other) VALUES ($1, \'legacy\', $2, $3), ($1, \'new\', $3, $2)', [entity, legacyId, newId])
      return true
    })
  }

  async close (): Promise<void> {
    await this.pool.end()
  }
}

function toDelivery(r: Row): Delivery {
  return {
    seq: Number(r.seq),
    route: r.route,
    key: r.key,
    target: r.target,
    method: r.method,
    path: r.path,
    headers: r.headers,
    body: r.body,
    createdAt: Number(r.created_at),
    attempts: r.attempts,
    notBefore: Number(r.not_before),
    state: r.state,
    reason: r.reason
  }
}
