import { mkdirSync, rmSync } from 'node:fs'
import { open, type Database, type RootDatabase } from 'lmdb'
import type { Backend } from '../core/types.js'

/**
 * Where one `ficus verify` run keeps what it has seen (an LMDB file of its own, in the job's
 * work directory): the records one side listed and the other has not yet (so a run over
 * millions of records holds them on disk, whatever order each side lists in), the records
 * found to differ, and its progress (each side's next page, the counts), written in one
 * transaction with each page, so a run stopped at any point (Ctrl-C, SIGKILL) continues with
 * `--resume` from its last page without counting a record twice.
 */

/** A record one side listed, waiting for the other side's. */
export interface Waiting {
  readonly side: Backend
  /** The record's id on its side. */
  readonly id: string
  /** Its canonical text's hash (core/verify.ts canonical). */
  readonly hash: string
  /** The record as listed (JSON text), for the comparison when the other side's hash differs. */
  readonly doc: string
  /** Its id has no pair in the id map (ids differ per side): it cannot be matched by id. */
  readonly unpaired: boolean
}

/** A record whose outcome is not `matched`, as the report lists it. */
export interface Found {
  readonly key: string
  readonly legacyId: string | null
  readonly newId: string | null
  readonly outcome: string
  readonly fields?: readonly { readonly path: string; readonly kind: string }[]
  /** Still to be checked again: listed on one side only, or written to meanwhile. */
  readonly recheck?: 'missing' | 'in_flight' | 'mismatched'
  /** When it was first seen in flight (ms since the epoch). */
  readonly since?: number
}

/** The run's file in its directory (and LMDB's `-lock` beside it). */
const FILE = 'verify-run.lmdb'

export class VerifyScratch {
  private readonly env: RootDatabase
  readonly waiting: Database<Waiting, string>
  readonly found: Database<Found, string>
  /** Every record decided (by key): a page that lists it again (offset paging under inserts) does not count it twice. */
  readonly decided: Database<string, string>
  readonly meta: Database<unknown, string>

  /** Opens the run's file in `dir`; `fresh` starts over (a run without --resume). */
  constructor (readonly dir: string, fresh: boolean) {
    mkdirSync(dir, { recursive: true })
    // Its own files only: the directory may be anyone's (--dir .).
    if (fresh) for (const f of [FILE, `${FILE}-lock`]) rmSync(`${dir}/${f}`, { force: true })
    this.env = open({ path: `${dir}/${FILE}`, compression: false, eventTurnBatching: false })
    this.waiting = this.env.openDB<Waiting, string>({ name: 'waiting' })
    this.found = this.env.openDB<Found, string>({ name: 'found' })
    this.decided = this.env.openDB<string, string>({ name: 'decided' })
    this.meta = this.env.openDB<unknown, string>({ name: 'meta' })
  }

  /** One durable transaction: the page's records, its outcomes and the progress together. */
  async commit (run: () => void): Promise<void> {
    await this.env.transaction(run)
  }

  get<T>(key: string): T | undefined {
    return this.meta.get(key) as T | undefined
  }

  async close (): Promise<void> {
    await this.env.close()
  }
}
