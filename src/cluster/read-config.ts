import { readFile } from 'node:fs/promises'
import { ConfigError, parseConfig } from '../config/load-config.js'
import type { Config } from '../config/schema.js'

/**
 * loadConfig, keeping the text: a cluster primary gives its workers the very text it
 * validated, never the file (which may have changed since), so every process parses the
 * same bytes with the same environment.
 */
export async function readConfig(file: string, env: Readonly<Record<string, string | undefined>>): Promise<{ config: Config; text: string }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot be read (${(err as Error).message})`
    throw new ConfigError(file, [{ line: 0, col: 0, path: '', message: reason }])
  }
  return { config: parseConfig(text, file, env), text }
}
