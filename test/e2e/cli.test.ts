import { createServer } from 'node:net'
import { join } from 'node:path'
import { readdir, readFile, rename, writeFile } from 'node:fs/promises'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { admin, audit } from '../helpers/admin.js'
import { closedPort, held, startUpstream } from '../helpers/upstream.js'
import { CLI, ROOT, listening, run } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

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

/** A copy of routes.yaml with a state file beside it holding `state`, an upstream, and the env to start it. */
async function withStateFile(t: Test, state: string) {
  const dir = t.testdir()
  const legacy = await startUpstream(t, 'legacy')
  const config = join(dir, 'routes.yaml')
  await writeFile(config, (await readFile(join(ROOT, 'routes.yaml'), 'utf8')).replace('exposeBackend: true', 'exposeBackend: true\nstate: ./state.json'))
  await writeFile(join(dir, 'state.json'), state)
  const env = { FICUS_PORT: '0', FICUS_ADMIN_PORT: '0', LEGACY_URL: legacy.url, NEW_URL: legacy.url, FICUS_LOG_LEVEL: 'info', FICUS_DRAIN_DELAY: '0s' }
  return { dir, config, env }
}

t.test('ficus start with a corrupt state file exits 1 and says how to reset it', async (t) => {
  const { config, env } = await withStateFile(t, 'not json')
  const refused = run(t, CLI, ['start', '--config', config], env)
  t.equal(await refused.exitCode(), 1)
  t.match(refused.stdout, /state\.json: is not valid JSON.*--reset-state.*"code":"FICUS_ERR_STATE_INVALID"/)
  t.notMatch(refused.stdout, /ficus listening/)
})

t.test('ficus start --reset-state moves a corrupt state file aside, audits it and starts', async (t) => {
  const { dir, config, env } = await withStateFile(t, 'not json')
  const reset = run(t, CLI, ['start', '--config', config, '--reset-state'], env)
  const { admin: adminUrl } = await listening(reset)
  t.match(reset.stdout + reset.stderr, /--reset-state: the unreadable state file was moved aside/)
  t.match((await readdir(dir)).join(' '), /state\.json\.reset-\d{4}-/)
  t.match((await audit(adminUrl))[0], { action: 'reset-state', detail: /state\.json\.reset-/ })
  reset.child.kill('SIGTERM')
  t.equal(await reset.exitCode(), 0)
})

t.test('ficus start --reset-state keeps a valid state file: a flag left in a unit file must not discard rollbacks', async (t) => {
  const valid = '{"version": 1, "routes": {"orders": {"new": 0}}}'
  const { dir, config, env } = await withStateFile(t, valid)
  const keep = run(t, CLI, ['start', '--config', config, '--reset-state'], env)
  t.match(await keep.waitFor(/"msg":"ficus listening"/), /--reset-state: the state file is valid and is kept/)
  t.equal(await readFile(join(dir, 'state.json'), 'utf8'), valid)
  keep.child.kill('SIGTERM')
  t.equal(await keep.exitCode(), 0)
})

t.test('SIGTERM: readiness off at once, traffic served through the drain delay, in-flight requests finish, exit 0', async (t) => {
  const slowReport = held((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(`done ${req.url ?? ''}`) }, (req) => req.url === '/api/reports/slow')
  const legacy = await startUpstream(t, 'legacy', slowReport.handler)
  const next = await startUpstream(t, 'new') // reports are shadowed to new: a copy must not take the held answer
  const p = run(t, CLI, ['start', '--config', 'routes.yaml'], {
    FICUS_PORT: '0', FICUS_ADMIN_PORT: '0', LEGACY_URL: legacy.url, NEW_URL: next.url, FICUS_LOG_LEVEL: 'info', FICUS_DRAIN_DELAY: '1s'
  })
  const { traffic, admin: adminUrl } = await listening(p)
  const slow = request(`${traffic}/api/reports/slow`)
  await legacy.arrived(1, { message: 'the slow report did not reach legacy' })
  p.child.kill('SIGTERM')
  await p.waitFor(/"msg":"stopping"/, { message: 'ficus did not log "stopping" after SIGTERM' })
  const ready = await admin(adminUrl, 'GET', '/readyz')
  t.equal(ready.status, 503, 'readiness is off at once')
  t.same(ready.body, { status: 'draining' })
  const during = await request(`${traffic}/api/reports/daily`)
  t.equal(during.statusCode, 200, 'still served during the drain delay')
  t.equal(during.headers.connection, 'close', 'and told to reconnect elsewhere')
  await during.body.dump()
  slowReport.release()
  const r = await waitFor(slow, { message: 'the request in flight did not finish once released' })
  t.equal(r.statusCode, 200)
  t.equal(await r.body.text(), 'done /api/reports/slow', 'the request in flight finished')
  t.equal(await p.exitCode(), 0)
  t.match(p.stdout, /"msg":"stopped"/)
})

t.test('a second signal exits at once', async (t) => {
  const legacy = await startUpstream(t, 'legacy', () => { /* never answers */ })
  const p = run(t, CLI, ['start', '--config', 'routes.yaml'], {
    FICUS_PORT: '0', FICUS_ADMIN_PORT: '0', LEGACY_URL: legacy.url, NEW_URL: legacy.url, FICUS_LOG_LEVEL: 'info', FICUS_DRAIN_DELAY: '20s'
  })
  const { traffic } = await listening(p)
  request(`${traffic}/api/reports/daily`).catch(() => {})
  await legacy.arrived(1, { message: 'the request to hang did not reach legacy' })
  p.child.kill('SIGTERM')
  await p.waitFor(/"msg":"stopping"/, { message: 'ficus did not log "stopping" after SIGTERM' })
  p.child.kill('SIGINT')
  t.equal(await p.exitCode({ timeoutMs: 10_000, message: 'ficus did not exit at once on a SIGINT after the SIGTERM: it waits for the 20 s drain delay' }), 1, 'a SIGINT after the SIGTERM did not wait for the 20 s drain delay')
})

t.test('ficus start reloads routes.yaml when it changes and on SIGHUP; an invalid file is rejected', async (t) => {
  const dir = t.testdir()
  const legacy = await startUpstream(t, 'legacy')
  const next = await startUpstream(t, 'new')
  const config = join(dir, 'routes.yaml')
  const original = await readFile(join(ROOT, 'routes.yaml'), 'utf8')
  await writeFile(config, original)
  const p = run(t, CLI, ['start', '--config', config], {
    FICUS_PORT: '0', FICUS_ADMIN_PORT: '0', LEGACY_URL: legacy.url, NEW_URL: next.url, FICUS_LOG_LEVEL: 'info', FICUS_DRAIN_DELAY: '0s'
  })
  const { traffic } = await listening(p)
  const servedBy = async (): Promise<unknown> => {
    const r = await request(`${traffic}/api/reports/daily`)
    await r.body.dump()
    return r.headers['x-ficus-backend']
  }
  t.equal(await servedBy(), 'legacy')

  // An editor's save: write a new file and rename it over the old one.
  await writeFile(`${config}.tmp`, original.replace(/(name: reports[\s\S]*?new: )0/, '$1100'))
  await rename(`${config}.tmp`, config)
  await p.waitFor(/"why":"file changed".*"msg":"config reloaded"/, { message: 'routes.yaml renamed over: no reload logged' })
  t.equal(await servedBy(), 'new', 'the changed file is in effect')

  await writeFile(config, original)
  const reloads = (p.stdout.match(/"msg":"config reloaded"/g) ?? []).length
  p.child.kill('SIGHUP')
  await p.waitFor(/"why":"SIGHUP".*"msg":"config reloaded"/, { message: 'SIGHUP: no reload logged' })
  t.ok((p.stdout.match(/"msg":"config reloaded"/g) ?? []).length > reloads)
  t.equal(await servedBy(), 'legacy')

  await writeFile(config, original.replace('new: 25', 'new: 250'))
  p.child.kill('SIGHUP')
  const rejected = await p.waitFor(/"msg":"config reload rejected; the running config stays"/, { message: 'SIGHUP with an invalid file: no rejection logged' })
  t.match(rejected, /routes\[1\]\.new: must be <= 100/)
  t.equal(await servedBy(), 'legacy', 'still serving the last good config')
  p.child.kill('SIGTERM')
  t.equal(await p.exitCode(), 0)
})
