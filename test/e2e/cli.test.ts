import { createServer } from 'node:net'
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { request } from 'undici'
import { admin } from '../helpers/admin.js'
import { closedPort, startUpstream } from '../helpers/upstream.js'
import { CLI, ROOT, listening, run } from '../helpers/spawn.js'

const fixture = (name: string): string => join('test', 'fixtures', 'routes', name)

t.test('ficus check: 0 and a summary for a good file', async (t) => {
  const p = run(t, CLI, ['check', 'routes.yaml'])
  t.equal(await p.exitCode(), 0)
  t.equal(p.stdout, 'routes.yaml: OK (6 routes, 2 upstreams)\n')
})

t.test('ficus check: settings that cannot apply are listed as warnings, and the file is still OK (0)', async (t) => {
  const file = fixture('valid-warnings.yaml')
  const p = run(t, CLI, ['check', file])
  t.equal(await p.exitCode(), 0)
  const lines = p.stdout.trim().split('\n')
  t.equal(lines[0], `${file}: OK (2 routes, 2 upstreams), 6 warnings`)
  t.equal(lines[1], `  warning: ${file}:12:19: routes[0].shadowWrites: has no effect: the route matches only reads (GET, HEAD), which are shadowed anyway`)
  t.equal(lines.length, 7)
})

t.test('ficus check: 1 and every problem with its place for a bad file', async (t) => {
  const p = run(t, CLI, ['check', fixture('invalid-many.yaml')])
  t.equal(await p.exitCode(), 1)
  const lines = p.stderr.trim().split('\n')
  t.equal(lines[0], `${fixture('invalid-many.yaml')}: 14 problems`)
  t.equal(lines.length, 15)
  t.ok(lines.includes(`  ${fixture('invalid-many.yaml')}:15:10: routes[1].new: must be <= 100`))
})

t.test('usage errors exit 2 and print the usage', async (t) => {
  for (const args of [[], ['check'], ['frobnicate'], ['start', 'extra'], ['--nope']]) {
    const p = run(t, CLI, args)
    t.equal(await p.exitCode(), 2, args.join(' ') || '(no arguments)')
    t.match(p.stderr, /Usage: ficus <command>/)
  }
})

t.test('--version prints the version and --help the commands, exit 0', async (t) => {
  const v = run(t, CLI, ['--version'])
  t.equal(await v.exitCode(), 0)
  t.match(v.stdout, /^\d+\.\d+\.\d+\n$/)
  const h = run(t, CLI, ['--help'])
  t.equal(await h.exitCode(), 0)
  t.match(h.stdout, /check <file>/)
})

t.test('ficus start with a bad file exits 1 without listening', async (t) => {
  const port = await closedPort()
  const p = run(t, CLI, ['start', '--config', fixture('invalid-many.yaml')], { PORT: String(port), FICUS_LOG_LEVEL: 'info' })
  t.equal(await p.exitCode(), 1)
  t.match(p.stderr, /13 problems/, 'PORT is set, so the port itself is valid')
  t.notMatch(p.stdout + p.stderr, /listening/, 'no listener was ever opened (it would log "listening" at info)')
})

t.test('ficus start serves, logs JSON lines, and exits 0 on SIGTERM', async (t) => {
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const p = run(t, CLI, ['start', '--config', 'routes.yaml'], {
    FICUS_PORT: '0', FICUS_ADMIN_PORT: '0', LEGACY_URL: legacy.url, NEW_URL: next.url, FICUS_LOG_LEVEL: 'info', FICUS_DRAIN_DELAY: '0s'
  })
  const { traffic, admin: adminUrl } = await listening(p)
  const r = await request(`${traffic}/api/reports/daily`)
  t.equal(r.statusCode, 200)
  t.same(await r.body.json(), { served: 'legacy', method: 'GET', url: '/api/reports/daily', headers: legacy.requests[0]?.headers, body: '' })
  t.equal((await admin(adminUrl, 'GET', '/readyz')).status, 200)
  await p.waitFor(/"msg":"request"/)
  p.child.kill('SIGTERM')
  t.equal(await p.exitCode(), 0)
  t.match(p.stdout, /"msg":"stopped"/)
})

t.test('ficus start on a port in use exits 1 and says so', async (t) => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const port = (blocker.address() as { port: number }).port
  const p = run(t, CLI, ['start', '--config', 'routes.yaml'], { FICUS_PORT: String(port), FICUS_ADMIN_PORT: '0' })
  t.equal(await p.exitCode(), 1)
  t.match(p.stdout, /address already in use/)
})

t.test('the README starts with the two commands', async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const firstBlock = /```(?:sh|bash)?\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  t.match(firstBlock, /npm ci && npm run demo/)
  t.match(firstBlock, /npm test/)
})
