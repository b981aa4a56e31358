import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { request } from 'undici'
import { parseDocument } from 'yaml'
import { isLoopback } from '../../src/config/cross-check.js'
import { protectRefs } from '../../src/config/expand-env.js'
import { loadConfig, parseConfig } from '../../src/config/load-config.js'
import { parseDuration } from '../../src/config/units.js'
import { admin } from '../helpers/admin.js'
import { buildContext } from '../helpers/docker-context.js'
import { performBuild } from '../helpers/docker-build.js'
import { readDockerfile, type Dockerfile } from '../helpers/dockerfile.js'
import { ROOT, run } from '../helpers/spawn.js'
import { freePorts, startUpstream } from '../helpers/upstream.js'

// Two npm installs and a tsc run: ~35 s alone on 2 cores, longer beside the other test files.
t.setTimeout(240_000)

const exec = promisify(execFile)
const TOKEN = 'test-admin-token'
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; devDependencies: Record<string, string> }

/** The CMD's --config path, and the file of the repository that a COPY puts there. */
function configOf(df: Dockerfile): { path: string; source: string } {
  const path = df.image.configPath
  const runtime = df.stages.at(-1)
  const copy = runtime?.steps.find((s) => s.keyword === 'COPY' && s.flags.from === undefined && s.args.split(/\s+/).at(-1) === path)
  if (copy === undefined) throw new Error(`no COPY puts a file at ${path}, the CMD's --config`)
  return { path, source: join(ROOT, copy.args.split(/\s+/)[0] as string) }
}

/** The health check's URL, from the code it runs. */
function healthUrl(df: Dockerfile): URL {
  const code = df.image.healthcheck?.cmd.join(' ') ?? ''
  return new URL(/https?:\/\/[^'"`\s)]+/.exec(code)?.[0] ?? 'none:')
}

/** The health check's command run as Docker would: killed past the HEALTHCHECK's --timeout (Docker's default 30 s). */
async function healthcheckExit(df: Dockerfile, args: readonly string[]): Promise<number> {
  const timeout = parseDuration(df.image.healthcheck?.flags.timeout ?? '30s') ?? 30_000
  return exec(process.execPath, [...args], { timeout }).then(() => 0, (err: { code?: number }) => err.code ?? -1)
}

/** The Dockerfile, its image, and the config the image starts with (with the env a deployment gives it). */
async function imageAndConfig() {
  const df = await readDockerfile()
  const { path, source } = configOf(df)
  const config = await loadConfig(source, { FICUS_ADMIN_TOKEN: TOKEN, LEGACY_URL: 'http://legacy.internal:8080' })
  return { df, image: df.image, path, config }
}

t.test('the image: built and run on one base, pinned to a Node release we test on, on Debian slim', async (t) => {
  const df = await readDockerfile()
  t.same(df.stages.map((s) => s.name), ['build', 'runtime'], 'a build stage and the runtime stage')
  const bases = new Set(df.stages.map((s) => s.image))
  t.equal(bases.size, 1, 'both stages on one base: what is built is what runs')
  const [base] = bases
  const version = /^node:(\d+)\.(\d+)\.(\d+)-bookworm-slim$/.exec(base as string)
  t.ok(version, `${base} is pinned to a Node release, on Debian slim`)
  const [, major, minor, patch] = (version ?? []).map(Number)
  const [wantMajor, wantMinor, wantPatch] = (/>=(\d+)\.(\d+)\.(\d+)/.exec(pkg.engines.node) ?? []).slice(1).map(Number)
  t.ok(major === wantMajor && ((minor as number) > (wantMinor as number) || (minor === wantMinor && (patch as number) >= (wantPatch as number))), `${base}: Node ${wantMajor}, the runtime we test on, at least engines ${pkg.engines.node}`)
  t.equal(Number(process.versions.node.split('.')[0]), major, 'the build steps below run on the image\'s Node major (this machine\'s node)')
})

t.test('the image runs ficus start as a non-root user, node as PID 1, stopped with SIGTERM', async (t) => {
  const { image } = await imageAndConfig()
  t.ok(image.user !== undefined && !/^(root|0)(:|$)/.test(image.user), `runs as a non-root user (${image.user})`)
  t.equal(image.stopSignal, 'SIGTERM', 'docker stop sends what Ficus drains on')
  t.equal(image.cmd[0], 'node', 'exec form, node is PID 1 and gets the signal itself')
  t.same(image.cmd.slice(1, 3), ['dist/src/cli.js', 'start'], 'ficus start')
})

t.test('the image\'s config is in /etc/ficus: both ports EXPOSEd and beyond the container, the admin token from FICUS_ADMIN_TOKEN', async (t) => {
  const { image, path, config } = await imageAndConfig()
  t.match(path, /^\/etc\/ficus\//, 'the config lives in /etc/ficus (mount a directory there to replace it)')
  t.same([...image.expose].sort(), [config.listen.port, config.admin.port].sort(), 'EXPOSE: the traffic and admin ports of the config')
  t.notOk(isLoopback(config.listen.host), 'traffic listens beyond the container')
  t.notOk(isLoopback(config.admin.host), 'admin too, for Prometheus in another container')
  t.same(config.admin.tokens.map((x) => x.token), [TOKEN], 'the admin token comes from FICUS_ADMIN_TOKEN')
})

t.test('the image\'s health check asks /healthz on the admin port, with node', async (t) => {
  const { df, image, config } = await imageAndConfig()
  const health = healthUrl(df)
  t.equal(health.pathname, '/healthz', 'the health check asks /healthz (alive), not /readyz')
  t.equal(Number(health.port), config.admin.port, 'the health check asks the admin port')
  t.equal(image.healthcheck?.cmd[0], 'node', 'slim has no curl: node asks')
})

t.test('the image keeps its state file on a VOLUME', async (t) => {
  const { image, config } = await imageAndConfig()
  t.ok(config.state !== undefined && image.volumes.includes(posix.dirname(config.state)), `the state file (${config.state}) is on a VOLUME (${image.volumes.join(', ')})`)
})

t.test('the build steps, performed without Docker, give an image that serves, checks healthy and stops on SIGTERM', async (t) => {
  const started = performance.now()
  const df = await readDockerfile()
  const { image } = df
  const files = await buildContext(ROOT)
  t.same(files.filter((f) => /(^|\/)(node_modules|\.git|dist|\.tap)\//.test(f)), [], 'the build context holds no installed, built or git files')
  t.ok(files.includes('src/cli.ts'), 'and holds the sources')

  const dir = await mkdtemp(join(tmpdir(), 'ficus-image-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const npmCache = (await exec('npm', ['config', 'get', 'cache'])).stdout.trim()
  const built = await performBuild(df, { dir: ROOT, files }, dir, npmCache)
  const buildSeconds = (performance.now() - started) / 1000
  t.comment(`build steps: ${built.timings.join('; ')}`)

  // What the runtime stage holds: the build's output and production dependencies, nothing else.
  const app = built.host('runtime', '.')
  t.same((await readdir(app)).sort(), ['dist', 'node_modules', 'package-lock.json', 'package.json'], 'the app directory holds no sources')
  t.ok(existsSync(join(built.host('build', '.'), 'node_modules', 'typescript')), 'the build stage had the dev dependencies (tsc)')
  const devFound = Object.keys(pkg.devDependencies).filter((d) => existsSync(join(app, 'node_modules', d)))
  t.same(devFound, [], 'no dev dependency in the runtime node_modules')
  const hidden = JSON.parse(await readFile(join(app, 'node_modules', '.package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
  t.same(Object.entries(hidden.packages).filter(([, p]) => p.dev === true).map(([name]) => name), [], 'npm installed no package marked dev')
  t.ok(existsSync(join(app, 'dist', 'src', 'cli.js')) && existsSync(join(app, 'dist', 'demo', 'serve-backend.js')), 'the proxy and the demo backends are built')

  const { path } = configOf(df)
  const hostConfig = built.host('runtime', path)
  // ${…} references are not YAML everywhere (inside { … }): parsed as the loader does, put back after.
  const text = await readFile(hostConfig, 'utf8')
  const inImage = parseConfig(text, hostConfig, { FICUS_ADMIN_TOKEN: TOKEN, LEGACY_URL: 'http://legacy.internal:8080' })
  const state = inImage.state ?? '(no state file)'
  const refs = protectRefs(text)
  const doc = parseDocument(refs.text)
  t.ok(built.chowned.includes(`${image.user ?? '?'}:${image.user ?? '?'} ${posix.dirname(state)}`), `the state directory belongs to ${image.user} (${built.chowned.join('; ')})`)

  // Start the CMD as the container would, with the image's ports and paths mapped to this machine.
  const legacy = await startUpstream(t, 'legacy')
  const [traffic, adminPort] = await freePorts(2) as [number, number]
  const adminInImage = inImage.admin.port
  doc.setIn(['listen', 'port'], traffic)
  doc.setIn(['admin', 'port'], adminPort)
  doc.setIn(['state'], built.host('runtime', state))
  await writeFile(hostConfig, refs.refs.reduce((text, ref) => text.replace(ref.placeholder, ref.original), doc.toString()))
  const args = image.cmd.slice(2).map((a) => (a.startsWith('/') ? built.host('runtime', a) : a))
  const ficus = run(t, image.cmd[1] as string, args, { ...image.env, FICUS_ADMIN_TOKEN: TOKEN, LEGACY_URL: legacy.url }, { cwd: app, cleanEnv: true })
  await ficus.waitFor(/"msg":"ficus listening"/, { message: 'the image\'s CMD did not log "ficus listening"' })
  const healthcheck = (image.healthcheck?.cmd ?? []).slice(1).map((a) => a.replace(`:${adminInImage}/`, `:${adminPort}/`))
  t.equal(await healthcheckExit(df, healthcheck), 0, 'HEALTHCHECK passes')

  const r = await request(`http://127.0.0.1:${traffic}/api/orders/7`, { headers: { 'x-user-id': 'alice' } })
  t.equal(r.statusCode, 200, 'traffic is served')
  t.match(await r.body.json(), { served: 'legacy', url: '/api/orders/7' }, 'the traffic port reaches legacy')

  const rollback = async (token?: string): Promise<number> =>
    (await admin(`http://127.0.0.1:${adminPort}`, 'POST', '/admin/rollback', { json: { reason: 'image test' }, token })).status
  t.equal(await rollback(), 401, 'the admin API wants the token')
  t.equal(await rollback(TOKEN), 200, 'and takes it')
  t.ok(existsSync(built.host('runtime', state)), 'the change was written to the state file on the volume')

  ficus.child.kill(image.stopSignal as NodeJS.Signals)
  await ficus.waitFor(/"msg":"stopping"/, { message: `the image's CMD did not log "stopping" on ${image.stopSignal}` })
  t.equal((await admin(`http://127.0.0.1:${adminPort}`, 'GET', '/readyz')).status, 503, 'draining: readiness off')
  t.equal(await ficus.exitCode(), 0, `exit 0 on ${image.stopSignal}`)
  t.equal(await healthcheckExit(df, healthcheck), 1, 'HEALTHCHECK fails once Ficus is gone')
  t.comment(`image build steps ${buildSeconds.toFixed(1)} s, whole test ${((performance.now() - started) / 1000).toFixed(1)} s`)
})
