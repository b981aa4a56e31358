/**
 * Waiting for something to happen, with a deadline and a message saying what did not happen.
 * A test that waits on an event with no deadline of its own can only fail through tap's
 * per-file timeout, which names no wait; with this, the failure says which one.
 */

/** The deadline of a wait that is not given one: far longer than any event on loopback takes, well under tap's 60 s per file. */
export const DEADLINE_MS = 15_000

export interface WaitOptions {
  /** Default: DEADLINE_MS. */
  readonly timeoutMs?: number
  /** What did not happen, for the failure: "the copy did not reach new". A function is called when the deadline passes (say, to report a count). */
  readonly message: string | (() => string)
  /** Between two checks of a polled condition. Default 10 ms. */
  readonly intervalMs?: number
}

/** A deadline a helper's wait accepts; the helper supplies the message when none is given. */
export type Deadline = Partial<WaitOptions>

type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>

/**
 * Resolves with what `what` gives, or rejects with `message` once `timeoutMs` passed:
 * - a promise (an event: a request arriving, a process exiting): its value;
 * - a function (a condition, sync or async): polled every `intervalMs` until it returns a
 *   truthy value, which is returned. An error it throws is the wait's error.
 * The rejection's stack is the caller's.
 */
export function waitFor<T>(what: PromiseLike<T>, opts: WaitOptions): Promise<T>
export function waitFor<T>(what: () => T | PromiseLike<T>, opts: WaitOptions): Promise<Truthy<Awaited<T>>>
export function waitFor<T>(what: PromiseLike<T> | (() => T | PromiseLike<T>), opts: WaitOptions): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? DEADLINE_MS
  const failure = new Error('waitFor') // made here, so that its stack shows the caller
  let over = false
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      over = true
      const message = typeof opts.message === 'function' ? opts.message() : opts.message
      failure.message = `${message} (waited ${timeoutMs} ms)`
      reject(failure)
    }, timeoutMs)
  })
  const work = typeof what === 'function' ? poll(what, opts.intervalMs ?? 10, () => over) : Promise.resolve(what)
  return Promise.race([work, expired]).finally(() => {
    over = true
    clearTimeout(timer)
  })
}

async function poll<T>(check: () => T | PromiseLike<T>, intervalMs: number, over: () => boolean): Promise<T> {
  for (;;) {
    const value = await check()
    if (value) return value
    if (over()) return value // the deadline already failed the wait: stop polling
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Reads an optional Deadline: its timeout, and its message or the helper's own. */
export function withDefaults(d: Deadline | undefined, message: string | (() => string), timeoutMs = DEADLINE_MS): WaitOptions {
  return { timeoutMs: d?.timeoutMs ?? timeoutMs, message: d?.message ?? message, ...(d?.intervalMs === undefined ? {} : { intervalMs: d.intervalMs }) }
}
