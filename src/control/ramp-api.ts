import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RampAction } from '../core/ramp.js'
import { bad, fields, reasonOf } from './admin-body.js'
import type { RampControl } from './ramp-control.js'

/**
 * The admin API of ramps (docs/ramp.md "Operating a ramp"), registered by admin-api.ts inside
 * `/admin` (its token, JSON-only rule and error answers apply): `GET /admin/ramp` (every
 * ramped route), `GET /admin/ramp/<route>` (one, with its gates and explanation), and
 * `POST /admin/ramp/<route>/<command>` with `{ reason?, force? }` for start, pause, resume,
 * hold, advance (`force: true` only) and abort; each audited with its caller.
 */

const COMMANDS: readonly RampAction[] = ['start', 'pause', 'resume', 'hold', 'advance', 'abort']

export function rampRoutes (api: FastifyInstance, ramp: RampControl): void {
  api.get('/ramp', async () => ({ ramps: await ramp.list() }))

  api.get('/ramp/:route', async (request: FastifyRequest) => ramp.get((request.params as { route: string }).route))

  api.post('/ramp/:route/:command', async (request: FastifyRequest) => {
    const { route, command } = request.params as { route: string; command: string }
    if (!COMMANDS.includes(command as RampAction)) throw bad(`unknown ramp command "${command}" (commands: ${COMMANDS.join(', ')})`)
    const b = fields(request.body ?? {}, command === 'advance' ? ['reason', 'force'] : ['reason'], command === 'advance' ? '{ "force": true, "reason"?: text }' : '{ "reason"?: text }')
    const problems: string[] = []
    const reason = reasonOf(b, problems)
    if (command === 'advance' && b.force !== true) problems.push('advance needs "force": true: a ramp advances by itself when its gates pass; forcing it skips them (the audit log keeps what they said)')
    if (problems.length > 0) throw bad(problems.join('; '))
    return ramp.act(route, { action: command as RampAction, by: request.adminCaller, reason, force: command === 'advance' })
  })
}
