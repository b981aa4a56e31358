import { Ajv, type ErrorObject } from 'ajv'
import { formatPath, type Path } from './problems.js'
import { ConfigSchema, NAME_MESSAGE, RouteSchema, type RawConfig, type RawRoute } from './schema.js'
import { parseDuration, parseSize } from './units.js'

/** The schema stage: schema.ts compiled, and its errors as one readable line each. */

// coerceTypes: a value from the environment is text; the schema decides whether it is a number
// (`port: ${PORT}`) or stays a string (`token: ${TOKEN}` with an all-digit token). It converts
// in place, so what runs after validateConfig reads the converted values.
const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, coerceTypes: true })
ajv.addKeyword('x-message')
ajv.addFormat('duration', { type: 'string', validate: (s: string) => parseDuration(s) !== undefined })
ajv.addFormat('size', { type: 'string', validate: (s: string) => parseSize(s) !== undefined })
ajv.addFormat('origin', { type: 'string', validate: isOrigin })
ajv.addFormat('http-url', { type: 'string', validate: isHttpUrl })
export const validateConfig = ajv.compile<RawConfig>(ConfigSchema)
/** One route on its own: the cross-checks compare only routes that passed. */
export const validateRoute = ajv.compile<RawRoute>(RouteSchema)

/** A schema error: at `path`, or at its `key` (an unknown or missing key). */
export interface SchemaProblem { path: Path; key?: string; message: string }

export function schemaProblems(errors: readonly ErrorObject[]): SchemaProblem[] {
  // A union with its own message replaces the messages of its branches at the same place;
  // when a branch's error is deeper (an item of a list), that error says more and the union's goes.
  const unions = new Set(errors.filter((e) => e.keyword === 'anyOf' && xMessage(e) !== undefined).map((e) => e.instancePath))
  const out: SchemaProblem[] = []
  const seen = new Set<string>()
  for (const e of errors) {
    const union = e.keyword === 'anyOf' && xMessage(e) !== undefined
    if (unions.has(e.instancePath) && !union) continue
    if (union && errors.some((d) => d.instancePath.startsWith(`${e.instancePath}/`))) continue
    const path = pointerToPath(e.instancePath)
    let p: SchemaProblem
    if (e.keyword === 'additionalProperties') {
      const key = String((e.params as { additionalProperty: string }).additionalProperty)
      // A map of named things (upstreams) rejects the name, not an unknown key.
      const named = (e.parentSchema as { patternProperties?: unknown } | undefined)?.patternProperties !== undefined
      p = { path, key, message: named ? `is not a valid name: ${NAME_MESSAGE}` : 'unknown key' }
    } else if (e.keyword === 'required') {
      p = { path, key: String((e.params as { missingProperty: string }).missingProperty), message: 'is required' }
    } else if (e.keyword === 'minProperties' && path.length === 1 && path[0] === 'upstreams') {
      p = { path, message: 'must define at least one upstream' }
    } else {
      p = { path, message: xMessage(e) ?? e.message ?? 'is invalid' }
    }
    const id = `${formatPath(p.key === undefined ? p.path : [...p.path, p.key])}\0${p.message}`
    if (!seen.has(id)) {
      seen.add(id)
      out.push(p)
    }
  }
  return out
}

function xMessage(e: ErrorObject): string | undefined {
  return (e.parentSchema as { 'x-message'?: string } | undefined)?.['x-message']
}

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return []
  return pointer.slice(1).split('/').map((s) => {
    const key = s.replace(/~1/g, '/').replace(/~0/g, '~')
    return /^\d+$/.test(key) ? Number(key) : key
  })
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s)
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' && u.username === '' && u.password === ''
  } catch {
    return false
  }
}

function isOrigin(s: string): boolean {
  let u: URL
  try {
    u = new URL(s)
  } catch {
    return false
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '' &&
    u.username === '' && u.password === '' && (u.pathname === '/' || u.pathname === '') && u.search === '' && u.hash === ''
}
