/** Durations and sizes as written in routes.yaml: `500ms`, `30s`, `2m`; `512KiB`, `10MiB`, `1048576`. */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/
const DURATION_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/
const SIZE_BYTES: Readonly<Record<string, number>> = {
  B: 1, KB: 1000, KiB: 1024, MB: 1000 ** 2, MiB: 1024 ** 2, GB: 1000 ** 3, GiB: 1024 ** 3
}

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text)
  if (m === null) return undefined
  return Math.round(Number(m[1]) * (DURATION_MS[m[2] as string] as number))
}

/** Bytes, or undefined when the value is not a size. A bare number is bytes. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined
  const m = SIZE.exec(value)
  if (m === null) return undefined
  return Math.floor(Number(m[1]) * (SIZE_BYTES[m[2] ?? 'B'] as number))
}
