import { mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import t from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { admin } from '../helpers/admin.js'
import { startTestFicus } from '../helpers/ficus.js'
import { load, rampDoc, rampUntil, rampUpstreams, startRamp } from '../helpers/ramp-rig.js'
import { ROOT } from '../helpers/spawn.js'
import { startUpstream } from '../helpers/upstream.js'

/**
 * The console in a real headless Chromium (Debian's `chromium`, driven by playwright-core),
 * against a real Ficus and real upstreams: sign in, see the routes, change a share and see
 * the next request follow, roll back, the history; a viewer cannot change; a change without
 * the CSRF token is refused; no request leaves the admin port; each side's traffic; a ramp's
 * decisions with their gates; axe-core finds no accessibility violation in any view.
 * Screenshots of each view go to test-artifacts/console/ (not committed).
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test-artifacts', 'console')

/** One Chromium for the file (each test opens its own context: its own cookies and pages), closed at its end. */
let browserOnce: Promise<Browser> | null = null
async function launch (): Promise<Browser> {
  if (browserOnce === null) {
    mkdirSync(SHOTS, { recursive: true })
    browserOnce = chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    t.teardown(async () => (await browserOnce)?.close())
  }
  return browserOnce
}

async function setup (t: Parameters<typeof startUpstream>[0]) {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const f = await startTestFicus(t, {
    upstreams: { legacy: { url: legacy.url }, new: { url: next.url } },
    admin: { host: '127.0.0.1', port: 0, tokens: { alice: 'alice-secret-token', vera: { token: 'vera-secret-token', role: 'viewer' } } },
    routes: [{ name: 'orders', match: { path: '/orders/*' }, new: 0, shadow: 100 }, { name: 'reports', match: { path: '/reports/*' }, new: 100 }]
  })
  return { f, browser: await launch() }
}

/** A page that records every request it makes. */
async function open (browser: Browser, url: string): Promise<{ page: Page; requests: string[] }> {
  const context = await browser.newContext()
  t.teardown(async () => context.close().catch(() => {})) // before the browser, or after it (then already closed)
  const page = await context.newPage()
  const requests: string[] = []
  page.on('request', (r) => { requests.push(r.url()) })
  await page.goto(`${url}/console`)
  return { page, requests }
}

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** What axe-core finds against WCAG 2.1 A and AA and its best practices, one line each. Evaluated by the driver, not loaded by the page: the page's policy stays as it is. */
async function violations (page: Page): Promise<string[]> {
  return page.evaluate<string[]>(`(async () => { ${AXE}; const r = await axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }); return r.violations.map((v) => v.id + ': ' + v.help + ' at ' + v.nodes.map((n) => n.target.join(' ')).join(', ')) })()`)
}

async function signIn (page: Page, token: string): Promise<void> {
  await page.getByLabel('Admin token').fill(token)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('table', { name: /Every route/ }).getByRole('row', { name: /orders/ }).waitFor()
}

t.test('an operator signs in, sees the routes, changes a share (the next request follows), rolls back, and reads the history', async (t) => {
  const { f, browser } = await setup(t)
  for (let i = 0; i < 5; i++) await f.fetch(`/reports/${i}`, { headers: { 'x-user-id': `r${i}` } })
  const { page, requests } = await open(browser, f.adminUrl)
  await page.screenshot({ path: join(SHOTS, 'sign-in.png') })
  await signIn(page, 'alice-secret-token')
  await page.getByText('Signed in as alice (operator)').waitFor()
  const orders = page.getByRole('row', { name: /orders/ })
  await orders.getByRole('cell', { name: 'shadow', exact: true }).waitFor()
  // Each side's traffic: reports is all new, and served 5 requests without an error.
  const reports = page.getByRole('row', { name: /reports/ })
  const cells = await reports.getByRole('cell').allTextContents()
  t.match(cells[1], /^100 %\nactual 100\.0 %$/, 'configured and actual share of new')
  t.equal(cells[3], 'no requests', 'legacy: none')
  t.match(cells[4], /^[\d.]+\/s, 5 req\n0\.0 % errors\np50 [\d.]+ ms, p99 -$/, 'new: rate, requests, errors, p50 (no p99 from 5 answers)')
  t.equal(cells[7], '-', 'no sync: not a dual route')
  // More traffic: the cell is updated in place, not rebuilt (a screen reader keeps its place).
  const newCell = await reports.getByRole('cell').nth(4).elementHandle()
  for (let i = 5; i < 10; i++) await f.fetch(`/reports/${i}`, { headers: { 'x-user-id': `r${i}` } })
  await reports.getByRole('cell', { name: /, 10 req/ }).waitFor()
  if (newCell === null) throw new Error('no cell')
  t.ok(await newCell.evaluate((td: { isConnected: boolean; textContent: string | null }) => td.isConnected && /, 10 req/.test(td.textContent ?? '')), 'the same cell, updated')
  await page.screenshot({ path: join(SHOTS, 'routes.png'), fullPage: true })

  await orders.getByRole('button', { name: 'Change' }).click()
  const dialog = page.getByRole('dialog', { name: 'Change orders' })
  await dialog.getByLabel('new', { exact: true }).fill('100')
  t.match(await dialog.locator('#confirm-what').textContent(), /new 0 %, shadow 100 % → new 100 %, shadow 100 %/, 'the dialog shows before → after')
  await dialog.getByLabel(/Reason/).fill('canary from the console')
  await page.screenshot({ path: join(SHOTS, 'change.png') })
  await dialog.getByRole('button', { name: 'Confirm' }).click()
  await page.getByRole('status').getByText('orders: new 100 %, shadow 100 %').waitFor()
  t.equal((await f.fetch('/orders/1', { headers: { 'x-user-id': 'u1' } })).headers['x-served-by'], 'new', 'the next request goes to new')
  await orders.getByRole('cell', { name: 'new primary' }).waitFor()

  await orders.getByRole('button', { name: 'Roll back' }).click()
  const back = page.getByRole('dialog', { name: 'Roll back orders' })
  await back.getByLabel(/Reason/).fill('errors')
  await back.getByRole('button', { name: 'Confirm' }).click()
  await page.getByRole('status').getByText('orders rolled back: new 0 %').waitFor()
  t.equal((await f.fetch('/orders/1', { headers: { 'x-user-id': 'u1' } })).headers['x-served-by'], 'legacy', 'rolled back: legacy answers')

  await page.getByRole('button', { name: 'History' }).click()
  const history = page.getByRole('table', { name: /audit log/ })
  await history.getByRole('row', { name: /alice rollback orders/ }).waitFor()
  t.ok(await history.getByRole('row', { name: /alice set orders new 0 → 100 %.*canary from the console/ }).isVisible(), 'the change, by alice, with its reason')
  await page.screenshot({ path: join(SHOTS, 'history.png'), fullPage: true })

  // A change without the CSRF token, from the page itself (its cookie goes along): refused.
  const forged = await page.evaluate(async () => {
    const r = await fetch('/admin/rollback', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    return { status: r.status, body: await r.json() as { code: string } }
  })
  t.match(forged, { status: 403, body: { code: 'FICUS_ERR_CSRF' } })
  const origin = new URL(f.adminUrl).origin
  t.same(requests.filter((u) => new URL(u).origin !== origin), [], 'no request left the admin port')
})

t.test('a viewer sees the routes and has no way to change them; the API refuses if it tries', async (t) => {
  const { f, browser } = await setup(t)
  const { page } = await open(browser, f.adminUrl)
  await signIn(page, 'vera-secret-token')
  await page.getByText('Signed in as vera (viewer)').waitFor()
  t.equal(await page.getByRole('button', { name: 'Change' }).count(), 0, 'no Change button')
  t.equal(await page.getByRole('button', { name: /Roll back/ }).count(), 0, 'no Roll back button')
  await page.screenshot({ path: join(SHOTS, 'viewer.png'), fullPage: true })
  const tried = await page.evaluate(async () => {
    const s = await (await fetch('/console/session')).json() as { csrf: string }
    const r = await fetch('/admin/rollback', { method: 'POST', headers: { 'content-type': 'application/json', 'x-ficus-csrf': s.csrf }, body: '{}' })
    return { status: r.status, body: await r.json() as { code: string } }
  })
  t.match(tried, { status: 403, body: { code: 'FICUS_ERR_FORBIDDEN' } })
  t.equal((await f.fetch('/reports/1', { headers: { 'x-user-id': 'u1' } })).headers['x-served-by'], 'new', 'nothing changed')
})

t.test('a wrong token is refused on the page, said in its status line', async (t) => {
  const { f, browser } = await setup(t)
  const { page } = await open(browser, f.adminUrl)
  await page.getByLabel('Admin token').fill('not-a-token')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('status').getByText(/A valid admin token is required.*FICUS_ERR_UNAUTHORIZED/).waitFor()
  t.ok(await page.getByLabel('Admin token').isVisible(), 'still at the sign-in form')
})

t.test('divergences: per route the fields that differ, a sample side by side with the differing path marked, and a curl for each side', async (t) => {
  const { f, browser } = await setup(t)
  // The test upstreams answer with their own name: every shadowed read of orders differs in body.served.
  await f.fetch('/orders/7?page=2', { headers: { 'x-user-id': 'u1' } })
  await f.shadowIdle()
  const { page } = await open(browser, f.adminUrl)
  await signIn(page, 'alice-secret-token')
  await page.getByRole('button', { name: 'Divergences' }).click()
  const row = page.getByRole('table', { name: /Shadow comparisons per route/ }).getByRole('row', { name: /orders/ })
  await row.getByRole('cell', { name: /body\.served \(1, changed\)/ }).waitFor()
  await row.getByRole('button', { name: 'Show samples of orders' }).click()
  const sample = page.locator('article.sample').first()
  await sample.getByRole('heading', { name: /GET \/orders\/7\?page=2 at .*: legacy 200 in .* ms, new 200 in .* ms \(legacy answered\)/ }).waitFor()
  t.equal(await sample.locator('mark', { hasText: 'body.served' }).count(), 1, 'the differing path is marked')
  t.match(await sample.getByRole('row', { name: /body\.served/ }).textContent(), /changed"legacy""new"/, 'each side\'s value, side by side')
  const upstreams = (await (await fetch(`${f.adminUrl}/admin/routes`, { headers: { authorization: 'Bearer alice-secret-token' } })).json() as { routes: { name: string; upstreams: { legacy: string; new: string } }[] }).routes.find((r) => r.name === 'orders')!.upstreams
  t.equal(await sample.getByLabel('curl on legacy').textContent(), `curl -si -X GET '${upstreams.legacy}/orders/7?page=2'`)
  t.equal(await sample.getByLabel('curl on new').textContent(), `curl -si -X GET '${upstreams.new}/orders/7?page=2'`)
  await page.screenshot({ path: join(SHOTS, 'divergences.png'), fullPage: true })
})

t.test('the keyboard alone: to a route\'s Change button, its dialog, Escape closes it; focus stays put while the table refreshes', async (t) => {
  const { f, browser } = await setup(t)
  const { page } = await open(browser, f.adminUrl)
  await signIn(page, 'alice-secret-token')
  const focused = async (): Promise<unknown> => page.evaluate('document.activeElement?.dataset?.key ?? document.activeElement?.id ?? null')
  for (let i = 0; i < 30 && (await focused()) !== 'orders:Change'; i++) await page.keyboard.press('Tab')
  t.equal(await focused(), 'orders:Change', 'Tab reaches the Change button of orders')
  // A refresh that changes the table (a change by someone else) rebuilds it: focus comes back to the same button.
  await fetch(`${f.adminUrl}/admin/routes/reports`, { method: 'PATCH', headers: { authorization: 'Bearer alice-secret-token', 'content-type': 'application/json' }, body: '{"shadow":10}' })
  await page.getByRole('row', { name: /reports/ }).getByRole('cell', { name: '10 %' }).waitFor()
  t.equal(await focused(), 'orders:Change', 'still focused after the refresh')
  await page.keyboard.press('Enter')
  const dialog = page.getByRole('dialog', { name: 'Change orders' })
  await dialog.waitFor()
  t.equal(await focused(), 'field-new', 'the dialog opens on its first field')
  await page.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden' })
  t.equal((await f.fetch('/orders/1', { headers: { 'x-user-id': 'u1' } })).headers['x-served-by'], 'legacy', 'nothing changed')
})

t.test('history: a ramp\'s decisions with each gate\'s verdict and why; a filter keeps only them', async (t) => {
  const rig = await rampUpstreams(t)
  const f = await startTestFicus(t, rampDoc(rig, t.testdir()))
  const browser = await launch()
  t.equal((await admin(f, 'PATCH', '/admin/routes/items', { json: { shadow: 50, reason: 'before the ramp' } })).status, 200)
  await startRamp(t, f)
  const traffic = load(f.url)
  t.teardown(async () => traffic.stop())
  await rampUntil(f, (v) => (v.step ?? 0) >= 2, 'advance once')
  await traffic.stop()
  const { page } = await open(browser, f.adminUrl)
  // No admin token configured: the console is open too, signed in with an empty token.
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText('Signed in as local (operator)').waitFor()
  // The routes view after the ramp's first steps: both sides served, each with its numbers.
  const items = page.getByRole('row', { name: /items/ })
  await items.getByRole('cell', { name: /running, step 2\/6/ }).waitFor()
  const cells = await items.getByRole('cell').allTextContents()
  t.match(cells[1], /^5 % \(override\)\nactual \d+\.\d %$/, 'the ramp\'s share, and the actual one')
  t.match(cells[3], /req\n0\.0 % errors\np50 /, 'legacy\'s traffic')
  t.match(cells[4], /req\n0\.0 % errors\np50 /, 'new\'s traffic')
  await page.screenshot({ path: join(SHOTS, 'routes-ramp.png'), fullPage: true })
  await page.getByRole('button', { name: 'History' }).click()
  const history = page.getByRole('table', { name: /audit log/ })
  const advance = history.getByRole('row', { name: /ramp-advance items running, step 1 of 6, new 1 % → running, step 2 of 6, new 5 %/ })
  await advance.waitFor()
  const gates = advance.getByRole('list', { name: 'the gates it rested on' })
  t.match(await gates.textContent(), /divergence: pass [\d.]+ % of [\d,]+ shadow comparisons diverged: its upper bound .* is under 5\.0 %errors: pass/, 'each gate with its verdict and why')
  await page.getByLabel('Only the ramps\' decisions').check()
  await advance.waitFor()
  t.equal(await history.getByRole('row', { name: /before the ramp/ }).count(), 0, 'the change by hand is filtered out')
  t.ok(await history.getByRole('row', { name: /ramp-start items/ }).isVisible(), 'the start is kept')
  t.same(await violations(page), [], 'axe-core: no violation in the gates\' lists')
  await page.screenshot({ path: join(SHOTS, 'history-ramp.png'), fullPage: true })
})

t.test('accessibility: axe-core finds no violation in the routes view, the change dialog, the divergences with a sample, and the history', async (t) => {
  const { f, browser } = await setup(t)
  await f.fetch('/orders/7', { headers: { 'x-user-id': 'u1' } })
  await f.shadowIdle()
  const { page } = await open(browser, f.adminUrl)
  const check = async (what: string): Promise<void> => { t.same(await violations(page), [], `${what}: no violation`) }
  await check('sign-in')
  await signIn(page, 'alice-secret-token')
  await check('routes')
  await page.getByRole('row', { name: /orders/ }).getByRole('button', { name: 'Change' }).click()
  await page.getByRole('dialog', { name: 'Change orders' }).waitFor()
  await check('the change dialog')
  await page.keyboard.press('Escape')
  await page.getByRole('button', { name: 'Divergences' }).click()
  await page.getByRole('button', { name: 'Show samples of orders' }).click()
  await page.locator('article.sample').first().waitFor()
  await check('divergences with a sample')
  await page.getByRole('button', { name: 'History' }).click()
  await page.getByRole('table', { name: /audit log/ }).waitFor()
  await check('history')
})
