import type { RawConfig, RawUpstream } from './schema.js'

/**
 * Every default of routes.yaml in one place, each with its unit. A value here is used when
 * the file leaves the key out (withDefaults); README.md "Configuration" lists the same table.
 */
export const DEFAULTS = {
  listen: { host: '0.0.0.0', port: 8080 },
  /** Loopback by default: the admin port changes traffic and must not be reachable from outside. */
  admin: { host: '127.0.0.1', port: 9090 },
  upstream: {
    /** Time to the response head once the request is sent (504 past it). */
    timeout: '30s',
    /** TCP (and TLS) connection set-up (504 past it). */
    connectTimeout: '5s',
    /** Longest silence between two chunks of a response body (the client connection is aborted). */
    bodyTimeout: '30s',
    /** Open connections at most, per upstream. */
    connections: 128,
    /** Requests waiting for a connection at most; past it requests fail fast with 503. */
    maxQueue: 512,
    /** `preserve` sends the client's Host; `upstream` sends the upstream URL's host. */
    hostHeader: 'preserve'
  },
  /** Which upstream plays which role, unless a route says otherwise. */
  backends: { legacy: 'legacy', new: 'new' },
  /** Side that answers requests no route matches. */
  default: 'legacy',
  /** Proxies in front of Ficus trusted to set X-Forwarded-For / Forwarded (Envoy's xff_num_trusted_hops). */
  trustedHops: 0,
  /** Adds `x-ficus-backend: legacy|new` to responses (demos and debugging). */
  exposeBackend: false,
  /** What a route does when new fails (a route's own `fallback:` overrides key by key). */
  fallback: {
    /**
     * How long new may take to start answering a request legacy could still serve (idempotent,
     * no body): a share of legacy's timeout or a duration, never more than new's own timeout.
     * Legacy then has the rest of its own timeout, so a hung new costs a user this much, once.
     */
    newTimeout: '50%',
    /** A write (any request with a body, or not idempotent) while new is ejected: `refuse` (503 with Retry-After) or `legacy`. */
    ejectedWrites: 'refuse',
    breaker: {
      /** Failures of new in a row (refused, reset, timeout, 502/503/504) that eject it from the route. */
      consecutiveFailures: 5,
      /** …or this share of failed attempts over `window`, once `minRequests` were seen (0%: off). */
      failureRate: '50%',
      minRequests: 20,
      window: '10s',
      /** First cool-down while legacy serves; doubles with each ejection in a row, up to maxEjection. */
      ejection: '5s',
      maxEjection: '15s',
      /** Requests let through to new at once after a cool-down (half-open); one success closes the breaker. */
      probes: 1
    }
  },
  limits: {
    /** Request body, streamed or not (413 past it). */
    bodySize: '10MiB',
    /**
     * Request body read before a backend connection is taken (the whole body when smaller),
     * like nginx's request buffering: a client that uploads slowly holds no backend connection.
     */
    bodyBuffer: '64KiB',
    /** Request line and headers together (431 past it). */
    headerSize: '16KiB',
    /** Whole request head from the first byte of the connection or request (408 past it). */
    headTimeout: '10s',
    /** Whole request, head and body (408 past it). */
    requestTimeout: '300s',
    /** Longest silence inside a request body (408; the upstream request is aborted). */
    bodyIdleTimeout: '30s',
    /** Longest wait for a client to read more of the response (connection aborted), like nginx's send_timeout. */
    sendTimeout: '30s',
    /** Idle keep-alive connection between two requests. */
    keepAliveTimeout: '5s',
    /**
     * Request headers named with anything but letters, digits and `-` (`X_Forwarded_For`): left
     * out of the upstream request, as nginx does (`drop`), forwarded (`pass`), or refused (`refuse`, 400).
     */
    headerNames: 'drop',
    /** An upgraded connection (WebSocket) with no byte either way this long is closed (0s: never); apps that ping every 30 s or so stay open. */
    upgradeIdleTimeout: '5m',
    /** An upgraded connection is closed this long after it opened (0s: never), so none outlives a deploy by days. */
    upgradeMaxLifetime: '24h'
  },
  shadow: {
    /** Shadow exchanges in flight at most, over all routes (dropped and counted past it). */
    maxInFlight: 64,
    /** A shadow exchange, from sending the copy to the end of its answer. */
    timeout: '5s',
    /** Response bytes kept per side for comparison, and request bytes of a shadowed write. */
    maxBodySize: '1MiB',
    /** Recent divergence samples kept per route. */
    samples: 100
  },
  shutdown: {
    /** After SIGTERM, /readyz answers 503 and traffic is still served this long, so load balancers stop sending first. */
    drainDelay: '5s',
    /** Hard cap on the whole stop: past it, connections still open are cut. */
    timeout: '30s'
  },
  log: { level: 'info' },
  /** Where dual writes are kept: an LMDB file beside the state file (or routes.yaml). */
  store: { kind: 'embedded' },
  sync: {
    /** `durable`: a dual write's 2xx reaches the client once its outbox entry is fsynced; `async`: at once. */
    ack: 'durable',
    /** Deliveries in flight at once, per process, on pools of their own. */
    concurrency: 8,
    /** Backoff from `base`, doubling up to `max` (with jitter, never sooner than Retry-After); a dead letter after maxAttempts or maxAge. */
    retry: { base: '200ms', max: '5m', maxAttempts: 20, maxAge: '24h' },
    /** Writes waiting for delivery at most; past it `onFull` says what a new dual write gets. */
    maxPending: 1000000,
    /** `reject`: 503 FICUS_ERR_SYNC_FULL before forwarding; `passthrough`: forwarded without sync, counted. */
    onFull: 'reject',
    /** How long a read waits for its entity's writes to reach the side that now answers it. */
    fenceTimeout: '2s',
    /** How long a delivery waits for an id the map does not know yet, then it is a dead letter. */
    maxIdWait: '10m',
    /** A dual write's body (request and answer) held in memory at most (413 past it). */
    maxBody: '1MiB',
    /** An id the map does not know: `wait` (for the create that maps it) or `same` (the sides share ids, e.g. after a backfill). */
    unmappedIds: 'wait',
    /** What credential a delivery carries: `none` (the client's are never stored), or `service` (a header you set). */
    auth: { mode: 'none' }
  },
  unleash: {
    /** How often each replica fetches the flags (Unleash's SDK default is 15s: too slow for a rollback). */
    refreshInterval: '1s',
    /** /readyz waits at most this long for the first fetch, then serves with the backup, the bootstrap, or legacy. */
    syncTimeout: '10s',
    /** The admin API's project, for `ficus set` on a flagged route. */
    admin: { project: 'default' }
  }
} as const

/** Name of the pseudo-route that serves unmatched requests; reserved, so no route may use it. */
export const DEFAULT_ROUTE = 'default'

type Block<K extends keyof RawConfig> = NonNullable<RawConfig[K]>
type RawUnleash = Block<'unleash'>
type Defaulted = 'listen' | 'admin' | 'upstreams' | 'backends' | 'default' | 'trustedHops' | 'exposeBackend' |
  'fallback' | 'limits' | 'shadow' | 'shutdown' | 'log' | 'unleash' | 'store' | 'sync'

/** routes.yaml with every key of DEFAULTS filled in; values as written (durations and sizes are text). */
export interface Settings extends Omit<RawConfig, Defaulted> {
  readonly listen: Required<Block<'listen'>>
  readonly admin: Block<'admin'> & { readonly host: string; readonly port: number }
  readonly upstreams: Readonly<Record<string, Required<RawUpstream>>>
  readonly backends: Block<'backends'>
  readonly default: Block<'default'>
  readonly trustedHops: number
  readonly exposeBackend: boolean
  readonly fallback: FallbackSettings
  readonly limits: Required<Block<'limits'>>
  readonly shadow: Required<Block<'shadow'>>
  readonly shutdown: Required<Block<'shutdown'>>
  readonly log: Required<Block<'log'>>
  readonly store: Block<'store'>
  readonly sync: SyncSettings
  /** The unleash: block, when there is one. */
  readonly unleash: UnleashSettings | undefined
}

type RawFallback = Block<'fallback'>
/** `fallback:` with every key filled; `breaker: false` turns the breaker off. */
export interface FallbackSettings {
  readonly newTimeout: string
  readonly ejectedWrites: 'refuse' | 'legacy'
  readonly breaker: false | Required<Exclude<NonNullable<RawFallback['breaker']>, false>>
}

type RawSync = Block<'sync'>
/** `sync:` with every key filled (retry key by key). */
export type SyncSettings = Required<Omit<RawSync, 'retry'>> & { readonly retry: Required<NonNullable<RawSync['retry']>> }

type UnleashSettings = RawUnleash & {
  readonly refreshInterval: string
  readonly syncTimeout: string
  readonly admin: (NonNullable<RawUnleash['admin']> & { readonly project: string }) | undefined
}

/**
 * The one place DEFAULTS is applied: the cross-checks read the result (a head timeout left
 * out is still compared with the request timeout) and build makes the Config from it.
 * Defaults taken from another setting (a route's sticky and backends, unleash.admin.url,
 * the backup beside the state file) are build's.
 *
 * It also runs on a file that failed the schema, so the cross-checks can go on: a block
 * that is not a mapping counts as absent, a value of the wrong type is kept as written (the
 * schema has reported it), and nothing throws. Only for a valid file is the type exact.
 */
export function withDefaults(raw: Partial<RawConfig>): Settings {
  const { admin: unleashAdmin, ...unleash } = DEFAULTS.unleash
  return {
    ...raw as RawConfig,
    listen: fill(DEFAULTS.listen, raw.listen),
    admin: {
      ...fill(DEFAULTS.admin, raw.admin),
      // The cross-checks test the host as text: one of another type (reported) is not an address.
      host: typeof raw.admin?.host === 'string' ? raw.admin.host : DEFAULTS.admin.host
    },
    upstreams: Object.fromEntries(Object.entries(isObject(raw.upstreams) ? raw.upstreams : {})
      .map(([name, u]) => [name, fill(DEFAULTS.upstream, u)])),
    backends: fill(DEFAULTS.backends, raw.backends),
    default: raw.default ?? DEFAULTS.default,
    trustedHops: raw.trustedHops ?? DEFAULTS.trustedHops,
    exposeBackend: raw.exposeBackend ?? DEFAULTS.exposeBackend,
    fallback: fallbackSettings(DEFAULTS.fallback, raw.fallback),
    limits: fill(DEFAULTS.limits, raw.limits),
    shadow: fill(DEFAULTS.shadow, raw.shadow),
    shutdown: fill(DEFAULTS.shutdown, raw.shutdown),
    log: fill(DEFAULTS.log, raw.log),
    store: isObject(raw.store) ? raw.store : DEFAULTS.store,
    sync: { ...fill<SyncSettings>(DEFAULTS.sync, raw.sync), retry: fill(DEFAULTS.sync.retry, isObject(raw.sync) ? raw.sync.retry : undefined) },
    unleash: isObject(raw.unleash)
      ? { ...fill<UnleashSettings>(unleash, raw.unleash), admin: raw.unleash.admin === undefined ? undefined : fill(unleashAdmin, raw.unleash.admin) }
      : undefined
  }
}

/**
 * A `fallback:` block over `base` (the defaults, or the top level's for a route), key by key:
 * a breaker mapping fills its missing keys from the base's breaker (or the defaults' when the
 * base has none); `breaker: false` turns it off.
 */
export function fallbackSettings(base: FallbackSettings, given: unknown): FallbackSettings {
  const g = isObject(given) ? given : {}
  const breaker = g.breaker === false
    ? false
    : isObject(g.breaker)
      ? fill<Exclude<FallbackSettings['breaker'], false>>(base.breaker === false ? DEFAULTS.fallback.breaker : base.breaker, g.breaker)
      : base.breaker
  return {
    newTimeout: typeof g.newTimeout === 'string' ? g.newTimeout : base.newTimeout,
    ejectedWrites: g.ejectedWrites === 'legacy' || g.ejectedWrites === 'refuse' ? g.ejectedWrites : base.ejectedWrites,
    breaker
  }
}

/** `given`, with each key of `table` that it leaves out (or leaves empty: YAML's null) from the table. */
function fill<T>(table: object, given: unknown): T {
  const out: Record<string, unknown> = { ...table, ...(isObject(given) ? given : {}) }
  for (const [key, value] of Object.entries(table)) out[key] ??= value
  return out as T
}

/** A YAML mapping (the only shape a block of settings can have). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}
