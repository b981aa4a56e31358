import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './spawn.js'
import { startPostgres, tail, type Postgres } from './postgres.js'
import { freePorts } from './upstream.js'

/**
 * A real Unleash server (test/unleash-server, unleash-server 7.5.1) on a throwaway
 * PostgreSQL 15 cluster, both on 127.0.0.1 only. Needs `npm ci --prefix test/unleash-server`
 * and the PostgreSQL server binaries (Debian: apt-get install postgresql; PG_BIN overrides
 * /usr/lib/postgresql/15/bin). As root, PostgreSQL runs as the `postgres` user (PG_OS_USER).
 */

interface Teardown { teardown(fn: () => unknown): void }

export interface UnleashServer {
  /** The unleash-client url, like http://127.0.0.1:PORT/api */
  readonly url: string
  /** A backend (client SDK) token for project default, environment development. */
  readonly clientToken: string
  /** An admin token for the admin API (all projects, all environments). */
  readonly adminToken: string
  /** Stops Unleash and PostgreSQL and removes the temp dir. Idempotent. */
  stop(): Promise<void>
  /** SIGKILLs Unleash only (an outage); stop() still cleans up. */
  kill(): Promise<void>
}

export interface StartUnleashOptions {
  /** Bound on each start of Unleash (migrations included). Default 45s, under tap's 60s per file. */
  readyTimeoutMs?: number
}

const SERVER_DIR = join(ROOT, 'test', 'unleash-server')
const START = join(SERVER_DIR, 'start.mjs')
const DB_USER = 'postgres'
const DB_NAME = 'unleash'

/** Starts PostgreSQL and Unleash; on t, stop() is registered as a teardown. */
export async function startUnleash(t?: Teardown, opts: StartUnleashOptions = {}): Promise<UnleashServer> {
  if (!existsSync(join(SERVER_DIR, 'node_modules', 'unleash-server'))) {
    throw new Error('unleash-server is not installed: run `npm ci --prefix test/unleash-server`')
  }
  const readyTimeoutMs = opts.readyTimeoutMs ?? 45_000
  let pg: Postgres | undefined
  let unleash: Unleash | undefined
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      try {
        await unleash?.stop()
      } finally {
        await pg?.stop()
      }
    })()
    return stopped
  }
  t?.teardown(stop)

  try {
    pg = await startPostgres()
    const pgPort = pg.port
    const pgLogTail = async (): Promise<string> => (pg as Postgres).logTail()
    const [port] = await freePorts(1) as [number]
    await pg.createDatabase(DB_NAME)

    const clientToken = `default:development.${randomBytes(16).toString('hex')}`
    const adminToken = `*:*.${randomBytes(16).toString('hex')}`
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      UNLEASH_PORT: String(port),
      UNLEASH_DB_PORT: String(pgPort),
      UNLEASH_DB_USER: DB_USER,
      UNLEASH_DB_NAME: DB_NAME,
      UNLEASH_CLIENT_TOKEN: clientToken,
      UNLEASH_ADMIN_TOKEN: adminToken,
      UNLEASH_EXIT_ON_STDIN_EOF: '1'
    }
    unleash = await startUnleashProcess(env, readyTimeoutMs, pgLogTail)
    return {
      url: `http://127.0.0.1:${port}/api`,
      clientToken,
      adminToken,
      stop,
      kill: async () => { await unleash?.kill() }
    }
  } catch (err) {
    await stop().catch(() => undefined)
    throw err
  }
}

interface Unleash {
  stop(): Promise<void>
  kill(): Promise<void>
}

/** Runs start.mjs and resolves once it prints UNLEASH_READY. */
async function startUnleashProcess(env: Record<string, string>, timeoutMs: number, pgLogTail: () => Promise<string>): Promise<Unleash> {
  const child = spawn(process.execPath, [START], { cwd: SERVER_DIR, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  const end = async (signal: NodeJS.Signals, graceMs: number): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
    child.stdin.destroy()
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string): void => {
        cleanup()
        void pgLogTail().then((pg) => reject(new Error(
          `Unleash ${why}\n--- unleash stderr ---\n${tail(stderr)}\n--- unleash stdout ---\n${tail(stdout)}\n--- postgres.log ---\n${pg}`)))
      }
      const onData = (): void => { if (/^UNLEASH_READY \d+$/m.test(stdout)) { cleanup(); resolve() } }
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => fail(`exited before it was ready (code ${code}, signal ${signal})`)
      const onError = (err: Error): void => fail(`could not be spawned: ${err.message}`)
      const timer = setTimeout(() => fail(`was not ready within ${timeoutMs} ms`), timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        child.stdout.off('data', onData)
        child.off('exit', onExit)
        child.off('error', onError)
      }
      child.stdout.on('data', onData)
      child.once('exit', onExit)
      child.once('error', onError)
    })
  } catch (err) {
    await end('SIGKILL', 0)
    throw err
  }
  return {
    stop: () => end('SIGTERM', 15_000),
    kill: () => end('SIGKILL', 0)
  }
}

// --- admin API (Unleash 7: /api/admin/projects/default/features/...) ---

export interface FlexibleRollout {
  /** 0..100 */
  rollout: number
  /** Default: the flag name. */
  groupId?: string
  /** Default: 'default'. */
  stickiness?: 'default' | 'userId'
}

interface Strategy { id: string; name: string; parameters?: Record<string, string> }

type Admin = Pick<UnleashServer, 'url' | 'adminToken'>

const ENV = 'development'
const flagPath = (name: string): string => `/admin/projects/default/features/${encodeURIComponent(name)}`

async function admin(u: Admin, method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await fetch(u.url + path, {
    method,
    headers: { authorization: u.adminToken, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000)
  })
  const text = await r.text()
  if (!r.ok) throw new Error(`Unleash admin ${method} ${path}: ${r.status} ${text}`)
  return text === '' ? undefined : JSON.parse(text) as unknown
}

/** Creates a release flag in project default with one flexibleRollout strategy in development, and enables it there. */
export async function createFlexibleRolloutFlag(u: Admin, name: string, s: FlexibleRollout): Promise<void> {
  await admin(u, 'POST', '/admin/projects/default/features', { name, type: 'release' })
  await admin(u, 'POST', `${flagPath(name)}/environments/${ENV}/strategies`, {
    name: 'flexibleRollout',
    constraints: [],
    parameters: { rollout: String(s.rollout), stickiness: s.stickiness ?? 'default', groupId: s.groupId ?? name }
  })
  await setEnabled(u, name, true)
}

/** Sets parameters.rollout (0..100) of the flag's flexibleRollout strategy in development. */
export async function setRollout(u: Admin, name: string, rollout: number): Promise<void> {
  const strategies = await admin(u, 'GET', `${flagPath(name)}/environments/${ENV}/strategies`) as Strategy[]
  const s = strategies.find((x) => x.name === 'flexibleRollout')
  if (s === undefined) throw new Error(`flag ${name} has no flexibleRollout strategy in ${ENV}`)
  await admin(u, 'PATCH', `${flagPath(name)}/environments/${ENV}/strategies/${s.id}`, [
    { op: 'replace', path: '/parameters/rollout', value: String(rollout) }
  ])
}

/** Turns the flag on or off in development. */
export async function setEnabled(u: Admin, name: string, on: boolean): Promise<void> {
  await admin(u, 'POST', `${flagPath(name)}/environments/${ENV}/${on ? 'on' : 'off'}`)
}
