import { dirname, resolve } from 'node:path'
import type { AuditLog } from '../adapters/audit-log.js'
import type { Logger } from '../adapters/logger.js'
import type { Metrics } from '../adapters/metrics-registry.js'
import type { ProcessStore } from '../adapters/open-store.js'
import type { SyncStore } from '../adapters/sync-store.js'
import type { LiveConfig } from '../config/live.js'
import type { VerifyJob } from '../config/verify-schema.js'
import type { VerifyFact } from '../core/ramp.js'
import { EXIT, OUTCOMES, type Mode } from '../core/verify.js'
import { auditFirst } from './admin-body.js'
import { ControlError } from './control-plane.js'
import { Incomplete, ResumeRefused, runVerify, type Progress, type VerifyIdMap, type VerifyReport } from './verify.js'

/**
 * `verify:` jobs run by Ficus itself (docs/verify.md "Run by Ficus"): on their `schedule`, and
 * on demand through the admin API (`POST /admin/verify/<job>/run`, audited), one run per job
 * at a time, reading the id map through the process's handle on the store. Each run that ends
 * sets the job's metrics: `ficus_verify_records_total{job,outcome}`,
 * `ficus_verify_last_result{job}` (the exit code: 0 parity, 1 differences, 2 incomplete) and
 * `ficus_verify_last_completed_timestamp_seconds{job}`, which a ramp (and an alert) read.
 */

export interface VerifyControlOptions {
  readonly live: LiveConfig
  readonly store: ProcessStore
  readonly audit: AuditLog
  readonly log: Logger
  readonly metrics: Metrics
  readonly now?: () => number
}

export interface RunRequest {
  readonly mode: Mode
  /** A sample's size, and its seed (none: the run's time, so that each run draws other records). */
  readonly sample?: { readonly n: number; readonly seed?: number | undefined } | undefined
}

/** A job as GET /admin/verify shows it. */
export interface JobStatus {
  readonly job: string
  readonly route: string
  /** Seconds between scheduled runs, or null (on demand only). */
  readonly scheduleSeconds: number | null
  readonly running: { readonly startedAt: string; readonly mode: Mode; readonly by: string; readonly progress: Progress | null } | null
  readonly last: LastRun | null
}

export interface LastRun {
  readonly verdict: VerifyReport['verdict']
  readonly finishedAt: string
  readonly mode: Mode
  readonly by: string
  readonly counts: VerifyReport['counts']
  readonly totals: VerifyReport['totals']
  readonly seconds: number
  readonly statement: string | null
  readonly problems: readonly string[]
}

interface Running {
  readonly stop: AbortController
  readonly done: Promise<void>
  readonly startedAt: number
  readonly mode: Mode
  readonly by: string
  progress: Progress | null
}

/** How often due scheduled runs are looked for (ms). */
const TICK_MS = 1000

export class VerifyControl {
  private readonly running = new Map<string, Running>()
  private readonly last = new Map<string, LastRun>()
  /** The last run's whole report (GET /admin/verify/<job>); null when it ended without one. */
  private readonly reports = new Map<string, VerifyReport | null>()
  private readonly since: number
  private timer: NodeJS.Timeout | null = null
  private closed = false

  constructor (private readonly o: VerifyControlOptions) {
    this.since = this.now()
  }

  private now (): number {
    return this.o.now?.() ?? Date.now()
  }

  private jobs (): Readonly<Record<string, VerifyJob>> {
    return this.o.live.current.verify
  }

  /** Starts the scheduler (jobs with `schedule`); a reload's jobs are read at each tick. */
  start (): void {
    this.timer = setInterval(() => { this.tick() }, TICK_MS)
    this.timer.unref()
  }

  /** Starts the runs that are due (every second, from start(); a test may call it). */
  tick (): void {
    for (const job of Object.values(this.jobs())) {
      if (job.scheduleMs === null || this.running.has(job.name)) continue
      const last = this.last.get(job.name)
      const from = last === undefined ? this.since : Date.parse(last.finishedAt)
      if (this.now() - from < job.scheduleMs) continue
      const req: RunRequest = { mode: job.scheduleMode, sample: job.scheduleMode === 'sample' ? { n: job.scheduleSample } : undefined }
      this.launch(job, this.seeded(req), this.reserve(job.name, req, 'schedule'))
    }
  }

  /** The last run of a job as the ramp's verify gate reads it (null: none since Ficus started). */
  fact (job: string): VerifyFact | null {
    const last = this.last.get(job)
    if (last === undefined) return null
    const c = last.counts
    const checked = c.matched + c.mismatched + c.missing_in_legacy + c.missing_in_new + c.unmapped + c.in_flight
    return { result: EXIT[last.verdict], completedAt: Date.parse(last.finishedAt), mismatchRate: checked === 0 ? 0 : (c.mismatched + c.missing_in_legacy + c.missing_in_new) / checked, checked }
  }

  status (): { jobs: JobStatus[] } {
    return { jobs: Object.values(this.jobs()).map((j) => this.statusOf(j)) }
  }

  job (name: string): JobStatus & { readonly report: VerifyReport | null } {
    const job = this.known(name)
    return { ...this.statusOf(job), report: this.reports.get(name) ?? null }
  }

  private statusOf (job: VerifyJob): JobStatus {
    const r = this.running.get(job.name)
    const last = this.last.get(job.name)
    return {
      job: job.name,
      route: job.route,
      scheduleSeconds: job.scheduleMs === null ? null : job.scheduleMs / 1000,
      running: r === undefined ? null : { startedAt: new Date(r.startedAt).toISOString(), mode: r.mode, by: r.by, progress: r.progress },
      last: last ?? null
    }
  }

  private known (name: string): VerifyJob {
    const job = this.jobs()[name]
    if (job === undefined) {
      const names = Object.keys(this.jobs())
      throw new ControlError('FICUS_ERR_VERIFY_UNKNOWN_JOB', `no verify job named "${name}" (${names.length === 0 ? 'routes.yaml has no verify: block' : `jobs: ${names.join(', ')}`})`)
    }
    return job
  }

  /** Starts a run now (audited); refused while one of the job runs. */
  async run (name: string, req: RunRequest, who: string, reason: string | null): Promise<JobStatus> {
    const job = this.known(name)
    if (this.running.has(name)) throw new ControlError('FICUS_ERR_VERIFY_RUNNING', `a run of ${name} is in progress (started ${new Date((this.running.get(name) as Running).startedAt).toISOString()}): wait for it, or stop it (POST /admin/verify/${name}/stop)`)
    if (this.closed) throw new ControlError('FICUS_ERR_DRAINING', 'Ficus is shutting down')
    // The job is taken before the audit is awaited: a second call, or the scheduler, meanwhile finds it running.
    const seeded = this.seeded(req)
    const reserved = this.reserve(name, seeded, who)
    try {
      await auditFirst(this.o.audit, this.o.log, { time: new Date(this.now()).toISOString(), who, action: 'verify-run', route: job.route, reason, detail: `${name} --mode ${seeded.mode}${seeded.sample === undefined ? '' : ` --sample ${seeded.sample.n} --seed ${seeded.sample.seed ?? ''}`}` }, 'the verify run')
    } catch (err) {
      this.running.delete(name)
      throw err
    }
    if (this.closed) {
      this.running.delete(name)
      throw new ControlError('FICUS_ERR_DRAINING', 'Ficus is shutting down')
    }
    this.launch(job, seeded, reserved)
    return this.statusOf(job)
  }

  /** Stops a run (audited): it ends incomplete, its progress saved. */
  async stop (name: string, who: string, reason: string | null): Promise<JobStatus> {
    const job = this.known(name)
    const r = this.running.get(name)
    if (r === undefined) throw new ControlError('FICUS_ERR_VERIFY_NOT_RUNNING', `no run of ${name} is in progress`)
    await auditFirst(this.o.audit, this.o.log, { time: new Date(this.now()).toISOString(), who, action: 'verify-stop', route: job.route, reason, detail: name }, 'the verify stop')
    r.stop.abort(new Error('stopped through the admin API'))
    await r.done
    return this.statusOf(job)
  }

  /** The request with its sample's seed: the one asked for, or the run's time (each run draws other records). */
  private seeded (req: RunRequest): RunRequest {
    if (req.sample === undefined || req.sample.seed !== undefined) return req
    return { ...req, sample: { n: req.sample.n, seed: Math.floor(this.now() / 1000) % 2_147_483_647 } }
  }

  /** Takes the job for a run (one at a time): what GET /admin/verify shows while it runs. */
  private reserve (name: string, req: RunRequest, by: string): Running {
    const state: Running = { stop: new AbortController(), done: Promise.resolve(), startedAt: this.now(), mode: req.mode, by, progress: null }
    this.running.set(name, state)
    return state
  }

  private launch (job: VerifyJob, req: RunRequest, state: Running): void {
    const done = this.execute(job, req, state).catch((err: unknown) => {
      // Whatever failed (the store, the disk), the run ended without a result: incomplete, and not due again at the next tick.
      this.o.log.error({ err, job: job.name }, `verify: the run of ${job.name} failed`)
      this.ended(job, req, state, null, `the run failed: ${(err as Error).message}`)
    }).finally(() => {
      if (this.running.get(job.name) === state) this.running.delete(job.name)
    })
    this.running.set(job.name, Object.assign(state, { done }))
  }

  /** A run that ended: its metrics, and what GET /admin/verify shows of it (a report, or why there is none). */
  private ended (job: VerifyJob, req: RunRequest, state: Running, report: VerifyReport | null, failure: string | null): void {
    const { metrics } = this.o
    const verdict = report?.verdict ?? 'incomplete'
    if (report !== null) for (const outcome of OUTCOMES) if (report.counts[outcome] > 0) metrics.verifyRecords.inc({ job: job.name, outcome }, report.counts[outcome])
    metrics.verifyLastResult.set({ job: job.name }, EXIT[verdict])
    metrics.verifyLastCompleted.set({ job: job.name }, this.now() / 1000)
    const empty = { matched: 0, mismatched: 0, missing_in_legacy: 0, missing_in_new: 0, unmapped: 0, in_flight: 0 }
    this.last.set(job.name, {
      verdict,
      finishedAt: new Date(this.now()).toISOString(),
      mode: req.mode,
      by: state.by,
      counts: report?.counts ?? empty,
      totals: report?.totals ?? { legacy: null, new: null },
      seconds: report?.seconds ?? (this.now() - state.startedAt) / 1000,
      statement: report?.statement ?? null,
      problems: failure === null ? report?.problems ?? [] : [failure]
    })
    this.reports.set(job.name, report)
  }

  private async execute (job: VerifyJob, req: RunRequest, state: Running): Promise<void> {
    const { log } = this.o
    let store: SyncStore | null = null
    let idMap: VerifyIdMap | null = null
    if (job.dual) {
      store = this.o.store.acquire()
      const s = store
      idMap = {
        lookup: async (entity, side, ids) => s.lookupIds(entity, side, ids),
        inFlight: async (key) => (await s.waitingFor(key, 'legacy')).pending + (await s.waitingFor(key, 'new')).pending
      }
    }
    log.info({ job: job.name, mode: req.mode, by: state.by }, `verify: ${job.name} started (${req.mode})`)
    let report: VerifyReport
    try {
      report = await runVerify({
        job,
        mode: req.mode,
        sample: req.sample === undefined ? undefined : { n: req.sample.n, seed: req.sample.seed ?? 1 }, // seeded() gave it one
        dir: this.dirOf(job.name),
        resume: false,
        idMap,
        signal: state.stop.signal,
        onProgress: (p) => { state.progress = p },
        now: () => this.now()
      })
    } catch (err) {
      if (!(err instanceof Incomplete) && !(err instanceof ResumeRefused)) throw err
      log.error({ job: job.name, err }, `verify: ${job.name} could not run: ${err.message}`)
      this.ended(job, req, state, null, err.message)
      return
    } finally {
      if (store !== null) await this.o.store.release()
    }
    this.ended(job, req, state, report, null)
    const line = `verify: ${job.name} ended: ${report.verdict} (${report.counts.matched} matched, ${report.counts.mismatched} mismatched, ${report.counts.missing_in_legacy + report.counts.missing_in_new} missing, ${report.counts.unmapped} unmapped, ${report.counts.in_flight} in flight)`
    if (report.verdict === 'parity') log.info({ job: job.name, counts: report.counts }, line)
    else log.warn({ job: job.name, counts: report.counts, problems: report.problems }, line)
  }

  /** A run's state on disk: beside the state file (or routes.yaml), apart from the CLI's runs. */
  private dirOf (job: string): string {
    const c = this.o.live.current
    const base = c.state === undefined ? dirname(resolve(c.file)) : dirname(c.state)
    return resolve(base, '.ficus-verify', 'by-ficus', job)
  }

  /** Stops every run (each ends incomplete) and the scheduler. */
  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearInterval(this.timer)
    for (const r of this.running.values()) r.stop.abort(new Error('Ficus is shutting down'))
    await Promise.all([...this.running.values()].map(async (r) => r.done))
  }
}
