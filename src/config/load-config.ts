import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import { isMap, LineCounter, parseDocument, type Document, type Node } from 'yaml'
import { checkRoutes, type RouteShape } from '../core/check-routes.js'
import { compileCompare } from '../core/compare-rules.js'
import { parsePattern } from '../core/path-pattern.js'
import type { PathPattern, RouteRule, StickySpec } from '../core/types.js'
import { DEFAULT_ROUTE, DEFAULTS } from './defaults.js'
import { expandRefs, protectRefs } from './expand-env.js'
import { ConfigSchema, NAME_MESSAGE, RouteSchema, type AdminToken, type Config, type RawConfig, type RawRoute, type UnleashConfig, type UpstreamConfig } from './schema.js'
import { parseDuration, parseSize } from './units.js'

type Path = readonly (string | number)[]

/** One problem in the file: where (line, column, key path) and what. */
export interface ConfigProblem {
  readonly line: number
  readonly col: number
  readonly path: string
  readonly message: string
}

/** Thrown when routes.yaml cannot be used; `problems` lists every problem found, in file order. */
export class ConfigError extends Error {
  readonly code = 'FICUS_ERR_CONFIG_INVALID'
  constructor (readonly file: string, readonly problems: readonly ConfigProblem[]) {
    super(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
      problems.map((p) => `  ${formatProblem(file, p)}`).join('\n'))
    this.name = 'ConfigError'
  }
}

export function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}:${p.col}` : file
  return p.path === '' ? `${where}: ${p.message}` : `${where}: ${p.path}: ${p.message}`
}

// coerceTypes: a value from the environment is text; the schema decides whether it is a number
// (`port: ${PORT}`) or stays a string (`token: ${TOKEN}` with an all-digit token).
const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, coerceTypes: true })
ajv.addKeyword('x-message')
ajv.addFormat('duration', { type: 'string', validate: (s: string) => parseDuration(s) !== undefined })
ajv.addFormat('size', { type: 'string', validate: (s: string) => parseSize(s) !== undefined })
ajv.addFormat('origin', { type: 'string', validate: isOrigin })
ajv.addFormat('http-url', { type: 'string', validate: isHttpUrl })
const validate = ajv.compile<RawConfig>(ConfigSchema)
const validateRoute = ajv.compile<RawRoute>(RouteSchema)

/** Reads, expands, validates and freezes routes.yaml. Throws ConfigError listing every problem. */
export async function loadConfig(file: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<Config> {
  return (await readConfig(file, env)).config
}

/**
 * loadConfig, keeping the text: a cluster primary gives its workers the very text it
 * validated, never the file (which may have changed since), so every process parses the
 * same bytes with the same environment.
 */
export async function readConfig(file: string, env: Readonly<Record<string, string | undefined>>): Promise<{ config: Config; text: string }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot be read (${(err as Error).message})`
    throw new ConfigError(file, [{ line: 0, col: 0, path: '', message: reason }])
  }
  return { config: parseConfig(text, file, env), text }
}

/** The same, from text already read (`file` is used for messages and to resolve relative paths). */
export function parseConfig(text: string, file: string, env: Readonly<Record<string, string | undefined>> = process.env): Config {
  const lines = new LineCounter()
  lines.addNewLine(0)
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines.addNewLine(i + 1)
  const src = protectRefs(text)
  const doc = parseDocument(src.text, { uniqueKeys: true, prettyErrors: false })
  const problems: ConfigProblem[] = []
  const at = (offset: number | undefined, path: Path, message: string): void => {
    const pos = offset === undefined ? { line: 0, col: 0 } : lines.linePos(src.toOriginal(offset))
    problems.push({ line: pos.line, col: pos.col, path: formatPath(path), message })
  }
  for (const e of doc.errors) at(e.pos[0], [], e.message.split('\n')[0] ?? e.message)
  if (problems.length > 0) throw new ConfigError(file, sorted(problems))
  // Expansion problems are reported together with the schema's, minus the schema's
  // complaints about the very values that could not be expanded.
  const unexpanded = new Set<string>()
  for (const p of expandRefs(doc, src.refs, env)) {
    at(p.node.range?.[0], p.path, p.message)
    unexpanded.add(formatPath(p.path))
  }

  const data: unknown = doc.toJS({ maxAliasCount: 100 })
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file, [{ line: 1, col: 1, path: '', message: 'must be a YAML mapping (version: 1, upstreams: …, routes: …)' }])
  }
  const valid = validate(data)
  if (!valid) {
    for (const e of schemaProblems(validate.errors ?? [])) {
      if (!unexpanded.has(formatPath(e.path))) at(locate(doc, e.path, e.key), e.key === undefined ? e.path : [...e.path, e.key], e.message)
    }
  }
  // Cross-references are checked even when some values failed the schema, on the parts
  // that passed, so one run reports every problem.
  crossCheck(data, (path, message) => at(locate(doc, path), path, message))
  if (!valid || problems.length > 0) throw new ConfigError(file, sorted(problems))
  return deepFreeze(build(data, file))
}

/* ---------- schema errors → one readable line each ---------- */

interface SchemaProblem { path: Path; key?: string; message: string }

function schemaProblems(errors: readonly ErrorObject[]): SchemaProblem[] {
  // A union with its own message replaces the messages of its branches at the same place.
  const unions = new Set(errors.filter((e) => e.keyword === 'anyOf' && xMessage(e) !== undefined).map((e) => e.instancePath))
  const out: SchemaProblem[] = []
  const seen = new Set<string>()
  for (const e of errors) {
    if (unions.has(e.instancePath) && !(e.keyword === 'anyOf' && xMessage(e) !== undefined)) continue
    const path = pointerToPath(e.instancePath)
    let p: SchemaProblem
    if (e.keyword === 'additionalProperties') {
      const key = String((e.params as { additionalProperty: string }).additionalProperty)
      // A map of named things (upstreams) rejects the name, not an unknown key.
      const named = (e.parentSchema as { patternProperties?: unknown } | undefined)?.patternProperties !== undefined
      p = { path, key, message: named ? `is not a valid name: ${NAME_MESSAGE}` : 'unknown key' }
    } else if (e.keyword === 'required') {
      p = { path, key: String((e.params as { missingProperty: string }).missingProperty), message: 'is required' }
    } else if (e.keyword === 'minProperties' && path.length === 1 && path[0] === 'upstreams') {
      p = { path, message: 'must define at least one upstream' }
    } else {
      p = { path, message: xMessage(e) ?? e.message ?? 'is invalid' }
    }
    const id = `${formatPath(p.key === undefined ? p.path : [...p.path, p.key])}\0${p.message}`
    if (!seen.has(id)) {
      seen.add(id)
      out.push(p)
    }
  }
  return out
}

function xMessage(e: ErrorObject): string | undefined {
  return (e.parentSchema as { 'x-message'?: string } | undefined)?.['x-message']
}

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return []
  return pointer.slice(1).split('/').map((s) => {
    const key = s.replace(/~1/g, '/').replace(/~0/g, '~')
    return /^\d+$/.test(key) ? Number(key) : key
  })
}

/** `['routes', 2, 'new']` → `routes[2].new`. */
export function formatPath(path: Path): string {
  let s = ''
  for (const k of path) {
    if (typeof k === 'number') s += `[${k}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k)) s += s === '' ? k : `.${k}`
    else s += `[${JSON.stringify(k)}]`
  }
  return s
}

/** Offset of the value at `path` (or of `key` inside it), falling back to the nearest ancestor. */
function locate(doc: Document, path: Path, key?: string): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as Node | undefined
    if (node === undefined || node === null) continue
    if (n === path.length && key !== undefined && isMap(node)) {
      const pair = node.items.find((it) => (it.key as { value?: unknown } | null)?.value === key)
      const keyRange = (pair?.key as Node | undefined)?.range
      if (keyRange !== undefined && keyRange !== null) return keyRange[0]
    }
    if (node.range !== undefined && node.range !== null) return node.range[0]
  }
  return undefined
}

function sorted(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.col - b.col)
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s)
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && u.username === '' && u.password === ''
  } catch {
    return false
  }
}

function isOrigin(s: string): boolean {
  let u: URL
  try {
    u = new URL(s)
  } catch {
    return false
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' &&
    u.username === '' && u.password === '' && (u.pathname === '/' || u.pathname === '') && u.search === '' && u.hash === ''
}

/* ---------- cross-references: upstreams, reserved names, patterns, reachability ---------- */

type Report = (path: Path, message: string) => void
type Backends = { legacy: string; new: string }

function crossCheck(data: Partial<RawConfig>, report: Report): void {
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

  // Node refuses a head timeout longer than the whole-request timeout.
  const head = parseDuration(String(data.limits?.headTimeout ?? DEFAULTS.limits.headTimeout))
  const whole = parseDuration(String(data.limits?.requestTimeout ?? DEFAULTS.limits.requestTimeout))
  if (head !== undefined && whole !== undefined && head > whole) {
    report(['limits', 'headTimeout'], `must not be longer than limits.requestTimeout (${data.limits?.requestTimeout ?? DEFAULTS.limits.requestTimeout})`)
  }
  // The admin API changes traffic: reachable from elsewhere only behind a token.
  const adminHost = typeof data.admin?.host === 'string' ? data.admin.host : DEFAULTS.admin.host
  const tokens = adminTokens(data.admin)
  if (!isLoopback(adminHost) && tokens.length === 0) {
    report(['admin', 'host'], `${adminHost} is not a loopback address: set admin.token (or admin.tokens) so the admin API cannot be used by anyone who reaches the port`)
  }
  if (new Set(tokens.map((x) => x.token)).size < tokens.length) report(['admin', 'tokens'], 'two names share one token: the audit log could not tell who acted')
  const drain = parseDuration(String(data.shutdown?.drainDelay ?? DEFAULTS.shutdown.drainDelay))
  const cap = parseDuration(String(data.shutdown?.timeout ?? DEFAULTS.shutdown.timeout))
  if (drain !== undefined && cap !== undefined && drain >= cap) {
    report(['shutdown', 'drainDelay'], `must be shorter than shutdown.timeout (${data.shutdown?.timeout ?? DEFAULTS.shutdown.timeout}), which also has to cover finishing requests in flight`)
  }
  const listenPort = data.listen?.port ?? DEFAULTS.listen.port
  const adminPort = data.admin?.port ?? DEFAULTS.admin.port
  if (listenPort === adminPort && listenPort !== 0) report(['admin', 'port'], `must differ from listen.port (${listenPort})`)

  checkUnleash(data, report)

  if (!Array.isArray(data.routes)) return
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
    // The rule paths of a compare block, from every list that has the right shape (the schema reports the rest).
    if (isObject(r.compare)) {
      const c = r.compare
      const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined)
      const arrays = isObject(c.arrays)
        ? Object.fromEntries(Object.entries(c.arrays).filter(([, m]) => m === 'unordered' || (isObject(m) && typeof m.key === 'string'))) as Record<string, 'unordered' | { key: string }>
        : undefined
      const found: [(string | number)[], string][] = []
      compileCompare({ ignore: strings(c.ignore), redact: strings(c.redact), arrays }, found)
      for (const [where, message] of found) report(['routes', i, 'compare', ...where], message)
    }
    const path = isObject(r.match) ? r.match.path : undefined
    if (typeof path !== 'string') return
    const pattern = parsePattern(path)
    if (typeof pattern === 'string') report(['routes', i, 'match', 'path'], pattern)
    else if (validateRoute(r)) {
      rules.push({ name: r.name, methods: r.match.methods === undefined ? null : new Set(r.match.methods), pattern })
      index.push(i)
    }
  })
  for (const p of checkRoutes(rules)) report(['routes', index[p.index] as number, p.field], p.message.replace(/routes\[(\d+)\]/g, (_, j: string) => `routes[${index[Number(j)]}]`))
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

/** `default:production.abc…` → `production`; undefined for a token of another shape. */
export function tokenEnvironment(token: string): string | undefined {
  return /^[^:.\s]+:([^.\s]+)\./.exec(token)?.[1]
}

/** admin.token (as `admin`) and admin.tokens, empty values left out (`${TOKEN:-}` unset means none). */
function adminTokens(admin: Partial<NonNullable<RawConfig['admin']>> | undefined): AdminToken[] {
  const out: AdminToken[] = []
  if (typeof admin?.token === 'string' && admin.token !== '') out.push({ name: 'admin', token: admin.token })
  if (isObject(admin?.tokens)) {
    for (const [name, token] of Object.entries(admin.tokens)) if (typeof token === 'string' && token !== '') out.push({ name, token })
  }
  return out
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/* ---------- validated data → Config ---------- */

function build(raw: RawConfig, file: string): Config {
  const upstreams: Record<string, UpstreamConfig> = {}
  for (const [name, u] of Object.entries(raw.upstreams)) {
    const url = new URL(u.url)
    upstreams[name] = {
      name,
      origin: url.origin,
      authority: url.host,
      timeoutMs: ms(u.timeout ?? DEFAULTS.upstream.timeout),
      connectTimeoutMs: ms(u.connectTimeout ?? DEFAULTS.upstream.connectTimeout),
      bodyTimeoutMs: ms(u.bodyTimeout ?? DEFAULTS.upstream.bodyTimeout),
      connections: u.connections ?? DEFAULTS.upstream.connections,
      maxQueue: u.maxQueue ?? DEFAULTS.upstream.maxQueue,
      hostHeader: u.hostHeader ?? DEFAULTS.upstream.hostHeader
    }
  }
  const backends = { ...DEFAULTS.backends, ...raw.backends }
  const sticky = parseSticky(raw.sticky)
  const routes = raw.routes.map((r) => toRule(r, parsePattern(r.match.path) as PathPattern, sticky, backends))
  const side = raw.default ?? DEFAULTS.default
  const defaultRoute: RouteRule = {
    name: DEFAULT_ROUTE,
    methods: null,
    pattern: { source: '/*', segments: [], prefix: true },
    new: side === 'new' ? 100 : 0,
    flag: null,
    shadow: 0,
    shadowWrites: false,
    compare: compileCompare(undefined),
    sticky,
    backends
  }
  const limits = raw.limits ?? {}
  return {
    file,
    listen: { host: raw.listen?.host ?? DEFAULTS.listen.host, port: raw.listen?.port ?? DEFAULTS.listen.port },
    admin: {
      host: raw.admin?.host ?? DEFAULTS.admin.host,
      port: raw.admin?.port ?? DEFAULTS.admin.port,
      tokens: adminTokens(raw.admin)
    },
    upstreams,
    routes,
    defaultRoute,
    trustedHops: raw.trustedHops ?? DEFAULTS.trustedHops,
    exposeBackend: raw.exposeBackend ?? DEFAULTS.exposeBackend,
    state: raw.state === undefined ? undefined : resolve(dirname(file), raw.state),
    limits: {
      bodyBytes: bytes(limits.bodySize ?? DEFAULTS.limits.bodySize),
      bodyBufferBytes: bytes(limits.bodyBuffer ?? DEFAULTS.limits.bodyBuffer),
      headerBytes: bytes(limits.headerSize ?? DEFAULTS.limits.headerSize),
      headTimeoutMs: ms(limits.headTimeout ?? DEFAULTS.limits.headTimeout),
      requestTimeoutMs: ms(limits.requestTimeout ?? DEFAULTS.limits.requestTimeout),
      bodyIdleTimeoutMs: ms(limits.bodyIdleTimeout ?? DEFAULTS.limits.bodyIdleTimeout),
      sendTimeoutMs: ms(limits.sendTimeout ?? DEFAULTS.limits.sendTimeout),
      keepAliveTimeoutMs: ms(limits.keepAliveTimeout ?? DEFAULTS.limits.keepAliveTimeout)
    },
    shadow: {
      maxInFlight: raw.shadow?.maxInFlight ?? DEFAULTS.shadow.maxInFlight,
      timeoutMs: ms(raw.shadow?.timeout ?? DEFAULTS.shadow.timeout),
      maxBodyBytes: bytes(raw.shadow?.maxBodySize ?? DEFAULTS.shadow.maxBodySize),
      samples: raw.shadow?.samples ?? DEFAULTS.shadow.samples
    },
    shutdown: {
      drainDelayMs: ms(raw.shutdown?.drainDelay ?? DEFAULTS.shutdown.drainDelay),
      timeoutMs: ms(raw.shutdown?.timeout ?? DEFAULTS.shutdown.timeout)
    },
    log: { level: raw.log?.level ?? DEFAULTS.log.level },
    unleash: raw.unleash === undefined ? undefined : buildUnleash(raw.unleash, file, raw.state)
  }
}

function buildUnleash(u: NonNullable<RawConfig['unleash']>, file: string, state: string | undefined): UnleashConfig {
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
    refreshIntervalMs: ms(u.refreshInterval ?? DEFAULTS.unleash.refreshInterval),
    environment: u.environment,
    bootstrap: u.bootstrap === undefined ? undefined : here(u.bootstrap),
    backupPath,
    syncTimeoutMs: ms(u.syncTimeout ?? DEFAULTS.unleash.syncTimeout),
    admin: a === undefined
      ? undefined
      : {
          url: a.url ?? u.url,
          token: a.token,
          project: a.project ?? DEFAULTS.unleash.project,
          environment: a.environment ?? (tokenEnvironment(u.token) as string)
        }
  }
}

function toRule(r: RawRoute, pattern: PathPattern, sticky: StickySpec, backends: Backends): RouteRule {
  return {
    name: r.name,
    methods: r.match.methods === undefined ? null : new Set(r.match.methods),
    pattern,
    new: r.new ?? 0,
    flag: r.flag ?? null,
    shadow: r.shadow ?? 0,
    shadowWrites: r.shadowWrites ?? false,
    compare: compileCompare(r.compare),
    sticky: r.sticky === undefined ? sticky : parseSticky(r.sticky),
    backends: r.backends ?? backends
  }
}

/** `header:X-User-Id` → { kind: 'header', name: 'x-user-id' } (header names are case-insensitive). */
export function parseSticky(spec: string): StickySpec {
  if (spec === 'ip') return { kind: 'ip' }
  const colon = spec.indexOf(':')
  const kind = spec.slice(0, colon) as 'header' | 'cookie' | 'query'
  const name = spec.slice(colon + 1)
  return { kind, name: kind === 'header' ? name.toLowerCase() : name }
}

const ms = (d: string): number => parseDuration(d) as number
const bytes = (s: string | number): number => parseSize(s) as number

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
