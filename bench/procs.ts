import { spawn, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { request } from 'undici'

/** Helpers the bench scripts share: free ports, CPU pinning, waiting for a server, running the load, reading RSS. */

export const HAS_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0

/** `argv` run on CPU `cpu` when taskset is installed (null: on any CPU), as a [command, args] pair for spawn. */
export function pinned(cpu: string | null, argv: string[]): [string, string[]] {
  return HAS_TASKSET && cpu !== null ? ['taskset', ['-c', cpu, ...argv]] : [argv[0] as string, argv.slice(1)]
}

export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** Benchmark code, not a test: polling until the server answers 200 is fine here. */
export async function ready(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await request(url)
      await r.body.dump()
      if (r.statusCode === 200) return
    } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} did not answer 200 within 30 s`)
}

/** What a load generator prints (bench/load.js, or wrk through bench/wrk.lua). */
export interface LoadResult { rps: number; p50: number; p99: number; errors: number; non2xx: number; total: number }

/**
 * Runs a load generator pinned to `cpu` and reads its JSON result: its whole stdout, or the
 * line that starts with `prefix`.
 */
export async function runLoad(cpu: string | null, argv: string[], env: Record<string, string>, prefix?: string): Promise<LoadResult> {
  const [cmd, args] = pinned(cpu, argv)
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  await new Promise((resolve) => child.on('exit', resolve))
  const line = prefix === undefined ? out : out.split('\n').find((l) => l.startsWith(prefix))?.slice(prefix.length)
  if (line === undefined || line.trim() === '') throw new Error(`no result from the load generator: ${out}`)
  return JSON.parse(line) as LoadResult
}

/** Resident memory of a process in MiB (Linux /proc), null when it cannot be read. */
/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/** `median [min–max]` of `xs`, each with `digits` decimals; '–' for none. */
export function spread(xs: readonly number[], digits = 2): string {
  return xs.length === 0 ? '–' : `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}]`
}

/** A process's resident set in MiB (VmRSS), null when it cannot be read. */
export function rssMb(pid: number | 'self' | undefined): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? null : Number(m[1]) / 1024
  } catch {
    return null
  }
}

/** A process and its descendants (`ficus start --workers N` forks its workers), from /proc. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)])
    } catch { /* exited meanwhile */ }
  }
  const all = [pid]
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i] as number) ?? []))
  return all
}

/** user+system CPU time of a process, in µs (Linux /proc; null elsewhere). */
export function cpuTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) / 100) * 1e6 // CLK_TCK is 100 on Linux
  } catch {
    return null
  }
}

/** CPU time (µs) and RSS (MiB) summed over a process tree; null when /proc cannot be read. */
export function treeUsage(pid: number | undefined): { cpuUs: number; rssMb: number } | null {
  if (pid === undefined) return null
  let cpuUs = 0
  let rss = 0
  for (const p of processTree(pid)) {
    const c = cpuTime(p)
    if (c === null) return null
    cpuUs += c
    rss += rssMb(p) ?? 0
  }
  return { cpuUs, rssMb: rss }
}
