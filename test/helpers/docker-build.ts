import { execFile } from 'node:child_process'
import { chmod, cp, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { promisify } from 'node:util'
import { parseEnv, type Dockerfile, type Instruction } from './dockerfile.js'

/**
 * Performs a Dockerfile's build steps without Docker, on this machine's node and npm: each
 * stage's filesystem is a directory (`/app` of stage `build` is `<dir>/build/app`), COPY
 * copies from the build context (or an earlier stage's directory), RUN runs `sh -c` in the
 * mapped WORKDIR with the stage's ENV, absolute paths in its command mapped the same way.
 *
 * Where the host must differ from an image build, it says so here:
 * - RUN's environment is this process's (its PATH, HOME, proxies and certificates, needed to
 *   reach the registry), without what a test runner or a parent npm adds (NODE_OPTIONS,
 *   TAP_*, npm_*, NODE_ENV), plus the stage's ENV;
 * - `--mount=type=cache,target=/root/.npm` (npm's cache, kept out of the image) is this
 *   machine's npm cache, read with `prefer-offline`: the lockfile pins every version and
 *   checksum, so that changes the speed only;
 * - `chown` cannot name the image's users here: it is recorded (`chowned`), not applied;
 * - RUN runs as this machine's user, so a RUN after a (non-root) USER is refused: Docker would
 *   run it as that user, and a step that needs root would fail there and pass here;
 * - EXPOSE, VOLUME (created empty), STOPSIGNAL, HEALTHCHECK and CMD are metadata.
 */

const exec = promisify(execFile)

export interface Built {
  /** The host directory that plays `/` of a stage. */
  root(stage: string): string
  /** A path of the image's filesystem (absolute, or relative to the final WORKDIR) on the host. */
  host(stage: string, path: string): string
  /** The final WORKDIR of each stage. */
  readonly workdir: Readonly<Record<string, string>>
  /** Every `chown` a RUN asked for: `owner path` (the path as the image sees it). */
  readonly chowned: readonly string[]
  /** Seconds each step took, `stage line KEYWORD`. */
  readonly timings: readonly string[]
}

export async function performBuild(df: Dockerfile, context: { dir: string; files: readonly string[] }, dir: string, npmCache: string): Promise<Built> {
  const workdir: Record<string, string> = {}
  const root = (stage: string): string => join(dir, 'stages', stage)
  const host = (stage: string, path: string): string => join(root(stage), posix.resolve(workdir[stage] ?? '/', path))
  const chowned: string[] = []
  const timings: string[] = []
  const shims = join(dir, 'shims')
  await mkdir(shims, { recursive: true })
  const chownLog = join(dir, 'chown.log')
  await writeFile(join(shims, 'chown'), `#!/bin/sh\necho "$*" >> '${chownLog}'\n`)
  await chmod(join(shims, 'chown'), 0o755)

  for (const stage of df.stages) {
    workdir[stage.name] = '/'
    const env: Record<string, string> = {}
    let user = 'root'
    await mkdir(root(stage.name), { recursive: true })
    for (const step of stage.steps) {
      const started = performance.now()
      const fail = (why: string): never => { throw new Error(`Dockerfile:${step.line}: ${step.keyword} ${step.args}: ${why}`) }
      switch (step.keyword) {
        case 'WORKDIR':
          workdir[stage.name] = posix.resolve(workdir[stage.name] as string, step.args)
          await mkdir(host(stage.name, '.'), { recursive: true })
          break
        case 'ENV': Object.assign(env, parseEnv(step)); break
        case 'USER': user = step.args; break
        case 'VOLUME': for (const v of step.args.split(/\s+/)) await mkdir(host(stage.name, v), { recursive: true }); break
        case 'COPY': await copy(step, stage.name, df.stages.slice(0, df.stages.indexOf(stage)).map((s) => s.name), fail); break
        case 'RUN': {
          if (!/^(root|0)(:|$)/.test(user)) fail(`runs as ${user} in Docker, as this machine's user here: put it before USER`)
          // Absolute paths wherever a shell word, an option's value or a redirection starts (not /dev/…).
          const mapped = step.args.replace(/(^|[\s=<>'"])(\/(?!dev\/)[^\s;&|<>'"]*)/g, (_, pre: string, p: string) => `${pre}${host(stage.name, p)}`)
          const runEnv: Record<string, string> = { ...inherited(), ...env, PATH: `${shims}:${process.env.PATH ?? ''}` }
          for (const [flag, value] of Object.entries(step.flags)) {
            if (flag !== 'mount' || value.replace(/,sharing=\w+/, '') !== 'type=cache,target=/root/.npm') fail(`the flag --${flag}=${value} is not one this test knows`)
            runEnv.npm_config_cache = npmCache
            runEnv.npm_config_prefer_offline = 'true'
          }
          await mkdir(host(stage.name, '.'), { recursive: true })
          await exec('/bin/sh', ['-c', mapped], { cwd: host(stage.name, '.'), env: runEnv, maxBuffer: 64 * 1024 * 1024 })
            .catch((err: { stdout?: string; stderr?: string; message: string }) => fail(`failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`))
          break
        }
        default: break // metadata (see above)
      }
      timings.push(`${stage.name} ${step.line} ${step.keyword} ${((performance.now() - started) / 1000).toFixed(1)} s`)
    }
  }
  const log = await readFile(chownLog, 'utf8').catch(() => '')
  for (const line of log.split('\n').filter((l) => l !== '')) {
    // Back to the image's paths: `node:node <dir>/stages/runtime/var/lib/ficus` → `node:node /var/lib/ficus`.
    chowned.push(df.stages.reduce((l, s) => l.split(root(s.name)).join(''), line))
  }
  return { root, host, workdir, chowned, timings }

  /** COPY [--from=stage] src… dest: a directory's contents, a file as a file (into dest/ when it ends with `/`). */
  async function copy(step: Instruction, stage: string, earlier: string[], fail: (why: string) => never): Promise<void> {
    for (const flag of Object.keys(step.flags)) if (flag !== 'from') fail(`the flag --${flag} is not one this test knows`)
    const parts = step.args.split(/\s+/)
    const dest = parts.pop() as string
    if (parts.length === 0) fail('needs a source and a destination')
    if (parts.length > 1 && !dest.endsWith('/')) fail('with several sources the destination must end with /')
    const from = step.flags.from
    if (from !== undefined && !earlier.includes(from)) fail(`--from=${from} names no earlier stage`)
    for (const src of parts) {
      if (/[*?[]/.test(src)) fail('wildcards are not supported by this test')
      const into = (name: string): string => (dest.endsWith('/') ? posix.join(dest, name) : dest)
      if (from !== undefined) {
        const source = join(root(from), posix.resolve('/', src)) // relative to the stage's root, not its WORKDIR
        const isDir = await stat(source).then((st) => st.isDirectory(), (err: Error) => fail(`not in stage ${from}: ${err.message}`))
        await cp(source, host(stage, isDir ? dest : into(posix.basename(src))), { recursive: true })
        continue
      }
      const rel = posix.normalize(src).replace(/^(\.\/|\/)+/, '').replace(/\/$/, '')
      const file = context.files.includes(rel)
      const below = context.files.filter((f) => f.startsWith(`${rel}/`))
      if (!file && below.length === 0) fail(`${src} is not in the build context (missing, or excluded by .dockerignore)`)
      if (file) await copyFile(rel, host(stage, into(posix.basename(rel))))
      for (const f of below) await copyFile(f, join(host(stage, dest), f.slice(rel.length + 1)))
    }
  }

  async function copyFile(rel: string, to: string): Promise<void> {
    await mkdir(posix.dirname(to), { recursive: true })
    await cp(join(context.dir, rel), to)
  }
}

/** This process's environment less what a test runner or a parent npm run adds. */
function inherited(): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(NODE_OPTIONS|NODE_ENV|TAP(_.*)?|npm_.*)$/i.test(k)) out[k] = v
  }
  return out
}
