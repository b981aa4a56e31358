/**
 * Counts over a sliding window, pure (the caller gives the time): the ramp's gates read the
 * increase of cumulative counters (requests per side and status, comparisons, fallbacks)
 * over the plan's `window`, from snapshots taken every few seconds. Like Prometheus's
 * increase(): a series that went down was reset (a worker restarted), and counts from zero.
 */

export type Counts = ReadonlyMap<string, number>

interface Snapshot {
  readonly at: number
  readonly counts: Counts
  /** Some series went down or vanished since the snapshot before (a restart): the increase is summed pair by pair across it. */
  readonly reset: boolean
}

export class CountWindow {
  private readonly snaps: Snapshot[] = []

  /** `keepMs`: the longest window asked for; older snapshots are dropped (one before it is kept). */
  constructor (private readonly keepMs: number) {}

  /** The counters' values at `at` (ms, increasing). */
  record (at: number, counts: Counts): void {
    const last = this.snaps.at(-1)
    if (last !== undefined && at <= last.at) return // a clock that did not move on: nothing new
    let reset = false
    if (last !== undefined) {
      for (const [key, before] of last.counts) {
        const v = counts.get(key)
        if (v === undefined || v < before) {
          reset = true
          break
        }
      }
    }
    this.snaps.push({ at, counts, reset })
    // Keep the newest snapshot at or before the oldest window start still wanted.
    while (this.snaps.length > 2 && (this.snaps[1] as Snapshot).at <= at - this.keepMs) this.snaps.shift()
  }

  /**
   * How much each series grew over the `windowMs` before the last snapshot, and how long a
   * span the snapshots cover (shorter than asked while they are young). A series that went
   * down between two snapshots restarted: its value after counts, as Prometheus does.
   */
  increase (windowMs: number): { readonly coveredMs: number; readonly counts: Map<string, number> } {
    const out = new Map<string, number>()
    const last = this.snaps.at(-1)
    if (last === undefined) return { coveredMs: 0, counts: out }
    const from = last.at - windowMs
    // The newest snapshot at or before the window's start (or the oldest there is).
    let i = 0
    while (i + 1 < this.snaps.length && (this.snaps[i + 1] as Snapshot).at <= from) i++
    const base = this.snaps[i] as Snapshot
    let reset = false
    for (let j = i + 1; j < this.snaps.length && !reset; j++) reset = (this.snaps[j] as Snapshot).reset
    if (!reset) {
      // No series went down: the increase is the last value minus the first (one pass over the series, not one per snapshot).
      if (base !== last) for (const [key, v] of last.counts) out.set(key, v - (base.counts.get(key) ?? 0))
      return { coveredMs: last.at - base.at, counts: out }
    }
    for (let j = i + 1; j < this.snaps.length; j++) {
      const a = this.snaps[j - 1] as Snapshot
      const b = this.snaps[j] as Snapshot
      for (const [key, v] of b.counts) {
        const before = a.counts.get(key) ?? 0
        out.set(key, (out.get(key) ?? 0) + (v >= before ? v - before : v))
      }
    }
    return { coveredMs: last.at - base.at, counts: out }
  }
}

/**
 * The route's window in `windows`, made when missing: from `zeroAt` with nothing counted
 * (cumulative counters that started at 0 then, with the process), or with no snapshot yet
 * when `zeroAt` is null.
 */
export function windowOf (windows: Map<string, CountWindow>, route: string, keepMs: number, zeroAt: number | null): CountWindow {
  let w = windows.get(route)
  if (w === undefined) {
    windows.set(route, w = new CountWindow(keepMs))
    if (zeroAt !== null) w.record(zeroAt, new Map())
  }
  return w
}
