import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'

export const ROOT = join(import.meta.dirname, '..', '..')
export const CLI = join(ROOT, 'dist', 'src', 'cli.js')

export interface Spawned {
  readonly child: ChildProcess
  stdout: string
  stderr: string
  /** Resolves with the output once `pattern` has appeared on stdout or stderr. */
  waitFor(pattern: RegExp): Promise<string>
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>
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
  const child = spawn(process.execPath, [script, ...args], { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const waiters: { pattern: RegExp; resolve: (s: string) => void }[] = []
  const s: Spawned = {
    child,
    stdout: '',
    stderr: '',
    waitFor (pattern) {
      if (pattern.test(s.stdout + s.stderr)) return Promise.resolve(s.stdout + s.stderr)
      return new Promise((resolve) => waiters.push({ pattern, resolve }))
    },
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code)))
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
export async function listening(p: Spawned): Promise<{ traffic: string; admin: string }> {
  const out = await p.waitFor(/"msg":"ficus listening"/)
  return JSON.parse(out.split('\n').find((l) => l.includes('"ficus listening"')) ?? '{}') as { traffic: string; admin: string }
}
