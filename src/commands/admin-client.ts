import { request } from 'undici'

/** Where the control commands find a running Ficus (flags win over the environment). */
export interface AdminTarget {
  /** `http://127.0.0.1:9090` (FICUS_ADMIN_URL). */
  readonly url: string
  /** Bearer token (FICUS_ADMIN_TOKEN), when the admin API has one. */
  readonly token: string | undefined
}

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9090'

/** A failed admin call, with a message fit for a terminal. */
export class AdminCallError extends Error {
  override name = 'AdminCallError'
}

/** GETs a JSON document from the admin API; throws AdminCallError saying what went wrong. */
export async function adminGet(target: AdminTarget, path: string): Promise<unknown> {
  return adminCall(target, 'GET', path)
}

/** GETs a text document (/metrics). */
export async function adminText(target: AdminTarget, path: string): Promise<string> {
  return adminCall(target, 'GET', path, undefined, true) as Promise<string>
}

/** How long a call may take to answer, unless told (ms). */
const CALL_TIMEOUT_MS = 10_000

/**
 * Calls the admin API with a JSON body (PATCH, POST, PUT); `raw` returns the text unparsed;
 * `timeoutMs` bounds the wait for the answer (a drain waits longer).
 */
export async function adminCall(target: AdminTarget, method: 'GET' | 'PATCH' | 'POST' | 'PUT', path: string, payload?: unknown, raw = false, timeoutMs = CALL_TIMEOUT_MS): Promise<unknown> {
  let url: URL
  try {
    url = new URL(path, target.url)
  } catch {
    throw new AdminCallError(`invalid admin URL: ${target.url}`)
  }
  const headers: Record<string, string> = { accept: 'application/json' }
  if (target.token !== undefined && target.token !== '') headers.authorization = `Bearer ${target.token}`
  if (payload !== undefined) headers['content-type'] = 'application/json'
  let res
  try {
    res = await request(url, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload), headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  } catch (err) {
    const code = (err as { code?: string }).code ?? (err as Error).message
    throw new AdminCallError(`cannot reach the Ficus admin API at ${url.origin} (${code}); is Ficus running? set --admin-url or FICUS_ADMIN_URL`)
  }
  let text: string
  try {
    text = await res.body.text()
  } catch (err) {
    throw new AdminCallError(`the connection to ${url.origin} broke while reading the answer (${(err as { code?: string }).code ?? (err as Error).message})`)
  }
  if (raw) {
    if (res.statusCode >= 400) throw new AdminCallError(`${url.origin}${path} answered ${res.statusCode}`)
    return text
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new AdminCallError(`${url.origin} answered ${res.statusCode} with something that is not JSON: is it a Ficus admin port?`)
  }
  if (res.statusCode >= 400) {
    const b = body as { error?: string; code?: string; detail?: string }
    const hint = res.statusCode === 401 ? ' (pass --token or set FICUS_ADMIN_TOKEN)' : ''
    throw new AdminCallError(`${b.error ?? `HTTP ${res.statusCode}`}${b.detail === undefined ? '' : `: ${b.detail}`}${hint} [${b.code ?? res.statusCode}]`)
  }
  return body
}
