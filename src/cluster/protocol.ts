import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import type { FlagDefinitions } from '../adapters/flags.js'
import type { FlagSourceStatus } from '../core/flags.js'
import type { DivergenceSample, Epoch, RouteSummary, Since } from '../adapters/divergence-store.js'
import type { Overrides } from '../core/overrides.js'

/**
 * What a cluster's primary and its workers say to each other over the IPC channel
 * (node:cluster, `serialization: 'advanced'`). Every ask carries a `seq` that its reply
 * repeats; the channel is ordered, so a worker applies changes in the order they were made.
 */

/** routes.yaml as the primary validated it: workers parse the same text with the same environment. */
export interface ConfigText {
  readonly file: string
  readonly text: string
}

/** The flags the primary relays: the definitions its Unleash client holds (null: none yet, every flag off) and its health. */
export interface FlagSnapshot {
  readonly definitions: FlagDefinitions | null
  readonly status: FlagSourceStatus
}

/** A registry's getMetricsAsJSON(): what a worker answers to `metrics`. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[]

export type ToWorker =
  /**
   * Sent once, in answer to `hello`: the config Ficus started with (listen, limits and the
   * other start-only keys come from it, as they would in one process), the current one when
   * a reload changed it since, the runtime overrides, and the flags.
   */
  | { readonly t: 'init'; readonly start: ConfigText; readonly current: ConfigText | null; readonly overrides: Overrides; readonly flags: FlagSnapshot | null; readonly logLevel: string; readonly epochs: Readonly<Record<string, Epoch>> }
  /** The route table's inputs changed (an admin change, a rollback, a reload when `config` is set). */
  | { readonly t: 'routes'; readonly seq: number; readonly config: ConfigText | null; readonly overrides: Overrides }
  | { readonly t: 'flags'; readonly seq: number; readonly flags: FlagSnapshot }
  | { readonly t: 'metrics'; readonly seq: number }
  | { readonly t: 'samples'; readonly seq: number; readonly route: string | undefined; readonly limit: number; readonly since: Since | undefined }
  | { readonly t: 'summary'; readonly seq: number; readonly route: string | undefined; readonly since: Since }
  /** Routes whose divergence counts start over (a reset, a reload that changed their compare rules). */
  | { readonly t: 'epochs'; readonly seq: number; readonly epochs: Readonly<Record<string, Epoch>> }
  /** Each route's breaker of new in this worker (GET /admin/routes). */
  | { readonly t: 'breakers'; readonly seq: number }
  /** SIGTERM: readiness off, drain delay, stop listening, finish in-flight requests, exit 0. */
  | { readonly t: 'drain' }

export type FromWorker =
  /** The worker's message listener is installed: it can be sent `init`. */
  | { readonly t: 'hello' }
  | { readonly t: 'listening'; readonly address: { readonly address: string; readonly family: string; readonly port: number } }
  /** Start failed (a port in use, …); the worker exits 1. */
  | { readonly t: 'failed'; readonly error: { readonly message: string; readonly code?: string; readonly address?: string; readonly port?: number } }
  | { readonly t: 'reply'; readonly seq: number; readonly value?: unknown; readonly error?: string }

/** Answers to `samples` and `summary`. */
export type SamplesReply = DivergenceSample[]
export type SummaryReply = RouteSummary[]

/** Whether `m` is one of ours (the channel also carries Node's own cluster messages). */
export function isMessage<T extends { t: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
