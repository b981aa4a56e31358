import type { Worker } from 'node:cluster'
import type { Logger } from '../adapters/logger.js'
import type { FromWorker, ToWorker } from './protocol.js'

/**
 * Messaging between the primary and its workers over node:cluster's IPC channel: one-way
 * sends, and asks whose reply carries the ask's `seq` (protocol.ts), each with a deadline.
 * The channel is ordered, so a worker applies changes in the order they were sent.
 */

interface Pending {
  resolve(value: unknown): void
  reject(err: Error): void
  timer: NodeJS.Timeout
}

/** A question to a worker: `make` builds the message around the ask's `seq`. */
export type Ask = (seq: number) => ToWorker

/** The IPC end of one worker, with its asks waiting for a reply. */
export class WorkerChannel {
  private readonly pending = new Map<number, Pending>()

  constructor (readonly worker: Worker, private readonly log: Logger, private readonly nextSeq: () => number) {}

  send (m: ToWorker): void {
    if (!this.worker.isConnected()) return
    this.worker.send(m, (err: Error | null) => {
      if (err !== null) this.log.debug({ err, worker: this.worker.id }, 'could not send to a worker')
    })
  }

  /** Sends `make(seq)` and resolves with the worker's reply; rejects past `timeoutMs`, or with the worker's error. */
  async ask (make: Ask, timeoutMs: number): Promise<unknown> {
    const seq = this.nextSeq()
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq)
        reject(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(seq, { resolve, reject, timer })
      this.send(make(seq))
    })
  }

  /** A reply came in: the ask it answers settles. */
  replied (m: Extract<FromWorker, { t: 'reply' }>): void {
    const p = this.pending.get(m.seq)
    if (p === undefined) return
    this.pending.delete(m.seq)
    clearTimeout(p.timer)
    if (m.error !== undefined) p.reject(new Error(m.error))
    else p.resolve(m.value)
  }

  /** The worker exited: every ask still waiting fails. */
  closed (): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer)
      p.reject(new Error('the worker exited'))
    }
    this.pending.clear()
  }
}
