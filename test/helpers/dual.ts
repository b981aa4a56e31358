import { join } from 'node:path'
import type { Test } from 'tap'
import { startRecords, type Records } from '../../demo/records.js'
import { admin } from './admin.js'
import { startTestFicus, type TestFicus } from './ficus.js'
import { CLI, run } from './spawn.js'
import { waitFor } from './wait.js'

/**
 * A Ficus with dual writes between two real records APIs (demo/records.ts: legacy gives ids
 * from 1000, new `n-3e9`…), on a real LMDB file under the test's directory: `notes-create`
 * (POST /api/notes, learns the created id) and `notes` (/api/notes/:id), both dual, on legacy
 * unless told; and `plain` (/other/*), a route without sync. Retries are quick and many, so a
 * side that is down keeps its writes pending (not dead letters) while a test looks.
 */

export interface DualRig {
  readonly legacy: Records
  readonly next: Records
  readonly f: TestFicus
  /** The LMDB directory. */
  readonly storePath: string
}

export interface DualOptions {
  /** Share of new on both dual routes (default 0). */
  readonly new?: number
  /** The top-level admin block (tokens). */
  readonly admin?: Record<string, unknown>
}

export async function dualRig(t: Test, o: DualOptions = {}): Promise<DualRig> {
  const legacy = await startRecords('legacy')
  const next = await startRecords('new')
  t.teardown(async () => { await Promise.all([legacy.close(), next.close()]) })
  const storePath = join(t.testdir(), 'ficus.lmdb')
  const f = await startTestFicus(t, {
    ...(o.admin === undefined ? {} : { admin: o.admin }),
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    store: { kind: 'embedded', path: storePath },
    sync: { retry: { base: '20ms', max: '200ms', maxAttempts: 100000 } },
    routes: [
      { name: 'notes-create', match: { path: '/api/notes', methods: ['POST'] }, new: o.new ?? 0, sync: { mode: 'dual', entity: 'note', learn: 'response.body.id' } },
      { name: 'notes', match: { path: '/api/notes/:id' }, new: o.new ?? 0, sync: { mode: 'dual', entity: 'note', key: 'path.id' } },
      { name: 'plain', match: { path: '/other/*' }, new: 0 }
    ]
  })
  return { legacy, next, f, storePath }
}

/** Request options of a JSON write through Ficus (POST unless `method` says). */
export function jsonWrite(body: unknown, method: 'POST' | 'PUT' | 'PATCH' = 'POST'): { method: 'POST' | 'PUT' | 'PATCH'; body: string; headers: Record<string, string> } {
  return { method, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
}

/** A write through Ficus that must be taken (2xx); returns its answer's JSON. */
export async function wrote(f: TestFicus, path: string, body: unknown, method: 'POST' | 'PUT' | 'PATCH' = 'POST'): Promise<Record<string, unknown>> {
  const r = await f.fetch(path, jsonWrite(body, method))
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} answered ${r.status}: ${r.text}`)
  return r.json() as Record<string, unknown>
}

/** Resolves once nothing is pending or awaiting its primary (dead letters may stay), as GET /admin/sync says. */
export async function caughtUp(f: TestFicus, token?: string): Promise<void> {
  await waitFor(async () => {
    const r = await admin(f, 'GET', '/admin/sync', token === undefined ? {} : { token })
    return r.status === 200 && r.body.pending === 0 && r.body.intents === 0
  }, { message: 'the outbox did not drain' })
}

/** The admin token of an operated rig. */
export const OPS_TOKEN = 'tok-ops'

/** What the built CLI printed and how it exited. */
export interface CliRun { readonly code: number | null; readonly out: string; readonly err: string }

/** A dual rig whose admin API takes OPS_TOKEN, and `cli(...)`: the built CLI run as a process against it, as an operator runs it. */
export async function operatedRig(t: Test, o: DualOptions = {}): Promise<DualRig & { cli: (...args: string[]) => Promise<CliRun> }> {
  const rig = await dualRig(t, { ...o, admin: { host: '127.0.0.1', port: 0, tokens: { ops: OPS_TOKEN } } })
  const env = { FICUS_ADMIN_URL: rig.f.adminUrl, FICUS_ADMIN_TOKEN: OPS_TOKEN }
  const cli = async (...args: string[]): Promise<CliRun> => {
    const p = run(t, CLI, args, env)
    const code = await p.exitCode()
    return { code, out: p.stdout, err: p.stderr }
  }
  return { ...rig, cli }
}
