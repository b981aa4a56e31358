import { spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { request } from 'undici'

/** Helpers the bench scripts share: free ports, CPU pinning, waiting for a server. */

export const HAS_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0

/** `argv` run on CPU `cpu` when taskset is installed, as a [command, args] pair for spawn. */
export function pinned(cpu: string, argv: string[]): [string, string[]] {
  return HAS_TASKSET ? ['taskset', ['-c', cpu, ...argv]] : [argv[0] as string, argv.slice(1)]
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
