#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { AdminCallError, DEFAULT_ADMIN_URL, type AdminTarget } from './commands/admin-client.js'
import { auditCommand, rollbackCommand, setCommand, statusCommand } from './commands/control.js'
import { divergencesCommand, resetDivergencesCommand } from './commands/divergences.js'
import { RAMP_COMMANDS, rampActCommand, rampStatusCommand, type RampCommand } from './commands/ramp.js'
import {
  deadLettersCommand, drainCommand, idsGetCommand, idsSetCommand, pauseCommand, replayCommand, showCommand, skipCommand, syncStatusCommand,
  type Output
} from './commands/sync.js'
import { parseDuration } from './config/units.js'
import { ConfigError, formatProblem } from './config/problems.js'
import { parseWorkers } from './cluster/workers-option.js'
import { VERSION } from './version.js'

const USAGE = `Usage: ficus <command> [options]

Commands:
  start [--config <file>] [--workers N|auto] [--reset-state]
                            Run the proxy (default config: routes.yaml); --reset-state moves
                            an unreadable state file aside and starts from routes.yaml;
                            --workers N serves traffic from N processes sharing the port
                            (1..64, auto = one per CPU; default 1: a single process)
  check <file>              Validate a routes.yaml; exit 1 listing every problem (settings
                            that cannot apply are listed as warnings, exit 0)

  Talking to a running Ficus (admin API):
  status                    Routes: new %, shadow %, source, requests/s by backend, divergence
  set <route> --new N [--shadow N] [--clear] [--reason text]
                            Change a route at runtime (kept across restarts); --clear returns
                            to routes.yaml's values
  rollback <route> | --all [--reason text]
                            new: 0 for one route or every route, effective for the next request
  audit [--limit N]         Who changed what, when and why (and refused attempts)
  divergences [<route>] [--since 15m|<ISO time>|epoch]
                            How often shadowed responses differ, per route, since the route's
                            compare rules last changed (or since --since, within the last
                            hour); with a route, the fields that differ most
  verify <job> [--mode count|checksum|sample|full] [--sample N --seed S] [--ids file]
         [--resume] [--json report.json] [--max-mismatch-rate R]
                            Prove the two systems hold the same records, through their
                            own APIs (routes.yaml verify:; ficus verify --help); exit 0
                            parity, 1 differences, 2 incomplete, 3 usage
  divergences reset [<route>] [--reason text]
                            Start a route's (or every route's) divergence counts over
                            (audited; the Prometheus counters keep counting)

  Dual writes (routes with sync.mode: dual; docs/sync.md):
  sync [status]             Per route and side: writes pending, dead letters, how far behind
                            (lag); writes awaiting their primary, paused routes, the id map
  sync dead-letters [--limit N]
                            Writes that could not be delivered, oldest first
  sync show <seq>           One outbox entry: its write, headers, body, ids, why it waits
  sync replay <seq> [--reason text]
                            Deliver a dead letter again (audited)
  sync skip <seq> [--reason text]
                            Drop an entry: the other side never gets it (audited)
  sync pause [<route>] [--reason text]
  sync resume [<route>] [--reason text]
                            Hold (or release) delivery of a route, or of all; writes are still
                            recorded (audited)
  sync drain [<route>] [--timeout 30s]
                            Wait until nothing of the route (or any) is left to deliver; exit 1
                            with what is left at the timeout (dead letters are not waited for)
  ids get <entity> <legacy|new> <id>
                            The pair of an id in the id map
  ids set <entity> --legacy <id> --new <id> [--origin legacy|new] [--reason text]
                            Set a pair by hand (audited; a pair never changes once set)

  Ramps (routes with ramp: <plan>; docs/ramp.md):
  ramp [status] [<route>]   Each ramp's step, its gates and what it waits for; with a route,
                            its last decisions too
  ramp start|pause|resume|hold|abort <route> [--reason text]
                            Start a route's ramp at its first step, pause it (its share of new
                            stays), resume it, hold it at its step though its gates pass, or
                            abort it (new 0 %); audited
  ramp advance <route> --force [--reason text]
                            Move to the next step now, past the gates (audited)

Options:
  -c, --config <file>       Config file for start (or FICUS_CONFIG)
  -w, --workers <N|auto>    Traffic worker processes for start (or FICUS_WORKERS; default 1)
      --admin-url <url>     Admin API of a running Ficus (or FICUS_ADMIN_URL; default ${DEFAULT_ADMIN_URL})
      --token <token>       Admin token (or FICUS_ADMIN_TOKEN)
      --json                Machine-readable output (the admin API's answer)
      --force               ramp advance: skip the gates
  -h, --help                This help
  -v, --version             Print the version

Environment:
  FICUS_LOG_LEVEL           Overrides log.level (fatal, error, warn, info, debug, trace, silent)
  FICUS_WORKERS             Like --workers (the flag wins)
`

/** Exit codes: 0 ok, 1 invalid config, failed start or failed admin call, 2 wrong usage. */
async function cli(argv: string[]): Promise<number> {
  // `verify` talks to the upstreams, not to a running Ficus, and has options of its own (--json <file>).
  if (argv[0] === 'verify') return verify(argv.slice(1))
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        workers: { type: 'string', short: 'w' },
        'admin-url': { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        new: { type: 'string' },
        shadow: { type: 'string' },
        clear: { type: 'boolean' },
        reason: { type: 'string' },
        force: { type: 'boolean' },
        all: { type: 'boolean' },
        limit: { type: 'string' },
        since: { type: 'string' },
        timeout: { type: 'string' },
        legacy: { type: 'string' },
        origin: { type: 'string' },
        'reset-state': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' }
      }
    })
  } catch (err) {
    process.stderr.write(`ficus: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.version === true) {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const [command, ...rest] = positionals
  if (values.help === true || command === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  switch (command) {
    case 'start': {
      if (rest.length > 0) return usage(`unexpected argument: ${rest[0]}`)
      const file = values.config ?? process.env.FICUS_CONFIG ?? 'routes.yaml'
      const w = values.workers ?? process.env.FICUS_WORKERS
      const workers = w === undefined ? 1 : parseWorkers(w)
      if (typeof workers === 'string') return usage(`${values.workers === undefined ? 'FICUS_WORKERS' : '--workers'} ${workers}`)
      try {
        // Loaded here, not at the top: the control commands need none of the proxy (seconds of start-up per call on a busy machine).
        const { runFicus } = await import('./main.js')
        await runFicus(file, process.env, { resetState: values['reset-state'] === true, workers })
      } catch (err) {
        return reportConfigError(err)
      }
      return -1 // keeps running; main.ts exits
    }
    case 'check': {
      const file = rest[0] ?? values.config
      if (file === undefined) return usage('check needs a file: ficus check routes.yaml')
      try {
        const { loadConfig, warningsOf } = await import('./config/load-config.js')
        const config = await loadConfig(file)
        const warned = warningsOf(config)
        process.stdout.write(`${file}: OK (${config.routes.length} routes, ${Object.keys(config.upstreams).length} upstreams)${warned.length === 0 ? '' : `, ${warned.length} warning${warned.length === 1 ? '' : 's'}`}\n`)
        for (const w of warned) process.stdout.write(`  warning: ${formatProblem(file, w)}\n`)
        return 0
      } catch (err) {
        return reportConfigError(err)
      }
    }
    case 'status': case 'set': case 'rollback': case 'audit': case 'divergences': case 'sync': case 'ids': case 'ramp': {
      const target = { url: values['admin-url'] ?? process.env.FICUS_ADMIN_URL ?? DEFAULT_ADMIN_URL, token: values.token ?? process.env.FICUS_ADMIN_TOKEN }
      const json = values.json === true
      let run: () => Promise<string | Output>
      if (command === 'sync' || command === 'ids' || command === 'ramp') {
        const parsed = command === 'sync' ? syncCommand(target, rest, values, json) : command === 'ids' ? idsCommand(target, rest, values, json) : rampCommand(target, rest, values, json)
        if (typeof parsed === 'string') return usage(parsed)
        run = parsed
      } else if (command === 'status') {
        if (rest.length > 0) return usage(`unexpected argument: ${rest[0]}`)
        run = () => statusCommand(target, json, 1000, (ms) => new Promise((resolve) => setTimeout(resolve, ms)))
      } else if (command === 'set') {
        if (rest.length !== 1) return usage('set needs one route: ficus set <route> --new N [--shadow N] [--reason text]')
        const change: { new?: number | null; shadow?: number | null; reason?: string } = {}
        if (values.clear === true) {
          if (values.new !== undefined || values.shadow !== undefined) return usage('--clear clears both overrides; give it alone')
          change.new = null
          change.shadow = null
        }
        for (const k of ['new', 'shadow'] as const) {
          const v = values[k]
          if (v === undefined) continue
          if (!/^\d+(\.\d+)?$/.test(v)) return usage(`--${k} must be a number from 0 to 100`)
          change[k] = Number(v)
        }
        if (change.new === undefined && change.shadow === undefined) return usage('set needs --new, --shadow or --clear')
        if (values.reason !== undefined) change.reason = values.reason
        run = () => setCommand(target, rest[0] as string, change, json)
      } else if (command === 'rollback') {
        if (values.all === true ? rest.length > 0 : rest.length !== 1) return usage('rollback takes one route, or --all: ficus rollback <route> | --all [--reason text]')
        run = () => rollbackCommand(target, rest[0], values.reason, json)
      } else if (command === 'audit') {
        if (rest.length > 0) return usage(`unexpected argument: ${rest[0]}`)
        const limit = Number(values.limit ?? 20)
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return usage('--limit must be an integer from 1 to 1000')
        run = () => auditCommand(target, limit, json)
      } else if (rest[0] === 'reset') {
        if (rest.length > 2) return usage(`unexpected argument: ${rest[2]}`)
        if (values.since !== undefined) return usage('--since is for reading divergences, not for a reset')
        run = () => resetDivergencesCommand(target, rest[1], values.reason, json)
      } else {
        if (rest.length > 1) return usage(`unexpected argument: ${rest[1]}`)
        run = () => divergencesCommand(target, rest[0], json, values.since)
      }
      try {
        const done = await run()
        process.stdout.write(typeof done === 'string' ? done : done.out)
        return typeof done === 'string' ? 0 : done.code
      } catch (err) {
        if (!(err instanceof AdminCallError)) throw err
        process.stderr.write(`ficus: ${err.message}\n`)
        return 1
      }
    }
    case undefined:
      return usage('no command given')
    default:
      return usage(`unknown command: ${command}`)
  }
}

type Values = Readonly<Record<string, string | boolean | undefined>>
type Run = () => Promise<string | Output>

const text = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined)

/** A positive integer, as an outbox seq; null when it is not one. */
function seqArg(v: string | undefined): number | null {
  return v !== undefined && /^\d{1,15}$/.test(v) && Number(v) >= 1 ? Number(v) : null
}

/** `ficus sync …`: the command to run, or what is wrong with the usage. */
function syncCommand(target: AdminTarget, rest: readonly string[], values: Values, json: boolean): Run | string {
  const [sub = 'status', ...args] = rest
  const reason = text(values.reason)
  const at = (n: number, use: string): string | null => (args.length > n ? `unexpected argument: ${args[n] as string} (${use})` : null)
  switch (sub) {
    case 'status':
      return at(0, 'ficus sync status') ?? (() => syncStatusCommand(target, json))
    case 'dead-letters': {
      const limit = Number(text(values.limit) ?? 50)
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return '--limit must be an integer from 1 to 1000'
      return at(0, 'ficus sync dead-letters [--limit N]') ?? (() => deadLettersCommand(target, limit, json))
    }
    case 'show': case 'replay': case 'skip': {
      const seq = seqArg(args[0])
      if (seq === null) return `sync ${sub} needs an entry's seq, a positive integer (ficus sync dead-letters lists them): ficus sync ${sub} <seq>${args[0] === undefined ? '' : ` (got ${args[0]})`}`
      const extra = at(1, `ficus sync ${sub} <seq>`)
      if (extra !== null) return extra
      if (sub === 'show') return () => showCommand(target, String(seq), json)
      return sub === 'replay' ? () => replayCommand(target, seq, reason, json) : () => skipCommand(target, seq, reason, json)
    }
    case 'pause': case 'resume':
      return at(1, `ficus sync ${sub} [route]`) ?? (() => pauseCommand(target, sub === 'pause', args[0], reason, json))
    case 'drain': {
      const timeout = text(values.timeout)
      const ms = timeout === undefined ? 30_000 : parseDuration(timeout)
      if (ms === undefined || ms > 15 * 60_000) return '--timeout must be a duration up to 15m, like 30s or 2m'
      return at(1, 'ficus sync drain [route] [--timeout 30s]') ?? (() => drainCommand(target, args[0], timeout, ms, json))
    }
    default:
      return `unknown sync command: ${sub} (status, dead-letters, show, replay, skip, pause, resume, drain)`
  }
}

/** `ficus ids get|set …`: the command to run, or what is wrong with the usage. */
function idsCommand(target: AdminTarget, rest: readonly string[], values: Values, json: boolean): Run | string {
  const [sub, ...args] = rest
  if (sub === 'get') {
    if (args.length !== 3) return 'ids get needs an entity, a side and an id: ficus ids get <entity> <legacy|new> <id>'
    const [entity, side, id] = args as [string, string, string]
    if (side !== 'legacy' && side !== 'new') return `the side must be legacy or new (got ${side})`
    return () => idsGetCommand(target, entity, side, id, json)
  }
  if (sub === 'set') {
    const legacy = text(values.legacy)
    const next = text(values.new)
    const origin = text(values.origin)
    if (args.length !== 1 || legacy === undefined || next === undefined) return 'ids set needs an entity and both ids: ficus ids set <entity> --legacy <id> --new <id> [--origin legacy|new] [--reason text]'
    if (origin !== undefined && origin !== 'legacy' && origin !== 'new') return `--origin must be legacy or new (got ${origin})`
    return () => idsSetCommand(target, { entity: args[0] as string, legacy, new: next, ...(origin === undefined ? {} : { origin }) }, text(values.reason), json)
  }
  return `ids needs get or set${sub === undefined ? '' : ` (got ${sub})`}: ficus ids get <entity> <legacy|new> <id> | ficus ids set <entity> --legacy <id> --new <id>`
}

/** `ficus ramp [status] [route]` and `ficus ramp <command> <route>`: the command to run, or what is wrong with the usage. */
function rampCommand(target: AdminTarget, rest: readonly string[], values: Values, json: boolean): Run | string {
  const [sub = 'status', ...args] = rest
  const force = values.force === true
  if (force && sub !== 'advance') return '--force is only for ficus ramp advance <route> --force'
  if (sub === 'status') {
    if (args.length > 1) return `unexpected argument: ${args[1] as string} (ficus ramp status [route])`
    return () => rampStatusCommand(target, args[0], json)
  }
  if (!(RAMP_COMMANDS as readonly string[]).includes(sub)) return `unknown ramp command: ${sub} (status, ${RAMP_COMMANDS.join(', ')})`
  const use = `ficus ramp ${sub} <route>${sub === 'advance' ? ' --force' : ''} [--reason text]`
  if (args.length !== 1) return args.length === 0 ? `ramp ${sub} needs a route: ${use}` : `unexpected argument: ${args[1] as string} (${use})`
  if (sub === 'advance' && !force) return `ramp advance needs --force: a ramp advances by itself when its gates pass; --force skips them (${use})`
  return () => rampActCommand(target, sub as RampCommand, args[0] as string, text(values.reason), json)
}

/** `ficus verify`: the first Ctrl-C (or SIGTERM) stops the run and saves its progress; a second one ends at once. */
async function verify(argv: string[]): Promise<number> {
  const { verifyCommand } = await import('./commands/verify.js')
  const stop = new AbortController()
  const onSignal = (): void => {
    if (stop.signal.aborted) process.exit(130)
    process.stderr.write('\nficus verify: stopping; saving progress (Ctrl-C again to quit at once)\n')
    stop.abort(new Error('stopped'))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    return await verifyCommand(argv, {
      out: (t) => { process.stdout.write(t) },
      err: (t) => { process.stderr.write(t) },
      tty: process.stderr.isTTY,
      env: process.env,
      signal: stop.signal
    })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

function usage(message: string): number {
  process.stderr.write(`ficus: ${message}\n\n${USAGE}`)
  return 2
}

function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.file}: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}\n`)
    for (const p of err.problems) process.stderr.write(`  ${formatProblem(err.file, p)}\n`)
    return 1
  }
  throw err
}

cli(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`ficus: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
