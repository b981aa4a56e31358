import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { waitFor, withDefaults, type Deadline } from './wait.js'

export const ROOT = join(import.meta.dirname, '..', '..')
export const CLI = join(ROOT, 'dist', 'src', 'cli.js')

/** The default deadline of a wait on a child process: a start, a drain, an exit (a loaded CI machine starts node slowly). */
export const PROCESS_DEADLINE_MS = 30_000

export interface Spawned {
  readonly child: ChildProcess
  stdout: string
  stderr: string
  /** Resolves with the output once `pattern` has appeared on stdout or stderr; rejects past the deadline (default PROCESS_DEADLINE_MS) with the output's end. */
  waitFor(pattern: RegExp, deadline?: Deadline): Promise<string>
  /** Resolves with the exit code (null when killed by a signal); rejects past the deadline (default PROCESS_DEADLINE_MS). */
  exitCode(deadline?: Deadline): Promise<number | null>
}

export interface RunOptions {
  /** Working directory (default: the repository root); a relative `script` is found from it. */
  readonly cwd?: string
  /** Only PATH and `env`, not this process's environment (as in a container). */
  readonly cleanEnv?: boolean
}

/** Runs a built entry point (npm test builds first) and collects its output. */
export function run(t: { teardown(fn: () => unknown): void }, script: string, args: string[], env: Record<string, string> = {}, opts: RunOptions = {}): Spawned {
  const cwd = opts.cwd ?? ROOT
  if (!existsSync(resolve(cwd, script))) throw new Error(`${script} is missing: run \`npm run build\` first (npm test does)`)
  const base = opts.cleanEnv === true ? { PATH: process.env.PATH ?? '' } : process.env
  // routes.yaml keeps its sync store at ${FICUS_STORE:-./ficus.lmdb}: a process of a test gets a fresh one, never the repository's.
  const store = env.FICUS_STORE === undefined ? mkdtempSync(join(tmpdir(), 'ficus-store-')) : null
  if (store !== null) t.teardown(() => { rmSync(store, { recursive: true, force: true }) })
  const child = spawn(process.execPath, [script, ...args], { cwd, env: { ...base, ...(store === null ? {} : { FICUS_STORE: join(store, 'ficus.lmdb') }), ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const waiters: { pattern: RegExp; resolve: (s: string) => void }[] = []
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const what = [basename(script), ...args].join(' ')
  const tail = (): string => (s.stdout + s.stderr).trimEnd().split('\n').slice(-5).join('\n')
  const s: Spawned = {
    child,
    stdout: '',
    stderr: '',
    async waitFor (pattern, deadline) {
      if (pattern.test(s.stdout + s.stderr)) return s.stdout + s.stderr
      const waiter = { pattern, resolve: (_s: string): void => {} }
      const seen = new Promise<string>((resolve) => { waiter.resolve = resolve })
      waiters.push(waiter)
      try {
        return await waitFor(seen, withDefaults(deadline, () => `${what} did not print ${String(pattern)}; its output ends:\n${tail()}`, PROCESS_DEADLINE_MS))
      } finally {
        if (waiters.includes(waiter)) waiters.splice(waiters.indexOf(waiter), 1)
      }
    },
    exitCode: async (deadline) => waitFor(exited, withDefaults(deadline, () => `${what} did not exit; its output ends:\n${tail()}`, PROCESS_DEADLINE_MS))
  }
  const feed = (): void => {
    for (const w of waiters.splice(0)) {
      if (w.pattern.test(s.stdout + s.stderr)) w.resolve(s.stdout + s.stderr)
      else waiters.push(w)
    }
  }
  child.stdout?.on('data', (d: Buffer) => { s.stdout += d.toString(); feed() })
  child.stderr?.on('data', (d: Buffer) => { s.stderr += d.toString(); feed() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return s
}

/** Waits for `ficus start`'s "ficus listening" line and returns the addresses it printed. */
export async function listening(p: Spawned, deadline?: Deadline): Promise<{ traffic: string; admin: string }> {
  const out = await p.waitFor(/"msg":"ficus listening"/, withDefaults(deadline, 'ficus start did not log "ficus listening"', PROCESS_DEADLINE_MS))
  return JSON.parse(out.split('\n').find((l) => l.includes('"ficus listening"')) ?? '{}') as { traffic: string; admin: string }
}
