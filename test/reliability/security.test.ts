import { randomBytes } from 'node:crypto'
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { AuditEntry } from '../../src/adapters/audit-log.js'
import type { DivergenceSample } from '../../src/adapters/divergence-store.js'
import { parseConfig } from '../../src/config/load-config.js'
import { admin, audit, routes, type AdminAnswer, type Json } from '../helpers/admin.js'
import { rolloutFlag, startFeaturesServer } from '../helpers/features-server.js'
import { sample, startTestFicus, testYaml, type TestFicus } from '../helpers/ficus.js'
import { closedPort, startUpstream, type Handler } from '../helpers/upstream.js'

/**
 * The admin API's guards and where secrets must never end up (docs/reliability.md
 * "Security": every mutation needs the token, is JSON-only, `/metrics` holds no secrets).
 * Every secret is a unique random string, so a check that finds nothing could have found it.
 */

/** A fresh, unique secret: `s3cr3t-<what>-<random hex>`. */
const secret = (what: string): string => `s3cr3t-${what}-${randomBytes(8).toString('hex')}`

const JSON_TYPE = { 'content-type': 'application/json' }

/** The routes as the admin API shows them: name, effective new/shadow and where each comes from. */
async function sharesOf(f: TestFicus, auth: Record<string, string>): Promise<unknown> {
  return (await routes(f, { headers: auth })).map((x) => ({ name: x.name, new: x.new, shadow: x.shadow }))
}

const auditOf = async (f: TestFicus, auth: Record<string, string>): Promise<AuditEntry[]> => audit(f, '?limit=1000', { headers: auth })

/** File mode bits (0o600 …). */
async function modeOf(file: string): Promise<number> {
  return (await stat(file)).mode & 0o777
}

const octal = (mode: number): string => `0${mode.toString(8)}`

/** Which of `secrets` occur in `text`. */
function found(text: string, secrets: readonly string[]): string[] {
  return secrets.filter((s) => text.includes(s))
}

/** A rig with admin.token set and a state file: the token, and the headers that carry it. */
async function tokenRig(t: Test) {
  const state = join(t.testdir(), 'state.json')
  const TOKEN = secret('admin-token')
  const r = await rig(t, { state, admin: { host: '127.0.0.1', port: 0, token: TOKEN } })
  return { ...r, state, TOKEN, auth: { authorization: `Bearer ${TOKEN}` } }
}

/** legacy and new upstreams, and Ficus with `orders` (legacy) and `rest` (new). */
async function rig(t: Test, top: Record<string, unknown> = {}) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0, shadow: 0 }, { name: 'rest', match: { path: '/*' }, new: 100 }],
    ...top
  })
  const servedBy = async (path: string): Promise<unknown> => (await f.fetch(path, { headers: { 'x-user-id': 'u1' } })).headers['x-served-by']
  return { legacy, next, f, servedBy }
}

/** The audit log's file beside the state file (README: `<name>.audit.jsonl`). */
const auditFileOf = (state: string): string => state.replace(/\.json$/, '.audit.jsonl')

/* ---------------------------------------------------------------------------------------- */

// Endpoints of src/control/admin-api.ts and sync-api.ts, the HEAD fastify adds to each GET, and paths that do not exist.
const ENDPOINTS: readonly { method: string; path: string; body?: string }[] = [
  { method: 'GET', path: '/admin/routes' },
  { method: 'HEAD', path: '/admin/routes' },
  { method: 'GET', path: '/admin/audit' },
  { method: 'GET', path: '/admin/divergences' },
  { method: 'GET', path: '/admin/divergences/summary' },
  { method: 'GET', path: '/admin/sync' },
  { method: 'GET', path: '/admin/sync/entries/1' },
  { method: 'GET', path: '/admin/ids/order/legacy/1' },
  { method: 'PATCH', path: '/admin/routes/orders', body: '{"new": 100, "reason": "intruder"}' },
  { method: 'POST', path: '/admin/rollback', body: '{"route": "rest", "reason": "intruder"}' },
  { method: 'POST', path: '/admin/rollback' },
  { method: 'POST', path: '/admin/divergences/reset', body: '{"reason": "intruder"}' },
  { method: 'POST', path: '/admin/sync/skip', body: '{"seq": 1, "reason": "intruder"}' },
  { method: 'POST', path: '/admin/sync/pause', body: '{}' },
  { method: 'PUT', path: '/admin/ids', body: '{"entity": "order", "legacy": "1", "new": "2"}' },
  { method: 'GET', path: '/admin/nothing' },
  { method: 'DELETE', path: '/admin/routes/orders' }
]
const MUTATIONS = ENDPOINTS.filter((e) => e.method !== 'GET' && e.method !== 'HEAD')

/**
 * A tokenRig after one accepted change (so there is a state file and an audit entry to
 * compare against) and then every way of presenting something other than the right token,
 * on every endpoint: what each answered, and what the state file, the audit log and the
 * routes held before.
 */
async function refusedRig(t: Test) {
  const rig = await tokenRig(t)
  const { f, state, TOKEN, auth } = rig
  const baseline = await admin(f, 'PATCH', '/admin/routes/orders', { headers: { ...auth, ...JSON_TYPE }, body: '{"shadow": 10, "reason": "baseline"}' })
  const stateBefore = await readFile(state, 'utf8')
  const auditFile = auditFileOf(state)
  const auditBefore = await readFile(auditFile, 'utf8')
  const routesBefore = await sharesOf(f, auth)

  // Same length as the token, one character changed: only a comparison of every byte refuses it.
  const sameLength = TOKEN.slice(0, -1) + (TOKEN.endsWith('0') ? '1' : '0')
  const refusals: { what: string; headers: Record<string, string>; query?: string }[] = [
    { what: 'no Authorization header', headers: {} },
    { what: 'a wrong token of the same length', headers: { authorization: `Bearer ${sameLength}` } },
    { what: 'a longer token (the right one and one more character)', headers: { authorization: `Bearer ${TOKEN}0` } },
    { what: 'a shorter token (a prefix of the right one)', headers: { authorization: `Bearer ${TOKEN.slice(0, 8)}` } },
    { what: 'an empty bearer token', headers: { authorization: 'Bearer ' } },
    { what: 'Basic with the token as the password', headers: { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` } },
    { what: 'Basic followed by the token itself', headers: { authorization: `Basic ${TOKEN}` } },
    { what: 'the token with no scheme', headers: { authorization: TOKEN } },
    { what: 'the right token followed by a second one', headers: { authorization: `Bearer ${TOKEN} ${TOKEN}` } },
    { what: 'the token in the query string', headers: {}, query: `?token=${TOKEN}&access_token=${TOKEN}` },
    { what: 'the token in a cookie', headers: { cookie: `token=${TOKEN}` } }
  ]
  const answers: { what: string; method: string; answer: AdminAnswer }[] = []
  for (const r of refusals) {
    for (const e of ENDPOINTS) {
      const headers = { ...r.headers, ...(e.body === undefined ? {} : JSON_TYPE) }
      answers.push({ what: `${e.method} ${e.path}, ${r.what}`, method: e.method, answer: await admin(f, e.method, e.path + (r.query ?? ''), { headers, body: e.body }) })
    }
  }
  return { ...rig, baseline, stateBefore, auditFile, auditBefore, routesBefore, sameLength, refusals, answers }
}

t.test('with admin.token, every /admin endpoint answers 401 to anything but the right bearer token, echoing no token', async (t) => {
  const { baseline, TOKEN, sameLength, answers } = await refusedRig(t)
  t.equal(baseline.status, 200)
  for (const { what, method, answer: a } of answers) {
    t.equal(a.status, 401, what)
    t.equal(a.headers['www-authenticate'], 'Bearer realm="ficus-admin"', `${what}: says which scheme`)
    if (method !== 'HEAD') t.equal(a.body.code, 'FICUS_ERR_UNAUTHORIZED', `${what}: code`)
    t.same(found(a.text, [TOKEN, sameLength]), [], `${what}: the answer echoes no token`)
  }
})

t.test('refused admin calls change nothing: shares, state file, traffic and metrics are as before', async (t) => {
  const { f, servedBy, state, auth, stateBefore, routesBefore } = await refusedRig(t)
  t.same(await sharesOf(f, auth), routesBefore, 'every route keeps its share')
  t.equal(await readFile(state, 'utf8'), stateBefore, 'the state file is unchanged')
  t.equal(await servedBy('/orders/1'), 'legacy', 'orders still on legacy')
  t.equal(await servedBy('/page'), 'new', 'rest was not rolled back')
  const m = await f.scrape()
  t.equal(sample(m, 'ficus_route_new_percent', { route: 'orders' }), 0)
  t.equal(sample(m, 'ficus_rollbacks_total', { route: 'rest', trigger: 'manual' }), 0)
})

t.test('refused changes are audited, in the file and the API, without the token presented; refused reads are not', async (t) => {
  const { f, auth, TOKEN, sameLength, auditFile, auditBefore, refusals } = await refusedRig(t)
  const added = (await readFile(auditFile, 'utf8')).slice(auditBefore.length).trim().split('\n').map((l) => JSON.parse(l) as AuditEntry)
  t.equal(added.length, refusals.length * MUTATIONS.length, 'one audit entry per refused change, none per refused read')
  t.ok(added.every((e) => e.who === 'unauthenticated' && e.action === 'refused' && e.route === null && e.after === undefined), 'each one a refusal that changed nothing')
  t.same([...new Set(added.map((e) => e.detail))].sort(), [...new Set(MUTATIONS.map((e) => `${e.method} ${e.path} from 127.0.0.1`))].sort(), 'naming the call and the caller, not the query')
  const entries = await auditOf(f, auth)
  t.match(entries.slice(0, added.length), added.slice().reverse(), 'GET /admin/audit shows them, newest first')
  t.same(found(await readFile(auditFile, 'utf8'), [TOKEN, sameLength]), [], 'the audit log holds no token')
})

t.test('after refusals, the right bearer token (any case of "Bearer") opens every /admin endpoint, and its changes apply, persist and are audited', async (t) => {
  const { f, servedBy, state, TOKEN, auth } = await refusedRig(t)
  // The scheme is case-insensitive, RFC 9110 §11.1.
  for (const e of ['/admin/routes', '/admin/audit', '/admin/divergences', '/admin/divergences/summary']) {
    t.equal((await admin(f, 'GET', e, { headers: auth })).status, 200, `GET ${e} with the token`)
    t.equal((await admin(f, 'GET', e, { headers: { authorization: `bearer ${TOKEN}` } })).status, 200, `GET ${e} with "bearer"`)
  }
  t.equal((await admin(f, 'HEAD', '/admin/routes', { headers: auth })).status, 200, 'HEAD /admin/routes with the token')
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { headers: { ...auth, ...JSON_TYPE }, body: '{"new": 100, "reason": "go"}' }), { status: 200, body: { route: { new: { value: 100, source: 'override' } } } })
  t.equal(await servedBy('/orders/1'), 'new', 'the change is in effect')
  t.match(await admin(f, 'POST', '/admin/rollback', { headers: { ...auth, ...JSON_TYPE }, body: '{"route": "rest"}' }), { status: 200, body: { routes: [{ name: 'rest', new: { value: 0 } }] } })
  t.equal(await servedBy('/page'), 'legacy', 'the rollback is in effect')
  t.match(JSON.parse(await readFile(state, 'utf8')), { routes: { orders: { new: 100, shadow: 10 }, rest: { new: 0 } } }, 'and persisted')
  t.match((await auditOf(f, auth)).slice(0, 2), [{ who: 'admin', action: 'rollback', route: 'rest' }, { who: 'admin', action: 'set', route: 'orders' }])
})

t.test('with admin.token, scrapers and probes need no token, and a stale one does not lock them out', async (t) => {
  const { f } = await refusedRig(t)
  for (const path of ['/metrics', '/healthz', '/readyz']) {
    t.equal((await admin(f, 'GET', path)).status, 200, `${path} without a token`)
    t.equal((await admin(f, 'GET', path, { headers: { authorization: 'Bearer stale' } })).status, 200, `${path} with a wrong token`)
  }
})

const CHANGES = [
  { method: 'PATCH', path: '/admin/routes/orders', body: '{"new": 100, "reason": "csrf"}' },
  { method: 'POST', path: '/admin/rollback', body: '{"route": "rest", "reason": "csrf"}' },
  { method: 'PUT', path: '/admin/routes/orders', body: '{"new": 100}' },
  { method: 'POST', path: '/admin/sync/pause', body: '{"reason": "csrf"}' },
  { method: 'PUT', path: '/admin/ids', body: '{"entity": "order", "legacy": "1", "new": "2"}' }
]

/** After refused bodies: nothing changed, no state written, nothing audited but refusals, traffic as before. */
async function nothingChanged(t: Test, rig: Awaited<ReturnType<typeof tokenRig>>, routesBefore: unknown): Promise<void> {
  const { f, servedBy, state, auth } = rig
  t.same(await sharesOf(f, auth), routesBefore, 'nothing changed')
  await t.rejects(stat(state), { code: 'ENOENT' }, 'no state was written')
  t.same((await auditOf(f, auth)).filter((e) => e.action !== 'refused'), [], 'no change audited')
  t.equal(await servedBy('/orders/1'), 'legacy')
  t.equal(await servedBy('/page'), 'new')
}

t.test('changes take application/json only: form, text and multipart bodies, or none typed, are refused with 415', async (t) => {
  const rig = await tokenRig(t)
  const { f, auth } = rig
  const routesBefore = await sharesOf(f, auth)
  // The three types a cross-site <form> (or a CORS "simple" request) can send, as browsers send them, and none at all.
  const types: (string | undefined)[] = [
    'text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=----ficus', undefined
  ]
  for (const c of CHANGES) {
    for (const type of types) {
      const a = await admin(f, c.method, c.path, { headers: { ...auth, ...(type === undefined ? {} : { 'content-type': type }) }, body: c.body })
      const what = `${c.method} ${c.path} as ${type ?? 'no Content-Type'}`
      t.equal(a.status, 415, what)
      t.equal(a.body.code, 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE', `${what}: code`)
      t.match(a.body.detail, type === undefined ? /no Content-Type/ : /Content-Type/, `${what}: says what was sent`)
    }
  }
  await nothingChanged(t, rig, routesBefore)
})

t.test('a change whose JSON is malformed or not an object is refused with 400 and a detail, no stack, no prototype polluted', async (t) => {
  const rig = await tokenRig(t)
  const { f, auth } = rig
  const routesBefore = await sharesOf(f, auth)
  // application/json that is not a JSON object: a 400 that says what is wrong, no stack.
  const malformed = ['{"new": 100', '{new: 100}', '{"new": 100}}', 'new=100', '', '[{"new": 100}]', '"new"', '{"__proto__": {"new": 100}}', '{"constructor": {"prototype": {"new": 100}}}']
  for (const c of CHANGES.slice(0, 2)) {
    for (const body of malformed) {
      const a = await admin(f, c.method, c.path, { headers: { ...auth, ...JSON_TYPE }, body })
      const what = `${c.method} ${c.path} with ${JSON.stringify(body)}`
      t.equal(a.status, 400, what)
      t.equal(a.body.code, 'FICUS_ERR_BAD_ADMIN_REQUEST', `${what}: code`)
      t.ok(typeof a.body.detail === 'string' && a.body.detail.length > 0, `${what}: with a detail`)
      t.notMatch(a.text, /\n\s+at /, `${what}: no stack`)
    }
  }
  t.equal(({} as Record<string, unknown>).new, undefined, 'no prototype was polluted')
  await nothingChanged(t, rig, routesBefore)
})

t.test('without a token (loopback default), a cross-site browser request cannot change anything either', async (t) => {
  // A page the operator visits can make the browser POST to http://127.0.0.1:9090 without a CORS
  // preflight: a <form> (it always sends one of the simple types, with no fields an empty body),
  // or fetch(…, { method: 'POST', mode: 'no-cors' }) / navigator.sendBeacon(…) (no body, no type).
  // Both carry an Origin header (and Sec-Fetch-Site); neither can send application/json.
  const { f, servedBy } = await rig(t)
  const routesBefore = await sharesOf(f, {})
  const attempts: { what: string; headers: Record<string, string> }[] = [
    { what: 'an empty urlencoded form post', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } },
    { what: 'an empty text/plain form post', headers: { 'content-type': 'text/plain', origin: 'https://evil.example' } },
    { what: 'an empty text/plain post, without Origin', headers: { 'content-type': 'text/plain' } },
    { what: 'an empty multipart form post', headers: { 'content-type': 'multipart/form-data; boundary=----x' } },
    { what: 'a no-cors fetch without a body', headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' } },
    { what: 'a bodiless post from a sandboxed page (Origin: null)', headers: { origin: 'null' } },
    { what: 'a bodiless post marked only by Sec-Fetch-Site', headers: { 'sec-fetch-site': 'same-site' } }
  ]
  for (const a of attempts) {
    const r = await admin(f, 'POST', '/admin/rollback', { headers: a.headers })
    t.equal(r.status, 415, `${a.what}: refused`)
    t.equal(r.body.code, 'FICUS_ERR_UNSUPPORTED_MEDIA_TYPE', `${a.what}: code`)
  }
  t.same(await sharesOf(f, {}), routesBefore, 'nothing was rolled back')
  t.equal(await servedBy('/page'), 'new')
})

t.test('without a token, what the CLI and curl send still rolls back: JSON, or no body and no Origin (ficus rollback --all)', async (t) => {
  const { f, servedBy } = await rig(t)
  t.equal((await admin(f, 'POST', '/admin/rollback', { headers: JSON_TYPE, body: '{"route": "rest"}' })).status, 200, 'JSON')
  t.equal((await admin(f, 'POST', '/admin/rollback')).status, 200, 'no body')
  t.equal(await servedBy('/page'), 'legacy')
})

t.test('no secret reaches /metrics, the logs, divergence samples, the admin API, the audit log or the state file', async (t) => {
  const dir = t.testdir()
  const state = join(dir, 'state.json')
  const S = {
    adminToken: secret('admin-token'),
    aliceToken: secret('alice-token'),
    wrongToken: secret('wrong-token'),
    adminQuery: secret('admin-query'),
    bearer: secret('bearer'),
    session: secret('session'),
    proxyAuth: secret('proxy-auth'),
    query: secret('query-token'),
    password: secret('password'),
    setCookie: secret('set-cookie'),
    keyedEmail: `${secret('email')}@corp.example`,
    unleashToken: `default:development.${secret('unleash-client')}`,
    unleashAdmin: secret('unleash-admin')
  }
  const all = Object.values(S)

  // Both sides answer with what they saw of the credentials, each a little differently, so the
  // comparison finds a difference at every secret; the route redacts those body paths.
  const answer = (name: 'legacy' | 'new'): Handler => (req, res, body) => {
    if (req.url?.startsWith('/orders/keyed') === true) {
      // Only an array keyed by a redacted field differs: its path is the comparison's first difference.
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ users: [{ email: S.keyedEmail, plan: name === 'legacy' ? 'gold' : 'free' }] }))
      return
    }
    const mark = (v: string | undefined): string | undefined => (v === undefined || name === 'legacy' ? v : `${v} (seen by new)`)
    const sent = body.length > 0 ? JSON.parse(body.toString()) as Json : null
    const payload = {
      users: [{ email: S.keyedEmail, plan: name === 'legacy' ? 'gold' : 'free' }],
      served: name,
      note: `visible-${name}`,
      seen: {
        authorization: mark(req.headers.authorization),
        cookie: mark(req.headers.cookie),
        body: sent === null ? null : { ...sent, password: mark(sent.password as string) }
      }
    }
    res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': `sid=${S.setCookie}-${name}; HttpOnly` })
    res.end(JSON.stringify(payload))
  }
  const legacy = await startUpstream(t, 'legacy', answer('legacy'))
  const next = await startUpstream(t, 'new', answer('new'))
  const dead = await closedPort()
  const features = await startFeaturesServer(t, { features: [rolloutFlag('flagged-new', 0)] }, S.unleashToken)
  const f = await startTestFicus(t, {
    admin: { host: '127.0.0.1', port: 0, token: S.adminToken, tokens: { alice: S.aliceToken } },
    state,
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url }, dead: { url: `http://127.0.0.1:${dead}` } },
    unleash: { url: features.url, appName: 'ficus-security', token: S.unleashToken, refreshInterval: '100ms', admin: { token: S.unleashAdmin } },
    routes: [
      {
        name: 'orders',
        match: { path: '/orders/*' },
        new: 0,
        shadow: 100,
        shadowWrites: true,
        sticky: 'cookie:session',
        compare: {
          headers: ['content-type', 'set-cookie'],
          arrays: { 'body.users': { key: 'email' } },
          redact: ['body.seen.authorization', 'body.seen.cookie', 'body.seen.body.password', 'body.**.email']
        }
      },
      { name: 'broken', match: { path: '/broken/*' }, new: 0, backends: { legacy: 'dead', new: 'dead' } },
      { name: 'flagged', match: { path: '/flagged/*' }, flag: 'flagged-new' }
    ]
  })
  t.ok(await f.running.ficus.flags?.whenSynchronized(5_000), 'Unleash answered with the client token')
  const alice = { authorization: `Bearer ${S.aliceToken}` }

  // Traffic carrying every kind of credential.
  const credentials = {
    authorization: `Bearer ${S.bearer}`,
    cookie: `session=${S.session}; theme=dark`,
    'proxy-authorization': `Basic ${S.proxyAuth}`
  }
  const q = `?token=${S.query}&access_token=${S.query}`
  t.equal((await f.fetch(`/orders/1${q}`, { headers: credentials })).status, 200)
  const login = await f.fetch(`/orders/login${q}`, {
    method: 'POST',
    headers: { ...credentials, 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'ada', password: S.password })
  })
  t.equal(login.status, 200)
  t.equal((await f.fetch(`/orders/keyed${q}`, { headers: credentials })).status, 200)
  t.equal((await f.fetch(`/broken/1${q}`, { headers: credentials })).status, 502, 'an upstream failure, logged at warn')
  t.equal((await f.fetch(`/flagged/1${q}`, { headers: credentials })).status, 200)
  await f.shadowIdle()

  // Admin calls: refused ones (a wrong token, a token in the query) and accepted ones.
  t.equal((await admin(f, 'PATCH', `/admin/routes/orders?token=${S.adminQuery}`, { headers: { authorization: `Bearer ${S.wrongToken}`, ...JSON_TYPE }, body: '{"new": 5}' })).status, 401)
  t.equal((await admin(f, 'POST', `/admin/rollback?token=${S.adminToken}`, { headers: JSON_TYPE, body: '{}' })).status, 401)
  t.equal((await admin(f, 'PATCH', '/admin/routes/orders', { headers: { ...alice, ...JSON_TYPE }, body: '{"shadow": 100, "reason": "keep comparing"}' })).status, 200)
  t.equal((await admin(f, 'PATCH', '/admin/routes/broken', { headers: { authorization: `Bearer ${S.adminToken}`, ...JSON_TYPE }, body: '{"new": 0, "reason": "pin"}' })).status, 200)

  // What the subtests below read: the divergence samples, and every place a secret could end up.
  const listed = await admin(f, 'GET', '/admin/divergences?limit=1000', { headers: alice })
  const samples = listed.body.samples as DivergenceSample[]
  const backup = state.replace(/\.json$/, '.unleash-backup.json')
  const places: [string, string][] = [
    ['GET /admin/divergences', listed.text],
    ['GET /admin/divergences/summary', (await admin(f, 'GET', '/admin/divergences/summary', { headers: alice })).text],
    ['GET /admin/routes', (await admin(f, 'GET', '/admin/routes', { headers: alice })).text],
    ['GET /admin/audit', (await admin(f, 'GET', '/admin/audit?limit=1000', { headers: alice })).text],
    ['/metrics', await f.scrape()],
    ['the state file', await readFile(state, 'utf8')],
    ['the audit log', await readFile(auditFileOf(state), 'utf8')],
    ['the Unleash backup', await readFile(backup, 'utf8')],
    ['the logs', f.logs.lines.filter((l) => l.msg !== 'divergence').map((l) => JSON.stringify(l)).join('\n')],
    // At debug level, one line per diverged comparison names its first difference.
    ['the divergence debug lines', f.logs.lines.filter((l) => l.msg === 'divergence').map((l) => JSON.stringify(l)).join('\n')]
  ]

  // Each subtest only reads what the traffic and the calls above left.
  t.test('the secrets were really in play: they reached the backends, all but the proxy\'s own credential', async (t) => {
    const seen = legacy.requests.find((r) => r.method === 'POST')
    t.equal(seen?.headers.authorization, `Bearer ${S.bearer}`, 'Authorization is forwarded')
    t.match(seen?.url, S.query, 'the query is forwarded unmodified')
    t.match(seen?.body.toString(), S.password, 'and the body')
    t.equal(next.requests.length, 3, 'new got a copy of the reads and of the write')
    t.ok([...legacy.requests, ...next.requests].every((r) => r.headers['proxy-authorization'] === undefined), 'Proxy-Authorization is for the proxy: never forwarded')
  })

  t.test('divergence samples are there, with every secret redacted and the rest readable', async (t) => {
    const q = '?token=[redacted]&access_token=[redacted]'
    t.same(samples.map((s) => `${s.method} ${s.path}`).sort(), [`GET /orders/1${q}`, `GET /orders/keyed${q}`, `POST /orders/login${q}`], 'every comparison diverged')
    const post = samples.find((s) => s.method === 'POST')
    const by = Object.fromEntries((post?.differences ?? []).map((d) => [d.path, d]))
    t.match(by['body.note'], { legacy: 'visible-legacy', new: 'visible-new' }, 'what is not secret stays readable (the search below would find it)')
    t.match(by['header.set-cookie'], { legacy: '[redacted]', new: '[redacted]' }, 'a credential header is always redacted')
    for (const p of ['body.seen.authorization', 'body.seen.cookie', 'body.seen.body.password']) t.match(by[p], { legacy: '[redacted]', new: '[redacted]' }, `${p} is redacted`)
    t.ok(Object.keys(by).includes('body.users[email=[redacted]].plan'), 'an array keyed by a redacted field does not name the key')
    t.same(samples.find((s) => s.path === `/orders/keyed${q}`)?.differences.map((d) => d.path), ['body.users[email=[redacted]].plan'])
    t.equal(post?.path, `/orders/login${q}`, 'the sample has the query with the token values redacted')
    t.match(post?.keyHash, /^[0-9a-f]{12}$/, 'the sticky key (the session cookie) only as a hash')
    t.match(listed.text, 'visible-legacy', 'the text searched below is the one with the samples')
  })

  t.test('the Unleash backup (flags read at a start while Unleash is down) is private', async (t) => {
    t.equal(octal(await modeOf(backup)), '0600', 'the Unleash backup (flags read at a start while Unleash is down) is private')
  })

  t.test('no secret in the admin API\'s answers, /metrics, the state file, the audit log, the Unleash backup or the logs', async (t) => {
    for (const [where, text] of places) {
      t.ok(text.length > 0, `${where}: not empty`)
      t.same(found(text, all), [], `${where}: no secret`)
    }
  })

  t.test('the logs, metrics and audit searched did record this traffic and these calls', async (t) => {
    // So the search for secrets looked at the right lines.
    const lines = f.logs.requests()
    t.same(lines.map((l) => l.path).sort(), ['/broken/1', '/flagged/1', '/orders/1', '/orders/keyed', '/orders/login'], 'one access line per request, path without query')
    t.match(lines.find((l) => l.path === '/broken/1'), { level: 'warn', outcome: 'refused' })
    t.equal(f.logs.lines.filter((l) => l.msg === 'divergence').length, 3, 'a divergence debug line per diverged comparison was searched')
    t.equal(sample(await f.scrape(), 'ficus_comparisons_total', { route: 'orders', outcome: 'diverged' }), 3)
    t.same((await auditOf(f, alice)).map((e) => e.who), ['admin', 'alice', 'unauthenticated', 'unauthenticated'], 'the audit names tokens by name only')
  })
})

t.test('an upstream URL with credentials in it is refused, and the error does not repeat them', async (t) => {
  const password = secret('upstream-password')
  const yaml = testYaml({
    upstreams: { legacy: { url: `http://ficus:${password}@127.0.0.1:1` }, new: { url: 'http://127.0.0.1:2' } }
  })
  t.throws(() => parseConfig(yaml, 'routes.yaml', {}), { code: 'FICUS_ERR_CONFIG_INVALID', message: /upstreams\.legacy\.url: must be an http/ })
  try {
    parseConfig(yaml, 'routes.yaml', {})
  } catch (err) {
    t.same(found(JSON.stringify({ message: (err as Error).message, ...(err as object) }), [password]), [], 'the message and the problems hold no password')
  }
  const unleash = testYaml({
    upstreams: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
    unleash: { url: `http://ficus:${password}@127.0.0.1:3/api`, appName: 'x', token: 't', backupPath: '/tmp/x.json' }
  })
  t.throws(() => parseConfig(unleash, 'routes.yaml', {}), { message: /unleash\.url: must be an http/ }, 'nor an Unleash URL with credentials')
})

t.test('the state file is created 0600 and stays so when rewritten; the audit log is created 0600', async (t) => {
  const dir = t.testdir()
  const state = join(dir, 'state.json')
  const audit = auditFileOf(state)
  const first = await rig(t, { state })
  t.equal(octal(await modeOf(audit)), '0600', 'the audit log is created 0600 at start')
  t.equal((await admin(first.f, 'PATCH', '/admin/routes/orders', { headers: JSON_TYPE, body: '{"new": 10, "reason": "one"}' })).status, 200)
  t.equal(octal(await modeOf(state)), '0600', 'the state file is created 0600')
  t.equal((await admin(first.f, 'POST', '/admin/rollback', { headers: JSON_TYPE, body: '{"route": "orders", "reason": "two"}' })).status, 200)
  t.equal(octal(await modeOf(state)), '0600', 'and stays 0600 when rewritten')
  t.equal(octal(await modeOf(audit)), '0600', 'the audit log too, after appends')
  t.same((await readdir(dir)).sort(), ['state.audit.jsonl', 'state.json'], 'no temporary file left behind')
})

t.test('a 0644 state file or audit log an operator (or an older version) left is made private', async (t) => {
  const dir2 = t.testdir()
  const state2 = join(dir2, 'state.json')
  await writeFile(state2, '{"version": 1, "routes": {}}\n')
  await chmod(state2, 0o644)
  const audit2 = auditFileOf(state2)
  await writeFile(audit2, '')
  await chmod(audit2, 0o644)
  const second = await rig(t, { state: state2 })
  t.equal(octal(await modeOf(audit2)), '0600', 'a 0644 audit log is made private at start')
  t.equal((await admin(second.f, 'PATCH', '/admin/routes/orders', { headers: JSON_TYPE, body: '{"new": 20}' })).status, 200)
  t.equal(octal(await modeOf(state2)), '0600', 'a 0644 state file is replaced by a 0600 one at the first change')
  t.match(JSON.parse(await readFile(state2, 'utf8')), { routes: { orders: { new: 20 } } })
})
