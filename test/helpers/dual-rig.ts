import { join } from 'node:path'
import type { Test } from 'tap'
import { startRecords, type Records } from '../../demo/records.js'
import { admin } from './admin.js'
import { startTestFicus, type TestFicus } from './ficus.js'
import { waitFor } from './wait.js'

/**
 * Dual writes in this process: two records APIs (demo/records.ts: legacy gives ids from
 * 1000, new `n-3e9`…) behind a real Ficus on a real LMDB file. (test/helpers/sync-rig.ts is
 * the same with Ficus as a process of its own, for the tests that kill it.)
 */
export interface DualRig {
  readonly legacy: Records
  readonly next: Records
  readonly f: TestFicus
}

/** The notes API's two routes (creates; one note by id), both dual, legacy answering. */
export const NOTES_ROUTES = [
  { name: 'notes-create', match: { path: '/api/notes', methods: ['POST'] }, new: 0, sync: { mode: 'dual', entity: 'note', learn: 'response.body.id' } },
  { name: 'notes', match: { path: '/api/notes/:id' }, new: 0, sync: { mode: 'dual', entity: 'note', key: 'path.id' } }
]

/** `top` is merged into routes.yaml (its `sync` over short retries); `routes` replaces NOTES_ROUTES. */
export async function dualRig(t: Test, top: Record<string, unknown> = {}, routes: readonly Record<string, unknown>[] = NOTES_ROUTES): Promise<DualRig> {
  const legacy = await startRecords('legacy')
  const next = await startRecords('new')
  t.teardown(async () => { await Promise.all([legacy.close(), next.close()]) })
  const { sync, ...rest } = top
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    store: { kind: 'embedded', path: join(t.testdir(), 'ficus.lmdb') },
    sync: { retry: { base: '20ms', max: '200ms' }, ...(sync as object | undefined) },
    ...rest,
    routes
  })
  return { legacy, next, f }
}

/** Resolves once the outbox holds nothing pending and no intent. */
export async function caughtUp(f: TestFicus): Promise<void> {
  await waitFor(async () => {
    const st = await f.running.ficus.sync()?.store.stats()
    return st !== undefined && st.pending === 0 && st.intents === 0
  }, { message: 'the outbox did not drain' })
}

/** Sets the share of users on new of each route named (through the admin API). */
export async function setNew(f: TestFicus, percent: number, routes: readonly string[] = ['notes-create', 'notes']): Promise<void> {
  for (const name of routes) {
    const r = await admin(f, 'PATCH', `/admin/routes/${name}`, { json: { new: percent } })
    if (r.status !== 200) throw new Error(`PATCH ${name}: ${r.status} ${r.text}`)
  }
}
