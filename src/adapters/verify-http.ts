import type { Pool } from 'undici'
import type { VerifyUpstream } from '../config/verify-schema.js'
import { backoff, retryAfterMs } from '../core/delivery.js'
import type { Backend } from '../core/types.js'
import { createPool } from './undici.js'

/**
 * The HTTP side of `ficus verify`: it reads both systems through their own APIs, and must not
 * hurt them. Every request waits for a slot (at most `concurrency` at once, over both sides)
 * and for a token of the rate (`rate` per second, over both sides); a 429, 503 or other 5xx,
 * or a connection that failed, is tried again after a backoff with jitter, never sooner than
 * `Retry-After`, and while one side is backing off none of its requests goes out (a storm of
 * 429s slows the run, it does not feed the storm). Past `maxAttempts` the request fails: the
 * run is incomplete (exit 2), never a difference.
 */

export interface VerifyHttpOptions {
  readonly upstreams: { readonly legacy: VerifyUpstream; readonly new: VerifyUpstream }
  readonly headers: readonly (readonly [string, string])[]
  readonly concurrency: number
  readonly ratePerSecond: number
  readonly maxAttempts: number
  readonly timeoutMs: number
  readonly now?: () => number
  readonly random?: () => number
  /** Told of each answer that is tried again (a 429, a 5xx, a failed connection), for the progress line. */
  readonly onRetry?: (side: Backend, why: string, afterMs: number) => void
}

export interface Fetched {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: Buffer
}

/** A request failed past its attempts: what was last seen. */
export class GaveUp extends Error {
  constructor (readonly side: Backend, readonly path: string, readonly last: string, readonly attempts: number) {
    super(`${side} ${path}: ${last} after ${attempts} attempts`)
  }
}

const RETRY_BASE_MS = 200
const RETRY_MAX_MS = 30_000
/** Answers read at most per request (a list page or a record). */
const MAX_BODY_BYTES = 64 * 1024 * 1024

export class VerifyHttp {
  private readonly pools: Record<Backend, Pool>
  private active = 0
  private readonly waiting: (() => void)[] = []
  private tokens: number
  private lastRefill: number
  /** Until when a side's requests wait (its last 429 or 5xx asked for a pause). */
  private readonly pausedUntil: Record<Backend, number> = { legacy: 0, new: 0 }
  private closed = false
  readonly stats = { requests: 0, retries: 0 }

  constructor (private readonly o: VerifyHttpOptions) {
    const pool = (u: VerifyUpstream): Pool => createPool(u.origin, { connections: o.concurrency, connectTimeoutMs: u.connectTimeoutMs, headersTimeoutMs: o.timeoutMs, bodyTimeoutMs: o.timeoutMs })
    this.pools = { legacy: pool(o.upstreams.legacy), new: pool(o.upstreams.new) }
    this.tokens = Math.min(o.ratePerSecond, o.concurrency)
    this.lastRefill = this.now()
  }

  private now (): number {
    return this.o.now?.() ?? Date.now()
  }

  /** GET `path` (path and query) on `side`, throttled and retried; a 2xx, 404 or other final answer resolves. */
  async get (side: Backend, path: string, signal?: AbortSignal): Promise<Fetched> {
    for (let attempt = 1; ; attempt++) {
      await this.slot(side, signal)
      let outcome: { readonly answer: Fetched } | { readonly retry: string; readonly waitMs?: number | undefined }
      try {
        this.stats.requests++
        const r = await this.pools[side].request({
          path,
          method: 'GET',
          headers: [...this.o.headers.flat(), 'accept', 'application/json', 'x-ficus-verify', '1'],
          signal
        })
        const chunks: Buffer[] = []
        let size = 0
        for await (const c of r.body) {
          size += (c as Buffer).length
          if (size > MAX_BODY_BYTES) {
            r.body.destroy()
            throw new Error(`the answer is larger than ${MAX_BODY_BYTES} bytes`)
          }
          chunks.push(c as Buffer)
        }
        if (r.statusCode === 429 || r.statusCode >= 500) {
          const ra = r.headers['retry-after']
          outcome = { retry: `status ${r.statusCode}`, waitMs: retryAfterMs(Array.isArray(ra) ? ra[0] : ra, this.now()) }
        } else {
          outcome = { answer: { status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) } }
        }
      } catch (err) {
        if (signal?.aborted === true) throw err
        outcome = { retry: (err as Error).message }
      } finally {
        this.release()
      }
      if ('answer' in outcome) return outcome.answer
      if (attempt >= this.o.maxAttempts) throw new GaveUp(side, path, outcome.retry, attempt)
      const afterMs = backoff(attempt, { baseMs: RETRY_BASE_MS, maxMs: RETRY_MAX_MS, maxAttempts: this.o.maxAttempts, maxAgeMs: Infinity }, this.o.random?.() ?? Math.random(), outcome.waitMs)
      this.stats.retries++
      this.o.onRetry?.(side, outcome.retry, afterMs)
      // The whole side waits: its other requests do not go out meanwhile.
      this.pausedUntil[side] = Math.max(this.pausedUntil[side], this.now() + afterMs)
    }
  }

  /**
   * Waits for a free slot, the side's pause to end, and a token of the rate. A waiter woken
   * for a free slot that does not take it (its side is paused, no token yet) wakes the next
   * one, so that a slot never stays free while requests of the other side wait.
   */
  private async slot (side: Backend, signal?: AbortSignal): Promise<void> {
    let woken = false
    const passOn = (): void => {
      if (woken) this.wakeNext()
      woken = false
    }
    for (;;) {
      if (this.closed) throw new Error('verify: the client is closed')
      if (signal?.aborted === true) {
        passOn()
        signal.throwIfAborted()
      }
      const pause = this.pausedUntil[side] - this.now()
      if (pause > 0) {
        passOn()
        await sleep(pause, signal)
        continue
      }
      if (this.active >= this.o.concurrency) {
        await this.queued(signal)
        woken = true
        continue
      }
      this.refill()
      if (this.tokens < 1) {
        passOn()
        await sleep(Math.ceil(((1 - this.tokens) * 1000) / this.o.ratePerSecond), signal)
        continue
      }
      this.tokens -= 1
      this.active++
      return
    }
  }

  /** Waits to be woken by a released slot (or the signal). */
  private async queued (signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener('abort', done)
        const i = this.waiting.indexOf(done)
        if (i >= 0) this.waiting.splice(i, 1)
        resolve()
      }
      this.waiting.push(done)
      signal?.addEventListener('abort', done, { once: true })
    })
  }

  private wakeNext (): void {
    if (this.active < this.o.concurrency) this.waiting[0]?.()
  }

  private refill (): void {
    const now = this.now()
    this.tokens = Math.min(Math.max(1, Math.min(this.o.ratePerSecond, this.o.concurrency)), this.tokens + ((now - this.lastRefill) * this.o.ratePerSecond) / 1000)
    this.lastRefill = now
  }

  private release (): void {
    this.active--
    this.wakeNext()
  }

  async close (): Promise<void> {
    this.closed = true
    for (const w of [...this.waiting]) w()
    await Promise.all([this.pools.legacy.close(), this.pools.new.close()])
  }
}

/** Waits `ms`, or rejects with the signal's reason when it is aborted first. */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted() // an abort before the wait fires no event
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { signal?.removeEventListener('abort', abort); resolve() }, ms)
    const abort = (): void => { clearTimeout(t); reject(signal?.reason as Error) }
    signal?.addEventListener('abort', abort, { once: true })
  })
}
