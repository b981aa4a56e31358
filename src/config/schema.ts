import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { METHODS } from 'node:http'
import { RampSchema, type RampPlan } from './ramp-schema.js'
import { VerifyJobSchema, type VerifyJob } from './verify-schema.js'

/**
 * The schema of routes.yaml, version 1 (README.md "Configuration"). Unknown keys are errors
 * everywhere. `x-message` replaces the validator's wording where it would be cryptic
 * (patterns, formats, unions); validate.ts reads it.
 */

const msg = <T extends TSchema>(schema: T, message: string): T => ({ ...schema, 'x-message': message })

export const NAME_MESSAGE = 'must be 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit'
const Name = msg(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' }), NAME_MESSAGE)
const Duration = msg(Type.String({ format: 'duration' }), 'must be a duration like 500ms, 30s or 2m')
const Size = msg(Type.Union([Type.Integer({ minimum: 0 }), Type.String({ format: 'size' })]),
  'must be a size like 512KiB or 10MiB, or a number of bytes')
const Port = Type.Integer({ minimum: 0, maximum: 65535 })
const Host = Type.String({ minLength: 1 })
const StickySource = msg(Type.String({ pattern: '^((header|cookie|query):[!#$%&\'*+.^_`|~0-9A-Za-z-]+|ip)$' }),
  'must be header:<name>, cookie:<name>, query:<name> or ip')
/** One source, or an ordered list of them: the first one a request has gives its key. */
const Sticky = msg(Type.Union([StickySource, Type.Array(StickySource, { minItems: 1, uniqueItems: true })]),
  'must be header:<name>, cookie:<name>, query:<name> or ip, or a list of them like [header:x-user-id, ip]')
const Side = msg(Type.Union([Type.Literal('legacy'), Type.Literal('new')]), 'must be legacy or new')
const Percent = msg(Type.String({ pattern: '^(100|[1-9]?[0-9](\\.[0-9]+)?)%$' }), 'must be a percentage like 50%')

/** `fallback.breaker`: when new is ejected from a route, and for how long (docs/reliability.md "When new breaks"). */
const BreakerSchema = Type.Object({
  consecutiveFailures: Type.Optional(Type.Integer({ minimum: 0, maximum: 10000 })),
  failureRate: Type.Optional(Percent),
  minRequests: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000000 })),
  window: Type.Optional(Duration),
  ejection: Type.Optional(Duration),
  maxEjection: Type.Optional(Duration),
  probes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 }))
}, { additionalProperties: false })

/** `fallback:` (top level: every route's default; in a route: its own, key by key). */
export const FallbackSchema = Type.Object({
  newTimeout: Type.Optional(msg(Type.Union([Type.String({ format: 'duration' }), Type.String({ pattern: '^(100|[1-9]?[0-9](\\.[0-9]+)?)%$' })]),
    'must be a share of legacy\'s timeout like 50%, or a duration like 2s')),
  ejectedWrites: Type.Optional(msg(Type.Union([Type.Literal('refuse'), Type.Literal('legacy')]), 'must be refuse or legacy')),
  breaker: Type.Optional(msg(Type.Union([Type.Literal(false), BreakerSchema]), 'must be false, or a mapping of consecutiveFailures, failureRate, minRequests, window, ejection, maxEjection, probes'))
}, { additionalProperties: false })

const Backends = Type.Object({ legacy: Type.String(), new: Type.String() }, { additionalProperties: false })

/** Every method Node parses, except CONNECT (tunnels are not proxied). */
export const ROUTE_METHODS: readonly string[] = METHODS.filter((m) => m !== 'CONNECT')

export const UpstreamSchema = Type.Object({
  url: msg(Type.String({ format: 'origin' }), 'must be an http:// or https:// URL with a host and no path, like http://10.0.0.5:8080'),
  timeout: Type.Optional(Duration),
  connectTimeout: Type.Optional(Duration),
  bodyTimeout: Type.Optional(Duration),
  connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
  maxQueue: Type.Optional(Type.Integer({ minimum: 0 })),
  hostHeader: Type.Optional(msg(Type.Union([Type.Literal('preserve'), Type.Literal('upstream')]), 'must be preserve or upstream'))
}, { additionalProperties: false })

const HeaderName = msg(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), 'must be a header name')
const RulePathText = Type.String({ minLength: 1 })
const StatusSpec = Type.Union([Type.Integer({ minimum: 100, maximum: 599 }), Type.String({ pattern: '^[1-5]([0-9][0-9]|xx)$' })])

const EntityName = msg(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_-]{0,62}$' }), 'must be an entity name: a letter, then letters, digits, "_" or "-" (like order)')

/** A route's `compare:` block; the paths in it are checked by compileCompare (cross-check.ts). */
export const CompareSchema = Type.Object({
  headers: Type.Optional(Type.Array(HeaderName, { uniqueItems: true })),
  ignore: Type.Optional(Type.Array(RulePathText)),
  arrays: Type.Optional(Type.Record(Type.String(), msg(Type.Union([
    Type.Literal('unordered'),
    Type.Object({ key: Type.String({ minLength: 1 }) }, { additionalProperties: false })
  ]), 'must be unordered or { key: <field> }'))),
  numbers: Type.Optional(Type.Object({ tolerance: Type.Optional(Type.Number({ minimum: 0 })) }, { additionalProperties: false })),
  treatAsEqual: Type.Optional(Type.Array(
    msg(Type.Union([Type.Literal('string-number'), Type.Literal('null-missing')]), 'must be string-number or null-missing'),
    { uniqueItems: true })),
  contentType: Type.Optional(msg(Type.Union([Type.Literal('media-type'), Type.Literal('exact')]), 'must be media-type or exact')),
  when: Type.Optional(Type.Array(Type.Object({
    status: msg(Type.Union([StatusSpec, Type.Array(StatusSpec, { minItems: 1 })]), 'must be a status (404), a class (\'4xx\') or a list of them'),
    ignore: Type.Array(RulePathText, { minItems: 1 })
  }, { additionalProperties: false }))),
  paths: Type.Optional(Type.Array(Type.Object({ legacy: RulePathText, new: RulePathText }, { additionalProperties: false }))),
  /** Body paths holding ids of an entity → the entity (a dual route's id map pairs them). */
  ids: Type.Optional(Type.Record(Type.String(), EntityName)),
  redact: Type.Optional(Type.Array(RulePathText))
}, { additionalProperties: false })

/** A route's `sync:` (docs/sync.md): what happens to its writes, and where their ids are. */
export const RouteSyncSchema = Type.Object({
  mode: msg(Type.Union([Type.Literal('off'), Type.Literal('mirror'), Type.Literal('dual')]), 'must be off, mirror or dual'),
  entity: Type.Optional(EntityName),
  key: Type.Optional(Type.String({ minLength: 1 })),
  learn: Type.Optional(Type.String({ minLength: 1 })),
  rewrite: Type.Optional(Type.Object({
    path: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), EntityName)),
    body: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_$-]+(\\.[A-Za-z0-9_$-]+)*$' }), EntityName))
  }, { additionalProperties: false }))
}, { additionalProperties: false })

/** The top level `store:`: where dual writes and the id map are kept (cross-check: a URL for postgres only, and required there). */
export const StoreSchema = Type.Object({
  kind: msg(Type.Union([Type.Literal('embedded'), Type.Literal('postgres')]), 'must be embedded (an LMDB file) or postgres'),
  path: Type.Optional(Type.String({ minLength: 1 })),
  url: Type.Optional(msg(Type.String({ pattern: '^postgres(ql)?://' }), 'must be a PostgreSQL URL like postgres://ficus:${PGPASSWORD}@db:5432/ficus'))
}, { additionalProperties: false })

/** The top level `sync:`: how dual writes are acknowledged and delivered. */
export const SyncSchema = Type.Object({
  ack: Type.Optional(msg(Type.Union([Type.Literal('durable'), Type.Literal('async')]), 'must be durable or async')),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  retry: Type.Optional(Type.Object({
    base: Type.Optional(Duration),
    max: Type.Optional(Duration),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000000 })),
    maxAge: Type.Optional(Duration)
  }, { additionalProperties: false })),
  maxPending: Type.Optional(Type.Integer({ minimum: 1 })),
  onFull: Type.Optional(msg(Type.Union([Type.Literal('reject'), Type.Literal('passthrough')]), 'must be reject or passthrough')),
  fenceTimeout: Type.Optional(Duration),
  maxIdWait: Type.Optional(Duration),
  maxBody: Type.Optional(Size),
  unmappedIds: Type.Optional(msg(Type.Union([Type.Literal('wait'), Type.Literal('same')]), 'must be wait or same')),
  auth: Type.Optional(msg(Type.Union([
    Type.Object({ mode: Type.Literal('none') }, { additionalProperties: false }),
    Type.Object({ mode: Type.Literal('service'), header: Type.Optional(HeaderName), value: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
    Type.Object({ mode: Type.Literal('passthrough'), headers: Type.Optional(Type.Array(HeaderName, { minItems: 1, uniqueItems: true })), key: Type.String({ minLength: 1 }) }, { additionalProperties: false })
  ]), 'must be { mode: none }, { mode: service, header: authorization, value: ${SYNC_TOKEN} } or { mode: passthrough, key: ${FICUS_SYNC_KEY} }'))
}, { additionalProperties: false })

export const RouteSchema = Type.Object({
  name: Name,
  match: Type.Object({
    path: Type.String({ minLength: 1 }),
    methods: Type.Optional(Type.Array(
      msg(Type.String({ enum: ROUTE_METHODS }), 'must be an upper-case HTTP method such as GET, HEAD or POST'),
      { minItems: 1, uniqueItems: true }))
  }, { additionalProperties: false }),
  /** Share of users on new; a route with `flag:` takes it from Unleash instead (one of the two). */
  new: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  /** Unleash toggle whose isEnabled() decides "serve from new" (needs the top-level `unleash:` block). */
  flag: Type.Optional(msg(Type.String({ pattern: '^[^\\s\\x00-\\x1f]{1,255}$' }),
    'must be an Unleash toggle name: 1-255 characters, no spaces or control characters')),
  shadow: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  shadowWrites: Type.Optional(Type.Boolean()),
  sync: Type.Optional(RouteSyncSchema),
  compare: Type.Optional(CompareSchema),
  sticky: Type.Optional(Sticky),
  backends: Type.Optional(Backends),
  fallback: Type.Optional(FallbackSchema),
  /** A ramp plan of `ramp.plans` that drives this route's share of new (docs/ramp.md). */
  ramp: Type.Optional(Name)
}, { additionalProperties: false })

export const ConfigSchema = Type.Object({
  version: msg(Type.Literal(1), 'must be 1 (the only version this Ficus reads)'),
  listen: Type.Optional(Type.Object({ host: Type.Optional(Host), port: Type.Optional(Port) }, { additionalProperties: false })),
  admin: Type.Optional(Type.Object({
    host: Type.Optional(Host),
    port: Type.Optional(Port),
    token: Type.Optional(Type.String()),
    /**
     * Named tokens: the name is who the audit log says made a change. A token is a string (an
     * operator: reads and changes) or `{ token, role: viewer }` (reads only: the console's and
     * the admin API's changes are refused, 403).
     */
    tokens: Type.Optional(Type.Record(Name, Type.Union([
      Type.String(),
      Type.Object({ token: Type.String(), role: Type.Optional(Type.Union([Type.Literal('operator'), Type.Literal('viewer')], { 'x-message': 'must be operator (reads and changes) or viewer (reads only)' })) }, { additionalProperties: false })
    ], { 'x-message': 'must be a token, or { token, role: operator|viewer }' }), { additionalProperties: false }))
  }, { additionalProperties: false })),
  upstreams: Type.Record(Name, UpstreamSchema, { minProperties: 1, additionalProperties: false }),
  backends: Type.Optional(Backends),
  default: Type.Optional(Side),
  sticky: Sticky,
  trustedHops: Type.Optional(Type.Integer({ minimum: 0, maximum: 32 })),
  exposeBackend: Type.Optional(Type.Boolean()),
  state: Type.Optional(Type.String({ minLength: 1 })),
  fallback: Type.Optional(FallbackSchema),
  limits: Type.Optional(Type.Object({
    bodySize: Type.Optional(Size),
    bodyBuffer: Type.Optional(Size),
    headerSize: Type.Optional(Size),
    headTimeout: Type.Optional(Duration),
    requestTimeout: Type.Optional(Duration),
    bodyIdleTimeout: Type.Optional(Duration),
    sendTimeout: Type.Optional(Duration),
    keepAliveTimeout: Type.Optional(Duration),
    headerNames: Type.Optional(msg(Type.Union([Type.Literal('drop'), Type.Literal('pass'), Type.Literal('refuse')]), 'must be drop, pass or refuse')),
    upgradeIdleTimeout: Type.Optional(Duration),
    upgradeMaxLifetime: Type.Optional(Duration)
  }, { additionalProperties: false })),
  shadow: Type.Optional(Type.Object({
    maxInFlight: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
    timeout: Type.Optional(Duration),
    maxBodySize: Type.Optional(Size),
    samples: Type.Optional(Type.Integer({ minimum: 0, maximum: 10000 }))
  }, { additionalProperties: false })),
  shutdown: Type.Optional(Type.Object({
    drainDelay: Type.Optional(Duration),
    timeout: Type.Optional(Duration)
  }, { additionalProperties: false })),
  unleash: Type.Optional(Type.Object({
    /** The Unleash API, as the SDKs take it: `https://unleash.example.com/api`. */
    url: msg(Type.String({ format: 'http-url' }), 'must be an http:// or https:// URL, like https://unleash.example.com/api'),
    appName: Name,
    instanceId: Type.Optional(Type.String({ minLength: 1 })),
    /** A client (backend) token: `${UNLEASH_CLIENT_TOKEN}`. */
    token: msg(Type.String({ minLength: 1 }), 'must be an Unleash client (backend) token, like ${UNLEASH_TOKEN}: is the variable set?'),
    refreshInterval: Type.Optional(Duration),
    /** Unleash's static context field `environment` (used by constraints); the token picks the flags' environment. */
    environment: Type.Optional(Type.String({ minLength: 1 })),
    /** Flag definitions (the /api/client/features JSON) used at start when Unleash cannot be reached and no backup exists. */
    bootstrap: Type.Optional(Type.String({ minLength: 1 })),
    /** Where the last state fetched is kept for a start while Unleash is down. */
    backupPath: Type.Optional(Type.String({ minLength: 1 })),
    /** /readyz stays 503 at most this long waiting for the first synchronization. */
    syncTimeout: Type.Optional(Duration),
    /** Lets `ficus set` change a flag's flexibleRollout through Unleash's admin API, fleet-wide. */
    admin: Type.Optional(Type.Object({
      token: Type.String(),
      url: Type.Optional(msg(Type.String({ format: 'http-url' }), 'must be an http:// or https:// URL, like https://unleash.example.com/api')),
      project: Type.Optional(Type.String({ minLength: 1 })),
      environment: Type.Optional(Type.String({ minLength: 1 }))
    }, { additionalProperties: false }))
  }, { additionalProperties: false })),
  store: Type.Optional(StoreSchema),
  sync: Type.Optional(SyncSchema),
  /** Ramp plans (config/ramp.ts, docs/ramp.md). */
  ramp: Type.Optional(RampSchema),
  /** `ficus verify` jobs (config/verify.ts, docs/verify.md). */
  verify: Type.Optional(Type.Record(Name, VerifyJobSchema, { additionalProperties: false })),
  log: Type.Optional(Type.Object({
    level: Type.Optional(msg(Type.String({ enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }),
      'must be one of fatal, error, warn, info, debug, trace, silent'))
  }, { additionalProperties: false })),
  routes: Type.Array(RouteSchema)
}, { additionalProperties: false })

/** routes.yaml as written (after ${ENV} expansion), before defaults. */
export type RawConfig = Static<typeof ConfigSchema>
export type RawRoute = Static<typeof RouteSchema>
export type RawUpstream = Static<typeof UpstreamSchema>

/* ---------- The validated, normalized config the rest of Ficus reads (deep-frozen). ---------- */

import type { HeaderNamePolicy } from '../core/forward-headers.js'
import type { RouteRule } from '../core/types.js'

export interface UpstreamConfig {
  readonly name: string
  /** `http://host:port`, no path. */
  readonly origin: string
  /** `host:port` of the origin, sent as Host when hostHeader is `upstream`. */
  readonly authority: string
  readonly timeoutMs: number
  readonly connectTimeoutMs: number
  readonly bodyTimeoutMs: number
  readonly connections: number
  readonly maxQueue: number
  readonly hostHeader: 'preserve' | 'upstream'
}

export interface Limits {
  readonly bodyBytes: number
  /** Request body read before a backend connection is taken (all of it when smaller). */
  readonly bodyBufferBytes: number
  readonly headerBytes: number
  readonly headTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly bodyIdleTimeoutMs: number
  readonly sendTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  /** Request headers whose name is not letters, digits and `-`: left out, forwarded, or refused (400). */
  readonly headerNames: HeaderNamePolicy
  /** An upgraded connection with no byte either way this long is closed; 0: never. */
  readonly upgradeIdleTimeoutMs: number
  /** An upgraded connection is closed this long after its 101; 0: never. */
  readonly upgradeMaxLifetimeMs: number
}

/** Bounds of shadow traffic (docs/shadow.md "Why it cannot slow or break a user's request"): what is kept, and for how long. */
export interface ShadowLimits {
  /** Shadow exchanges at once, over all routes; past it a shadow is dropped (`concurrency`). */
  readonly maxInFlight: number
  /** Whole shadow exchange, request sent to response read (dropped: `timeout`). */
  readonly timeoutMs: number
  /** Bytes kept per side (and of a shadowed write's request body); past it: skipped, `body_too_large`. */
  readonly maxBodyBytes: number
  /** Divergence samples kept per route. */
  readonly samples: number
}

export interface AdminToken {
  readonly name: string
  readonly token: string
  /** operator: reads and changes; viewer: reads only. */
  readonly role: 'operator' | 'viewer'
}

export interface Config {
  /** The file it was read from, as given. */
  readonly file: string
  readonly listen: { readonly host: string; readonly port: number }
  readonly admin: {
    readonly host: string
    readonly port: number
    /** Every accepted token with its name (admin.token as `admin`, then admin.tokens); empty = no auth. */
    readonly tokens: readonly AdminToken[]
  }
  readonly upstreams: Readonly<Record<string, UpstreamConfig>>
  readonly routes: readonly RouteRule[]
  /** The pseudo-route `default` for unmatched requests. */
  readonly defaultRoute: RouteRule
  readonly trustedHops: number
  readonly exposeBackend: boolean
  /** Absolute path of the state file, when configured. */
  readonly state: string | undefined
  readonly limits: Limits
  readonly shadow: ShadowLimits
  /** SIGTERM: readiness off, wait `drainDelayMs`, stop accepting, finish in flight; all within `timeoutMs`. */
  readonly shutdown: { readonly drainDelayMs: number; readonly timeoutMs: number }
  readonly log: { readonly level: string }
  /** The fleet's flag source; undefined when no route reads a flag from Unleash. */
  readonly unleash: UnleashConfig | undefined
  /** Where dual writes and the id map are kept (opened only when a route is dual). */
  readonly store: StoreConfig
  readonly sync: SyncConfig
  /** `ficus verify` jobs by name (config/verify.ts). */
  readonly verify: Readonly<Record<string, VerifyJob>>
  /** Ramp plans by name, and the plan each route with `ramp:` follows (config/ramp.ts). */
  readonly ramp: { readonly plans: Readonly<Record<string, RampPlan>>; readonly routes: Readonly<Record<string, string>>; /** ms */ readonly evaluateEveryMs: number }
}

export type StoreConfig =
  | { readonly kind: 'embedded'; /** Absolute path of the LMDB directory. */ readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string }

/** `sync:` (docs/sync.md), in ms and bytes. */
export interface SyncConfig {
  /** durable: a dual write's 2xx leaves once its outbox entry is on disk; async: at once (a crash may lose the entry). */
  readonly ack: 'durable' | 'async'
  readonly concurrency: number
  readonly retry: { readonly baseMs: number; readonly maxMs: number; readonly maxAttempts: number; readonly maxAgeMs: number }
  readonly maxPending: number
  readonly onFull: 'reject' | 'passthrough'
  readonly fenceTimeoutMs: number
  readonly maxIdWaitMs: number
  /** A dual write's request body and its answer's body are held in memory up to this (413 past it for the request). */
  readonly maxBodyBytes: number
  /** An id the map does not know at delivery: wait for it (then a dead letter), or take it as the same on both sides. */
  readonly unmappedIds: 'wait' | 'same'
  readonly auth:
    | { readonly mode: 'none' }
    | { readonly mode: 'service'; readonly header: string; readonly value: string }
    /** The client's own credential headers, kept encrypted at rest under `key` (base64 of 32 bytes), sent with the delivery. */
    | { readonly mode: 'passthrough'; readonly headers: readonly string[]; readonly key: string }
}

export interface UnleashConfig {
  /** The client API, ending in `/api`. */
  readonly url: string
  readonly appName: string
  readonly instanceId: string | undefined
  readonly token: string
  readonly refreshIntervalMs: number
  readonly environment: string | undefined
  /** Absolute path of the bootstrap file, when configured. */
  readonly bootstrap: string | undefined
  /** Absolute path of the backup file. */
  readonly backupPath: string
  readonly syncTimeoutMs: number
  readonly admin: UnleashAdmin | undefined
}

/** Unleash's admin API, for `ficus set` on a flagged route. */
export interface UnleashAdmin {
  readonly url: string
  readonly token: string
  readonly project: string
  readonly environment: string
}
