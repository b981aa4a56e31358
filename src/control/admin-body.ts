import type { AuditEntry, AuditLog } from '../adapters/audit-log.js'
import type { Logger } from '../adapters/logger.js'
import { ControlError } from './control-plane.js'

/**
 * What the admin API's routes of dual writes (sync-api.ts) and of verify jobs (verify-api.ts)
 * share: reading a JSON body's fields and reason, each problem said, and auditing a decision
 * before it is made.
 */

/** Longest reason kept with a decision (characters), as for the other changes. */
export const MAX_REASON = 500

export type Body = Record<string, unknown>

export function bad (detail: string): ControlError {
  return new ControlError('FICUS_ERR_BAD_ADMIN_REQUEST', detail)
}

/** The body as an object with only `allowed` keys; every unknown key said. */
export function fields (body: unknown, allowed: readonly string[], shape: string): Body {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) throw bad(`the body must be a JSON object: ${shape}`)
  const b = body as Body
  const unknown = Object.keys(b).filter((k) => !allowed.includes(k))
  if (unknown.length > 0) throw bad(`${unknown.map((k) => `unknown field "${k}"`).join('; ')} (expected ${shape})`)
  return b
}

/** The body's `reason`, or null; a bad one is thrown, or added to `problems` when the caller collects them. */
export function reasonOf (b: Body, problems?: string[]): string | null {
  const r = b.reason
  if (r === undefined || r === null) return null
  if (typeof r === 'string' && r.length <= MAX_REASON) return r
  const problem = `reason: must be text of at most ${MAX_REASON} characters`
  if (problems === undefined) throw bad(problem)
  problems.push(problem)
  return null
}

/** Audits a decision before it is made: an audit log that cannot be written refuses it (`what`: the decision, for the log). */
export async function auditFirst (audit: AuditLog, log: Logger, entry: AuditEntry, what: string): Promise<void> {
  try {
    await audit.append(entry)
  } catch (err) {
    log.error({ err, entry }, `could not write the audit log; ${what} was not made`)
    throw new ControlError('FICUS_ERR_STATE_WRITE', 'the audit log could not be written; nothing was changed')
  }
}
