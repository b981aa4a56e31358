import { join } from 'node:path'
import { readdir, readFile, rename, writeFile } from 'node:fs/promises'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { admin, audit } from '../helpers/admin.js'
import { held, startUpstream } from '../helpers/upstream.js'
import { CLI, ROOT, listening, run } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'


/**
 * `ficus start` as a process, from the outside: state files (corrupt, reset), signals (drain,
 * a second signal), and reloads of routes.yaml. The other commands are in cli.test.ts.
 */

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
