import { dirname, resolve } from 'node:path'
import { compileCompare } from '../core/compare-rules.js'
import { SAFE_METHODS } from '../core/decide.js'
import { parsePattern } from '../core/path-pattern.js'
import { compileSync, type SyncRule } from '../core/sync.js'
import type { FallbackPolicy, NewTimeout, PathPattern, RouteRule, StickySpec } from '../core/types.js'
import { DEFAULT_ROUTE, fallbackSettings, isObject, type FallbackSettings, type Settings } from './defaults.js'
import type { AdminToken, Config, RawConfig, RawRoute, StoreConfig, SyncConfig, UnleashConfig, UpstreamConfig } from './schema.js'
import { parseDuration, parseSize } from './units.js'
import { buildRamp, RAMP_DEFAULTS } from './ramp.js'
import { buildVerify } from './verify.js'

/**
 * A valid routes.yaml, defaults filled in (withDefaults), → the Config the rest of Ficus
 * reads: durations in ms, sizes in bytes, paths absolute, patterns and compare rules
 * compiled, and the defaults taken from other settings. Runs only after every check passed.
 */

export function build(s: Settings, file: string): Config {
  const upstreams: Record<string, UpstreamConfig> = {}
  for (const [name, u] of Object.entries(s.upstreams)) {
    const url = new URL(u.url)
    upstreams[name] = {
      name,
      origin: url.origin,
      authority: url.host,
      timeoutMs: ms(u.timeout),
      connectTimeoutMs: ms(u.connectTimeout),
      bodyTimeoutMs: ms(u.bodyTimeout),
      connections: u.connections,
      maxQueue: u.maxQueue,
      hostHeader: u.hostHeader
    }
  }
  const sticky = parseSticky(s.sticky)
  const plans = buildRamp(s.ramp)
  const routes = s.routes.map((r) => toRule(r, parsePattern(r.match.path) as PathPattern, sticky, s.backends, s.fallback, r.ramp === undefined ? SLOWER_BY_MS : plans[r.ramp]?.gates.latency?.slowerByMs ?? SLOWER_BY_MS))
  const defaultRoute: RouteRule = {
    name: DEFAULT_ROUTE,
    methods: null,
    pattern: { source: '/*', segments: [], prefix: true },
    new: s.default === 'new' ? 100 : 0,
    flag: null,
    shadow: 0,
    shadowWrites: false,
    sync: null,
    compare: compileCompare(undefined),
    sticky,
    backends: s.backends,
    fallback: fallbackPolicy(s.fallback),
    slowerByMs: SLOWER_BY_MS
  }
  const { limits, shadow } = s
  return {
    file,
    listen: { host: s.listen.host, port: s.listen.port },
    admin: { host: s.admin.host, port: s.admin.port, tokens: adminTokens(s.admin) },
    upstreams,
    routes,
    defaultRoute,
    trustedHops: s.trustedHops,
    exposeBackend: s.exposeBackend,
    state: s.state === undefined ? undefined : resolve(dirname(file), s.state),
    limits: {
      bodyBytes: bytes(limits.bodySize),
      bodyBufferBytes: bytes(limits.bodyBuffer),
      headerBytes: bytes(limits.headerSize),
      headTimeoutMs: ms(limits.headTimeout),
      requestTimeoutMs: ms(limits.requestTimeout),
      bodyIdleTimeoutMs: ms(limits.bodyIdleTimeout),
      sendTimeoutMs: ms(limits.sendTimeout),
      keepAliveTimeoutMs: ms(limits.keepAliveTimeout),
      headerNames: limits.headerNames,
      upgradeIdleTimeoutMs: ms(limits.upgradeIdleTimeout),
      upgradeMaxLifetimeMs: ms(limits.upgradeMaxLifetime)
    },
    shadow: {
      maxInFlight: shadow.maxInFlight,
      timeoutMs: ms(shadow.timeout),
      maxBodyBytes: bytes(shadow.maxBodySize),
      samples: shadow.samples
    },
    shutdown: { drainDelayMs: ms(s.shutdown.drainDelay), timeoutMs: ms(s.shutdown.timeout) },
    log: { level: s.log.level },
    unleash: s.unleash === undefined ? undefined : buildUnleash(s.unleash, file, s.state),
    store: buildStore(s, file),
    sync: buildSync(s.sync),
    verify: buildVerify(s.verify, routes, upstreams, s.sync.unmappedIds),
    ramp: { plans, routes: Object.fromEntries(s.routes.filter((r) => r.ramp !== undefined).map((r) => [r.name, r.ramp as string])), evaluateEveryMs: parseDuration(s.ramp?.evaluateEvery ?? RAMP_DEFAULTS.evaluateEvery) as number }
  }
}

/** `store:`; an embedded store's file is beside the state file, or beside routes.yaml without one. */
function buildStore(s: Settings, file: string): StoreConfig {
  const st = s.store
  if (st.kind === 'postgres') return { kind: 'postgres', url: st.url as string } // crossCheck requires it
  const dir = s.state === undefined ? dirname(file) : dirname(resolve(dirname(file), s.state))
  return { kind: 'embedded', path: st.path === undefined ? resolve(dir, 'ficus.lmdb') : resolve(dirname(file), st.path) }
}

function buildSync(y: Settings['sync']): SyncConfig {
  return {
    ack: y.ack,
    concurrency: y.concurrency,
    retry: { baseMs: ms(y.retry.base), maxMs: ms(y.retry.max), maxAttempts: y.retry.maxAttempts, maxAgeMs: ms(y.retry.maxAge) },
    maxPending: y.maxPending,
    onFull: y.onFull,
    fenceTimeoutMs: ms(y.fenceTimeout),
    maxIdWaitMs: ms(y.maxIdWait),
    maxBodyBytes: bytes(y.maxBody),
    unmappedIds: y.unmappedIds,
    auth: y.auth.mode === 'service'
      ? { mode: 'service', header: (y.auth.header ?? 'authorization').toLowerCase(), value: y.auth.value }
      : y.auth.mode === 'passthrough'
        ? { mode: 'passthrough', headers: (y.auth.headers ?? ['authorization']).map((h) => h.toLowerCase()), key: y.auth.key }
        : { mode: 'none' }
  }
}

function buildUnleash(u: NonNullable<Settings['unleash']>, file: string, state: string | undefined): UnleashConfig {
  const here = (p: string): string => resolve(dirname(file), p)
  // The backup is this replica's last view of the fleet's flags: beside the state file unless set (crossCheck requires one of them).
  const backupPath = u.backupPath !== undefined
    ? here(u.backupPath)
    : `${here(state as string).replace(/\.json$/i, '')}.unleash-backup.json`
  const a = u.admin
  return {
    url: u.url,
    appName: u.appName,
    instanceId: u.instanceId,
    token: u.token,
    refreshIntervalMs: ms(u.refreshInterval),
    environment: u.environment,
    bootstrap: u.bootstrap === undefined ? undefined : here(u.bootstrap),
    backupPath,
    syncTimeoutMs: ms(u.syncTimeout),
    admin: a === undefined
      ? undefined
      : {
          url: a.url ?? u.url,
          token: a.token,
          project: a.project,
          // crossCheck requires one of the two.
          environment: a.environment ?? (tokenEnvironment(u.token) as string)
        }
  }
}

/** What counts as new answering slower than legacy, without a ramp plan that says (ms). */
const SLOWER_BY_MS = 20

function toRule(r: RawRoute, pattern: PathPattern, sticky: readonly StickySpec[], backends: Settings['backends'], fallback: FallbackSettings, slowerByMs: number): RouteRule {
  return {
    name: r.name,
    methods: r.match.methods === undefined ? null : new Set(r.match.methods),
    pattern,
    new: r.new ?? 0,
    flag: r.flag ?? null,
    shadow: r.shadow ?? 0,
    shadowWrites: r.shadowWrites ?? r.sync?.mode === 'mirror',
    sync: compileSync(r.sync, pattern, r.match.methods !== undefined && r.match.methods.every((m) => SAFE_METHODS.has(m))) as SyncRule | null, // crossCheck reported any problem
    compare: compileCompare(r.compare),
    sticky: r.sticky === undefined ? sticky : parseSticky(r.sticky),
    backends: r.backends ?? backends,
    fallback: fallbackPolicy(fallbackSettings(fallback, r.fallback)),
    slowerByMs
  }
}

/** `fallback:` as the forward stage reads it: shares as fractions, durations in ms. */
function fallbackPolicy(f: FallbackSettings): FallbackPolicy {
  const b = f.breaker
  return {
    newTimeout: newTimeout(f.newTimeout),
    ejectedWrites: f.ejectedWrites,
    breaker: b === false
      ? null
      : {
          consecutiveFailures: b.consecutiveFailures,
          failureRate: share(b.failureRate),
          minRequests: b.minRequests,
          windowMs: ms(b.window),
          ejectionMs: ms(b.ejection),
          maxEjectionMs: ms(b.maxEjection),
          probes: b.probes
        }
  }
}

/** `50%` → { share: 0.5 }; `2s` → { ms: 2000 }. */
function newTimeout(text: string): NewTimeout {
  return text.endsWith('%') ? { share: share(text) } : { ms: ms(text) }
}

const share = (pct: string): number => Number(pct.slice(0, -1)) / 100

/** `sticky:` as written, one source or a list of them → the sources in order. */
export function parseSticky(spec: string | readonly string[]): StickySpec[] {
  return typeof spec === 'string' ? [parseStickySource(spec)] : spec.map(parseStickySource)
}

/** `header:X-User-Id` → { kind: 'header', name: 'x-user-id' } (header names are case-insensitive). */
export function parseStickySource(spec: string): StickySpec {
  if (spec === 'ip') return { kind: 'ip' }
  const colon = spec.indexOf(':')
  const kind = spec.slice(0, colon) as 'header' | 'cookie' | 'query'
  const name = spec.slice(colon + 1)
  return { kind, name: kind === 'header' ? name.toLowerCase() : name }
}

/** admin.token (as `admin`) and admin.tokens, empty values left out (`${TOKEN:-}` unset means none). */
export function adminTokens(admin: Partial<NonNullable<RawConfig['admin']>> | undefined): AdminToken[] {
  const out: AdminToken[] = []
  if (typeof admin?.token === 'string' && admin.token !== '') out.push({ name: 'admin', token: admin.token, role: 'operator' })
  if (isObject(admin?.tokens)) {
    for (const [name, value] of Object.entries(admin.tokens)) {
      const token: unknown = isObject(value) ? value.token : value
      const role = isObject(value) && value.role === 'viewer' ? 'viewer' : 'operator'
      if (typeof token === 'string' && token !== '') out.push({ name, token, role })
    }
  }
  return out
}

/** `default:production.abc…` → `production`; undefined for a token of another shape. */
export function tokenEnvironment(token: string): string | undefined {
  return /^[^:.\s]+:([^.\s]+)\./.exec(token)?.[1]
}

const ms = (d: string): number => parseDuration(d) as number
const bytes = (s: string | number): number => parseSize(s) as number

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
