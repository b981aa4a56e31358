import type { DrainResult, EntrySummary, EntryView, IdPairView, SyncRouteStatus, SyncStatus } from '../control/sync-control.js'
import type { Backend } from '../core/types.js'
import { AdminCallError, adminCall, adminGet, type AdminTarget } from './admin-client.js'
import { table } from './divergences.js'

/**
 * The operator's commands of dual writes (docs/sync.md "Operating dual writes"): `ficus sync
 * status|dead-letters|show|replay|skip|pause|resume|drain` and `ficus ids get|set`. Each is one
 * admin API call and a few lines (or `--json`, the API's answer). A command may end with a
 * non-zero code of its own (a drain that did not finish).
 */

export interface Output {
  readonly out: string
  /** 0, or 1 when the command's aim was not reached (writes left after a drain). */
  readonly code: number
}

const json = (body: unknown): string => JSON.stringify(body, null, 2) + '\n'

/** `12.3 s`. */
function seconds(s: number): string {
  return `${s.toFixed(1)} s`
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`

/** `ficus sync status`: per route and side, pending writes, dead letters and lag; then the totals, pauses and the id map. */
export async function syncStatusCommand(target: AdminTarget, asJson: boolean): Promise<string> {
  const st = await adminGet(target, '/admin/sync') as SyncStatus
  if (asJson) return json(st)
  const rows = table(['ROUTE', 'TO', 'PENDING', 'DEAD LETTERS', 'LAG', 'OLDEST PENDING', 'DELIVERY'], st.routes.map((r) => [
    r.route, r.target, String(r.pending), String(r.deadLetters), seconds(r.lagSeconds), r.oldestPending ?? '-', r.paused ? 'PAUSED' : 'on'
  ]))
  const behind = (['legacy', 'new'] as const).map((side) => `${side} ${seconds(Math.max(0, ...st.routes.filter((r) => r.target === side).map((r) => r.lagSeconds)))}`)
  const ids = Object.entries(st.ids)
  return rows + [
    '',
    `pending: ${st.pending}, dead letters: ${st.deadLetters}, intents: ${st.intents} (writes whose primary has not answered yet)`,
    `behind: ${behind.join(', ')}`,
    `paused: ${pausedText(st.paused)}`,
    `id map: ${ids.length === 0 ? 'empty' : ids.map(([e, n]) => `${e} ${n}`).join(', ')}`,
    `store: ${st.store.kind === 'embedded' ? `embedded ${st.store.path}` : `postgres ${st.store.database}`}`
  ].join('\n') + '\n'
}

function pausedText(paused: readonly string[]): string {
  if (paused.length === 0) return 'none'
  return paused.map((p) => (p === '*' ? 'every route (*)' : p)).join(', ')
}

/** `ficus sync dead-letters [--limit N]`: oldest first. */
export async function deadLettersCommand(target: AdminTarget, limit: number, asJson: boolean): Promise<string> {
  const body = await adminGet(target, `/admin/sync/dead-letters?limit=${limit}`) as { deadLetters: EntrySummary[] }
  if (asJson) return json(body)
  if (body.deadLetters.length === 0) return 'No dead letters.\n'
  return table(['SEQ', 'ROUTE', 'TO', 'WRITE', 'KEY', 'ATTEMPTS', 'AGE', 'REASON'], body.deadLetters.map((d) => [
    String(d.seq), d.route, d.target, `${d.method} ${d.path}`, d.key, String(d.attempts), seconds(d.ageSeconds), d.reason ?? '-'
  ])) + '\nficus sync show <seq> shows one; replay <seq> delivers it again once the cause is fixed, skip <seq> drops it.\n'
}

/** `ficus sync show <seq>`: one entry, whole. */
export async function showCommand(target: AdminTarget, seq: string, asJson: boolean): Promise<string> {
  const { entry: e } = await adminGet(target, `/admin/sync/entries/${encodeURIComponent(seq)}`) as { entry: EntryView }
  if (asJson) return json({ entry: e })
  const lines = [
    `entry ${e.seq}: ${stateLine(e)}`,
    `route:     ${e.route}`,
    `key:       ${e.key}`,
    `write:     ${e.method} ${e.path} to ${e.target}`,
    `created:   ${e.createdAt} (${seconds(e.ageSeconds)} ago)`,
    `attempts:  ${e.attempts}${e.nextAttempt === null ? '' : `, next at ${e.nextAttempt}`}`
  ]
  if (e.ids.length > 0) {
    const where = (r: EntryView['ids'][number]): string => (r.in === 'path' ? `path segment ${r.segment + 1}` : `body field ${r.field}`)
    lines.push(`ids:       ${e.ids.map((r) => `${r.entity} ${r.id} (${where(r)})`).join(', ')}, as ${e.source ?? 'its primary'} knows them: translated for ${e.target} at delivery`)
  }
  if (e.learn !== null) lines.push(`learns:    the ${e.target} id of the record it creates, from ${e.learn}`)
  lines.push(e.headers.length === 0 ? 'headers:   none' : `headers:   ${e.headers.map(([n, v]) => `${n}: ${v}`).join('\n           ')}`)
  if (e.body === null) lines.push('body:      none')
  else if ('text' in e.body) lines.push(`body:      ${plural(e.body.size, 'byte')} of JSON`, e.body.text)
  else lines.push(`body:      ${plural(e.body.size, 'byte')}, not UTF-8 JSON, in base64`, e.body.base64)
  return lines.join('\n') + '\n'
}

function stateLine(e: EntrySummary): string {
  if (e.state === 'dead') return `a dead letter (${e.reason ?? 'no reason'})`
  if (e.state === 'intent') return 'an intent: its primary has not answered yet'
  return `pending${e.reason === null ? '' : ` (last attempt: ${e.reason})`}`
}

/** `ficus sync replay <seq> [--reason text]`. */
export async function replayCommand(target: AdminTarget, seq: number, reason: string | undefined, asJson: boolean): Promise<string> {
  const body = await adminCall(target, 'POST', '/admin/sync/replay', { seq, ...(reason === undefined ? {} : { reason }) }) as { entry: EntryView }
  if (asJson) return json(body)
  const e = body.entry
  return `entry ${e.seq} (${e.method} ${e.path} to ${e.target}) replayed: pending, delivered next, then the later writes of ${e.key}\n`
}

/** `ficus sync skip <seq> [--reason text]`. */
export async function skipCommand(target: AdminTarget, seq: number, reason: string | undefined, asJson: boolean): Promise<string> {
  const body = await adminCall(target, 'POST', '/admin/sync/skip', { seq, ...(reason === undefined ? {} : { reason }) }) as { skipped: EntrySummary }
  if (asJson) return json(body)
  const e = body.skipped
  return `entry ${e.seq} (${e.method} ${e.path} to ${e.target}) skipped: ${e.target} will not get it; the later writes of ${e.key} go on\n`
}

/** `ficus sync pause|resume [route] [--reason text]`. */
export async function pauseCommand(target: AdminTarget, pause: boolean, route: string | undefined, reason: string | undefined, asJson: boolean): Promise<string> {
  const body = await adminCall(target, 'POST', `/admin/sync/${pause ? 'pause' : 'resume'}`, { ...(route === undefined ? {} : { route }), ...(reason === undefined ? {} : { reason }) }) as { paused: string[] }
  if (asJson) return json(body)
  const what = route ?? 'every route'
  if (pause) return `delivery of ${what} paused: its writes are still recorded, and wait (paused: ${pausedText(body.paused)})\n`
  const still = body.paused.includes('*') ? '; every route is still paused (*): ficus sync resume resumes all' : ''
  return `delivery of ${what} resumed (paused: ${pausedText(body.paused)})${still}\n`
}

/** `ficus sync drain [route] [--timeout 30s]`: exit 1 when writes are left. */
export async function drainCommand(target: AdminTarget, route: string | undefined, timeout: string | undefined, timeoutMs: number, asJson: boolean): Promise<Output> {
  const body = await adminCall(target, 'POST', '/admin/sync/drain', { ...(route === undefined ? {} : { route }), ...(timeout === undefined ? {} : { timeout }) }, false, timeoutMs + 10_000) as DrainResult
  const code = body.drained ? 0 : 1
  if (asJson) return { out: json(body), code }
  const scope = route ?? 'every route'
  const lines: string[] = []
  if (body.drained) {
    lines.push(`${scope}: drained, nothing left to deliver (waited ${seconds(body.waitedSeconds)})`)
  } else {
    const why = body.paused ? 'delivery is paused (ficus sync resume)' : `after ${seconds(body.waitedSeconds)}`
    lines.push(`${scope}: not drained, ${why}: ${plural(body.pending, 'write')} left to deliver`)
    for (const r of body.routes) if (r.pending > 0) lines.push(`  ${r.route} → ${r.target}: ${r.pending} (${r.target} is ${seconds(r.lagSeconds)} behind)${r.paused ? ', paused' : ''}`)
  }
  if (body.deadLetters > 0) {
    lines.push(`${plural(body.deadLetters, 'dead letter')} not waited for: they wait for an operator (ficus sync dead-letters), and so do the later writes of their keys`)
    for (const d of body.deadLetterEntries) lines.push(`  ${d.seq}  ${d.route} → ${d.target}  ${d.method} ${d.path}  ${d.reason ?? ''}`)
  }
  if (body.intents > 0) lines.push(`${plural(body.intents, 'write')} still awaiting their primary's answer (all routes)`)
  return { out: lines.join('\n') + '\n', code }
}

/** `ficus ids get <entity> <side> <id>`. */
export async function idsGetCommand(target: AdminTarget, entity: string, side: string, id: string, asJson: boolean): Promise<string> {
  const body = await adminGet(target, `/admin/ids/${encodeURIComponent(entity)}/${encodeURIComponent(side)}/${encodeURIComponent(id)}`) as { pair: IdPairView }
  if (asJson) return json(body)
  return `${pairText(body.pair)}\n`
}

/** `ficus ids set <entity> --legacy X --new Y [--origin legacy|new] [--reason text]`. */
export async function idsSetCommand(target: AdminTarget, pair: { entity: string; legacy: string; new: string; origin?: Backend }, reason: string | undefined, asJson: boolean): Promise<string> {
  const body = await adminCall(target, 'PUT', '/admin/ids', { ...pair, ...(reason === undefined ? {} : { reason }) }) as { pair: IdPairView; created: boolean; warning?: string }
  if (asJson) return json(body)
  return `${pairText(body.pair)}: ${body.created ? 'set' : 'already in the id map, unchanged'}\n${body.warning === undefined ? '' : `warning: ${body.warning}\n`}`
}

function pairText(p: IdPairView): string {
  return `${p.entity}: legacy ${p.legacy} ↔ new ${p.new} (created on ${p.origin})`
}

/**
 * After `ficus rollback`: per rolled-back dual route, the writes still on their way to each
 * side and how far behind it is. Empty when sync is not in use (or cannot be read: the
 * rollback itself succeeded, and says so).
 */
export async function writesInFlight(target: AdminTarget, routes: readonly string[]): Promise<{ text: string; status: SyncStatus | null }> {
  let st: SyncStatus
  try {
    st = await adminGet(target, '/admin/sync') as SyncStatus
  } catch (err) {
    if (err instanceof AdminCallError) return { text: '', status: null }
    throw err
  }
  const lines: string[] = []
  for (const route of routes) {
    const rows = st.routes.filter((r) => r.route === route)
    if (rows.length === 0) continue
    if (rows.every((r) => r.pending === 0 && r.deadLetters === 0)) {
      lines.push(`  ${route}: no write on its way to either side`)
      continue
    }
    const to = (r: SyncRouteStatus): string => `${r.pending} to ${r.target}${r.pending > 0 ? ` (${seconds(r.lagSeconds)} behind)` : ''}${r.deadLetters > 0 ? ` and ${plural(r.deadLetters, 'dead letter')}` : ''}${r.paused ? ', paused' : ''}`
    lines.push(`  ${route}: writes still on their way: ${rows.map(to).join(', ')}`)
  }
  if (lines.length === 0) return { text: '', status: st }
  if (st.intents > 0) lines.push(`  and ${plural(st.intents, 'write')} awaiting their primary's answer`)
  const waiting = st.routes.some((r) => routes.includes(r.route) && (r.pending > 0 || r.deadLetters > 0))
  if (waiting) lines.push('  ficus sync drain [route] waits until they are delivered; ficus sync dead-letters lists what waits for an operator')
  return { text: lines.join('\n') + '\n', status: st }
}
