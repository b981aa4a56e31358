import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { CATALOGUE, errorBody, ficusError, toUpstreamError, type ErrorCode } from '../../src/errors.js'

t.test('the catalogue and docs/errors.md list the same codes, statuses and reasons', async (t) => {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8')
  const rows = [...doc.matchAll(/^\| `(FICUS_ERR_[A-Z_]+)` \| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [m[1], Number(m[2]), m[3]])
  const code = Object.entries(CATALOGUE).map(([c, e]) => [c, e.status, e.reason])
  t.same(rows, code)
  t.equal(rows.length, 32)
})

t.test('an error has its code, status and message; the body names no upstream', async (t) => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:8080'), { code: 'ECONNREFUSED' })
  const e = toUpstreamError(cause, false)
  t.equal(e.code, 'FICUS_ERR_UPSTREAM_REFUSED')
  t.equal(e.statusCode, 502)
  t.equal((e as { cause?: unknown }).cause, cause)
  t.same(JSON.parse(errorBody(e, 'r1')), { error: 'The backend refused the connection', code: 'FICUS_ERR_UPSTREAM_REFUSED', requestId: 'r1' })
  t.notMatch(errorBody(e, 'r1'), /10\.0\.0\.5|ECONNREFUSED|at /)
})

t.test('transport failures map on their code; none is a 500', async (t) => {
  const table: [string, boolean, ErrorCode][] = [
    ['ECONNREFUSED', false, 'FICUS_ERR_UPSTREAM_REFUSED'],
    ['ENOTFOUND', false, 'FICUS_ERR_UPSTREAM_UNREACHABLE'],
    ['EAI_AGAIN', false, 'FICUS_ERR_UPSTREAM_UNREACHABLE'],
    ['EHOSTUNREACH', false, 'FICUS_ERR_UPSTREAM_UNREACHABLE'],
    ['ECONNRESET', false, 'FICUS_ERR_UPSTREAM_RESET'],
    ['UND_ERR_SOCKET', false, 'FICUS_ERR_UPSTREAM_RESET'],
    ['EPIPE', false, 'FICUS_ERR_UPSTREAM_RESET'],
    ['UND_ERR_CONNECT_TIMEOUT', false, 'FICUS_ERR_UPSTREAM_CONNECT_TIMEOUT'],
    ['UND_ERR_HEADERS_TIMEOUT', false, 'FICUS_ERR_UPSTREAM_TIMEOUT'],
    ['UND_ERR_CLOSED', false, 'FICUS_ERR_UPSTREAM_CLOSING'],
    ['UND_ERR_DESTROYED', false, 'FICUS_ERR_UPSTREAM_CLOSING'],
    ['HPE_INVALID_CONSTANT', false, 'FICUS_ERR_UPSTREAM_BAD_RESPONSE'],
    ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', false, 'FICUS_ERR_UPSTREAM_BAD_RESPONSE'],
    ['SOMETHING_NEW', false, 'FICUS_ERR_UPSTREAM_FAILED'],
    ['UND_ERR_BODY_TIMEOUT', true, 'FICUS_ERR_UPSTREAM_BODY_TIMEOUT'],
    ['ECONNRESET', true, 'FICUS_ERR_UPSTREAM_ABORTED']
  ]
  for (const [code, started, want] of table) {
    const e = toUpstreamError(Object.assign(new Error(code), { code }), started)
    t.equal(e.code, want, `${code}${started ? ' after the response started' : ''}`)
    t.not(e.statusCode, 500)
  }
  t.equal(toUpstreamError(new Error('no code'), false).code, 'FICUS_ERR_UPSTREAM_FAILED')
  t.equal(ficusError('FICUS_ERR_INTERNAL').statusCode, 500, 'only Ficus\'s own bugs are 500')
})
