import type { Config } from './schema.js'

/**
 * The config in effect, for the settings a reload may change while Ficus runs (routes,
 * upstreams, trustedHops, exposeBackend, shadow bounds, admin tokens, shutdown). Read where
 * it is used, per request; a reload replaces `current` in one assignment.
 */
export interface LiveConfig {
  current: Config
}
