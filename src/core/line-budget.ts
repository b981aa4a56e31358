/**
 * How many log lines of one kind may be written per window, so that a flood of requests that
 * cost the sender nothing (refused at the edge) cannot fill the disk with their lines. Lines
 * past the budget are counted by outcome, for one summary line. Pure: the caller passes the
 * time (monotonic milliseconds).
 * @example
 * const budget = new LineBudget(100, 1000)
 * if (budget.take(now, 'bad_request')) write(line)
 */
export class LineBudget {
  private windowStart = Number.NEGATIVE_INFINITY
  private used = 0
  private skipped: Record<string, number> = {}
  private skippedTotal = 0

  constructor (
    /** Lines written at most per window. */
    readonly perWindow: number,
    readonly windowMs: number
  ) {}

  /** True when the line may be written; false when it is over the budget (then counted under `outcome`). */
  take (now: number, outcome: string): boolean {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now
      this.used = 0
    }
    if (this.used < this.perWindow) {
      this.used++
      return true
    }
    this.skipped[outcome] = (this.skipped[outcome] ?? 0) + 1
    this.skippedTotal++
    return false
  }

  /** Lines not written since the last call, by outcome (empty when none), and starts counting again. */
  drain (): { readonly total: number; readonly byOutcome: Readonly<Record<string, number>> } {
    const out = { total: this.skippedTotal, byOutcome: this.skipped }
    this.skipped = {}
    this.skippedTotal = 0
    return out
  }
}
