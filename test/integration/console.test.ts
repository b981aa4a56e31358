import t from 'tap'
import { admin, audit } from '../helpers/admin.js'
import { startTestFicus } from '../helpers/ficus.js'
import { startUpstream } from '../helpers/upstream.js'

/**
 * The console's sign-in and what a signed-in browser may do through the admin API
 * (docs/console.md): an HttpOnly, SameSite=Strict cookie; every change carries the session's
 * CSRF token; a viewer token reads and cannot change; the page is served by Ficus on the
 * admin port only, with a policy that lets it load nothing from elsewhere.
 */

async function setup (t: Parameters<typeof startUpstream>[0]) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  return startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    admin: { host: '127.0.0.1', port: 0, tokens: { alice: 'alice-secret-token', vera: { token: 'vera-secret-token', role: 'viewer' } } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0 }]
  })
}

const cookieOf = (setCookie: string | string[] | undefined): string => String(Array.isArray(setCookie) ? setCookie[0] : setCookie).split(';')[0] as string

t.test('sign in: a session cookie (HttpOnly, SameSite=Strict) and a CSRF token; a wrong token is refused and audited', async (t) => {
  const f = await setup(t)
  const bad = await admin(f, 'POST', '/console/session', { json: { token: 'nope' } })
  t.match(bad, { status: 401, body: { code: 'FICUS_ERR_UNAUTHORIZED' } })
  t.notOk(bad.headers['set-cookie'], 'no cookie for a wrong token')
  t.match((await audit(f, '', { token: 'alice-secret-token' }))[0], { action: 'refused', detail: /console sign-in/ })
  const ok = await admin(f, 'POST', '/console/session', { json: { token: 'alice-secret-token' } })
  t.match(ok, { status: 200, body: { who: 'alice', role: 'operator', csrf: /^[\w-]{40,}$/ } })
  const set = String(ok.headers['set-cookie'])
  t.match(set, /^ficus_console=[\w-]{40,}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200$/)
  const cookie = cookieOf(ok.headers['set-cookie'])
  t.match(await admin(f, 'GET', '/console/session', { headers: { cookie } }), { status: 200, body: { who: 'alice', csrf: ok.body.csrf } })
  t.match(await admin(f, 'GET', '/console/session'), { status: 401 }, 'no cookie: not signed in')
  t.match(await admin(f, 'POST', '/console/session', { body: 'token=alice-secret-token', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), { status: 415 }, 'a form cannot sign in')
})

t.test('a signed-in browser reads with its cookie; a change needs the CSRF token too, and is audited under the token\'s name', async (t) => {
  const f = await setup(t)
  const s = await admin(f, 'POST', '/console/session', { json: { token: 'alice-secret-token' } })
  const cookie = cookieOf(s.headers['set-cookie'])
  t.equal((await admin(f, 'GET', '/admin/routes', { headers: { cookie } })).status, 200)
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 5 }, headers: { cookie } }), { status: 403, body: { code: 'FICUS_ERR_CSRF' } })
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 5 }, headers: { cookie, 'x-ficus-csrf': 'forged' } }), { status: 403, body: { code: 'FICUS_ERR_CSRF' } })
  const done = await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 5, reason: 'from the console' }, headers: { cookie, 'x-ficus-csrf': String(s.body.csrf) } })
  t.equal(done.status, 200, done.text)
  const entries = await audit(f, '', { token: 'alice-secret-token' })
  t.match(entries[0], { action: 'set', who: 'alice', route: 'orders', after: { new: 5 }, reason: 'from the console' })
  t.ok(entries.some((e) => e.action === 'refused' && /CSRF/.test(e.detail ?? '')), 'the refusals are audited')
  // Signed out: the cookie no longer works.
  t.equal((await admin(f, 'DELETE', '/console/session', { headers: { cookie, 'x-ficus-csrf': String(s.body.csrf) } })).status, 204)
  t.equal((await admin(f, 'GET', '/admin/routes', { headers: { cookie } })).status, 401)
})

t.test('a viewer token reads, and cannot change: through the API or the console', async (t) => {
  const f = await setup(t)
  t.equal((await admin(f, 'GET', '/admin/routes', { token: 'vera-secret-token' })).status, 200)
  t.match(await admin(f, 'POST', '/admin/rollback', { json: {}, token: 'vera-secret-token' }), { status: 403, body: { code: 'FICUS_ERR_FORBIDDEN', detail: /vera.*viewer/ } })
  const s = await admin(f, 'POST', '/console/session', { json: { token: 'vera-secret-token' } })
  t.match(s.body, { who: 'vera', role: 'viewer' })
  const cookie = cookieOf(s.headers['set-cookie'])
  t.match(await admin(f, 'PATCH', '/admin/routes/orders', { json: { new: 50 }, headers: { cookie, 'x-ficus-csrf': String(s.body.csrf) } }), { status: 403, body: { code: 'FICUS_ERR_FORBIDDEN' } })
  t.equal((await admin(f, 'GET', '/admin/routes', { token: 'alice-secret-token' })).body.routes instanceof Array, true)
  t.match((await audit(f, '', { token: 'alice-secret-token' })).filter((e) => e.action === 'refused').map((e) => e.detail), [/vera is a viewer/, /vera is a viewer/])
})

t.test('the page: served on the admin port with a policy of its own origin only; the traffic port proxies /console like any path', async (t) => {
  const f = await setup(t)
  for (const [path, type] of [['/console', /^text\/html/], ['/console/app.js', /^text\/javascript/], ['/console/app.css', /^text\/css/]] as const) {
    const r = await admin(f, 'GET', path)
    t.equal(r.status, 200, path)
    t.match(r.headers['content-type'], type)
    t.match(r.headers['content-security-policy'], /default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'/)
    t.equal(r.headers['x-frame-options'], 'DENY')
    t.notMatch(r.text, /https?:\/\//, `${path} names no other origin`)
  }
  const page = await admin(f, 'GET', '/console')
  t.notMatch(page.text, /<script>|<style|\son[a-z]+=/, 'no inline script or style, no event attribute')
  let bytes = 0
  for (const path of ['/console', '/console/app.js', '/console/app.css']) bytes += Buffer.byteLength((await admin(f, 'GET', path)).text)
  t.ok(bytes < 32 * 1024, `the whole console is ${bytes} bytes, under 32 KiB`)
  const traffic = await f.fetch('/console')
  t.equal(traffic.headers['x-served-by'], 'legacy', 'on the traffic port, /console is the application\'s own path')
})
