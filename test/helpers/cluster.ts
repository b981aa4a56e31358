import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import { request } from 'undici'
import { admin } from './admin.js'
import { testYaml } from './ficus.js'
import { LogSink } from './log-sink.js'
import { CLI, listening, run, type Spawned } from './spawn.js'

/**
 * `ficus start --workers 2` as a user runs it: the built CLI, a real cluster (a primary and
 * two workers sharing the traffic port), real upstreams on 127.0.0.1:0. Which worker served
 * a request is read from the access log (`worker` field, matched by request id), never from
 * a response header.
 */

export interface Cluster {
  readonly p: Spawned
  readonly logs: LogSink
  readonly traffic: string
  /** The admin base URL: calls go through test/helpers/admin.ts (`admin(c.admin, …)`). */
  readonly admin: string
  readonly file: string
}

export async function startCluster(t: Test, doc: Record<string, unknown>, env: Record<string, string> = {}): Promise<Cluster> {
  const file = join(t.testdir(), 'routes.yaml')
  await writeFile(file, testYaml(doc))
  const p = run(t, CLI, ['start', '--workers', '2', '--config', file], { FICUS_LOG_LEVEL: 'info', ...env })
  const logs = new LogSink()
  p.child.stdout?.on('data', (d: Buffer) => { logs.write(d) })
  const { traffic, admin } = await listening(p)
  return { p, logs, traffic, admin, file }
}

export interface Served {
  readonly reqId: string
  readonly status: number
  readonly backend: string
  readonly worker: number
}

/** One GET on a connection of its own (closed after it): with round-robin, consecutive calls reach different workers. */
export async function fresh(c: Cluster, path: string, headers: Record<string, string> = {}): Promise<Served> {
  const r = await request(c.traffic + path, { headers, reset: true })
  const body = await r.body.json() as { served: string; headers: Record<string, string> }
  const reqId = body.headers['x-request-id'] as string
  return { reqId, status: r.statusCode, backend: body.served, worker: await workerOf(c, reqId) }
}

/** The worker whose access-log line has this request id. */
export async function workerOf(c: Cluster, reqId: string): Promise<number> {
  const line = await c.logs.waitFor((l) => l.msg === 'request' && l.reqId === reqId)
  return line.worker as number
}

export async function many(c: Cluster, n: number, path: string, headers: Record<string, string> = {}): Promise<Served[]> {
  const out: Served[] = []
  for (let i = 0; i < n; i++) out.push(await fresh(c, path, headers))
  return out
}

export async function scrape(c: Cluster): Promise<string> {
  return (await admin(c.admin, 'GET', '/metrics')).text
}

export const workers = (served: readonly Served[]): Set<number> => new Set(served.map((s) => s.worker))
export const backends = (served: readonly Served[]): Set<string> => new Set(served.map((s) => s.backend))

