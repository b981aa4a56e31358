import { open, rename, stat, type FileHandle } from 'node:fs/promises'
import { readIfPresent } from './files.js'

/**
 * The audit log: who changed what, when and why, and who was refused. Append-only JSON
 * lines next to the state file (`<state>.audit.jsonl`), each entry synced to disk before
 * the change it records is acknowledged; rotated by size (`.1`, `.2`, `.3` kept). The
 * latest entries are also kept in memory for GET /admin/audit. Without a state file the
 * log lives in memory only.
 */

export interface AuditEntry {
  /** ISO 8601. */
  readonly time: string
  /** Token name, `local` when the admin API has no token, `unauthenticated` for a refusal. */
  readonly who: string
  /**
   * `reset-divergences`: a route's divergence counts started a new epoch (traffic unchanged).
   * `sync-*` and `ids-set`: an operator's decision on dual writes (docs/sync.md "Operating
   * dual writes"): an outbox entry replayed or skipped, delivery paused or resumed, an id pair set.
   */
  readonly action: 'set' | 'rollback' | 'refused' | 'reset-state' | 'reset-divergences' | SyncAction | VerifyAction | RampAuditAction
  /** The route changed, or null (a refusal, a reset, a change of every route's delivery, an id pair). */
  readonly route: string | null
  readonly before?: { readonly new: number; readonly shadow: number }
  readonly after?: { readonly new: number; readonly shadow: number }
  readonly reason: string | null
  /** For a refusal: the call and the caller's address. */
  readonly detail?: string
  /** A ramp's transition: the gates it rested on, as evaluated then. */
  readonly gates?: readonly AuditedGate[]
}

/** A ramp's transition (docs/ramp.md): its command or decision. */
export type RampAuditAction = 'ramp-start' | 'ramp-pause' | 'ramp-resume' | 'ramp-hold' | 'ramp-advance' | 'ramp-abort' | 'ramp-fail' | 'ramp-trip' | 'ramp-manual'

/** A gate's verdict as the audit log keeps it. */
export interface AuditedGate {
  readonly gate: string
  readonly verdict: 'pass' | 'hold' | 'fail'
  readonly observed: number | null
  readonly threshold: number
  readonly n: number
  readonly why: string
}

/** A `ficus verify` job started or stopped through the admin API (it reads both systems: who asked, and why). */
export type VerifyAction = 'verify-run' | 'verify-stop'

/** Decisions on dual writes, audited like changes of traffic (they change what reaches a backend). */
export type SyncAction = 'sync-replay' | 'sync-skip' | 'sync-pause' | 'sync-resume' | 'ids-set'

/** Actions that change a route's traffic: the route's "last change" in `ficus status`. */
const TRAFFIC: ReadonlySet<AuditEntry['action']> = new Set(['set', 'rollback'])

/** Rotate past this size (bytes). */
const AUDIT_MAX_BYTES = 10 * 1024 * 1024
/** Rotated files kept. */
const AUDIT_KEEP = 3
/** Entries kept in memory (and read back from the file at start). */
const AUDIT_MEMORY = 1000

export class AuditLog {
  private readonly recent: AuditEntry[] = []
  private fh: FileHandle | null = null
  private size = 0
  /** Appends run one after another: a rotation never closes the handle under another write. */
  private tail: Promise<unknown> = Promise.resolve()

  private constructor (readonly file: string | undefined, private readonly maxBytes: number) {}

  /** Opens (or creates) the log and reads its latest entries back. */
  static async open (file: string | undefined, maxBytes = AUDIT_MAX_BYTES): Promise<AuditLog> {
    const log = new AuditLog(file, maxBytes)
    if (file !== undefined) {
      const text = await readIfPresent(file) ?? ''
      for (const line of text.split('\n').slice(-AUDIT_MEMORY - 1)) {
        if (line.trim() === '') continue
        try {
          log.recent.push(JSON.parse(line) as AuditEntry)
        } catch { /* a torn last line from a crash: the entries before it stand */ }
      }
      log.fh = await private0600(await open(file, 'a', 0o600))
      log.size = (await stat(file)).size
    }
    return log
  }

  /** Appends durably (when there is a file); resolves once the entry is on disk. */
  async append (entry: AuditEntry): Promise<void> {
    return this.appendAll([entry])
  }

  /** Appends entries in one write and one sync: all of them or (on failure) none in memory. */
  async appendAll (entries: readonly AuditEntry[]): Promise<void> {
    const run = this.tail.then(async () => this.write(entries))
    this.tail = run.catch(() => {})
    return run
  }

  private async write (entries: readonly AuditEntry[]): Promise<void> {
    if (this.file !== undefined) {
      const text = entries.map((e) => JSON.stringify(e) + '\n').join('')
      const bytes = Buffer.byteLength(text)
      if (this.size + bytes > this.maxBytes && this.size > 0) await this.rotate(this.file)
      // After a failed rotation, the next append reopens the file.
      this.fh ??= await private0600(await open(this.file, 'a', 0o600))
      await this.fh.write(text)
      await this.fh.datasync()
      this.size += bytes
    }
    for (const e of entries) this.recent.push(e)
    while (this.recent.length > AUDIT_MEMORY) this.recent.shift()
  }

  /** Newest first. */
  latest (limit: number): AuditEntry[] {
    return this.recent.slice(-limit).reverse()
  }

  /** The latest change of `route`'s traffic still in memory (a divergence reset or a sync decision is not one), or null. */
  lastFor (route: string): AuditEntry | null {
    for (let i = this.recent.length - 1; i >= 0; i--) {
      const e = this.recent[i] as AuditEntry
      if (e.route === route && TRAFFIC.has(e.action)) return e
    }
    return null
  }

  async close (): Promise<void> {
    await this.tail
    await this.fh?.close()
    this.fh = null
  }

  private async rotate (file: string): Promise<void> {
    const fh = this.fh
    this.fh = null
    await fh?.close()
    for (let i = AUDIT_KEEP - 1; i >= 1; i--) await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => {})
    await rename(file, `${file}.1`)
    this.size = 0
  }
}

/**
 * The mode of `open` applies only when it creates the file: an audit log an operator (or an
 * older version) left world-readable is made private too. Best effort: a file Ficus does not
 * own cannot be changed (EPERM), and it is still appended to.
 */
async function private0600(fh: FileHandle): Promise<FileHandle> {
  await fh.chmod(0o600).catch(() => {})
  return fh
}
