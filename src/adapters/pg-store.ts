import pg from 'pg'
import type { Backend } from '../core/types.js'
import type { Delivery, IdPair, NewWrite, RouteStats, StoreStats, StoredRamp, SyncStore, WritePlan } from './sync-store.js'

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
  plan jsonb,
  created_at bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  not_before bigint NOT NULL DEFAULT 0,
  state text NOT NULL DEFAULT 'pending',
  reason text,
  leased_until bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ficus_outbox_key_seq ON ficus_outbox (key, seq);
CREATE INDEX IF NOT EXISTS ficus_outbox_intents ON ficus_outbox (not_before) WHERE state = 'intent';
CREATE TABLE IF NOT EXISTS ficus_ids (
  entity text NOT NULL,
  side text NOT NULL,
  id text NOT NULL,
  other text NOT NULL,
  origin text NOT NULL,
  PRIMARY KEY (entity, side, id)
);
CREATE TABLE IF NOT EXISTS ficus_sync_paused (route text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ficus_ramp (route text PRIMARY KEY, version bigint NOT NULL, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS ficus_lease (name text PRIMARY KEY, owner text NOT NULL, until_ms bigint NOT NULL);`

interface Row {
  seq: string
  route: string
  key: string
  target: Backend
  method: string
  path: string
  headers: [string, string][]
  body: Buffer | null
  plan: WritePlan | null
  created_at: string
  attempts: number
  not_before: string
  state: 'intent' | 'pending' | 'dead'
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
    return this.add(writes, 'pending', 0)
  }

  async intend (writes: readonly NewWrite[], expiresAt: number): Promise<number[]> {
    return this.add(writes, 'intent', expiresAt)
  }

  private async add (writes: readonly NewWrite[], state: 'pending' | 'intent', notBefore: number): Promise<number[]> {
    if (writes.length === 0) return []
    const now = this.clock()
    return this.tx(async (c) => {
      await lockKeys(c, writes.map((w) => w.key))
      const seqs: number[] = []
      for (const w of writes) {
        const r = await c.query<{ seq: string }>(
          `INSERT INTO ficus_outbox (route, key, target, method, path, headers, body, plan, created_at, state, not_before)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq`,
          [w.route, w.key, w.target, w.method, w.path, JSON.stringify(w.headers), w.body, w.plan === null ? null : JSON.stringify(w.plan), now, state, notBefore])
        seqs.push(Number(r.rows[0]?.seq))
      }
      return seqs
    })
  }

  async settle (seq: number, write: NewWrite | null): Promise<boolean> {
    return this.tx(async (c) => {
      if (write === null) {
        const r = await c.query('DELETE FROM ficus_outbox WHERE seq = $1 AND state = \'intent\'', [seq])
        return r.rowCount === 1
      }
      await lockKeys(c, [write.key])
      const r = await c.query(
        `UPDATE ficus_outbox SET state = 'pending', not_before = 0, route = $2, key = $3, target = $4, method = $5, path = $6, headers = $7, body = $8, plan = $9
         WHERE seq = $1 AND state = 'intent'`,
        [seq, write.route, write.key, write.target, write.method, write.path, JSON.stringify(write.headers), write.body, write.plan === null ? null : JSON.stringify(write.plan)])
      return r.rowCount === 1
    })
  }

  async expire (now: number): Promise<Delivery[]> {
    await this.schema()
    const r = await this.pool.query<Row>(
      'UPDATE ficus_outbox SET state = \'dead\', reason = \'outcome_unknown\' WHERE state = \'intent\' AND not_before <= $1 RETURNING *', [now])
    return r.rows.map(toDelivery).sort((a, b) => a.seq - b.seq)
  }

  async claim (now: number, limit: number, leaseMs: number, delivered: readonly number[] = []): Promise<Delivery[]> {
    return this.tx(async (c) => {
      if (delivered.length > 0) await c.query('DELETE FROM ficus_outbox WHERE seq = ANY($1::bigint[])', [delivered])
      if (limit <= 0) return []
      const r = await c.query<Row>(
        `WITH heads AS (
           SELECT DISTINCT ON (key) seq, state, leased_until, not_before FROM ficus_outbox ORDER BY key, seq
         ), due AS (
           SELECT seq FROM heads WHERE state = 'pending' AND leased_until <= $1 AND not_before <= $1 ORDER BY seq LIMIT $2
         ), paused AS (
           SELECT route FROM ficus_sync_paused
         ), locked AS (
           SELECT seq FROM ficus_outbox
           WHERE seq IN (SELECT seq FROM due) AND state = 'pending' AND leased_until <= $1
             AND route NOT IN (SELECT route FROM paused) AND NOT EXISTS (SELECT 1 FROM paused WHERE route = '*')
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
    await this.pool.query('UPDATE ficus_outbox SET not_before = $2, reason = $3, leased_until = 0 WHERE seq = $1 AND state = \'pending\'', [seq, notBefore, reason])
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

  async waitingFor (key: string, target: Backend): Promise<{ pending: number; dead: number }> {
    await this.schema()
    const r = await this.pool.query<{ pending: string; dead: string }>(
      `SELECT count(*) FILTER (WHERE state = 'pending') AS pending, count(*) FILTER (WHERE state = 'dead') AS dead
       FROM ficus_outbox WHERE key = $1 AND target = $2`, [key, target])
    return { pending: Number(r.rows[0]?.pending ?? 0), dead: Number(r.rows[0]?.dead ?? 0) }
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
    const r = await this.pool.query<{ route: string; target: Backend; intents: string; pending: string; dead: string; oldest: string | null }>(
      `SELECT route, target, count(*) FILTER (WHERE state = 'intent') AS intents, count(*) FILTER (WHERE state = 'pending') AS pending,
              count(*) FILTER (WHERE state = 'dead') AS dead, min(created_at) FILTER (WHERE state = 'pending') AS oldest
       FROM ficus_outbox GROUP BY route, target ORDER BY route, target`)
    let intents = 0
    let pending = 0
    let dead = 0
    let oldestPending: number | null = null
    const routes: RouteStats[] = []
    for (const row of r.rows) {
      const o = row.oldest === null ? null : Number(row.oldest)
      intents += Number(row.intents)
      pending += Number(row.pending)
      dead += Number(row.dead)
      if (o !== null && (oldestPending === null || o < oldestPending)) oldestPending = o
      if (Number(row.pending) + Number(row.dead) > 0) routes.push({ route: row.route, target: row.target, pending: Number(row.pending), dead: Number(row.dead), oldestPending: o })
    }
    return { intents, pending, dead, oldestPending, routes }
  }

  async probe (): Promise<void> {
    await this.schema()
    await this.pool.query('SELECT 1')
  }

  async setPaused (route: string, paused: boolean): Promise<void> {
    await this.schema()
    if (paused) await this.pool.query('INSERT INTO ficus_sync_paused (route) VALUES ($1) ON CONFLICT DO NOTHING', [route])
    else await this.pool.query('DELETE FROM ficus_sync_paused WHERE route = $1', [route])
  }

  async paused (): Promise<string[]> {
    await this.schema()
    const r = await this.pool.query<{ route: string }>('SELECT route FROM ficus_sync_paused ORDER BY route')
    return r.rows.map((x) => x.route)
  }

  async lookupId (entity: string, side: Backend, id: string): Promise<IdPair | null> {
    await this.schema()
    const r = await this.pool.query<{ other: string; origin: Backend }>('SELECT other, origin FROM ficus_ids WHERE entity = $1 AND side = $2 AND id = $3', [entity, side, id])
    const row = r.rows[0]
    return row === undefined ? null : { other: row.other, origin: row.origin }
  }

  async lookupIds (entity: string, side: Backend, ids: readonly string[]): Promise<Map<string, IdPair>> {
    const out = new Map<string, IdPair>()
    if (ids.length === 0) return out
    await this.schema()
    const r = await this.pool.query<{ id: string; other: string; origin: Backend }>(
      'SELECT id, other, origin FROM ficus_ids WHERE entity = $1 AND side = $2 AND id = ANY($3::text[])', [entity, side, ids])
    for (const row of r.rows) out.set(row.id, { other: row.other, origin: row.origin })
    return out
  }

  async idCounts (): Promise<Record<string, number>> {
    await this.schema()
    const r = await this.pool.query<{ entity: string; n: string }>('SELECT entity, count(*) AS n FROM ficus_ids WHERE side = \'legacy\' GROUP BY entity')
    return Object.fromEntries(r.rows.map((x) => [x.entity, Number(x.n)]))
  }

  async mapIds (entity: string, legacyId: string, newId: string, origin: Backend): Promise<boolean> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ficus_ids:${entity}`])
      const r = await c.query<{ side: string; other: string }>(
        'SELECT side, other FROM ficus_ids WHERE entity = $1 AND ((side = \'legacy\' AND id = $2) OR (side = \'new\' AND id = $3))', [entity, legacyId, newId])
      const toNew = r.rows.find((x) => x.side === 'legacy')?.other
      const toLegacy = r.rows.find((x) => x.side === 'new')?.other
      if (toNew === newId && toLegacy === legacyId) return true
      if (toNew !== undefined || toLegacy !== undefined) return false
      await c.query('INSERT INTO ficus_ids (entity, side, id, other, origin) VALUES ($1, \'legacy\', $2, $3, $4), ($1, \'new\', $3, $2, $4)', [entity, legacyId, newId, origin])
      return true
    })
  }

  async ramps (): Promise<StoredRamp[]> {
    await this.schema()
    const r = await this.pool.query<{ route: string; version: string; value: unknown }>('SELECT route, version, value FROM ficus_ramp ORDER BY route')
    return r.rows.map((x) => ({ route: x.route, version: Number(x.version), value: x.value }))
  }

  async putRamp (route: string, value: unknown, expected: number): Promise<number | null> {
    await this.schema()
    const json = JSON.stringify(value)
    const r = expected === 0
      ? await this.pool.query<{ version: string }>('INSERT INTO ficus_ramp (route, version, value) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING RETURNING version', [route, json])
      : await this.pool.query<{ version: string }>('UPDATE ficus_ramp SET version = version + 1, value = $2 WHERE route = $1 AND version = $3 RETURNING version', [route, json, expected])
    const row = r.rows[0]
    return row === undefined ? null : Number(row.version)
  }

  async lease (name: string, owner: string, ttlMs: number): Promise<string> {
    await this.schema()
    // The database's clock, one for every replica.
    const now = 'floor(extract(epoch from clock_timestamp()) * 1000)::bigint'
    await this.pool.query(`INSERT INTO ficus_lease (name, owner, until_ms) VALUES ($1, $2, ${now} + $3)
      ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until_ms = EXCLUDED.until_ms
      WHERE ficus_lease.owner = EXCLUDED.owner OR ficus_lease.until_ms <= ${now}`, [name, owner, ttlMs])
    const r = await this.pool.query<{ owner: string }>('SELECT owner FROM ficus_lease WHERE name = $1', [name])
    return r.rows[0]?.owner ?? owner
  }

  async unlease (name: string, owner: string): Promise<void> {
    await this.schema()
    await this.pool.query('DELETE FROM ficus_lease WHERE name = $1 AND owner = $2', [name, owner])
  }

  async close (): Promise<void> {
    await this.pool.end()
  }
}

/** Takes the append lock of each key, in a fixed order (no deadlock between two transactions on the same keys). */
async function lockKeys(c: pg.PoolClient, keys: readonly string[]): Promise<void> {
  for (const key of [...new Set(keys)].sort()) {
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`ficus_outbox:${key}`])
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
    plan: r.plan,
    createdAt: Number(r.created_at),
    attempts: r.attempts,
    notBefore: Number(r.not_before),
    state: r.state,
    reason: r.reason
  }
}
