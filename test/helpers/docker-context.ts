import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * The files `docker build <dir>` sends as its build context: everything under `dir` that
 * `.dockerignore` does not exclude, as paths relative to `dir` (with `/`). Symbolic links are
 * not followed, as Docker does not. The patterns are Docker's: `*` and `?` within one path
 * segment, `**` across any number of them, a leading `!` re-includes, the last match wins,
 * and a pattern that matches a directory excludes everything below it.
 */
export async function buildContext(dir: string): Promise<string[]> {
  const rules = parseDockerignore(await readFile(join(dir, '.dockerignore'), 'utf8').catch(() => ''))
  // With no `!` rule nothing below an excluded directory can come back: skip walking it.
  const prune = rules.every((r) => !r.include)
  const files: string[] = []
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`
      const excluded = isExcluded(rules, path)
      if (entry.isDirectory()) {
        if (!(excluded && prune)) await walk(path)
      } else if (!excluded && (entry.isFile() || entry.isSymbolicLink())) {
        files.push(path)
      }
    }
  }
  await walk('')
  return files.sort()
}

interface Rule { readonly include: boolean; readonly pattern: RegExp }

export function parseDockerignore(text: string): Rule[] {
  const rules: Rule[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const include = line.startsWith('!')
    const glob = (include ? line.slice(1) : line).replace(/^\/+/, '').replace(/\/+$/, '')
    if (/[[\\]/.test(glob)) throw new Error(`.dockerignore: ${line}: character classes and escapes are not supported by this test helper`)
    const source = glob.split('/').map((seg) => seg === '**'
      ? '(?:.*)'
      : seg.replace(/[.+^${}()|]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('/')
    // `**/x` also matches `x` at the top.
    rules.push({ include, pattern: new RegExp(`^${source.replace(/^\(\?:\.\*\)\//, '(?:.*/)?').replace(/\/\(\?:\.\*\)\//g, '/(?:.*/)?')}$`) })
  }
  return rules
}

/** Whether `path` or one of its parent directories is excluded (the last matching rule wins). */
export function isExcluded(rules: readonly Rule[], path: string): boolean {
  const parts = path.split('/')
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
  let excluded = false
  for (const r of rules) {
    if (prefixes.some((p) => r.pattern.test(p))) excluded = !r.include
  }
  return excluded
}
