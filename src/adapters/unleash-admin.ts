import type { UnleashAdmin } from '../config/schema.js'

/**
 * Unleash's admin API, for one job: `ficus set <route> --new N` on a flagged route changes
 * the flag's flexibleRollout in Unleash, so every replica follows (never only this one).
 */

/** Why a change was not made: `shape` (the flag is not one flexibleRollout) or `failed` (Unleash refused or is unreachable). */
export class UnleashAdminError extends Error {
  constructor (readonly kind: 'shape' | 'failed', message: string) {
    super(message)
    this.name = 'UnleashAdminError'
  }
}

export interface RolloutChange {
  /** The rollout before the change (0-100). */
  readonly before: number
  /** The flag was off in the environment and was turned on, so the new share takes effect. */
  readonly turnedOn: boolean
  /** Set when the rollout changed but a later step failed (turning the flag on). */
  readonly warning?: string
}

interface Strategy {
  readonly id: string
  readonly name: string
  readonly disabled?: boolean | null
  readonly parameters?: Record<string, unknown>
}

const TIMEOUT_MS = 5_000

export class UnleashAdminApi {
  constructor (private readonly cfg: UnleashAdmin) {}

  /** Sets the flag's single flexibleRollout to `percent` in the configured environment. */
  async setRollout (flag: string, percent: number): Promise<RolloutChange> {
    const feature = `${this.base()}/features/${encodeURIComponent(flag)}`
    const env = `${feature}/environments/${encodeURIComponent(this.cfg.environment)}`
    const strategies = await this.call('GET', `${env}/strategies`) as Strategy[] | { strategies?: Strategy[] }
    const list = (Array.isArray(strategies) ? strategies : strategies.strategies ?? []).filter((s) => s.disabled !== true)
    const flexible = list.filter((s) => s.name === 'flexibleRollout')
    if (list.length !== 1 || flexible.length !== 1) {
      throw new UnleashAdminError('shape', `the flag "${flag}" has ${list.length === 0 ? 'no strategy' : `the strategies ${list.map((s) => s.name).join(', ')}`} in ${this.cfg.environment}; Ficus changes a flag with exactly one flexibleRollout: change this one in Unleash`)
    }
    const strategy = flexible[0] as Strategy
    const before = Number(strategy.parameters?.rollout ?? 0)
    await this.call('PATCH', `${env}/strategies/${encodeURIComponent(strategy.id)}`, [
      { op: 'replace', path: '/parameters/rollout', value: String(percent) }
    ])
    const was = Number.isFinite(before) ? before : 0
    // The rollout has changed from here on: a failure below is reported with it, not as "nothing changed".
    if (percent === 0) return { before: was, turnedOn: false }
    try {
      const def = await this.call('GET', feature) as { environments?: { name: string; enabled: boolean }[] }
      const here = def.environments?.find((e) => e.name === this.cfg.environment)
      if (here === undefined || here.enabled) return { before: was, turnedOn: false }
      await this.call('POST', `${env}/on`)
      return { before: was, turnedOn: true }
    } catch (err) {
      return { before: was, turnedOn: false, warning: `the flag may still be off in ${this.cfg.environment}: ${(err as Error).message}` }
    }
  }

  /** Where the change goes, for messages and the audit log. */
  describe (): string {
    return `project ${this.cfg.project}, environment ${this.cfg.environment}`
  }

  private base (): string {
    return `${this.cfg.url.replace(/\/+$/, '')}/admin/projects/${encodeURIComponent(this.cfg.project)}`
  }

  private async call (method: string, url: string, body?: unknown): Promise<unknown> {
    let res: Response
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: this.cfg.token, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(TIMEOUT_MS)
      })
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } }
      throw new UnleashAdminError('failed', `Unleash's admin API could not be reached (${e.cause?.code ?? e.name}: ${e.message})`)
    }
    const text = await res.text().catch(() => '')
    if (!res.ok) {
      const why = res.status === 401 || res.status === 403 ? ' (check unleash.admin.token)' : res.status === 404 ? ' (no such flag in that project and environment?)' : ''
      throw new UnleashAdminError('failed', `Unleash answered ${res.status} to ${method} ${new URL(url).pathname}${why}: ${text.slice(0, 300)}`)
    }
    if (text === '') return {}
    try {
      return JSON.parse(text) as unknown
    } catch {
      throw new UnleashAdminError('failed', `Unleash answered ${method} ${new URL(url).pathname} with something that is not JSON`)
    }
  }
}
