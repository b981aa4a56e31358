#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { AdminCallError, DEFAULT_ADMIN_URL } from './commands/admin-client.js'
import { divergencesCommand } from './commands/divergences.js'
import { ConfigError, formatProblem, loadConfig } from './config/load-config.js'
import { runFicus } from './main.js'
import { VERSION } from './version.js'

const USAGE = `Usage: ficus <command> [options]

Commands:
  start [--config <file>]   Run the proxy (default config: routes.yaml)
  check <file>              Validate a routes.yaml; exit 1 listing every problem
  divergences [<route>]     How often shadowed responses differ, per route; with a route,
                            the fields that differ most (--json: the admin API's answer)

Options:
  -c, --config <file>       Config file for start (or FICUS_CONFIG)
      --admin-url <url>     Admin API of a running Ficus (or FICUS_ADMIN_URL; default ${DEFAULT_ADMIN_URL})
      --token <token>       Admin token (or FICUS_ADMIN_TOKEN)
      --json                Machine-readable output
  -h, --help                This help
  -v, --version             Print the version

Environment:
  FICUS_LOG_LEVEL           Overrides log.level (fatal, error, warn, info, debug, trace, silent)
`

/** Exit codes: 0 ok, 1 invalid config, failed start or failed admin call, 2 wrong usage. */
async function cli(argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'admin-url': { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
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
      try {
        await runFicus(file)
      } catch (err) {
        return reportConfigError(err)
      }
      return -1 // keeps running; main.ts exits
    }
    case 'check': {
      const file = rest[0] ?? values.config
      if (file === undefined) return usage('check needs a file: ficus check routes.yaml')
      try {
        const config = await loadConfig(file)
        process.stdout.write(`${file}: OK (${config.routes.length} routes, ${Object.keys(config.upstreams).length} upstreams)\n`)
        return 0
      } catch (err) {
        return reportConfigError(err)
      }
    }
    case 'divergences': {
      if (rest.length > 1) return usage(`unexpected argument: ${rest[1]}`)
      const target = { url: values['admin-url'] ?? process.env.FICUS_ADMIN_URL ?? DEFAULT_ADMIN_URL, token: values.token ?? process.env.FICUS_ADMIN_TOKEN }
      try {
        process.stdout.write(await divergencesCommand(target, rest[0], values.json === true))
        return 0
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
