/**
 * Every default of routes.yaml in one place, each with its unit. A value here is used when
 * the file leaves the key out; docs/configuration.md lists the same table.
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
    keepAliveTimeout: '5s'
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
  unleash: {
    /** How often each replica fetches the flags (Unleash's SDK default is 15s: too slow for a rollback). */
    refreshInterval: '1s',
    /** /readyz waits at most this long for the first fetch, then serves with the backup, the bootstrap, or legacy. */
    syncTimeout: '10s',
    /** The admin API's project, for `ficus set` on a flagged route. */
    project: 'default'
  }
} as const

/** Name of the pseudo-route that serves unmatched requests; reserved, so no route may use it. */
export const DEFAULT_ROUTE = 'default'
