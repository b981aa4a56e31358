import { spawn } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import { startRecords, type Records } from '../../demo/records.js'
import { LmdbStore } from '../../src/adapters/lmdb-store.js'
import type { Delivery } from '../../src/adapters/sync-store.js'
import { admin } from './admin.js'
import { sample, testYaml } from './ficus.js'
import { LogSink } from './log-sink.js'
import { CLI, listening, ROOT, run, type Spawned } from './spawn.js'
import { waitFor } from './wait.js'

/**
 * Dual writes with real Ficus processes (the built CLI, `ficus start`), for the tests that
 * kill them: two records APIs (demo/records.ts: legacy gives ids from 1000, new `n-3e9`…)
 * in the test process, which outlive every Ficus, and a routes.yaml that every start of
 * Ficus reads, so a restart finds the same store.
 */

export interface Pair {
  readonly legacy: Records
  readonly next: Records
}

export async function startPair(t: Test): Promise<Pair> {
  const legacy = await startRecords('legacy')
  const next = await startRecords('new')
  t.teardown(async () => { await Promise.all([legacy.close(), next.close()]) })
  return { legacy, next }
}

/**
 * Upstream timeouts, low so that a claim's lease (the slowest connect + timeout, + 5 s:
 * runtime.ts) is 7 s: the wait for a dead claimer's claims to be taken again.
 */
export const UPSTREAM_TIMEOUTS = { timeout: '1500ms', connectTimeout: '500ms', bodyTimeout: '1500ms' }
export const LEASE_MS = 500 + 1500 + 5000

/** routes.yaml of a notes API on dual routes (create; one note by id), legacy answering. */
export function dualDoc(pair: Pair, store: Record<string, unknown>, sync: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstreams: { legacy: { url: pair.legacy.url, ...UPSTREAM_TIMEOUTS }, new: { url: pair.next.url, ...UPSTREAM_TIMEOUTS } },
    store,
    sync: { retry: { base: '20ms', max: '200ms' }, ...sync },
    routes: [
      { name: 'notes-create', match: { path: '/api/notes', methods: ['POST'] }, new: 0, sync: { mode: 'dual', entity: 'note', learn: 'response.body.id' } },
      { name: 'notes', match: { path: '/api/notes/:id' }, new: 0, sync: { mode: 'dual', entity: 'note', key: 'path.id' } }
    ]
  }
}

export async function writeDoc(file: string, doc: Record<string, unknown>): Promise<void> {
  await writeFile(file, testYaml(doc))
}

export interface FicusProcess {
  readonly p: Spawned
  readonly pid: number
  readonly traffic: string
  readonly admin: string
  readonly logs: LogSink
  /** SIGKILL; resolves once it is gone. */
  kill(): Promise<void>
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>
}

/** `ficus start --config file` (one process, or `--workers N`), once it listens. */
export async function startFicus(t: Test, file: string, args: string[] = [], env: Record<string, string> = {}): Promise<FicusProcess> {
  const p = run(t, CLI, ['start', '--config', file, ...args], { FICUS_LOG_LEVEL: 'info', ...env })
  const logs = new LogSink()
  p.child.stdout?.on('data', (d: Buffer) => { logs.write(d) })
  const { traffic, admin: adminUrl } = await listening(p)
  return {
    p,
    pid: p.child.pid as number,
    traffic,
    admin: adminUrl,
    logs,
    kill: async () => {
      p.child.kill('SIGKILL')
      const code = await p.exitCode()
      if (code !== null || p.child.signalCode !== 'SIGKILL') throw new Error(`ficus was to die of SIGKILL; it exited ${code} (${p.child.signalCode})`)
    },
    metric: async (name, labels = {}) => sample((await admin(adminUrl, 'GET', '/metrics')).text, name, labels)
  }
}

export interface Sent {
  /** null: no answer (the connection was cut: the client does not know what happened). */
  readonly status: number | null
  readonly headers: Record<string, string | string[] | undefined>
  readonly text: string
  json<T = Record<string, unknown>>(): T
}

/**
 * One request on a connection of its own (so that a kill cuts only it); `socket` is told
 * the client's local port once connected (to find the connection in /proc/net/tcp).
 */
export async function send(base: string, method: string, path: string, body?: unknown, opts: { headers?: Record<string, string>; socket?: (localPort: number) => void } = {}): Promise<Sent> {
  const url = new URL(path, base)
  const text = body === undefined ? undefined : JSON.stringify(body)
  return new Promise((resolve) => {
    const req = httpRequest({
      host: url.hostname,
      port: url.port,
      method,
      path: url.pathname + url.search,
      agent: false,
      headers: { ...(text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }), ...opts.headers }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const t = Buffer.concat(chunks).toString()
        resolve({ status: res.statusCode ?? null, headers: res.headers, text: t, json: <T>() => JSON.parse(t) as T })
      })
      res.on('error', () => { resolve({ status: null, headers: {}, text: '', json: <T>() => ({}) as T }) })
    })
    req.on('socket', (s) => {
      if (opts.socket === undefined) return
      const told = opts.socket
      if (s.localPort !== undefined) told(s.localPort)
      else s.once('connect', () => { told(s.localPort as number) })
    })
    req.on('error', () => { resolve({ status: null, headers: {}, text: '', json: <T>() => ({}) as T }) })
    req.end(text)
  })
}

/**
 * A gate a records API's `hold` waits at: `arrived` resolves with the request once one is
 * held; `release()` lets every held answer go.
 */
export interface Gate {
  readonly arrived: Promise<{ readonly method: string; readonly id: string; readonly remotePort: number; readonly key: string | undefined }>
  release(): void
}

interface OpenGate {
  readonly which: (method: string, id: string) => boolean
  readonly hold: (a: Awaited<Gate['arrived']>) => Promise<void>
}
const gates = new WeakMap<Records, Set<OpenGate>>()

/**
 * Holds the answers of the writes `which` picks on `side` (after they are applied) until
 * released. Several gates may be open on one side: a write waits at the first that picks it.
 */
export function holdWrites(side: Records, which: (method: string, id: string) => boolean): Gate {
  let release = (): void => {}
  const open = new Promise<void>((resolve) => { release = resolve })
  let arrive: (a: Awaited<Gate['arrived']>) => void = () => {}
  const arrived = new Promise<Awaited<Gate['arrived']>>((resolve) => { arrive = resolve })
  const gate: OpenGate = { which, hold: async (a) => { arrive(a); await open } }
  let onSide = gates.get(side)
  if (onSide === undefined) {
    const all = new Set<OpenGate>()
    onSide = all
    gates.set(side, all)
    side.hold = (req, method, id) => {
      const g = [...all].find((x) => x.which(method, id))
      return g === undefined ? null : g.hold({ method, id, remotePort: req.socket.remotePort as number, key: req.headers['idempotency-key'] as string | undefined })
    }
  }
  onSide.add(gate)
  const set = onSide
  return {
    arrived,
    release: () => {
      set.delete(gate)
      release()
    }
  }
}

/** The writes a side applied to one record, in order: `PUT a2` (the method, and the `v` of the body it was sent). */
export function history(side: Records, id: string): string[] {
  return side.applied.filter((w) => w.id === id).map((w) => (w.body.v === undefined ? w.method : `${w.method} ${typeof w.body.v === 'string' ? w.body.v : JSON.stringify(w.body.v)}`))
}

/** Waits until `check` holds, reading the store's stats each time (a message says what it saw). */
export async function until<T>(read: () => Promise<T>, check: (v: T) => boolean, message: string, timeoutMs?: number): Promise<T> {
  let last: T | undefined
  return waitFor(async () => {
    last = await read()
    return check(last) ? last : null
  }, { message: () => `${message} (last seen: ${JSON.stringify(last)})`, intervalMs: 20, ...(timeoutMs === undefined ? {} : { timeoutMs }) })
}

/**
 * The LMDB store of the Ficus processes under test, opened by the test process too (LMDB is
 * made for several processes on one file). Each call reads the last commit of any process:
 * lmdb-js keeps a read snapshot until its next timer turn, which is reset before every call.
 */
export function peekLmdb(t: Test, path: string): LmdbStore {
  const store = new LmdbStore(path)
  t.teardown(async () => { await store.close() })
  const env = (store as unknown as { env: { resetReadTxn(): void } }).env
  return new Proxy(store, {
    get (target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver)
      if (typeof v !== 'function') return v
      return (...args: unknown[]) => {
        env.resetReadTxn()
        return (v as (...a: unknown[]) => unknown).apply(target, args)
      }
    }
  })
}

/** Every entry of a store's outbox (seqs 1 to `upTo`), in seq order. */
export async function outbox(store: { get(seq: number): Promise<Delivery | null> }, upTo = 300): Promise<Delivery[]> {
  const out: Delivery[] = []
  for (let seq = 1; seq <= upTo; seq++) {
    const d = await store.get(seq)
    if (d !== null) out.push(d)
  }
  return out
}

/** The body of an entry as JSON. */
export const bodyOf = (d: Delivery): Record<string, unknown> => (d.body === null ? {} : JSON.parse(d.body.toString()) as Record<string, unknown>)

/** A second process holding LMDB's write lock on the store (test/fixtures/sync/lock.mjs) while the test wants. */
export interface WriteLock {
  /** Resolves once the lock is held: from then on no process commits to the store. */
  lock(): Promise<void>
  unlock(): Promise<void>
}

export async function writeLock(t: Test, path: string): Promise<WriteLock> {
  const child = spawn(process.execPath, [join(ROOT, 'test', 'fixtures', 'sync', 'lock.mjs'), path], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const count = (word: string): number => out.split('\n').filter((l) => l === word).length
  const said = async (word: string, n: number): Promise<void> => {
    await waitFor(() => count(word) >= n, { message: () => `lock.mjs did not say ${word} (it said: ${out.trim()})` })
  }
  await said('ready', 1)
  let n = 0
  return {
    lock: async () => {
      n++
      child.stdin.write('lock\n')
      await said('locked', n)
    },
    unlock: async () => {
      child.stdin.write('unlock\n')
      await said('unlocked', n)
    }
  }
}
