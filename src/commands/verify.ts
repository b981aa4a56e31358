import { readFile, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { openStore } from '../adapters/open-store.js'
import type { SyncStore } from '../adapters/sync-store.js'
import { ConfigError, formatProblem } from '../config/problems.js'
import type { Config } from '../config/schema.js'
import { Incomplete, ResumeRefused, runVerify, type Progress, type VerifyIdMap, type VerifyReport } from '../control/verify.js'
import { EXIT, MODES, type Mode } from '../core/verify.js'

/**
 * `ficus verify <job>` (docs/verify.md): runs a `verify:` job of routes.yaml against the two
 * upstreams themselves (no running Ficus needed), with a progress bar on a terminal (a line
 * every 10 s otherwise), a table at the end and `--json` for scripts. Exit 0 parity, 1
 * differences, 2 incomplete, 3 usage. Ctrl-C saves the run's progress; `--resume` continues.
 */

export const VERIFY_USAGE = `Usage: ficus verify <job> [options]

Proves the two systems hold the same records, through their own APIs (routes.yaml verify:).

Options:
  -c, --config <file>         routes.yaml (or FICUS_CONFIG; default routes.yaml)
      --mode <mode>           count | checksum (default) | sample | full
                                count: the totals of each side
                                checksum: every record listed on both sides, compared under
                                  the route's rules, ids through the id map
                                sample: --sample N records at random, each fetched from both
                                full: checksum, then every mismatch fetched and compared field by field
      --sample <N>            records in a sample (default 1000)
      --seed <S>              the sample's seed: the same seed picks the same records (default 1)
      --ids <file>            check these records only (legacy ids, one per line; new:<id> for new's)
      --resume                continue the run saved when it was stopped (refused if the job changed)
      --json <file>           also write the report as JSON (- for standard output)
      --max-mismatch-rate <R> differences up to this share (0.001 = 0.1 %) still exit 0
      --dir <dir>             where the run keeps its state (default: .ficus-verify/<job> beside
                              the state file, or beside routes.yaml)

Exit: 0 parity, 1 differences, 2 incomplete (a side kept failing, stopped, in flight), 3 usage.
`

export interface VerifyIo {
  readonly out: (text: string) => void
  readonly err: (text: string) => void
  /** Whether stderr is a terminal (a live progress bar), else a line every 10 s. */
  readonly tty: boolean
  readonly env: Readonly<Record<string, string | undefined>>
  /** Set to stop the run (Ctrl-C): it saves its progress and reports what it has. */
  readonly signal: AbortSignal
}

export async function verifyCommand (argv: readonly string[], io: VerifyIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        mode: { type: 'string' },
        sample: { type: 'string' },
        seed: { type: 'string' },
        ids: { type: 'string' },
        resume: { type: 'boolean' },
        json: { type: 'string' },
        'max-mismatch-rate': { type: 'string' },
        dir: { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    })
  } catch (err) {
    return usage(io, (err as Error).message)
  }
  const { values: v, positionals } = parsed
  if (v.help === true) {
    io.out(VERIFY_USAGE)
    return 0
  }
  if (positionals.length !== 1) return usage(io, positionals.length === 0 ? 'verify needs a job: ficus verify <job>' : `unexpected argument: ${positionals[1] as string}`)
  const name = positionals[0] as string
  const mode = (v.mode ?? 'checksum') as Mode
  if (!MODES.includes(mode)) return usage(io, `--mode must be one of ${MODES.join(', ')} (got ${v.mode as string})`)
  const int = (text: string | undefined, fallback: number, what: string, max: number): number | string => {
    if (text === undefined) return fallback
    return /^\d+$/.test(text) && Number(text) >= 1 && Number(text) <= max ? Number(text) : `${what} must be a whole number from 1 to ${max} (got ${text})`
  }
  const n = int(v.sample, 1000, '--sample', 10_000_000)
  const seed = int(v.seed, 1, '--seed', 2 ** 31 - 1)
  if (typeof n === 'string') return usage(io, n)
  if (typeof seed === 'string') return usage(io, seed)
  if ((v.sample !== undefined || v.seed !== undefined) && mode !== 'sample') return usage(io, '--sample and --seed are for --mode sample')
  if (v.ids !== undefined && (mode === 'count' || mode === 'sample')) return usage(io, `--ids checks the records it names; it does not go with --mode ${mode}`)
  const rateText = v['max-mismatch-rate']
  const maxRate = rateText === undefined ? 0 : Number(rateText)
  if (rateText !== undefined && (!/^\d*\.?\d+$/.test(rateText) || maxRate > 1)) return usage(io, `--max-mismatch-rate must be a share from 0 to 1, like 0.001 for 0.1 % (got ${rateText})`)

  const file = v.config ?? io.env.FICUS_CONFIG ?? 'routes.yaml'
  let config: Config
  try {
    const { loadConfig } = await import('../config/load-config.js')
    config = await loadConfig(file, io.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    io.err(`${err.file}: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}\n`)
    for (const p of err.problems) io.err(`  ${formatProblem(err.file, p)}\n`)
    return EXIT.usage
  }
  const job = config.verify[name]
  if (job === undefined) {
    const names = Object.keys(config.verify)
    return usage(io, `no verify job named "${name}" in ${file} (${names.length === 0 ? 'it has no verify: block' : `jobs: ${names.join(', ')}`})`)
  }
  let ids: string[] | undefined
  if (v.ids !== undefined) {
    try {
      ids = (await readFile(v.ids, 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    } catch (err) {
      return usage(io, `--ids ${v.ids}: ${(err as Error).message}`)
    }
    if (ids.length === 0) return usage(io, `--ids ${v.ids} names no record`)
  }
  const base = config.state === undefined ? dirname(resolve(file)) : dirname(config.state)
  const dir = v.dir === undefined ? resolve(base, '.ficus-verify', name) : resolve(v.dir)

  let store: SyncStore | null = null
  let idMap: VerifyIdMap | null = null
  if (job.dual) {
    try {
      store = openStore(config.store)
    } catch (err) {
      io.err(`ficus verify: the route ${job.route} is dual and its store (the id map, the writes in flight) cannot be opened: ${(err as Error).message}\n`)
      return EXIT.incomplete
    }
    const s = store
    idMap = {
      lookup: async (entity, side, list) => s.lookupIds(entity, side, list),
      inFlight: async (key) => (await s.waitingFor(key, 'legacy')).pending + (await s.waitingFor(key, 'new')).pending
    }
  }
  const progress = new ProgressLine(io, mode)
  let report: VerifyReport
  try {
    report = await runVerify({
      job,
      mode,
      sample: mode === 'sample' ? { n, seed } : undefined,
      ids,
      dir,
      resume: v.resume === true,
      idMap,
      signal: io.signal,
      onProgress: (p) => { progress.update(p) },
      onRetry: (side, why, afterMs) => { progress.retry(side, why, afterMs) },
      maxMismatchRate: maxRate
    })
  } catch (err) {
    progress.end()
    if (err instanceof ResumeRefused) return usage(io, err.message)
    // Anything else (the store, the disk, the scratch file) ends the run without a verdict: incomplete, never "differences".
    io.err(`ficus verify: ${err instanceof Incomplete ? '' : 'the run failed: '}${(err as Error).message}\n`)
    return EXIT.incomplete
  } finally {
    await store?.close().catch(() => {})
  }
  progress.end()
  if (v.json !== undefined) {
    const text = `${JSON.stringify(report, null, 2)}\n`
    if (v.json === '-') io.out(text)
    else {
      try {
        await writeFile(v.json, text)
      } catch (err) {
        io.out(table(report, dir))
        io.err(`ficus verify: the report could not be written to ${v.json}: ${(err as Error).message}\n`)
        return EXIT.incomplete
      }
    }
  }
  if (v.json !== '-') io.out(table(report, dir))
  return EXIT[report.verdict]
}

function usage (io: VerifyIo, message: string): number {
  io.err(`ficus verify: ${message}\n\n${VERIFY_USAGE}`)
  return EXIT.usage
}

const num = (x: number): string => x.toLocaleString('en-US')

/** The report as a person reads it. */
export function table (r: VerifyReport, dir: string): string {
  const lines: string[] = []
  lines.push(`verify ${r.job} (${r.mode}): ${r.seconds.toFixed(1)} s, ${num(r.requests)} requests${r.retries > 0 ? `, ${num(r.retries)} tried again` : ''}`)
  const t = (x: number | null): string => (x === null ? '?' : num(x))
  lines.push('', '                     legacy        new')
  lines.push(`total           ${t(r.totals.legacy).padStart(11)} ${t(r.totals.new).padStart(10)}`)
  if (r.mode !== 'count') lines.push(`listed          ${num(r.listed.legacy).padStart(11)} ${num(r.listed.new).padStart(10)}`)
  if (r.mode !== 'count') {
    const c = r.counts
    lines.push('')
    const row = (label: string, x: number, note = ''): string => `${label.padEnd(20)}${num(x).padStart(8)}${note === '' ? '' : `  ${note}`}`
    lines.push(row('matched', c.matched))
    lines.push(row('mismatched', c.mismatched))
    lines.push(row('missing in legacy', c.missing_in_legacy, c.missing_in_legacy > 0 ? '(on new only)' : ''))
    lines.push(row('missing in new', c.missing_in_new, c.missing_in_new > 0 ? '(on legacy only)' : ''))
    lines.push(row('unmapped', c.unmapped, c.unmapped > 0 ? '(no pair in the id map: ficus ids set)' : ''))
    lines.push(row('in flight', c.in_flight, c.in_flight > 0 ? '(written to during the run, not settled)' : ''))
  }
  if (r.statement !== null) lines.push('', r.statement)
  if (r.fields.length > 0) {
    lines.push('', 'fields that differ')
    for (const f of r.fields.slice(0, 20)) lines.push(`  ${f.path.padEnd(40)} ${f.kind.padEnd(8)} ${num(f.count)}`)
  }
  if (r.records.length > 0) {
    lines.push('', `records (${r.records.length > 20 ? 'first 20; --json has ' + (r.records.length > 10_000 ? 'the first 10,000' : 'all') : 'all'})`)
    for (const x of r.records.slice(0, 20)) {
      const id = x.legacyId !== null && x.newId !== null && x.legacyId !== x.newId ? `${x.legacyId} (new: ${x.newId})` : x.id
      lines.push(`  ${id.padEnd(24)} ${x.outcome.padEnd(18)} ${(x.fields ?? []).slice(0, 3).map((f) => `${f.path} ${f.kind}`).join(', ')}`)
    }
  }
  for (const p of r.problems) lines.push('', `incomplete: ${p}`)
  if (!r.complete && r.problems.some((p) => p.includes('--resume'))) lines.push(`  (saved in ${dir})`)
  lines.push('', `verdict: ${r.verdict} (exit ${EXIT[r.verdict]})`, '')
  return lines.join('\n')
}

/** A progress bar on a terminal (redrawn at most 5 times a second), else a line every 10 s. */
class ProgressLine {
  private last = 0
  private readonly started = Date.now()
  private shown = false
  private note = ''

  constructor (private readonly io: VerifyIo, private readonly mode: Mode) {}

  update (p: Progress): void {
    const now = Date.now()
    if (now - this.last < (this.io.tty ? 200 : 10_000)) return
    this.last = now
    const secs = (now - this.started) / 1000
    const listed = p.listed.legacy + p.listed.new
    const total = p.totals.legacy !== null && p.totals.new !== null ? p.totals.legacy + p.totals.new : null
    const done = p.phase === 'recheck' ? p.checked : listed
    const whole = p.phase === 'recheck' ? p.toCheck : this.mode === 'sample' ? p.totals.legacy : total
    const rate = done / Math.max(secs, 0.001)
    const eta = whole !== null && rate > 0 && whole > done ? ` · ETA ${duration((whole - done) / rate)}` : ''
    const bar = whole !== null && whole > 0 ? `${barOf(done / whole)} ${Math.floor((100 * done) / whole)} % ` : ''
    const text = `${p.phase === 'recheck' ? 'checking by id' : p.phase === 'sample' ? 'sampling legacy' : 'listing'} ${bar}· legacy ${num(p.listed.legacy)}, new ${num(p.listed.new)} · ${num(Math.round(rate))} records/s${eta} · matched ${num(p.counts.matched)}, differ ${num(p.counts.mismatched + p.counts.missing_in_legacy + p.counts.missing_in_new)}${this.note}`
    if (this.io.tty) {
      this.io.err(`\r\x1b[2K${text}`)
      this.shown = true
    } else {
      this.io.err(`${text}\n`)
    }
  }

  retry (side: string, why: string, afterMs: number): void {
    this.note = ` · ${side}: ${why}, waiting ${duration(afterMs / 1000)}`
  }

  end (): void {
    if (this.shown) this.io.err('\r\x1b[2K')
    this.shown = false
  }
}

function barOf (share: number): string {
  const n = Math.max(0, Math.min(20, Math.round(share * 20)))
  return `[${'#'.repeat(n)}${'.'.repeat(20 - n)}]`
}

function duration (s: number): string {
  if (s < 1) return `${Math.round(s * 1000)}ms`
  if (s < 60) return `${s.toFixed(0)}s`
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`
}
