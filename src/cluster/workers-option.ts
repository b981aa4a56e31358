import { availableParallelism } from 'node:os'

/** Most workers `ficus start --workers` accepts. */
export const MAX_WORKERS = 64

/**
 * `--workers` / FICUS_WORKERS: an integer 1..64, or `auto` (one per CPU this process may
 * use). Returns the count, or what is wrong with the value.
 * @example parseWorkers('2') // 2
 * @example parseWorkers('0') // 'must be an integer from 1 to 64, or auto (got "0")'
 */
export function parseWorkers(value: string, cpus: () => number = availableParallelism): number | string {
  const v = value.trim()
  if (v === 'auto') return Math.max(1, Math.min(MAX_WORKERS, cpus()))
  const n = /^\d+$/.test(v) ? Number(v) : NaN
  if (Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS) return n
  return `must be an integer from 1 to ${MAX_WORKERS}, or auto (got ${JSON.stringify(value)})`
}
