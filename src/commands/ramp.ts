import type { RampView } from '../control/ramp-control.js'
import { adminCall, adminGet, type AdminTarget } from './admin-client.js'

/**
 * The ramp's commands (docs/ramp.md "Operating a ramp"): `ficus ramp status [route]` and
 * `ficus ramp start|pause|resume|hold|advance|abort <route>`. Each is one admin API call; what
 * it prints is the ramp's own explanation (`text`, as Ficus words it), or with `--json` the
 * API's answer.
 */

/** The commands that change a ramp, as `POST /admin/ramp/<route>/<command>` takes them. */
export const RAMP_COMMANDS = ['start', 'pause', 'resume', 'hold', 'advance', 'abort'] as const
export type RampCommand = typeof RAMP_COMMANDS[number]

/** How many of a ramp's last decisions `ficus ramp status <route>` shows. */
const HISTORY_SHOWN = 5

const json = (body: unknown): string => JSON.stringify(body, null, 2) + '\n'

/**
 * `ficus ramp status [route]`: one route's explanation and its last decisions; without a
 * route, every ramped route's explanation, a blank line between two.
 */
export async function rampStatusCommand(target: AdminTarget, route: string | undefined, asJson: boolean): Promise<string> {
  if (route !== undefined) {
    const view = await adminGet(target, `/admin/ramp/${encodeURIComponent(route)}`) as RampView
    if (asJson) return json(view)
    return `${view.text}\n${historyText(view)}`
  }
  const body = await adminGet(target, '/admin/ramp') as { ramps: RampView[] }
  if (asJson) return json(body)
  if (body.ramps.length === 0) return 'No route has a ramp (routes.yaml: ramp: <plan> on a route).\n'
  return body.ramps.map((v) => `${v.text}\n`).join('\n')
}

/** The last few decisions of a ramp, oldest first, under a heading; empty when it has none. */
function historyText(view: RampView): string {
  const h = view.history
  if (h.length === 0) return ''
  const shown = h.slice(-HISTORY_SHOWN)
  const lines = shown.map((d) => `  ${new Date(d.at).toISOString()}  ${d.action.padEnd(7)}  by ${d.by}${d.reason === null ? '' : `: ${d.reason}`}`)
  return `\nhistory${h.length > shown.length ? ` (last ${shown.length} of ${h.length})` : ''}:\n${lines.join('\n')}\n`
}

/** `ficus ramp <command> <route> [--reason text]` (advance: `--force`, checked by the caller): the ramp after. */
export async function rampActCommand(target: AdminTarget, command: RampCommand, route: string, reason: string | undefined, asJson: boolean): Promise<string> {
  const payload = { ...(reason === undefined ? {} : { reason }), ...(command === 'advance' ? { force: true } : {}) }
  const view = await adminCall(target, 'POST', `/admin/ramp/${encodeURIComponent(route)}/${command}`, payload) as RampView
  if (asJson) return json(view)
  return `${view.text}\n`
}
