import t from 'tap'
import { CountWindow } from '../../src/core/window.js'

/** core/window.ts: increases of cumulative counters over a sliding window, resets included. */

const m = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o))

t.test('the increase over the window, from snapshots every 10 s', async (t) => {
  const w = new CountWindow(60_000)
  t.same(w.increase(60_000), { coveredMs: 0, counts: new Map() }, 'nothing recorded: nothing covered')
  for (let s = 0; s <= 120; s += 10) w.record(s * 1000, m({ 'orders/new/200': s * 2, 'orders/new/500': s >= 100 ? 5 : 0 }))
  const last = w.increase(60_000)
  t.equal(last.coveredMs, 60_000)
  t.same(Object.fromEntries(last.counts), { 'orders/new/200': 120, 'orders/new/500': 5 }, '2 a second for 60 s; the 5 errors of second 100')
  const young = new CountWindow(60_000)
  young.record(0, m({ a: 0 }))
  young.record(20_000, m({ a: 40 }))
  t.same(young.increase(60_000), { coveredMs: 20_000, counts: m({ a: 40 }) }, 'younger than the window: what it covers, and how long')
})

t.test('a counter that goes down was reset (a worker restarted): its value after counts, as Prometheus does', async (t) => {
  const w = new CountWindow(60_000)
  w.record(0, m({ a: 100 }))
  w.record(10_000, m({ a: 120 }))
  w.record(20_000, m({ a: 7 })) // reset, then 7
  w.record(30_000, m({ a: 17 }))
  t.same(Object.fromEntries(w.increase(60_000).counts), { a: 20 + 7 + 10 })
  w.record(30_000, m({ a: 999 }))
  t.same(Object.fromEntries(w.increase(60_000).counts), { a: 37 }, 'a snapshot at a time already recorded is ignored')
})

t.test('a reset before the window does not count in it; a series that vanishes counts as reset (what it grew while it lived is kept)', async (t) => {
  const w = new CountWindow(120_000)
  w.record(0, m({ a: 100 }))
  w.record(10_000, m({ a: 3 })) // reset, before the window below
  w.record(20_000, m({ a: 13 }))
  w.record(30_000, m({ a: 23 }))
  t.same(Object.fromEntries(w.increase(20_000).counts), { a: 20 }, 'last minus first when no series went down within the window')
  t.same(Object.fromEntries(w.increase(60_000).counts), { a: 3 + 20 }, 'across the reset, pair by pair')
  const v = new CountWindow(120_000)
  v.record(0, m({ a: 0, b: 0 }))
  v.record(10_000, m({ a: 5, b: 4 }))
  v.record(20_000, m({ a: 9 })) // b's worker went away
  t.same(Object.fromEntries(v.increase(60_000).counts), { a: 9, b: 4 })
})

t.test('old snapshots are dropped: memory stays bounded by the window', async (t) => {
  const w = new CountWindow(30_000)
  for (let s = 0; s < 10_000; s += 5) w.record(s * 1000, m({ a: s }))
  t.ok((w as unknown as { snaps: unknown[] }).snaps.length <= 8, 'about window / interval snapshots kept')
  t.same(Object.fromEntries(w.increase(30_000).counts), { a: 30 })
})
