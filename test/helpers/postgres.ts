import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts } from './upstream.js'

/**
 * A throwaway PostgreSQL 15 cluster on 127.0.0.1 (the server binaries: Debian's postgresql
 * package; PG_BIN overrides /usr/lib/postgresql/15/bin). As root, PostgreSQL runs as the
 * `postgres` user (PG_OS_USER). Settings for tests: no fsync (the cluster is thrown away).
 * A watchdog stops it and removes its directory even when this process is SIGKILLed.
 */

interface Teardown { teardown(fn: () => unknown): void }

export interface Postgres {
  readonly port: number
  /** A connection string for `database` (created by createDatabase, or `postgres`). */
  url(database?: string): string
  createDatabase(name: string): Promise<void>
  /** The end of the server's log, for error messages. */
  logTail(): Promise<string>
  /** Stops the server and removes its directory. Idempotent. */
  stop(): Promise<void>
}

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'
const PG_OS_USER = process.env.PG_OS_USER ?? 'postgres'
const DB_USER = 'postgres'
const COMMAND_TIMEOUT_MS = 60_000

/** Starts a cluster; on t, stop() is registered as a teardown. */
export async function startPostgres(t?: Teardown): Promise<Postgres> {
  if (!existsSync(join(PG_BIN, 'initdb'))) {
    throw new Error(`no PostgreSQL server binaries in ${PG_BIN}: install postgresql (apt-get install postgresql) or set PG_BIN`)
  }
  const asRoot = process.getuid?.() === 0
  /** pg_ctl and initdb refuse to run as root. */
  const pgCmd = (bin: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', PG_OS_USER, '--', join(PG_BIN, bin), ...args]] : [join(PG_BIN, bin), args]
  const dir = await mkdtemp(join(tmpdir(), 'ficus-pg-'))
  const data = join(dir, 'data')
  const pgLog = join(dir, 'postgres.log')
  let started = false
  let watchdog: ChildProcess | undefined
  let stopped: Promise<void> | undefined
  const logTail = async (): Promise<string> => tail(await readFile(pgLog, 'utf8').catch(() => ''))
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      try {
        if (started) await exec(...pgCmd('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']))
      } finally {
        killGroup(watchdog)
        await rm(dir, { recursive: true, force: true })
      }
    })()
    return stopped
  }
  t?.teardown(stop)
  try {
    if (asRoot) await exec('chown', [`${PG_OS_USER}:`, dir])
    const [port] = await freePorts(1) as [number]
    await exec(...pgCmd('initdb', ['-D', data, '-A', 'trust', '-U', DB_USER, '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']))
    // settings in the file, not pg_ctl -o: that goes through a shell
    await appendFile(join(data, 'postgresql.conf'), [
      '', '# ficus test cluster',
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'fsync = off', 'synchronous_commit = off', 'full_page_writes = off', ''
    ].join('\n'))
    watchdog = startWatchdog(dir, pgCmd('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop']))
    started = true
    await exec(...pgCmd('pg_ctl', ['-D', data, '-l', pgLog, '-w', '-t', '30', 'start'])).catch(async (err: unknown) => {
      throw new Error(`PostgreSQL did not start: ${String(err)}\n--- postgres.log ---\n${await logTail()}`)
    })
    return {
      port,
      url: (database = 'postgres') => `postgres://${DB_USER}@127.0.0.1:${port}/${database}`,
      createDatabase: async (name) => { await exec(join(PG_BIN, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', DB_USER, name]) },
      logTail,
      stop
    }
  } catch (err) {
    await stop().catch(() => undefined)
    throw err
  }
}

/**
 * A detached shell that waits for EOF on its stdin (our end of the pipe closes whenever
 * this process exits, even by SIGKILL), then stops the cluster and removes the temp dir.
 * stop() SIGKILLs it after cleaning up itself.
 */
function startWatchdog(dir: string, [cmd, args]: [string, string[]]): ChildProcess {
  const script = 'cat >/dev/null; dir=$1; shift; "$@" >/dev/null 2>&1; rm -rf "$dir"'
  const w = spawn('sh', ['-c', script, 'ficus-pg-watchdog', dir, cmd, ...args], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] })
  w.on('error', () => undefined)
  w.unref()
  // the pipe must not keep this process alive either
  ;(w.stdin as Socket | null)?.unref()
  return w
}

/** The watchdog and its `cat`: detached, so they have their own process group. */
function killGroup(w: ChildProcess | undefined): void {
  if (w?.pid === undefined) return
  try { process.kill(-w.pid, 'SIGKILL') } catch { /* already gone */ }
  w.stdin?.destroy()
}

export function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${tail(stderr)}`))
      else resolve(stdout)
    })
  })
}

export function tail(s: string, lines = 40): string {
  const t = s.trimEnd()
  return t === '' ? '(empty)' : t.split('\n').slice(-lines).join('\n')
}

