import { hash as digest } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { uniformInt } from 'pure-rand/distribution/uniformInt'
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus'
import type { IdPair } from '../adapters/sync-store.js'
import { GaveUp, sleep, VerifyHttp, type Fetched } from '../adapters/verify-http.js'
import { VerifyScratch, type Found, type Waiting } from '../adapters/verify-scratch.js'
import type { ListSpec, VerifyJob } from '../config/verify-schema.js'
import { groupByEntity, idEntityAt } from '../core/compare-ids.js'
import { entityKey, idText } from '../core/sync.js'
import type { Backend } from '../core/types.js'
import {
  canonical, idsOf, type IdForm, OUTCOMES, pairsOf, recordDifferences, Reservoir, sampleStatement, toLegacyPaths, verdict, zeroCounts,
  type Counts, type Mode, type Outcome
} from '../core/verify.js'

/**
 * One `ficus verify` run (docs/verify.md): lists both sides through their APIs, merges the
 * records by id (legacy's; new's through the id map when ids differ per side), compares them
 * under the route's rules, checks again what looks missing or was written to meanwhile, and
 * reports. Its state is on disk (adapters/verify-scratch.ts), a page at a time, so memory
 * stays flat whatever the number of records, and a stopped run resumes where it was.
 */

/** What the run reads of the sync store, when the job's route is dual. */
export interface VerifyIdMap {
  lookup(entity: string, side: Backend, ids: readonly string[]): Promise<ReadonlyMap<string, IdPair>>
  /** Writes of entity key `key` still on their way to either side (pending, not dead letters). */
  inFlight(key: string): Promise<number>
}

export interface VerifyOptions {
  readonly job: VerifyJob
  readonly mode: Mode
  readonly sample?: { readonly n: number; readonly seed: number } | undefined
  /** `--ids`: check these records only (legacy's ids; new's, prefixed `new:`). */
  readonly ids?: readonly string[] | undefined
  /** The run's own directory (its scratch file). */
  readonly dir: string
  readonly resume: boolean
  readonly idMap: VerifyIdMap | null
  readonly signal: AbortSignal
  readonly onProgress?: (p: Progress) => void
  /** Told of each request tried again (a 429, a 5xx). */
  readonly onRetry?: (side: Backend, why: string, afterMs: number) => void
  readonly now?: () => number
  /** Records listed in the report at most (the counts cover all). */
  readonly maxRecords?: number
  readonly maxMismatchRate?: number
}

export interface Progress {
  readonly phase: 'count' | 'list' | 'recheck' | 'sample'
  readonly listed: { readonly legacy: number; readonly new: number }
  readonly totals: { readonly legacy: number | null; readonly new: number | null }
  readonly counts: Counts
  readonly checked: number
  readonly toCheck: number | null
}

export interface VerifyReport {
  readonly job: string
  readonly mode: Mode
  readonly totals: { readonly legacy: number | null; readonly new: number | null }
  readonly listed: { readonly legacy: number; readonly new: number }
  readonly counts: Counts
  /** Records on neither side when fetched by id: deleted from both during the run, or named by --ids and on no side. Not counted. */
  readonly gone: number
  readonly fields: readonly { readonly path: string; readonly kind: string; readonly count: number }[]
  readonly records: readonly { readonly id: string; readonly legacyId: string | null; readonly newId: string | null; readonly outcome: Outcome; readonly fields?: readonly { readonly path: string; readonly kind: string }[] }[]
  readonly recordsLeftOut: number
  readonly statement: string | null
  readonly complete: boolean
  /** Why the run is incomplete (a side that kept failing, Ctrl-C). */
  readonly problems: readonly string[]
  readonly verdict: 'parity' | 'differences' | 'incomplete'
  readonly startedAt: string
  readonly seconds: number
  readonly requests: number
  readonly retries: number
}

/** The run's saved state in its scratch file. */
interface SideState {
  readonly next: string | null
  readonly offset: number
  readonly done: boolean
  readonly listed: number
  readonly total: number | null
}

interface RunMeta {
  readonly fingerprint: string
  readonly mode: Mode
  readonly sample: { readonly n: number; readonly seed: number } | null
  readonly ids: string | null
  readonly startedAt: number
}

const FIRST: SideState = { next: null, offset: 0, done: false, listed: 0, total: null }

/** The run could not finish: a side kept failing, an answer could not be read, or it was stopped. */
export class Incomplete extends Error {}

/** Why a side stopped when the other gave up (not a cause of its own). */
class OtherSideStopped extends Error {
  constructor () {
    super('stopped: the other side gave up')
  }
}

/** `--resume` of a run whose job or options changed. */
export class ResumeRefused extends Error {}

const hash = (text: string): string => digest('sha256', text, 'base64url').slice(0, 22)

export async function runVerify (o: VerifyOptions): Promise<VerifyReport> {
  const run = new Run(o)
  try {
    return await run.go()
  } finally {
    await run.close()
  }
}

class Run {
  private readonly scratch: VerifyScratch
  private readonly http: VerifyHttp
  private readonly now: () => number
  private readonly started: number
  private readonly problems: string[] = []
  private counts: Counts
  /** Records on neither side when fetched by id (deleted from both during the run; an id no side has). */
  private gone: number
  private fields: Record<string, number>
  private checked = 0
  private toCheck: number | null = null
  private phase: Progress['phase'] = 'list'
  /** Stops the other side when one side gives up, and everything when the caller stops the run. */
  private readonly inner = new AbortController()
  private readonly signal: AbortSignal
  /** Merges of pages, one at a time (the two sides list at once). */
  private merging: Promise<void> = Promise.resolve()

  constructor (private readonly o: VerifyOptions) {
    this.now = o.now ?? Date.now
    this.signal = AbortSignal.any([o.signal, this.inner.signal])
    // Every request in flight and every waiter for a slot listens to it (concurrency is up to 256).
    setMaxListeners(2 * 256 + 16, this.signal)
    const meta: RunMeta = { fingerprint: o.job.fingerprint, mode: o.mode, sample: o.sample ?? null, ids: o.ids === undefined ? null : hash(o.ids.join('\n')), startedAt: this.now() }
    this.scratch = new VerifyScratch(o.dir, !o.resume)
    const saved = this.scratch.get<RunMeta>('run')
    const refuse: (why: string) => never = (why) => {
      void this.scratch.close()
      throw new ResumeRefused(why)
    }
    if (o.resume) {
      if (saved === undefined) refuse(`nothing to resume in ${o.dir}: run without --resume`)
      if (saved.fingerprint !== meta.fingerprint) refuse(`the job "${o.job.name}" changed since the run was saved (its list, get, route, rules or upstreams): run it again without --resume`)
      if (saved.mode !== meta.mode || JSON.stringify(saved.sample) !== JSON.stringify(meta.sample) || saved.ids !== meta.ids) {
        refuse(`the saved run was --mode ${saved.mode}${saved.sample === null ? '' : ` --sample ${saved.sample.n} --seed ${saved.sample.seed}`}${saved.ids === null ? '' : ' with --ids'}: resume it with the same options`)
      }
    }
    this.started = saved?.startedAt ?? meta.startedAt
    if (saved === undefined) void this.scratch.meta.put('run', meta)
    this.counts = this.scratch.get<Counts>('counts') ?? zeroCounts()
    this.gone = this.scratch.get<number>('gone') ?? 0
    this.problems.push(...(this.scratch.get<string[]>('problems') ?? [])) // what a stopped run had found wrong stays wrong
    this.fields = this.scratch.get<Record<string, number>>('fields') ?? {}
    this.http = new VerifyHttp({ ...o.job, ...(o.onRetry === undefined ? {} : { onRetry: o.onRetry }), now: this.now })
  }

  async close (): Promise<void> {
    await this.http.close()
    await this.scratch.close()
  }

  async go (): Promise<VerifyReport> {
    const { mode } = this.o
    try {
      if (mode === 'count') await this.count()
      else if (this.o.ids !== undefined) await this.checkIds(this.o.ids)
      else if (mode === 'sample') await this.sample()
      else {
        await this.both((side) => this.list(side))

        await this.leftovers()
        await this.rechecks()
      }
    } catch (err) {
      if (err instanceof GaveUp) this.problems.push(`${err.side} kept failing: ${err.message}`)
      else if (err instanceof Incomplete) this.problems.push(err.message)
      else if (this.o.signal.aborted) this.problems.push('stopped before the end; its progress is saved: --resume continues it')
      else throw err
    }
    return this.report()
  }

  /**
   * Runs `work` for both sides at once; when one fails, the other is stopped, and both have
   * ended (neither left writing while the run reports and closes) before the first failure is thrown.
   */
  private async both (work: (side: Backend) => Promise<void>): Promise<void> {
    const ended = await Promise.allSettled((['legacy', 'new'] as const).map(async (side) => work(side).catch((err: unknown) => {
      this.inner.abort(new OtherSideStopped())
      throw err
    })))
    const failures = ended.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown)
    const cause = failures.find((e) => !(e instanceof OtherSideStopped)) ?? failures[0]
    if (cause !== undefined) throw cause instanceof Error ? cause : new Error('a side of the run failed', { cause })
  }

  private side (side: Backend): SideState {
    return this.scratch.get<SideState>(`side:${side}`) ?? FIRST
  }

  private progress (): void {
    this.o.onProgress?.({
      phase: this.phase,
      listed: { legacy: this.side('legacy').listed, new: this.side('new').listed },
      totals: { legacy: this.side('legacy').total, new: this.side('new').total },
      counts: this.counts,
      checked: this.checked,
      toCheck: this.toCheck
    })
  }

  /* ---------- listing ---------- */

  /** The first page's path and query. */
  private firstPage (spec: ListSpec, extra?: readonly [string, string]): string {
    const q = new URLSearchParams([...spec.query, ...(extra === undefined ? [] : [extra])].map(([k, v]): [string, string] => [k, v]))
    const qs = q.toString()
    return qs === '' ? spec.path : `${spec.path}?${qs}`
  }

  /** One page of a side's listing: its records, where the next one is, the total. */
  private async page (side: Backend, at: string): Promise<{ items: unknown[]; body: unknown }> {
    const r = await this.http.get(side, at, this.signal)
    if (r.status !== 200) throw new Incomplete(`${side} answered ${r.status} to GET ${at}: the listing cannot go on`)
    const body = json(r)
    if (body === undefined) throw new Incomplete(`${side} answered GET ${at} with something that is not JSON`)
    const spec = this.o.job.list[side]
    const items = valueAt(body, spec.items)
    if (!Array.isArray(items)) throw new Incomplete(`${side}'s answer to GET ${at} has no array at ${['body', ...spec.items].join('.')} (list.items)`)
    return { items, body }
  }

  /** Lists a side to its end (or from where a saved run was), merging each page as it comes. */
  private async list (side: Backend, onItems?: (items: unknown[], state: SideState) => Promise<void>): Promise<void> {
    const spec = this.o.job.list[side]
    let st = this.side(side)
    while (!st.done) {
      this.signal.throwIfAborted()
      const at = st.next ?? this.firstPage(spec, spec.paging.kind === 'offset' ? [spec.paging.param, '0'] : undefined)
      const { items, body } = await this.page(side, at)
      const totalValue = spec.total === null ? undefined : valueAt(body, spec.total)
      const total = typeof totalValue === 'number' ? totalValue : typeof totalValue === 'string' && /^\d+$/.test(totalValue) ? Number(totalValue) : st.total
      let next: string | null = null
      let offset = st.offset
      const p = spec.paging
      if (p.kind === 'cursor') {
        const c = idText(valueAt(body, p.next))
        if (c !== null && items.length > 0) next = this.firstPage(spec, [p.param, c])
      } else if (p.kind === 'link') {
        const l = valueAt(body, p.next)
        if (typeof l === 'string' && l !== '' && items.length > 0) {
          const u = new URL(l, `http://upstream${at}`) // absolute, or relative to the page it came with
          next = u.pathname + u.search
        }
      } else if (p.kind === 'offset') {
        offset += items.length
        if (items.length > 0) next = this.firstPage(spec, [p.param, String(offset)])
      }
      if (next !== null && next === at) throw new Incomplete(`${side}'s listing gave the same page again (${at}): its cursor does not move`)
      st = { next, offset, done: next === null, listed: st.listed + items.length, total }
      if (onItems !== undefined) await onItems(items, st)
      else await this.merge(side, items, st)
      this.progress()
    }
  }

  /** `--mode count`: each side's total (the first page's `total`, or its listing counted). */
  private async count (): Promise<void> {
    this.phase = 'count'
    await this.both(async (side) => {
      const spec = this.o.job.list[side]
      if (spec.total !== null && !this.side(side).done) {
        const at = this.firstPage(spec, spec.paging.kind === 'offset' ? [spec.paging.param, '0'] : undefined)
        const { body } = await this.page(side, at)
        const v = valueAt(body, spec.total)
        const total = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : null
        if (total === null) throw new Incomplete(`${side}'s first page has no number at ${['body', ...spec.total].join('.')} (list.total)`)
        await this.scratch.commit(() => { void this.scratch.meta.put(`side:${side}`, { ...FIRST, done: true, total }) })
        return
      }
      await this.list(side, async (_items, st) => {
        await this.scratch.commit(() => { void this.scratch.meta.put(`side:${side}`, st.done ? { ...st, total: st.listed } : st) })
      })
    })
  }

  /* ---------- merging ---------- */

  /** What the id map says of `ids` of `side` (empty when ids are not mapped). */
  private async pairs (entity: string, side: Backend, ids: readonly string[]): Promise<ReadonlyMap<string, IdPair>> {
    if (this.o.idMap === null || ids.length === 0) return new Map()
    return this.o.idMap.lookup(entity, side, ids)
  }

  /** New's ids at the rules' id paths, looked up: a function giving legacy's id of each. */
  private async legacyIdsOf (docs: readonly unknown[]): Promise<(entity: string, id: string) => string | undefined> {
    const found = new Map<string, string>()
    for (const [entity, ids] of groupByEntity(docs.flatMap((d) => idsOf(d, this.o.job.compare)))) {
      for (const [id, p] of await this.pairs(entity, 'new', ids)) found.set(`${entity}\0${id}`, p.other)
    }
    return (entity, id) => found.get(`${entity}\0${id}`)
  }

  /** A page's records keyed, hashed, and matched against what the other side listed. */
  private async merge (side: Backend, items: readonly unknown[], st: SideState): Promise<void> {
    const { job } = this.o
    const spec = job.list[side]
    const rules = job.compare
    const recs: { id: string; doc: unknown }[] = []
    let withoutId = 0
    for (const item of items) {
      const id = idText(valueAt(item, spec.id))
      if (id === null) withoutId++
      else recs.push({ id, doc: item })
    }
    if (withoutId > 0) this.problems.push(`${side}: ${withoutId} listed record(s) without an id at ${spec.id.join('.')} (list.id)`)
    const own = job.mapped ? await this.pairs(job.entity as string, side, recs.map((r) => r.id)) : new Map<string, IdPair>()
    const moved = side === 'new' ? recs.map((r) => toLegacyPaths(r.doc, rules)) : recs.map((r) => r.doc)
    const form: IdForm | undefined = !job.mapped ? undefined : side === 'legacy' ? { side: 'legacy' } : { side: 'new', legacyIdOf: await this.legacyIdsOf(moved) }
    const entries = recs.map((r, i): [string, Waiting] => {
      const pair = own.get(r.id)
      const unpaired = job.mapped && pair === undefined
      const key = !job.mapped || side === 'legacy' ? r.id : pair === undefined ? `new:${r.id}` : pair.other
      return [key, { side, id: r.id, hash: hash(canonical(moved[i], rules, form)), doc: JSON.stringify(r.doc), unpaired }]
    })
    // One page at a time (the other side may be merging a page of its own).
    const turn = this.merging.then(async () => {
      const decisions: [string, Found | null][] = []
      const waits: [string, Waiting][] = []
      const seen = new Set<string>() // a key twice in one page: its second sighting is the first's
      for (const [key, w] of entries) {
        if (seen.has(key) || this.scratch.decided.get(key) !== undefined) continue // listed again (offset paging under inserts)
        seen.add(key)
        const other = this.scratch.waiting.get(key)
        if (other === undefined || other.side === side) {
          waits.push([key, w])
          continue
        }
        const [l, n] = side === 'legacy' ? [w, other] : [other, w]
        decisions.push([key, await this.judge(key, l, n)])
      }
      await this.scratch.commit(() => {
        for (const [key, w] of waits) void this.scratch.waiting.put(key, w)
        for (const [key, found] of decisions) this.decide(key, found)
        this.saveCounts()
        void this.scratch.meta.put('problems', this.problems)
        void this.scratch.meta.put(`side:${side}`, st)
      })
    })
    this.merging = turn.catch(() => {})
    await turn
  }

  /** Legacy's record and new's, listed: matched, mismatched, or to be checked again. */
  private async judge (key: string, l: Waiting, n: Waiting): Promise<Found | null> {
    if (l.hash === n.hash) return null
    const { fields, unmapped } = await this.differences(JSON.parse(l.doc) as unknown, JSON.parse(n.doc) as unknown)
    if (fields.length === 0) return null
    if (unmapped) return { key, legacyId: l.id, newId: n.id, outcome: 'unmapped', fields }
    const base = { key, legacyId: l.id, newId: n.id, outcome: 'mismatched', fields }
    if (await this.inFlight(key, l.id)) return { ...base, outcome: 'in_flight', recheck: 'in_flight', since: this.now() }
    return this.o.mode === 'full' && this.o.job.get !== null ? { ...base, recheck: 'mismatched' } : base
  }

  /**
   * The fields where legacy's record and new's differ under the rules (ids paired through the
   * map); `unmapped` when every difference is an id the map has no pair for (the record may
   * well be equal: nothing can be said yet, as with a shadow comparison it cannot map).
   */
  private async differences (legacy: unknown, next: unknown): Promise<{ fields: { path: string; kind: string }[]; unmapped: boolean }> {
    const { job } = this.o
    const moved = toLegacyPaths(next, job.compare)
    const found: [string, string, string][] = []
    const known = new Set<string>()
    if (job.mapped) {
      for (const [entity, ids] of groupByEntity(idsOf(legacy, job.compare))) {
        for (const [id, p] of await this.pairs(entity, 'legacy', ids)) {
          found.push([entity, id, p.other])
          known.add(`${entity}\0${id}`)
        }
      }
    }
    const d = recordDifferences(legacy, moved, job.compare, found.length === 0 ? undefined : pairsOf(found))
    const fields = d.differences.map((x) => ({ path: x.path, kind: x.kind }))
    const unpairedId = (x: (typeof d.differences)[number]): boolean => {
      if (!job.mapped || x.at === undefined) return false
      const entity = idEntityAt(job.compare.ids, x.at)
      const id = idText(x.legacy)
      return entity !== undefined && id !== null && !known.has(`${entity}\0${id}`)
    }
    return { fields, unmapped: d.differences.length > 0 && d.differences.every(unpairedId) }
  }

  /** Whether writes of this record are still on their way to a side (the dual-write outbox). */
  private async inFlight (key: string, legacyId: string | null): Promise<boolean> {
    const { idMap, job } = this.o
    if (idMap === null || job.entity === null) return false
    const id = legacyId ?? key.replace(/^new:/, '')
    // Writes are keyed by the id their creator gave: try both of the record's ids.
    const ids = new Set([id])
    const pair = job.mapped ? (await this.pairs(job.entity, legacyId === null ? 'new' : 'legacy', [id])).get(id) : undefined
    if (pair !== undefined) ids.add(pair.other)
    for (const x of ids) if (await idMap.inFlight(entityKey(job.entity, x)) > 0) return true
    return false
  }

  /** Records a decision inside a commit: counted once, kept for the report when it is not a match. */
  private decide (key: string, found: Found | null): void {
    if (found?.outcome === 'gone' || found?.outcome === 'merged') {
      void this.scratch.decided.put(key, found.outcome)
      void this.scratch.waiting.remove(key)
      if (this.scratch.found.doesExist(key)) void this.scratch.found.remove(key)
      if (found.outcome === 'gone') this.gone++
      return
    }
    const outcome = (found?.recheck !== undefined ? null : found?.outcome ?? 'matched') as Outcome | null
    if (found !== null) void this.scratch.found.put(key, found)
    else if (this.scratch.found.doesExist(key)) void this.scratch.found.remove(key) // a record checked again, now equal
    void this.scratch.waiting.remove(key)
    if (outcome !== null) {
      void this.scratch.decided.put(key, outcome)
      this.counts = { ...this.counts, [outcome]: this.counts[outcome] + 1 }
      for (const f of found?.fields ?? []) {
        const k = `${f.path.replace(/\[\d+\]/g, '[*]')}\0${f.kind}`
        if (this.fields[k] !== undefined || Object.keys(this.fields).length < 1000) this.fields[k] = (this.fields[k] ?? 0) + 1
      }
    } else {
      void this.scratch.decided.put(key, 'recheck')
    }
  }

  /** The counts as they are now, in the commit of the decisions they count (once per commit, not per record). */
  private saveCounts (): void {
    void this.scratch.meta.put('gone', this.gone)
    void this.scratch.meta.put('counts', this.counts)
    void this.scratch.meta.put('fields', this.fields)
  }

  /* ---------- what is left: one side only, or to be checked again ---------- */

  /** Records listed by one side only: unmapped, or missing on the other (after a look by id). */
  private async leftovers (): Promise<void> {
    this.phase = 'recheck'
    const { job } = this.o
    const { waiting, decided } = this.scratch
    if (job.mapped) {
      // New's records listed before the map knew their pair: the pair learned since joins each to legacy's record.
      const late = [...waiting.getKeys({ start: 'new:', end: 'new;' })]
      await pool(late, job.concurrency, async (key) => {
        this.signal.throwIfAborted()
        const w = waiting.get(key)
        if (w === undefined) return
        const pair = (await this.pairs(job.entity as string, 'new', [w.id])).get(w.id)
        if (pair === undefined) return // still unmapped: the pass below says so
        const target = pair.other
        if (decided.get(target) !== undefined) {
          await this.scratch.commit(() => { void waiting.remove(key) })
          return
        }
        const l = waiting.get(target)
        const found = l !== undefined && l.side === 'legacy' ? await this.judge(target, l, w) : undefined
        await this.scratch.commit(() => {
          void waiting.remove(key)
          if (found === undefined) void waiting.put(target, { ...w, unpaired: false }) // legacy did not list it: checked by id below
          else {
            this.decide(target, found)
            this.saveCounts()
          }
        })
      })
    }
    const keys = [...waiting.getKeys()]
    this.toCheck = keys.length
    await pool(keys, job.concurrency, async (key) => {
      this.signal.throwIfAborted()
      const w = waiting.get(key)
      if (w === undefined) return
      let legacyId: string | null = w.side === 'legacy' ? w.id : null
      let newId: string | null = w.side === 'new' ? w.id : null
      if (job.mapped) {
        // The pair may have been learned since the page was listed.
        const pair = (await this.pairs(job.entity as string, w.side, [w.id])).get(w.id)
        if (pair === undefined) {
          // Its create may still be on its way to the other side (the pair is learned when it lands): in flight, checked again after settle.
          const moving = await this.inFlight(key, legacyId)
          await this.settle(key, moving ? { key, legacyId, newId, outcome: 'in_flight', recheck: 'in_flight', since: this.now() } : { key, legacyId, newId, outcome: 'unmapped' })
          return
        }
        if (w.side === 'legacy') newId = pair.other
        else legacyId = pair.other
      } else {
        if (w.side === 'legacy') newId = w.id
        else legacyId = w.id
      }
      await this.settle(key, await this.byId(key, legacyId as string, newId as string, w.side === 'legacy' ? 'missing_in_new' : 'missing_in_legacy'))
    })
  }

  /**
   * A record compared by fetching it from both sides (`get`): listed on one side only, in
   * flight, or mismatched in `full` mode. Without `get`, what the listing showed stands.
   */
  private async byId (key: string, legacyId: string, newId: string, listed: Outcome, listedFields?: Found['fields']): Promise<Found | null> {
    const { job } = this.o
    const base = { key, legacyId, newId }
    if (job.get === null) {
      if (await this.inFlight(key, legacyId)) return { ...base, outcome: 'in_flight', recheck: 'in_flight', since: this.now() }
      return { ...base, outcome: listed, ...(listedFields === undefined ? {} : { fields: listedFields }) }
    }
    const path = (id: string): string => (job.get as string).replace(':id', encodeURIComponent(id))
    const [l, n] = await Promise.all([this.http.get('legacy', path(legacyId), this.signal), this.http.get('new', path(newId), this.signal)])
    this.checked++
    // On neither side: deleted from both meanwhile (they agree), or an id no side has (--ids): not a record to count.
    if (l.status === 404 && n.status === 404) return { ...base, outcome: 'gone' }
    // Missing only where the other side shows the record: a 404 against a 401 proves nothing.
    const outcome: Outcome | null = l.status === 404 && n.status === 200 ? 'missing_in_legacy' : n.status === 404 && l.status === 200 ? 'missing_in_new' : null
    if (outcome === null && (l.status !== 200 || n.status !== 200)) {
      throw new Incomplete(`GET ${path(legacyId)} on legacy answered ${l.status}, GET ${path(newId)} on new ${n.status}: record ${legacyId} could not be compared`)
    }
    let fields: { path: string; kind: string }[] = []
    if (outcome === null) {
      const a = json(l)
      const b = json(n)
      if (a === undefined || b === undefined) {
        throw new Incomplete(`GET ${path(a === undefined ? legacyId : newId)} on ${a === undefined ? 'legacy' : 'new'} answered 200 with something that is not JSON: is the job's get (${job.get}) the record's path?`)
      }
      const d = await this.differences(a, b)
      fields = d.fields
      if (fields.length === 0) return null
      if (d.unmapped) return { ...base, outcome: 'unmapped', fields }
    }
    if (await this.inFlight(key, legacyId)) return { ...base, outcome: 'in_flight', recheck: 'in_flight', since: this.now() }
    return { ...base, outcome: outcome ?? 'mismatched', ...(fields.length > 0 ? { fields } : {}) }
  }

  /** Commits one decision. */
  private async settle (key: string, found: Found | null): Promise<void> {
    await this.scratch.commit(() => {
      this.decide(key, found)
      this.saveCounts()
      void this.scratch.meta.put('problems', this.problems)
    })
    this.progress()
  }

  /** Mismatches to fetch by id (`full`), and records written to meanwhile, once `settle` passed. */
  private async rechecks (): Promise<void> {
    const { job } = this.o
    for (;;) {
      const due = [...this.scratch.found.getRange()].filter(({ value }) => value.recheck !== undefined)
      if (due.length === 0) return
      this.toCheck = due.length
      let waitMs = 0
      await pool(due, job.concurrency, async ({ key, value: f }) => {
        this.signal.throwIfAborted()
        if (job.get === null) {
          // Nothing to fetch it again with: it stays in flight (the run is incomplete), never a difference seen mid-write.
          await this.settle(key, { key, legacyId: f.legacyId, newId: f.newId, outcome: 'in_flight' })
          return
        }
        if (f.recheck === 'in_flight') {
          const age = this.now() - (f.since ?? 0)
          if (age < job.settleMs) {
            if (await this.inFlight(key, f.legacyId)) {
              waitMs = Math.max(waitMs, Math.min(1000, job.settleMs - age))
              return
            }
          } else if (await this.inFlight(key, f.legacyId)) {
            await this.settle(key, { key, legacyId: f.legacyId, newId: f.newId, outcome: 'in_flight' }) // still in flight after `settle`
            return
          }
        }
        let { legacyId, newId } = f
        if (legacyId === null || newId === null) {
          // On one side only, its create on its way: the pair may be known now that it landed.
          const side: Backend = legacyId === null ? 'new' : 'legacy'
          const id = (legacyId ?? newId) as string
          const pair = job.mapped ? (await this.pairs(job.entity as string, side, [id])).get(id) : undefined
          if (pair === undefined) {
            await this.settle(key, { key, legacyId, newId, outcome: 'unmapped' })
            return
          }
          if (side === 'new') legacyId = pair.other
          else newId = pair.other
          if (key !== legacyId && this.scratch.decided.get(legacyId as string) !== undefined) {
            await this.settle(key, { key, legacyId, newId, outcome: 'merged' }) // its other side's entry was that record: counted there
            return
          }
        }
        const again = await this.byId(key, legacyId as string, newId as string, 'mismatched', f.fields)
        // Still moving after `settle`, or in flight again: judged as it is now, without another wait.
        if (again?.recheck === 'in_flight' && f.recheck === 'in_flight' && this.now() - (f.since ?? 0) >= job.settleMs) {
          await this.settle(key, { ...again, recheck: undefined })
        } else {
          await this.settle(key, again?.recheck === 'in_flight' ? { ...again, since: f.since ?? again.since } : again)
        }
      })
      if (waitMs > 0) await sleep(waitMs, this.signal)
    }
  }

  /* ---------- sample and --ids ---------- */

  /** `--mode sample`: a seeded random sample of legacy's listing, each record fetched from both sides. */
  private async sample (): Promise<void> {
    const { n, seed } = this.o.sample ?? { n: 1000, seed: 1 }
    const saved = this.scratch.get<{ kept: string[]; seen: number; rng: number[] }>('sample')
    const rng = saved === undefined ? xoroshiro128plus(seed) : xoroshiro128plusFromState(saved.rng)
    const r = new Reservoir<string>(n, (max) => uniformInt(rng, 0, max))
    if (saved !== undefined) {
      r.kept.push(...saved.kept)
      r.seen = saved.seen
    }
    const spec = this.o.job.list.legacy
    this.phase = 'sample'
    await this.list('legacy', async (items, st) => {
      for (const item of items) {
        const id = idText(valueAt(item, spec.id))
        if (id !== null) r.offer(id)
      }
      await this.scratch.commit(() => {
        void this.scratch.meta.put('sample', { kept: r.kept, seen: r.seen, rng: rng.getState() })
        void this.scratch.meta.put('side:legacy', st)
      })
    })
    await this.checkIds(r.kept)
  }

  /** Fetches each record from both sides and compares (a sample, or `--ids`). */
  private async checkIds (ids: readonly string[]): Promise<void> {
    const { job } = this.o
    if (job.get === null) throw new Incomplete(`the job "${job.name}" has no get: --mode sample and --ids fetch records one by one`)
    this.phase = 'recheck'
    const unique = [...new Set(ids)] // a record named (or drawn) twice is checked once
    this.toCheck = unique.length
    await pool(unique, job.concurrency, async (given) => {
      this.signal.throwIfAborted()
      const side: Backend = given.startsWith('new:') ? 'new' : 'legacy'
      const id = side === 'new' ? given.slice(4) : given
      const key = side === 'new' ? `new:${id}` : id
      if (this.scratch.decided.get(key) !== undefined) return
      let other = id
      if (job.mapped) {
        const pair = (await this.pairs(job.entity as string, side, [id])).get(id)
        if (pair === undefined) {
          await this.settle(key, { key, legacyId: side === 'legacy' ? id : null, newId: side === 'new' ? id : null, outcome: 'unmapped' })
          return
        }
        other = pair.other
      }
      const [legacyId, newId] = side === 'legacy' ? [id, other] : [other, id]
      const found = await this.byId(key, legacyId, newId, 'matched')
      if (found?.outcome === 'gone') this.problems.push(`${given}: on neither side (fetched by id): not counted`)
      await this.settle(key, found)
    })
    await this.rechecks()
  }

  /* ---------- the report ---------- */

  private report (): VerifyReport {
    const { job, mode } = this.o
    const legacy = this.side('legacy')
    const next = this.side('new')
    const totals = { legacy: legacy.total ?? (legacy.done && mode !== 'sample' ? legacy.listed : null), new: next.total ?? (next.done && mode !== 'sample' ? next.listed : null) }
    const max = this.o.maxRecords ?? 10_000
    const records: VerifyReport['records'][number][] = []
    let left = 0
    for (const { value: f } of this.scratch.found.getRange()) {
      if (records.length >= max) {
        left++
        continue
      }
      const outcome = (OUTCOMES.includes(f.outcome as Outcome) ? f.outcome : 'in_flight') as Outcome
      records.push({ id: f.legacyId ?? `new:${f.newId ?? ''}`, legacyId: f.legacyId, newId: f.newId, outcome, ...(f.fields === undefined ? {} : { fields: f.fields }) })
    }
    let pending = 0
    for (const { value: f } of this.scratch.found.getRange()) if (f.recheck !== undefined) pending++
    const complete = this.problems.length === 0 && pending === 0 && (mode === 'count' ? legacy.done && next.done : mode === 'sample' || this.o.ids !== undefined || (legacy.done && next.done))
    const fields = Object.entries(this.fields).map(([k, count]) => {
      const [path, kind] = k.split('\0') as [string, string]
      return { path, kind, count }
    }).sort((a, b) => b.count - a.count || a.path.localeCompare(b.path))
    return {
      job: job.name,
      mode,
      totals,
      listed: { legacy: legacy.listed, new: next.listed },
      counts: this.counts,
      gone: this.gone,
      fields,
      records,
      recordsLeftOut: left,
      statement: mode === 'sample' || this.o.ids !== undefined ? sampleStatement(this.counts).text : null,
      complete,
      problems: [...new Set(this.problems)],
      verdict: verdict(this.counts, this.o.ids !== undefined && mode !== 'sample' ? 'full' : mode, complete, this.o.maxMismatchRate ?? 0, totals),
      startedAt: new Date(this.started).toISOString(),
      seconds: (this.now() - this.started) / 1000,
      requests: this.http.stats.requests,
      retries: this.http.stats.retries
    }
  }
}

/** The value at a path of segments (object keys) in parsed JSON. */
function valueAt (doc: unknown, path: readonly string[]): unknown {
  let v = doc
  for (const k of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined
    v = (v as Record<string, unknown>)[k]
  }
  return v
}

function json (r: Fetched): unknown {
  try {
    return JSON.parse(r.body.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

/** Runs `work` over `items`, at most `n` at once; the first failure stops the rest and is thrown. */
async function pool<T> (items: readonly T[], n: number, work: (item: T) => Promise<void>): Promise<void> {
  let i = 0
  let failed: unknown = null
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (failed === null && i < items.length) {
      const item = items[i++] as T
      try {
        await work(item)
      } catch (err) {
        failed ??= err
      }
    }
  }))
  if (failed !== null) throw failed instanceof Error ? failed : new Error('a verify task failed', { cause: failed })
}
