import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MODES, type Mode } from '../core/verify.js'
import { bad, fields, reasonOf } from './admin-body.js'
import type { RunRequest, VerifyControl } from './verify-control.js'

/**
 * The admin API of verify jobs run by Ficus (docs/verify.md "Run by Ficus"), registered by
 * admin-api.ts inside `/admin` (its token, JSON-only rule and error answers apply):
 * `GET /admin/verify` (every job: running, last result), `GET /admin/verify/<job>` (and the
 * last run's whole report), `POST /admin/verify/<job>/run` and `…/stop` (audited).
 */

export function verifyRoutes (api: FastifyInstance, verify: VerifyControl): void {
  api.get('/verify', async () => verify.status())

  api.get('/verify/:job', async (request: FastifyRequest) => verify.job((request.params as { job: string }).job))

  /** `{ mode?, sample?, seed?, reason? }`: a run now (202 while it runs; its result at GET /admin/verify/<job>). */
  api.post('/verify/:job/run', async (request: FastifyRequest, reply) => {
    const b = fields(request.body ?? {}, ['mode', 'sample', 'seed', 'reason'], '{ "mode"?: "count"|"checksum"|"sample"|"full", "sample"?: N, "seed"?: S, "reason"?: text }')
    const problems: string[] = []
    const mode = (b.mode ?? 'checksum') as Mode
    if (!MODES.includes(mode)) problems.push(`mode: must be one of ${MODES.join(', ')} (got ${JSON.stringify(b.mode)})`)
    const int = (v: unknown, name: string, max: number): number | undefined => {
      if (v === undefined) return undefined
      if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max) return v
      problems.push(`${name}: must be a whole number from 1 to ${max} (got ${JSON.stringify(v)})`)
      return undefined
    }
    const n = int(b.sample, 'sample', 10_000_000)
    const seed = int(b.seed, 'seed', 2_147_483_647)
    if ((n !== undefined || seed !== undefined) && mode !== 'sample') problems.push('sample and seed are for mode "sample"')
    const reason = reasonOf(b, problems)
    if (problems.length > 0) throw bad(problems.join('; '))
    const req: RunRequest = { mode, sample: mode === 'sample' ? { n: n ?? 1000, seed } : undefined }
    const status = await verify.run((request.params as { job: string }).job, req, request.adminCaller, reason)
    return reply.code(202).send(status)
  })

  /** `{ reason? }`: the run stops (incomplete, its progress saved). */
  api.post('/verify/:job/stop', async (request: FastifyRequest) => {
    const b = fields(request.body ?? {}, ['reason'], '{ "reason"?: text }')
    return verify.stop((request.params as { job: string }).job, request.adminCaller, reasonOf(b))
  })
}
