import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT } from './spawn.js'

/**
 * The repository's Dockerfile, read the way the tests need it: the build steps in order
 * (test/e2e/dockerfile.test.ts performs them without Docker) and the runtime image's
 * promises (ports, user, signal, health check, command), which the deployment files must
 * agree with (test/e2e/deploy.test.ts). An instruction or a form it does not know is an
 * error rather than skipped, so the tests cannot drift from the file.
 */

export interface Instruction {
  readonly line: number
  /** Upper case: FROM, RUN, … */
  readonly keyword: string
  /** Leading `--name=value` flags (COPY, RUN, HEALTHCHECK). */
  readonly flags: Readonly<Record<string, string>>
  /** The rest of the instruction, continuation lines joined. */
  readonly args: string
}

export interface Stage {
  readonly name: string
  readonly image: string
  readonly steps: readonly Instruction[]
}

/** What the last stage (the image that runs) declares. */
export interface Image {
  readonly user: string | undefined
  readonly env: Readonly<Record<string, string>>
  readonly expose: readonly number[]
  readonly volumes: readonly string[]
  readonly stopSignal: string | undefined
  readonly healthcheck: { readonly flags: Readonly<Record<string, string>>; readonly cmd: readonly string[] } | undefined
  readonly cmd: readonly string[]
  /** The CMD's `--config` file (where the image's routes.yaml is read). */
  readonly configPath: string
}

export interface Dockerfile {
  readonly stages: readonly Stage[]
  readonly image: Image
}

const KNOWN = new Set(['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'VOLUME', 'STOPSIGNAL', 'HEALTHCHECK', 'CMD'])
const FLAGGED = new Set(['COPY', 'RUN', 'HEALTHCHECK'])

export async function readDockerfile(file = join(ROOT, 'Dockerfile')): Promise<Dockerfile> {
  return parseDockerfile(await readFile(file, 'utf8'))
}

export function parseDockerfile(text: string): Dockerfile {
  const stages: { name: string; image: string; steps: Instruction[] }[] = []
  for (const ins of instructions(text)) {
    const fail = (why: string): never => { throw new Error(`Dockerfile:${ins.line}: ${ins.keyword} ${why}`) }
    if (!KNOWN.has(ins.keyword)) fail('is not an instruction the tests know: teach test/helpers/dockerfile.ts and the build-steps test')
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)\s+AS\s+([a-z][a-z0-9_.-]*)$/i.exec(ins.args) ?? fail('needs the form `FROM image AS name`')
      stages.push({ name: m[2] as string, image: m[1] as string, steps: [] })
    } else {
      const stage = stages.at(-1) ?? fail('comes before the first FROM')
      stage.steps.push(ins)
    }
  }
  const last = stages.at(-1)
  if (last === undefined) throw new Error('Dockerfile: no FROM')
  return { stages, image: imageOf(last) }
}

function imageOf(stage: Stage): Image {
  let user: string | undefined
  let stopSignal: string | undefined
  let healthcheck: Image['healthcheck']
  let cmd: string[] = []
  const env: Record<string, string> = {}
  const expose: number[] = []
  const volumes: string[] = []
  for (const s of stage.steps) {
    switch (s.keyword) {
      case 'USER': user = s.args; break
      case 'ENV': Object.assign(env, parseEnv(s)); break
      case 'EXPOSE':
        for (const p of s.args.split(/\s+/)) {
          const port = /^(\d+)(\/tcp)?$/.exec(p)?.[1]
          if (port === undefined) throw new Error(`Dockerfile:${s.line}: EXPOSE ${p}: only TCP ports are known to the tests`)
          expose.push(Number(port))
        }
        break
      case 'VOLUME': volumes.push(...s.args.split(/\s+/)); break
      case 'STOPSIGNAL': stopSignal = s.args; break
      case 'HEALTHCHECK': {
        const m = /^CMD\s+(\[.*\])$/.exec(s.args)
        if (m === null) throw new Error(`Dockerfile:${s.line}: HEALTHCHECK needs the exec form CMD ["…"]`)
        healthcheck = { flags: s.flags, cmd: execForm(m[1] as string, s.line) }
        break
      }
      case 'CMD': cmd = execForm(s.args, s.line); break
    }
  }
  const at = cmd.indexOf('--config')
  const configPath = at < 0 ? undefined : cmd[at + 1]
  if (configPath === undefined) throw new Error('Dockerfile: the CMD names no --config file')
  return { user, env, expose, volumes, stopSignal, healthcheck, cmd, configPath }
}

/** `ENV A=1 B=2`: unquoted pairs only; variables are not expanded. */
export function parseEnv(ins: Instruction): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of ins.args.split(/\s+/)) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=([^"'$\\]*)$/.exec(pair)
    if (m === null) throw new Error(`Dockerfile:${ins.line}: ENV needs unquoted NAME=value pairs without $ (got ${pair})`)
    out[m[1] as string] = m[2] as string
  }
  return out
}

/**
 * The exec form `["node", "…"]`. The shell form is refused: it would make sh PID 1, and sh
 * does not pass SIGTERM on to Ficus, so `docker stop` would wait and then kill it.
 */
function execForm(args: string, line: number): string[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(args)
  } catch {
    throw new Error(`Dockerfile:${line}: needs the exec form ["executable", "arg", …], got ${args}`)
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((x) => typeof x === 'string')) throw new Error(`Dockerfile:${line}: the exec form is a JSON array of strings`)
  return parsed
}

/** Instructions with their first line, comments dropped and `\` continuations joined. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1
    let line = lines[i] as string
    if (/^\s*(#|$)/.test(line)) continue
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + (lines[++i] as string).trim()
    const m = /^\s*(\S+)\s+(.*\S)\s*$/.exec(line)
    if (m === null) throw new Error(`Dockerfile:${first}: an instruction needs arguments: ${line}`)
    const keyword = (m[1] as string).toUpperCase()
    let args = m[2] as string
    const flags: Record<string, string> = {}
    if (FLAGGED.has(keyword)) {
      for (let f = /^--([a-z-]+)=(\S+)\s+/.exec(args); f !== null; f = /^--([a-z-]+)=(\S+)\s+/.exec(args)) {
        flags[f[1] as string] = f[2] as string
        args = args.slice(f[0].length)
      }
    }
    out.push({ line: first, keyword, flags, args })
  }
  return out
}
