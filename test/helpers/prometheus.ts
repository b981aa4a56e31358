import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { freePorts } from './upstream.js'
import { waitFor } from './wait.js'

/**
 * A real Prometheus (Debian's `prometheus` package, which also ships `promtool`). When the
 * binaries are missing and we are root on Debian, the package is installed (as .ci/run does);
 * otherwise the test fails with the command to run.
 */
export function prometheusBinaries(): { prometheus: string; promtool: string } {
  const which = (name: string): string | null => {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
    return r.status === 0 ? r.stdout.trim() : null
  }
  let prometheus = which('prometheus')
  let promtool = which('promtool')
  if ((prometheus === null || promtool === null) && process.getuid?.() === 0 && which('apt-get') !== null) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    execFileSync('sh', ['-c', 'apt-get install -y -qq --no-install-recommends prometheus || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus)'], { env, stdio: 'ignore' })
    prometheus = which('prometheus')
    promtool = which('promtool')
  }
  if (prometheus === null || promtool === null) {
    throw new Error('Prometheus is not installed: `sudo apt-get install --no-install-recommends prometheus` (Debian; .ci/run does it)')
  }
  return { prometheus, promtool }
}

export interface Prometheus {
  readonly url: string
  /** GET /api/v1/<path> with query parameters; resolves with `data`, rejects with Prometheus's error. */
  api<T = unknown>(path: string, params?: Record<string, string | string[]>): Promise<T>
  /** Resolves once a scrape of every target started after `since` (ms epoch) and succeeded. */
  scrapedSince(since: number, timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

interface Teardown { teardown(fn: () => unknown): void }

/** Starts Prometheus on a free loopback port with `config` (YAML text), a fresh TSDB, and waits until it is ready. */
export async function startPrometheus(t: Teardown, binary: string, config: string): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ficus-prometheus-'))
  writeFileSync(join(dir, 'prometheus.yml'), config)
  const [port] = await freePorts(1)
  const child: ChildProcess = spawn(binary, [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (stderr.includes('Server is ready to receive web requests')) resolve()
    })
    void exited.then((code) => { reject(new Error(`prometheus exited ${code}: ${stderr}`)) })
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  }
  t.teardown(stop)
  await waitFor(ready, { timeoutMs: 30_000, message: () => `Prometheus did not report ready; its log ends:\n${stderr.trimEnd().split('\n').slice(-5).join('\n')}` })
  const url = `http://127.0.0.1:${port}`

  async function api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const qs = new URLSearchParams()
    for (const [k, v] of Object.entries(params)) for (const x of [v].flat()) qs.append(k, x)
    const r = await request(`${url}/api/v1/${path}?${qs.toString()}`)
    const body = await r.body.json() as { status: string; data: T; error?: string; errorType?: string }
    if (body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${body.errorType}: ${body.error}`)
    return body.data
  }

  async function scrapedSince(since: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const { activeTargets } = await api<{ activeTargets: { health: string; lastScrape: string; lastError: string }[] }>('targets')
      if (activeTargets.length > 0 && activeTargets.every((x) => x.health === 'up' && Date.parse(x.lastScrape) > since)) return
      if (Date.now() > deadline) throw new Error(`no successful scrape since ${new Date(since).toISOString()}: ${JSON.stringify(activeTargets)}`)
      await new Promise((resolve) => setTimeout(resolve, 200)) // Prometheus has no push: poll its state
    }
  }

  return { url, api, scrapedSince, stop }
}
