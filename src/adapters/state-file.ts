import { rename } from 'node:fs/promises'
import type { Overrides } from '../core/overrides.js'
import { readIfPresent, writeFileAtomic } from './files.js'

/**
 * The state file (`state:` in routes.yaml): runtime overrides that must survive a restart
 * and a redeploy, a rollback above all. Written atomically (temp file, fsync, rename,
 * fsync of the directory) before a change is acknowledged; read at start, where a file that
 * cannot be read or understood stops Ficus rather than silently falling back to the
 * percentages of routes.yaml.
 */

export interface StateFile {
  readonly version: 1
  readonly routes: Overrides
}

/** The state file cannot be used; `ficus start --reset-state` is the way out. */
export class StateError extends Error {
  readonly code = 'FICUS_ERR_STATE_INVALID'
  constructor (readonly file: string, reason: string) {
    super(`state file ${file}: ${reason}. Ficus will not guess the percentages: fix or restore the file, or start with --reset-state to move it aside and use routes.yaml's values`)
    this.name = 'StateError'
  }
}

/** Reads the state; a missing file is an empty state (first start). */
export async function readState(file: string): Promise<StateFile> {
  let text: string | undefined
  try {
    text = await readIfPresent(file)
  } catch (err) {
    throw new StateError(file, `cannot be read (${(err as Error).message})`)
  }
  if (text === undefined) return { version: 1, routes: {} }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw new StateError(file, 'is not valid JSON (a partial write by another program, or edited by hand?)')
  }
  const problem = checkState(data)
  if (problem !== null) throw new StateError(file, problem)
  return data as StateFile
}

/** Why `data` is not a state file, or null. */
function checkState(data: unknown): string | null {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return 'is not a JSON object'
  const d = data as Record<string, unknown>
  if (d.version !== 1) return `has version ${JSON.stringify(d.version)}; this Ficus reads version 1`
  if (d.routes === null || typeof d.routes !== 'object' || Array.isArray(d.routes)) return 'has no "routes" object'
  for (const [name, o] of Object.entries(d.routes as Record<string, unknown>)) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) return `routes.${name} is not an object`
    const r = o as Record<string, unknown>
    for (const k of ['new', 'shadow'] as const) {
      const v = r[k]
      if (v !== undefined && (typeof v !== 'number' || !(v >= 0 && v <= 100) || (k === 'new' && !Number.isInteger(v)))) {
        return `routes.${name}.${k} is ${JSON.stringify(v)}, not a percentage`
      }
    }
  }
  return null
}

/** Replaces the state file atomically and durably. */
export async function writeState(file: string, state: StateFile, onDirSyncError?: (err: unknown) => void): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(state, null, 2) + '\n', onDirSyncError)
}

/** `--reset-state`: moves an unusable file aside (kept for inspection); returns where. */
export async function moveAside(file: string, now: Date = new Date()): Promise<string | null> {
  const aside = `${file}.reset-${now.toISOString().replace(/[:.]/g, '-')}`
  try {
    await rename(file, aside)
    return aside
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}
