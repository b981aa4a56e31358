import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { request, Agent } from 'undici'
import type { Test } from 'tap'
import type { RampView } from '../../src/control/ramp-control.js'
import { admin, type AdminTarget } from './admin.js'
import type { TestFicus } from './ficus.js'
import { startUpstream, type Upstream } from './upstream.js'
import { waitFor } from './wait.js'

/**
 * A ramp's test bench: legacy and new answering `GET /api/items/:id` with the same JSON, new's
 * behaviour changeable mid-ramp (`behave`: a share of 500s, of changed answers, a delay), and
 * a load of distinct users (sticky buckets at random) through Ficus.
 */

export interface Behaviour {
  /** Share of requests new answers 500 (0..1). */
  fail: number
  /** Share of requests new answers with a changed title. */
  diverge: number
  /** Extra time new takes (ms). */
  delayMs: number
}

export interface RampRig {
  readonly legacy: Upstream
  readonly next: Upstream
  readonly behave: Behaviour
  readonly doc: Record<string, unknown>
}

export async function rampUpstreams (t: Test): Promise<Omit<RampRig, 'doc'>> {
  const behave: Behaviour = { fail: 0, diverge: 0, delayMs: 0 }
  const item = (url: string, title: string): string => JSON.stringify({ id: url.split('/').pop(), title })
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': 'legacy' })
    res.end(item(req.url ?? '', 'same'))
  })
  const next = await startUpstream(t, 'new', (req, res) => {
    const answer = (): void => {
      if (Math.random() < behave.fail) {
        res.writeHead(500, { 'content-type': 'application/json', 'x-served-by': 'new' })
        res.end('{"error":"boom"}')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': 'new' })
      res.end(item(req.url ?? '', Math.random() < behave.diverge ? 'changed' : 'same'))
    }
    if (behave.delayMs > 0) setTimeout(answer, behave.delayMs)
    else answer()
  })
  return { legacy, next, behave }
}

/** A plan whose holds are compressed to test time; gates sized so that a few thousand requests decide. */
export function testPlan (over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    steps: [
      { new: 1, hold: '200ms', minRequests: 10 },
      { new: 5, hold: '200ms', minRequests: 20 },
      { new: 10, hold: '200ms' },
      { new: 25, hold: '200ms' },
      { new: 50, hold: '200ms' },
      { new: 100, hold: '200ms' }
    ],
    window: '30s',
    gates: {
      divergence: { max: '5%' },
      errors: { maxIncrease: '20pp' },
      latency: { slowerBy: '50ms', maxShare: '20%' }
    },
    ...over
  }
}

export function rampDoc (rig: Omit<RampRig, 'doc'>, dir: string, plan: Record<string, unknown> = testPlan(), extra: Record<string, unknown> = {}): Record<string, unknown> {
  mkdirSync(dir, { recursive: true })
  return {
    state: join(dir, 'state.json'),
    upstreams: { legacy: { url: rig.legacy.url }, new: { url: rig.next.url } },
    routes: [{ name: 'items', match: { path: '/api/items/:id' }, new: 0, shadow: 100, ramp: 'canary' }],
    ramp: { evaluateEvery: '100ms', plans: { canary: plan } },
    ...extra
  }
}

/**
 * Requests from distinct users, `concurrency` at a time, until stopped; counts answers by
 * status. Each user id is new, so the sticky bucket of each request is drawn at random.
 */
export function load (url: string, concurrency = 4): { stop(): Promise<void>; readonly sent: () => number; readonly statuses: Map<number, number> } {
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 10_000 })
  const statuses = new Map<number, number>()
  let sent = 0
  let running = true
  let user = Math.floor(Math.random() * 1e9)
  const one = async (): Promise<void> => {
    while (running) {
      const id = ++user
      try {
        const r = await request(`${url}/api/items/${id % 1000}`, { headers: { 'x-user-id': `u${id}` }, dispatcher: agent })
        await r.body.dump()
        statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1)
      } catch {
        statuses.set(0, (statuses.get(0) ?? 0) + 1)
      }
      sent++
    }
  }
  const workers = Array.from({ length: concurrency }, one)
  let stopped: Promise<void> | null = null
  return {
    statuses,
    sent: () => sent,
    stop: async () => {
      running = false
      stopped ??= Promise.all(workers).then(async () => agent.close())
      return stopped
    }
  }
}

export async function rampOf (f: AdminTarget, route = 'items'): Promise<RampView> {
  const r = await admin(f, 'GET', `/admin/ramp/${route}`)
  if (r.status !== 200) throw new Error(`GET /admin/ramp/${route} answered ${r.status}: ${r.text}`)
  return r.body as unknown as RampView
}

/** Waits until the route's ramp satisfies `ok`, failing with its last explanation. */
export async function rampUntil (f: AdminTarget, ok: (v: RampView) => boolean, what: string, timeoutMs = 30_000, route = 'items'): Promise<RampView> {
  let last: RampView | null = null
  return waitFor(async () => {
    last = await rampOf(f, route)
    return ok(last) ? last : null
  }, { timeoutMs, message: () => `the ramp did not ${what}; it is: ${last === null ? 'unknown' : `${last.phase} step ${last.step}\n${last.text}`}` })
}

/** Waits until the controller has completed a round that began after now (what it decides then is in effect). */
export async function nextRound (f: AdminTarget, route = 'items'): Promise<RampView> {
  const after = Date.now()
  return rampUntil(f, (v) => v.lastRound !== null && Date.parse(v.lastRound) > after, 'complete a round', 10_000, route)
}

export async function startRamp (t: Test, f: TestFicus, route = 'items'): Promise<void> {
  const r = await admin(f, 'POST', `/admin/ramp/${route}/start`, { json: { reason: 'test' } })
  t.equal(r.status, 200, `ramp start: ${r.text}`)
}
