import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'

const CLI = join(import.meta.dirname, '..', 'src', 'cli.js')

/** Ficus as a process of its own (the built CLI), once it listens. */
export interface FicusProcess {
  readonly child: ChildProcess
  /** `http://host:port` of its traffic and admin listeners. */
  readonly traffic: string
  readonly admin: string
}

/**
 * Starts `ficus start --config <file>` and resolves once its "ficus listening" line says
 * where; `onLine` hears every JSON log line after that one (and before). Rejects when it
 * exits first. Its stderr is the bench's.
 */
export async function startFicusProcess (file: string, onLine: (line: Record<string, unknown>) => void = () => {}, env: NodeJS.ProcessEnv = process.env): Promise<FicusProcess> {
  const child = spawn(process.execPath, [...(process.env.FICUS_BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''), CLI, 'start', '--config', file], { stdio: ['ignore', 'pipe', 'inherit'], env })
  const urls = await new Promise<{ traffic: string; admin: string }>((resolve, reject) => {
    let buffered = ''
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString()
      let nl: number
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (!line.startsWith('{')) continue
        const l = JSON.parse(line) as Record<string, unknown>
        if (l.msg === 'ficus listening' && typeof l.traffic === 'string' && typeof l.admin === 'string') resolve({ traffic: l.traffic, admin: l.admin })
        onLine(l)
      }
    })
    child.once('exit', (code) => { reject(new Error(`ficus (${file}) exited with ${String(code)} before listening`)) })
  })
  return { child, ...urls }
}
