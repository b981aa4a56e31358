import t from 'tap'
import { backoff, retryAfterMs, verdict, type RetryPolicy } from '../../src/core/delivery.js'

const p: RetryPolicy = { baseMs: 200, maxMs: 300_000, maxAttempts: 20, maxAgeMs: 86_400_000 }

t.test('2xx is delivered; 5xx, 408, 425, 429 and failures to connect are retried; other 4xx are dead letters', async (t) => {
  for (const status of [200, 201, 204]) t.same(verdict({ status }, 1, 0, p, 0.5), { kind: 'delivered' })
  for (const result of [{ status: 500 }, { status: 503 }, { status: 408 }, { status: 425 }, { status: 429 }, { failed: 'refused' }, { failed: 'timeout' }]) {
    t.match(verdict(result, 1, 0, p, 0.5), { kind: 'retry' }, JSON.stringify(result))
  }
  for (const status of [301, 400, 401, 404, 409, 422]) t.same(verdict({ status }, 1, 0, p, 0.5), { kind: 'dead', reason: `status_${status}` }, `${status}`)
})

t.test('retries stop at maxAttempts and at maxAge: then a dead letter that says why', async (t) => {
  t.same(verdict({ status: 503 }, 20, 0, p, 0.5), { kind: 'dead', reason: 'status_503 (after 20 attempts)' })
  t.same(verdict({ failed: 'refused' }, 3, 86_399_900, p, 0.5), { kind: 'dead', reason: 'refused (older than maxAge)' })
  t.match(verdict({ failed: 'refused' }, 19, 0, p, 0.5), { kind: 'retry', reason: 'refused' })
})

t.test('backoff: doubling with equal jitter, capped; never sooner than Retry-After', async (t) => {
  t.equal(backoff(1, p, 0), 100, 'half the first step at least')
  t.equal(backoff(1, p, 0.999999), 200, 'the whole step at most')
  t.equal(backoff(4, p, 0), 800, '200 ms × 2³, halved')
  t.equal(backoff(30, p, 1), 300_000, 'capped at maxMs')
  t.equal(backoff(1, p, 0, 5_000), 5_000, 'Retry-After: 5 s wins over 100 ms')
  t.equal(backoff(10, p, 1, 5_000), 102_400, 'and a longer backoff wins over it')
})

t.test('Retry-After: seconds or an HTTP date', async (t) => {
  const now = Date.parse('Sun, 06 Dec 2026 22:00:00 GMT')
  t.equal(retryAfterMs('7', now), 7_000)
  t.equal(retryAfterMs('Sun, 06 Dec 2026 22:00:30 GMT', now), 30_000)
  t.equal(retryAfterMs('Sun, 06 Dec 2026 21:00:00 GMT', now), 0, 'a date in the past: at once')
  t.equal(retryAfterMs('soon', now), undefined)
  t.equal(retryAfterMs(undefined, now), undefined)
})
