import type { RouteRule } from './types.js'

/**
 * Runtime overrides of a route's two knobs (pure). An override wins over routes.yaml until
 * it is cleared; what the file says is kept apart, so clearing returns to it.
 */

/** Who changed a knob, when and why (shown by GET /admin/routes). */
export interface Change {
  /** ISO 8601. */
  readonly at: string
  readonly by: string
  readonly reason: string | null
}

export interface RouteOverride {
  readonly new?: number
  readonly shadow?: number
  readonly change?: Change
}

/** Overrides by route name. */
export type Overrides = Readonly<Record<string, RouteOverride>>

/**
 * The rule requests see: the file's rule with its overrides applied. An override of `new`
 * on a flagged route (a rollback) takes the flag out of the decision until it is cleared.
 */
export function effectiveRule(rule: RouteRule, o: RouteOverride | undefined): RouteRule {
  if (o === undefined || (o.new === undefined && o.shadow === undefined)) return rule
  return { ...rule, new: o.new ?? rule.new, flag: o.new === undefined ? rule.flag : null, shadow: o.shadow ?? rule.shadow }
}

/** A PATCH body: a number sets, null clears, absent leaves as it is. */
export interface Patch {
  readonly new?: number | null
  readonly shadow?: number | null
  readonly reason?: string
}

/**
 * Checks a PATCH /admin/routes/:name body; returns every problem (nothing is applied
 * unless there is none).
 * @example parsePatch({ new: 5, reason: 'canary' }) // { patch: { new: 5, reason: 'canary' } }
 */
export function parsePatch(body: unknown): { patch: Patch } | { problems: string[] } {
  const { b, problems } = jsonObject(body, ['new', 'shadow', 'reason'], '{"new": 5, "reason": "…"}')
  if (b === null) return { problems }
  const percent = (k: 'new' | 'shadow', integer: boolean): void => {
    const v = b[k]
    if (v === undefined || v === null) return
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100 || (integer && !Number.isInteger(v))) {
      problems.push(`${k} must be ${integer ? 'an integer' : 'a number'} from 0 to 100, or null to clear the override (got ${JSON.stringify(v)})`)
    }
  }
  percent('new', true)
  percent('shadow', false)
  reasonProblems(b, problems)
  if (b.new === undefined && b.shadow === undefined) problems.push('nothing to change: give new and/or shadow')
  if (problems.length > 0) return { problems }
  return { patch: b }
}

/** A POST /admin/rollback body: `{}` (every route) or `{ route?, reason? }`. */
export interface RollbackRequest {
  readonly route?: string
  readonly reason?: string
}

/** Checks a POST /admin/rollback body; returns every problem. */
export function parseRollback(body: unknown): { rollback: RollbackRequest } | { problems: string[] } {
  // No body at all rolls back every route; a JSON `null` is not an empty object.
  const { b, problems } = jsonObject(body === undefined ? {} : body, ['route', 'reason'], '{"route": "orders", "reason": "…"}')
  if (b === null) return { problems }
  if (b.route !== undefined && typeof b.route !== 'string') problems.push('route must be a route name')
  reasonProblems(b, problems)
  if (problems.length > 0) return { problems }
  return { rollback: b }
}

/**
 * The check every admin change body starts with: a JSON object (b is null otherwise) with
 * only `fields`. The caller adds its own problems.
 */
function jsonObject(body: unknown, fields: readonly string[], example: string): { b: Record<string, unknown> | null; problems: string[] } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { b: null, problems: [`the body must be a JSON object like ${example}`] }
  const b = body as Record<string, unknown>
  const problems: string[] = []
  for (const k of Object.keys(b)) if (!fields.includes(k)) problems.push(`unknown field "${k}" (fields: ${fields.join(', ')})`)
  return { b, problems }
}

/** A change's `reason`: absent, or a text of at most 500 characters. */
function reasonProblems(b: Record<string, unknown>, problems: string[]): void {
  if (b.reason !== undefined && (typeof b.reason !== 'string' || b.reason.length > 500)) problems.push('reason must be a text of at most 500 characters')
}

/** The override after a patch; undefined when nothing is overridden any more. */
export function applyPatch(before: RouteOverride | undefined, patch: Patch, change: Change): RouteOverride | undefined {
  const next = patch.new === undefined ? before?.new : patch.new ?? undefined
  const shadow = patch.shadow === undefined ? before?.shadow : patch.shadow ?? undefined
  if (next === undefined && shadow === undefined) return undefined
  return { ...(next === undefined ? {} : { new: next }), ...(shadow === undefined ? {} : { shadow }), change }
}
