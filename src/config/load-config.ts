import { readFile } from 'node:fs/promises'
import { parseDocument } from 'yaml'
import { build, deepFreeze } from './build.js'
import { crossCheck } from './cross-check.js'
import { withDefaults } from './defaults.js'
import { expandRefs, protectRefs } from './expand-env.js'
import { ConfigError, formatPath, locate, positions, sorted, type ConfigProblem, type Path } from './problems.js'
import type { Config } from './schema.js'
import { schemaProblems, validateConfig } from './validate.js'

type Env = Readonly<Record<string, string | undefined>>

/** Warnings per config read: settings that are valid but cannot apply (see warningsOf). */
const warnings = new WeakMap<Config, readonly ConfigProblem[]>()

/** What `ficus check` prints and a start or reload logs beside a valid config: rules that cannot apply, in file order. */
export function warningsOf(config: Config): readonly ConfigProblem[] {
  return warnings.get(config) ?? []
}

/** Reads, expands, validates and freezes routes.yaml. Throws ConfigError listing every problem. */
export async function loadConfig(file: string, env: Env = process.env): Promise<Config> {
  return (await readConfig(file, env)).config
}

/**
 * loadConfig, keeping the text: a cluster primary gives its workers the very text it
 * validated, never the file (which may have changed since), so every process parses the
 * same bytes with the same environment.
 */
export async function readConfig(file: string, env: Env): Promise<{ config: Config; text: string }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot be read (${(err as Error).message})`
    throw new ConfigError(file, [{ line: 0, col: 0, path: '', message: reason }])
  }
  return { config: parseConfig(text, file, env), text }
}

/**
 * The same, from text already read (`file` is used for messages and to resolve relative
 * paths). YAML → ${ENV} expansion → schema → defaults → cross-checks → build → freeze.
 */
export function parseConfig(text: string, file: string, env: Env = process.env): Config {
  const src = protectRefs(text)
  const doc = parseDocument(src.text, { uniqueKeys: true, prettyErrors: false })
  const problems: ConfigProblem[] = []
  const position = positions(text, src)
  const at = (offset: number | undefined, path: Path, message: string): void => {
    problems.push({ ...position(offset), path: formatPath(path), message })
  }
  for (const e of doc.errors) at(e.pos[0], [], e.message.split('\n')[0] ?? e.message)
  if (problems.length > 0) throw new ConfigError(file, sorted(problems))

  // Expansion problems are reported together with the schema's, minus the schema's
  // complaints about the very values that could not be expanded.
  const unexpanded = new Set<string>()
  for (const p of expandRefs(doc, src.refs, env)) {
    at(p.node.range?.[0], p.path, p.message)
    unexpanded.add(formatPath(p.path))
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 })
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(file, [{ line: 1, col: 1, path: '', message: 'must be a YAML mapping (version: 1, upstreams: …, routes: …)' }])
  }

  const valid = validateConfig(data)
  if (!valid) {
    for (const e of schemaProblems(validateConfig.errors ?? [])) {
      if (!unexpanded.has(formatPath(e.path))) at(locate(doc, e.path, e.key), e.key === undefined ? e.path : [...e.path, e.key], e.message)
    }
  }
  // The cross-checks run even when some values failed the schema, on the parts that
  // passed, so one run reports every problem.
  const settings = withDefaults(data)
  const warned: ConfigProblem[] = []
  crossCheck(data, settings, (path, message) => at(locate(doc, path), path, message),
    (path, message) => { warned.push({ ...position(locate(doc, path)), path: formatPath(path), message }) })
  if (!valid || problems.length > 0) throw new ConfigError(file, sorted(problems))
  const config = deepFreeze(build(settings, file))
  warnings.set(config, sorted(warned))
  return config
}
