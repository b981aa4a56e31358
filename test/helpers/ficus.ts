import { writeFile } from 'node:fs/promises'
import YAML from 'yaml'
import { Agent, request, type Dispatcher } from 'undici'
import { createLogger } from '../../src/adapters/logger.js'
import { createMetrics, type Metrics } from '../../src/adapters/metrics-registry.js'
import { loadConfig, parseConfig } from '../../src/config/load-config.js'
import type { Config } from '../../src/config/schema.js'
import type { Random } from '../../src/core/decide.js'
import { startFicus, type Running } from '../../src/start.js'
import type { Upstream } from '../../src/adapters/upstreams.js'
import { find, parseMetrics } from '../../bench/prom-text.js'
import { LogSink } from './log-sink.js'
import { waitFor, withDefaults, type Deadline } from './wait.js'

interface Teardown { teardown(fn: () => unknown): void }

export interface TestFicus {
  readonly url: string
  readonly adminUrl: string
  readonly config: Config
  readonly logs: LogSink
  readonly metrics: Metrics
  readonly running: Running
  /** A request through Ficus on a fresh keep-alive client (closed on teardown). */
  fetch(path: string, opts?: FetchOptions): Promise<Response>
  /** The Prometheus text of /metrics. */
  scrape(): Promise<string>
  /** Resolves once the shadow stage has no copy or comparison in flight. */
  shadowIdle(deadline?: Deadline): Promise<void>
}

/** undici request options; method defaults to GET. */
export type FetchOptions = Partial<Omit<Dispatcher.RequestOptions, 'origin' | 'path'>>

export interface Response {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly text: string
  json(): unknown
}

/**
 * Starts a real Ficus on 127.0.0.1:0 (traffic and admin) from a routes.yaml given as an
 * object: it is serialized and loaded through the same parser users' files go through
 * (from `opts.file` when given, written there, so a test can rewrite and reload it).
 * Missing top-level keys get test defaults.
 */
export async function startTestFicus(t: Teardown, doc: Record<string, unknown>, opts: { random?: Random; env?: Record<string, string>; file?: string } = {}): Promise<TestFicus> {
  const text = testYaml(doc)
  let config: Config
  if (opts.file === undefined) {
    config = parseConfig(text, 'test-routes.yaml', opts.env ?? {})
  } else {
    await writeFile(opts.file, text)
    config = await loadConfig(opts.file, opts.env ?? {})
  }
  const logs = new LogSink()
  const metrics = createMetrics()
  const running = await startFicus(config, { logger: createLogger('debug', logs), metrics, random: opts.random, env: opts.env ?? {} })
  const agent = new Agent({ keepAliveTimeout: 10 })
  t.teardown(async () => {
    await agent.close()
    await running.stop()
  })
  const fetch = async (path: string, o: FetchOptions = {}): Promise<Response> => {
    const r = await request(running.trafficUrl + path, { method: 'GET', ...o, dispatcher: agent })
    const text = await r.body.text()
    return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) as unknown }
  }
  const scrape = async (): Promise<string> => {
    const r = await request(running.adminUrl + '/metrics', { dispatcher: agent })
    return r.body.text()
  }
  const shadowIdle = async (deadline?: Deadline): Promise<void> => {
    const shadowing = running.ficus.shadowing
    await waitFor(shadowing.idle(), withDefaults(deadline, () => `the shadow stage did not go idle (${shadowing.inFlight} copies in flight)`))
  }
  return { url: running.trafficUrl, adminUrl: running.adminUrl, config, logs, metrics, running, fetch, scrape, shadowIdle }
}

/** routes.yaml text for `doc`, with test defaults for the top-level keys it leaves out (loopback, port 0, no drain delay). */
export function testYaml(doc: Record<string, unknown>): string {
  return YAML.stringify({
    version: 1,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    sticky: 'header:x-user-id',
    routes: [],
    shutdown: { drainDelay: '0s' },
    ...doc
  })
}

/** The value of the sample of `name` with exactly these labels (in any order) in Prometheus text, or undefined. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return find(parseMetrics(text), name, labels)?.value
}

/**
 * Resolves when the next request waits in `upstream`'s queue. Ficus has no event for it, so
 * this instance's admit() is wrapped until then (observed, not changed).
 */
export async function nextQueued(upstream: Upstream, deadline?: Deadline): Promise<void> {
  const admit = upstream.admit.bind(upstream)
  const queued = new Promise<void>((resolve) => {
    upstream.admit = (w) => {
      const r = admit(w)
      if (r === 'queued') {
        upstream.admit = admit
        resolve()
      }
      return r
    }
  })
  try {
    await waitFor(queued, withDefaults(deadline, 'no request was queued for the upstream'))
  } finally {
    upstream.admit = admit
  }
}
