import { checkRoutes, type RouteShape } from '../core/check-routes.js'
import { compileCompare } from '../core/compare-rules.js'
import { SAFE_METHODS } from '../core/decide.js'
import { parsePattern } from '../core/path-pattern.js'
import { plainHeaderName } from '../core/strictness.js'
import { compileSync, type RawSync } from '../core/sync.js'
import { checkRamp } from './ramp.js'
import { checkVerify } from './verify.js'
import { adminTokens, tokenEnvironment } from './build.js'
import { DEFAULT_ROUTE, isObject, type Settings } from './defaults.js'
import type { Path } from './problems.js'
import type { RawConfig } from './schema.js'
import { parseDuration } from './units.js'
import { validateRoute } from './validate.js'

/**
 * What the schema cannot see alone: references between settings (upstreams, reserved
 * names), settings that Node or the OS would refuse together, route patterns and
 * reachability. Runs even when some values failed the schema, on the parts that passed:
 * `data` is the file as written (its shapes are tested here), `settings` the same with its
 * defaults.
 */

type Report = (path: Path, message: string) => void

/**
 * `warn` gets what is valid but cannot do what it says (a rule that cannot apply): `ficus
 * check` prints it and a start or reload logs it, without refusing the file.
 */
export function crossCheck(data: Partial<RawConfig>, settings: Settings, report: Report, warn: Report = () => {}): void {
  const upstreams = isObject(data.upstreams) ? Object.keys(data.upstreams) : []
  const known = `(upstreams: ${upstreams.join(', ')})`
  const checkBackends = (b: unknown, path: Path): void => {
    if (!isObject(b) || upstreams.length === 0) return
    for (const side of ['legacy', 'new'] as const) {
      const name = b[side]
      if (typeof name === 'string' && !upstreams.includes(name)) {
        report([...path, side], `unknown upstream "${name}" ${known}; name the upstream that plays the ${side} role`)
      }
    }
  }
  if (data.backends !== undefined) checkBackends(data.backends, ['backends'])
  else if (upstreams.length > 0) {
    // Without `backends:`, the upstreams named legacy and new play those roles.
    for (const side of ['legacy', 'new'] as const) {
      if (!upstreams.includes(side)) report(['upstreams'], `no upstream is named "${side}": add one, or say which plays that role with backends.${side} ${known}`)
    }
  }

  const { limits, admin, shutdown, listen } = settings
  // Node refuses a head timeout longer than the whole-request timeout.
  const head = parseDuration(String(limits.headTimeout))
  const whole = parseDuration(String(limits.requestTimeout))
  if (head !== undefined && whole !== undefined && head > whole) {
    report(['limits', 'headTimeout'], `must not be longer than limits.requestTimeout (${limits.requestTimeout})`)
  }
  // The admin API changes traffic: reachable from elsewhere only behind a token.
  const tokens = adminTokens(admin)
  if (!isLoopback(admin.host) && tokens.length === 0) {
    report(['admin', 'host'], `${admin.host} is not a loopback address: set admin.token (or admin.tokens) so the admin API cannot be used by anyone who reaches the port`)
  }
  if (new Set(tokens.map((x) => x.token)).size < tokens.length) report(['admin', 'tokens'], 'two names share one token: the audit log could not tell who acted')
  const drain = parseDuration(String(shutdown.drainDelay))
  const cap = parseDuration(String(shutdown.timeout))
  if (drain !== undefined && cap !== undefined && drain >= cap) {
    report(['shutdown', 'drainDelay'], `must be shorter than shutdown.timeout (${shutdown.timeout}), which also has to cover finishing requests in flight`)
  }
  if (listen.port === admin.port && listen.port !== 0) report(['admin', 'port'], `must differ from listen.port (${listen.port})`)

  checkUnleash(data, report)
  checkVerify(data.verify, data.routes, report)
  checkRamp(data, report)
  if (isObject(data.sync) && isObject(data.sync.auth) && data.sync.auth.mode === 'passthrough' && typeof data.sync.auth.key === 'string' && !isKey32(data.sync.auth.key)) {
    report(['sync', 'auth', 'key'], 'must be 32 bytes in base64 (openssl rand -base64 32): the key clients\' credentials are encrypted with in the store')
  }
  if (isObject(data.store)) {
    const st = data.store
    if (st.kind === 'postgres' && st.path !== undefined) report(['store', 'path'], 'is for kind: embedded; a postgres store has a url')
    if (st.kind === 'postgres' && st.url === undefined) report(['store', 'url'], 'is required with kind: postgres (postgres://user:password@host:5432/db)')
    if (st.kind === 'embedded' && st.url !== undefined) report(['store', 'url'], 'is for kind: postgres; an embedded store has a path')
  }
  checkFallback(data.fallback, ['fallback'], report)
  const checkStickyHeader = (spec: unknown, path: Path): void => stickyHeaderKept(spec, settings.limits.headerNames, (m) => report(path, m))
  checkStickyHeader(data.sticky, ['sticky'])
  checkSticky(data.sticky, ['sticky'], report)

  if (!Array.isArray(data.routes)) return
  const entities = idEntities(data.routes)
  const rules: RouteShape[] = []
  const index: number[] = []
  data.routes.forEach((r: unknown, i: number) => {
    if (!isObject(r)) return
    if (r.name === DEFAULT_ROUTE) report(['routes', i, 'name'], `"${DEFAULT_ROUTE}" is reserved for requests no route matches`)
    if (r.new !== undefined && r.flag !== undefined) {
      report(['routes', i, 'flag'], 'a route takes its share of new from routes.yaml (new) or from an Unleash flag (flag), not both: remove one')
    } else if (r.new === undefined && r.flag === undefined) {
      report(['routes', i], 'needs new (0-100, the share of users on new) or flag (an Unleash toggle that decides it)')
    } else if (r.flag !== undefined && data.unleash === undefined) {
      report(['routes', i, 'flag'], 'reads an Unleash flag, but routes.yaml has no unleash: block (url, appName, token)')
    }
    checkBackends(r.backends, ['routes', i, 'backends'])
    checkFallback(r.fallback, ['routes', i, 'fallback'], report)
    checkStickyHeader(r.sticky, ['routes', i, 'sticky'])
    checkSticky(r.sticky, ['routes', i, 'sticky'], report)
    warnRoute(r, i, warn)
    // The rule paths of a compare block, from every list that has the right shape (the schema reports the rest).
    if (isObject(r.compare)) {
      const c = r.compare
      const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined)
      const arrays = isObject(c.arrays)
        ? Object.fromEntries(Object.entries(c.arrays).filter(([, m]) => m === 'unordered' || (isObject(m) && typeof m.key === 'string'))) as Record<string, 'unordered' | { key: string }>
        : undefined
      const found: [(string | number)[], string][] = []
      // Entries keep their positions (problems name them); statuses are the schema's to check.
      const when = Array.isArray(c.when) ? c.when.map((w: unknown) => ({ status: 200, ignore: isObject(w) ? strings(w.ignore) : undefined })) : undefined
      const maps = Array.isArray(c.paths)
        ? c.paths.map((m: unknown) => (isObject(m) && typeof m.legacy === 'string' && typeof m.new === 'string' ? { legacy: m.legacy, new: m.new } : { legacy: 'body.a', new: 'body.b' }))
        : undefined
      const ids = isObject(c.ids) ? Object.fromEntries(Object.entries(c.ids).filter(([, e]) => typeof e === 'string')) as Record<string, string> : undefined
      compileCompare({ ignore: strings(c.ignore), redact: strings(c.redact), arrays, when, paths: maps, ids }, found)
      for (const [where, message] of found) report(['routes', i, 'compare', ...where], message)
      if (ids !== undefined) checkCompareIds(r, ids, i, entities, report, warn)
    }
    const path = isObject(r.match) ? r.match.path : undefined
    if (typeof path !== 'string') return
    const pattern = parsePattern(path)
    if (typeof pattern === 'string') report(['routes', i, 'match', 'path'], pattern)
    else if (isObject(r.sync)) checkRouteSync(r, pattern, i, report, warn)
    if (typeof pattern === 'string') return
    if (validateRoute(r)) {
      rules.push({ name: r.name, methods: r.match.methods === undefined ? null : new Set(r.match.methods), pattern })
      index.push(i)
    }
  })
  for (const p of checkRoutes(rules)) report(['routes', index[p.index] as number, p.field], p.message.replace(/routes\[(\d+)\]/g, (_, j: string) => `routes[${index[Number(j)]}]`))
}

/** Whether `text` is 32 bytes in base64 (an AES-256 key, as adapters/sealed.ts takes it). */
function isKey32(text: string): boolean {
  return /^[A-Za-z0-9+/]{43}=?$/.test(text) && Buffer.from(text, 'base64').length === 32
}

/** A route's sync: beyond its schema: its params exist, a dual route has a key, mirror and shadowWrites agree. */
function checkRouteSync(r: Record<string, unknown>, pattern: Exclude<ReturnType<typeof parsePattern>, string>, i: number, report: Report, warn: Report): void {
  const y = r.sync as RawSync
  const methods = isObject(r.match) && Array.isArray(r.match.methods) ? r.match.methods as string[] : null
  const compiled = compileSync(y, pattern, methods !== null && methods.every((m) => SAFE_METHODS.has(m)))
  if (compiled !== null && 'problems' in compiled) {
    for (const [where, message] of compiled.problems) report(['routes', i, 'sync', ...where.split('.')], message)
  }
  if (r.shadowWrites !== undefined && y.mode !== undefined && y.mode !== 'off') {
    report(['routes', i, 'shadowWrites'], `and sync.mode: ${y.mode} both say what happens to writes: keep sync (shadowWrites: true is sync: { mode: mirror })`)
  }
  if (y.mode === 'dual' && methods !== null && methods.every((m) => SAFE_METHODS.has(m)) && (y.learn !== undefined)) {
    warn(['routes', i, 'sync', 'learn'], `has no effect: the route matches only reads (${methods.join(', ')}), and a create is a write`)
  }
}

/** The entities whose ids the id map can hold: those of dual routes and of their rewrites. */
function idEntities(routes: unknown[]): Set<string> {
  const out = new Set<string>()
  for (const r of routes) {
    if (!isObject(r) || !isObject(r.sync) || r.sync.mode !== 'dual') continue
    if (typeof r.sync.entity === 'string') out.add(r.sync.entity)
    const rw = r.sync.rewrite
    if (isObject(rw)) {
      for (const part of [rw.path, rw.body]) {
        if (isObject(part)) for (const e of Object.values(part)) if (typeof e === 'string') out.add(e)
      }
    }
  }
  return out
}

/**
 * compare.ids beyond its paths: the id map exists on dual routes only, and an entity no dual
 * route gives is never in it (a warning: its ids compare as usual).
 */
function checkCompareIds(r: Record<string, unknown>, ids: Record<string, string>, i: number, entities: ReadonlySet<string>, report: Report, warn: Report): void {
  if (Object.keys(ids).length === 0) return
  if (!isObject(r.sync) || r.sync.mode !== 'dual') {
    const mode = isObject(r.sync) && typeof r.sync.mode === 'string' ? `its sync.mode is ${r.sync.mode}` : 'it has no sync block'
    report(['routes', i, 'compare', 'ids'], `needs the id map of a dual route, and ${mode}: add sync: { mode: dual, entity: …, key: path.<param> } or remove compare.ids`)
    return
  }
  for (const [path, entity] of Object.entries(ids)) {
    if (!entities.has(entity)) {
      warn(['routes', i, 'compare', 'ids', path], `names entity ${entity}, whose ids no dual route learns or rewrites (entities: ${[...entities].join(', ')}): the map never pairs them, so they compare as usual`)
    }
  }
}

/** A fallback: block beyond its schema: a budget of nothing, a cool-down that cannot grow. */
function checkFallback(f: unknown, path: Path, report: Report): void {
  if (!isObject(f)) return
  if (f.newTimeout === '0%' || f.newTimeout === '0ms' || f.newTimeout === '0s') {
    report([...path, 'newTimeout'], 'must be more than 0: new would never be given a chance to answer (to keep requests off new, set the route\'s new: 0)')
  }
  const b = f.breaker
  if (!isObject(b)) return
  const first = typeof b.ejection === 'string' ? parseDuration(b.ejection) : undefined
  const max = typeof b.maxEjection === 'string' ? parseDuration(b.maxEjection) : undefined
  if (first !== undefined && max !== undefined && first > max) report([...path, 'breaker', 'ejection'], `must not be longer than maxEjection (${String(b.maxEjection)})`)
  for (const k of ['window', 'ejection', 'maxEjection']) {
    if (typeof b[k] === 'string' && parseDuration(b[k]) === 0) report([...path, 'breaker', k], 'must be more than 0')
  }
  if (b.consecutiveFailures === 0 && b.failureRate === '0%') {
    report([...path, 'breaker'], 'consecutiveFailures: 0 and failureRate: 0% would never eject new: write breaker: false to turn the breaker off')
  }
}

/** A list of sticky sources in which one can never be read: every request has a client address, so nothing after `ip` is. */
function checkSticky(sticky: unknown, path: Path, report: Report): void {
  if (!Array.isArray(sticky)) return
  const ip = sticky.indexOf('ip')
  if (ip !== -1 && ip < sticky.length - 1) {
    report([...path, ip + 1], 'is never read: every request has a client address, so the list stops at ip (put ip last)')
  }
}

/** Settings of one route that are valid but cannot apply. */
function warnRoute(r: Record<string, unknown>, i: number, warn: Report): void {
  const methods = isObject(r.match) && Array.isArray(r.match.methods) ? r.match.methods : null
  if (r.shadowWrites === true && methods !== null && methods.every((m) => SAFE_METHODS.has(m as string))) {
    warn(['routes', i, 'shadowWrites'], `has no effect: the route matches only reads (${methods.join(', ')}), which are shadowed anyway`)
  }
  if (!isObject(r.compare)) return
  const c = r.compare
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])
  const compared = Array.isArray(c.headers) ? c.headers.filter((h): h is string => typeof h === 'string') : ['content-type']
  list(c.headers).forEach((h, j) => {
    if (typeof h === 'string' && h !== h.toLowerCase()) warn(['routes', i, 'compare', 'headers', j], `header names are compared in lower case: write ${h.toLowerCase()} (it is read as such)`)
  })
  const headerRule = (p: unknown, where: (string | number)[]): void => {
    if (typeof p !== 'string' || !p.startsWith('header.')) return
    const name = p.slice('header.'.length)
    if (name !== name.toLowerCase()) warn(where, `header names are compared in lower case: write header.${name.toLowerCase()} (it is read as such)`)
    else if (!compared.some((h) => h.toLowerCase() === name)) warn(where, `ignores a header this route does not compare (compare.headers: ${compared.join(', ')}): it changes nothing`)
  }
  list(c.ignore).forEach((p, j) => { headerRule(p, ['routes', i, 'compare', 'ignore', j]) })
  list(c.when).forEach((w, j) => {
    if (isObject(w)) list(w.ignore).forEach((p, k) => { headerRule(p, ['routes', i, 'compare', 'when', j, 'ignore', k]) })
  })
  if (c.contentType !== undefined && !compared.some((h) => h.toLowerCase() === 'content-type')) {
    warn(['routes', i, 'compare', 'contentType'], `applies to the content-type header, which this route does not compare (compare.headers: ${compared.join(', ')})`)
  }
}

/** The unleash: block beyond its schema: a client that would never fetch, an admin API with no environment. */
function checkUnleash(data: Partial<RawConfig>, report: Report): void {
  const u = data.unleash
  if (!isObject(u)) return
  if (typeof u.refreshInterval === 'string' && parseDuration(u.refreshInterval) === 0) {
    report(['unleash', 'refreshInterval'], 'must be more than 0: at 0 the Unleash client never fetches, so no flag change would ever reach Ficus')
  }
  if (isObject(u.admin) && typeof u.admin.environment !== 'string' && typeof u.token === 'string' && tokenEnvironment(u.token) === undefined) {
    report(['unleash', 'admin', 'environment'], 'is needed: the client token does not name its environment (project:environment.secret), and the admin API changes one environment')
  }
  if (u.backupPath === undefined && data.state === undefined) {
    report(['unleash', 'backupPath'], 'is needed when there is no state: file (this replica\'s copy of the last flags fetched; a shared temp directory would let another user plant flags)')
  }
  if (isObject(u.admin) && u.admin.token === '') report(['unleash', 'admin', 'token'], 'is empty: set it, or remove unleash.admin (ficus set then refuses on flagged routes)')
}

/**
 * A sticky key read from a header whose name limits.headerNames drops (the backend would not
 * see the key) or refuses (no request could carry it): refused, saying what to change. Takes
 * one source or a list of them.
 */
function stickyHeaderKept(spec: unknown, policy: unknown, report: (message: string) => void): void {
  if (policy !== 'drop' && policy !== 'refuse') return // pass, or a value the schema reported
  for (const s of Array.isArray(spec) ? spec as unknown[] : [spec]) {
    if (typeof s !== 'string' || !s.startsWith('header:')) continue
    const name = s.slice('header:'.length)
    if (name === '' || plainHeaderName(name)) continue
    const effect = policy === 'refuse'
      ? 'refuses every request that has such a header, so no user could be kept on a side by it'
      : 'leaves such headers out of every request (as nginx does), so the backend would not see the key users are kept on a side by'
    report(`header "${name}" has characters other than letters, digits and "-", and limits.headerNames: ${String(policy)} ${effect}; rename the header, or set limits.headerNames: pass`)
  }
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
