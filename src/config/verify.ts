import { createHash } from 'node:crypto'
import type { CompareRules } from '../core/compare-rules.js'
import { parseRulePath, type RulePath } from '../core/rule-path.js'
import type { RouteRule } from '../core/types.js'
import { isObject } from './defaults.js'
import type { Path } from './problems.js'
import type { UpstreamConfig } from './schema.js'
import { parseDuration } from './units.js'
import type { ListSpec, RawVerifyJob, VerifyJob } from './verify-schema.js'

export const VERIFY_DEFAULTS = { concurrency: 4, rate: '50/s', settle: '30s', maxAttempts: 8, timeout: '10s' } as const

/**
 * `verify:` (docs/verify.md; DESIGN.md "Verify"): jobs that prove the two systems hold the
 * same records, read through their own APIs. Its cross-checks, and how a job is built
 * (its schema and the job's type: verify-schema.ts).
 */

type Report = (path: Path, message: string) => void

const bodyPath = (text: string): readonly string[] | string => {
  const p = parseRulePath(text)
  if (typeof p === 'string') return p
  if (p.root !== 'body' || p.segs.some((s) => s.t !== 'key')) return 'must be body, or body.<key>… (keys only: no [*] or **)'
  return p.segs.map((s) => (s as { v: string }).v)
}

/** Cross-checks of `verify:` beyond the schema: the route exists, each side can page, paths read. */
export function checkVerify (verify: unknown, routes: unknown, report: Report): void {
  if (!isObject(verify)) return
  const routeNames = Array.isArray(routes) ? routes.filter(isObject).map((r) => r.name).filter((n): n is string => typeof n === 'string') : []
  for (const [name, job] of Object.entries(verify)) {
    if (!isObject(job)) continue
    const at = (...p: (string | number)[]): Path => ['verify', name, ...p]
    if (typeof job.route === 'string' && !routeNames.includes(job.route)) {
      report(at('route'), `no route is named "${job.route}" (routes: ${routeNames.join(', ')}); the job reads that route's upstreams, compare rules and id map`)
    }
    if (!isObject(job.list)) continue
    for (const side of ['legacy', 'new'] as const) {
      const spec = sideOf(job.list, side)
      const where = isObject(job.list[side]) ? at('list', side) : at('list')
      if (typeof spec.path !== 'string') report(where, `needs a path for ${side} (list.path, or list.${side}.path)`)
      if (typeof spec.items !== 'string') report(where, `needs items for ${side}: where the records are in the answer, like body.items (body: the answer is the array)`)
      if (typeof spec.id !== 'string') report(where, `needs id for ${side}: where a record's id is in the record, like id`)
      for (const key of ['items', 'next', 'total'] as const) {
        const v = spec[key]
        if (typeof v !== 'string') continue
        const p = bodyPath(v)
        if (typeof p === 'string') report([...where, key], p)
      }
      if (typeof spec.id === 'string' && !/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(spec.id)) report([...where, 'id'], 'must be a field of the record like id or meta.id')
      if (spec.cursorParam !== undefined && spec.offsetParam !== undefined) report(where, `pages by cursorParam or by offsetParam, not both (${side})`)
      if (spec.cursorParam !== undefined && spec.next === undefined) report(where, `cursorParam needs next: where the answer gives the next cursor, like body.next_cursor (${side})`)
      if (spec.offsetParam !== undefined && spec.next !== undefined) report(where, `offsetParam pages by counting records: next is not read (${side}); remove one`)
    }
    if (typeof job.settle === 'string' && parseDuration(job.settle) === undefined) report(at('settle'), 'must be a duration like 30s')
    if (isObject(job.schedule) && typeof job.schedule.every === 'string') {
      const every = parseDuration(job.schedule.every)
      if (every !== undefined && every < 60_000) report(at('schedule', 'every'), 'must be at least 1m: a job reads every record of both systems each time')
      if ((job.schedule.mode === 'sample' || job.schedule.mode === 'full') && job.get === undefined) report(at('schedule', 'mode'), `${job.schedule.mode} fetches records by id: the job needs get (like /api/orders/:id)`)
    }
  }
}

/** The jobs as the rest of Ficus reads them (after every check passed). */
export function buildVerify (raw: unknown, routes: readonly RouteRule[], upstreams: Readonly<Record<string, UpstreamConfig>>, unmappedIds: 'wait' | 'same'): Record<string, VerifyJob> {
  const out: Record<string, VerifyJob> = {}
  if (!isObject(raw)) return out
  for (const [name, value] of Object.entries(raw)) {
    const job = value as RawVerifyJob
    const route = routes.find((r) => r.name === job.route) as RouteRule
    const sync = route.sync !== null && route.sync.mode === 'dual' ? route.sync : null
    const entity = job.entity ?? sync?.entity ?? null
    const list = { legacy: listSpec(job, 'legacy'), new: listSpec(job, 'new') }
    // With `sync.unmappedIds: same` the sides share ids (a backfill kept them): a record is found by its own id.
    const mapped = sync !== null && entity !== null && unmappedIds === 'wait'
    const rules = route.compare.rules
    // The record's own id is an id of the entity: new's is compared through the map like any other.
    const idRule = mapped ? { path: parseRulePath(`body.${list.legacy.id.join('.')}`) as RulePath, entity: entity } : null
    const compare: CompareRules = idRule === null ? rules : { ...rules, ids: [...rules.ids, idRule] }
    const settle = job.settle ?? VERIFY_DEFAULTS.settle
    const built: Omit<VerifyJob, 'fingerprint'> = {
      name,
      route: route.name,
      entity,
      dual: sync !== null,
      mapped,
      compare,
      list,
      get: job.get ?? null,
      headers: Object.entries(job.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
      upstreams: { legacy: upstreams[route.backends.legacy] as UpstreamConfig, new: upstreams[route.backends.new] as UpstreamConfig },
      concurrency: job.concurrency ?? VERIFY_DEFAULTS.concurrency,
      ratePerSecond: Number((job.rate ?? VERIFY_DEFAULTS.rate).slice(0, -2)),
      settleMs: parseDuration(settle) as number,
      maxAttempts: job.maxAttempts ?? VERIFY_DEFAULTS.maxAttempts,
      timeoutMs: parseDuration(job.timeout ?? VERIFY_DEFAULTS.timeout) as number,
      scheduleMs: job.schedule === undefined ? null : parseDuration(job.schedule.every) as number,
      scheduleMode: job.schedule?.mode ?? 'checksum',
      scheduleSample: job.schedule?.sample ?? 1000
    }
    // What decides which records a run sees and how it judges them (not its pace, nor credentials).
    const decisive = { list, get: built.get, entity, mapped, route: route.name, compare: route.compare.source, origins: [built.upstreams.legacy.origin, built.upstreams.new.origin] }
    out[name] = { ...built, fingerprint: createHash('sha256').update(JSON.stringify(decisive)).digest('hex').slice(0, 16) }
  }
  return out
}

const PAGING = ['next', 'cursorParam', 'offsetParam'] as const

/**
 * One side's list settings: the common ones, overridden by the side's. How a side pages
 * (next, cursorParam, offsetParam) is taken as a whole: a side that names any of them pages
 * its own way, whatever the common ones say.
 */
function sideOf (list: Record<string, unknown>, side: 'legacy' | 'new'): Record<string, unknown> {
  const { legacy, new: n, ...common } = list
  const own = (side === 'legacy' ? legacy : n) as Record<string, unknown> | undefined
  if (!isObject(own)) return common
  const base = PAGING.some((k) => own[k] !== undefined) ? Object.fromEntries(Object.entries(common).filter(([k]) => !(PAGING as readonly string[]).includes(k))) : common
  return { ...base, ...own }
}

function listSpec (job: RawVerifyJob, side: 'legacy' | 'new'): ListSpec {
  const s = sideOf(job.list, side) as RawVerifyJob['list']
  const segs = (text: string | undefined): readonly string[] | null => (text === undefined ? null : bodyPath(text) as readonly string[])
  const query = Object.entries({ ...s.query, ...job.listQuery?.[side] })
  const next = segs(s.next)
  return {
    path: s.path as string,
    query,
    items: segs(s.items) as readonly string[],
    id: (s.id as string).split('.'),
    paging: s.offsetParam !== undefined
      ? { kind: 'offset', param: s.offsetParam }
      : next === null
        ? { kind: 'none' }
        : s.cursorParam !== undefined ? { kind: 'cursor', next, param: s.cursorParam } : { kind: 'link', next },
    total: segs(s.total)
  }
}
