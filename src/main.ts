import { createHash } from 'node:crypto'
import { watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import { createLogger } from './adapters/logger.js'
import { FlagBootstrapError } from './adapters/flags.js'
import { moveAside, readState, StateError } from './adapters/state-file.js'
import { readConfig, warningsOf } from './config/load-config.js'
import { formatProblem } from './config/problems.js'
import type { StoreConfig } from './config/schema.js'
import { STOP_GRACE_MS } from './lifecycle.js'
import { startFicus, type Instance } from './start.js'

/** Quiet time after the last change event before a reload (an editor's save is several events). */
const RELOAD_DEBOUNCE_MS = 200

export interface RunOptions {
  /** `--reset-state`: an unreadable state file is moved aside. */
  readonly resetState?: boolean
  /** `--workers N`: 1 (the default) is one process, as always; more is a cluster (src/cluster/). */
  readonly workers?: number
}

/**
 * `ficus start`: the only place that listens to signals and exits. Exit codes:
 * 0 stopped cleanly, 1 could not start (bad config, port taken) or crashed.
 */
export async function runFicus(configPath: string, env: NodeJS.ProcessEnv = process.env, opts: RunOptions = {}): Promise<void> {
  const workers = opts.workers ?? 1
  // The content the running config comes from: a change after this point is reloaded.
  let seen = await digestOf(configPath)
  // Cluster mode is loaded only when asked for: one process runs exactly the code it always did.
  const cluster = workers > 1 ? await import('./cluster/primary.js') : null
  // A cluster's workers are given the very text the primary validated (not the file, which may change meanwhile).
  const { config, text } = await readConfig(configPath, env)
  const logger = createLogger(env.FICUS_LOG_LEVEL ?? config.log.level)
  const warned = warningsOf(config)
  if (warned.length > 0) logger.warn({ warnings: warned.map((w) => formatProblem(configPath, w)) }, 'routes.yaml has settings that cannot apply (ficus check lists them)')
  let aside: string | null = null
  if (opts.resetState === true && config.state !== undefined) {
    // Only an unusable file is moved: a flag left in a unit file must not discard rollbacks.
    const usable = await readState(config.state).then(() => true, () => false)
    if (usable) {
      logger.warn({ state: config.state }, '--reset-state: the state file is valid and is kept (clear overrides with ficus set <route> --clear)')
    } else {
      aside = await moveAside(config.state)
      logger.warn({ state: config.state, movedTo: aside }, '--reset-state: the unreadable state file was moved aside; routes.yaml\'s percentages are in effect')
    }
  }
  let instance: Instance | undefined
  const exit = (code: number): never => {
    instance?.kill()
    logger.flush()
    process.exit(code)
  }
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception; exiting')
    exit(1)
  })
  // Installed before start (SIGHUP's default action would end a process still starting);
  // a reload asked for while starting runs once Ficus is up.
  let reloading: Promise<unknown> = Promise.resolve()
  let stopping = false
  let pending: string | null = null
  const reload = (why: string): void => {
    if (stopping) {
      logger.warn({ why }, 'reload ignored: stopping')
      return
    }
    if (instance === undefined) {
      pending = why
      return
    }
    const target = instance
    const run = async (): Promise<unknown> => target.reload(why)
    reloading = reloading.then(run, run)
  }
  process.on('SIGHUP', () => { reload('SIGHUP') })
  // Reloads on file change too. The directory is watched, and any event there is checked
  // against the file's content: editors replace the file by rename, and Kubernetes swaps a
  // ConfigMap's `..data` symlink without any event naming the file.
  // Ficus's own busy files there are not: the embedded sync store (beside the state file, or
  // routes.yaml, by default) is written on every dual write, and under steady writes its events
  // would restart the debounce forever, so that no save was ever reloaded.
  let debounce: NodeJS.Timeout | null = null
  const dir = dirname(resolve(configPath))
  const own = ownFiles(config.store, dir)
  try {
    const watcher = watch(dir, (_event, name) => {
      if (name !== null && own.has(name)) return
      if (debounce !== null) clearTimeout(debounce)
      debounce = setTimeout(() => {
        void digestOf(configPath).then((now) => {
          if (now === seen) return
          seen = now
          reload('file changed')
        })
      }, RELOAD_DEBOUNCE_MS)
    })
    watcher.unref()
    watcher.on('error', (err) => { logger.warn({ err }, 'watching the config file failed; SIGHUP still reloads') })
  } catch (err) {
    logger.warn({ err }, 'cannot watch the config file; SIGHUP still reloads')
  }
  try {
    const startupAudit = aside === null
      ? []
      : [{ time: new Date().toISOString(), who: 'local', action: 'reset-state' as const, route: null, reason: null, detail: `state file moved to ${aside}` }]
    const deps = { logger, startupAudit, env }
    instance = cluster !== null
      ? await cluster.startCluster(config, deps, { workers, text })
      : await startFicus(config, deps)
  } catch (err) {
    logger.fatal({ err: describe(err) }, 'could not start')
    exit(1)
  }
  const started = instance as Instance
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      exit(1) // a second signal, of either kind, does not wait
      return
    }
    stopping = true
    logger.info({ signal }, 'stopping')
    // Past the cap plus a grace, exit even if something refuses to close.
    setTimeout(() => {
      logger.error('stop did not finish within shutdown.timeout; exiting')
      exit(1)
    }, started.shutdownTimeoutMs() + STOP_GRACE_MS).unref()
    started.stop().then(() => {
      logger.info('stopped')
      exit(0)
    }, (err: unknown) => {
      logger.error({ err }, 'stop failed')
      exit(1)
    })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  if (pending !== null) reload(pending)
}

/** Names of the files in `dir` that Ficus itself writes on the request path: the embedded store's (LMDB: the file and its lock). */
function ownFiles(store: StoreConfig, dir: string): ReadonlySet<string> {
  if (store.kind !== 'embedded' || dirname(store.path) !== dir) return new Set()
  return new Set([basename(store.path), `${basename(store.path)}-lock`])
}

/** SHA-256 of the file's bytes ('' when it cannot be read: a reload then reports why). */
async function digestOf(file: string): Promise<string> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex')
  } catch {
    return ''
  }
}

function describe(err: unknown): unknown {
  if (err instanceof StateError || err instanceof FlagBootstrapError) return { code: err.code, message: err.message }
  const e = err as NodeJS.ErrnoException
  if (e.code === 'EADDRINUSE') return { code: e.code, message: `address already in use: ${(e as { address?: string }).address ?? ''}:${(e as { port?: number }).port ?? ''}` }
  return err
}

