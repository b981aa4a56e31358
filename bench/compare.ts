import { parseArgs } from 'node:util'
import { compare, type ComparedSide } from '../src/core/compare.js'
import { compileCompare } from '../src/core/compare-rules.js'
import { jsonBody } from './upstream.js'

/**
 * `node dist/bench/compare.js [--size 64k] [--json]`: what a shadow comparison of two JSON
 * answers costs, against `JSON.parse` of both bodies measured in the same run (issue #24's
 * yardstick: comparing two equal 64 KB bodies should cost no more than parsing them). The
 * bench upstream's document (bench/upstream.ts), in this process, the default compare rules:
 *
 * - `same bytes`: both answers byte for byte equal (the common case);
 * - `other whitespace`: the same document, one side indented;
 * - `other key order`: the same document, every object's keys in reverse order (equal, but
 *   only a parse can tell);
 * - `one value differs`: a divergence near the start (both parsed, walked, one difference).
 *
 * Each case and the parse run interleaved, `--rounds` times `--n` iterations after a warm-up;
 * reported: median µs per comparison and its ratio to the parse of both in the same round.
 */
const { values: opt } = parseArgs({
  options: {
    size: { type: 'string', default: '64k' },
    rounds: { type: 'string', default: '5' },
    n: { type: 'string', default: '300' },
    json: { type: 'boolean', default: false }
  }
})

const bytes = opt.size === '1k' ? 1024 : opt.size === '64k' ? 65536 : NaN
if (Number.isNaN(bytes)) throw new Error('--size is 1k or 64k')
const base = jsonBody(bytes)
const doc = JSON.parse(base.toString()) as unknown
const reversed = (v: unknown): unknown => Array.isArray(v)
  ? v.map(reversed)
  : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversed(x)])) : v
const CASES: [string, Buffer][] = [
  ['same bytes', Buffer.from(base)],
  ['other whitespace', Buffer.from(JSON.stringify(doc, null, 2))],
  ['other key order', Buffer.from(JSON.stringify(reversed(doc)))],
  ['one value differs', jsonBody(bytes, 43)]
]
const rules = compileCompare(undefined).rules
const side = (body: Buffer): ComparedSide => ({ status: 200, headers: { 'content-type': 'application/json' }, body })
const legacy = side(base)

let sink = 0
/** µs per call of `f`, over n calls. */
function time (f: () => void, n: number): number {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) f()
  return ((performance.now() - t0) * 1000) / n
}
const parseBoth = (other: Buffer) => (): void => { sink += (JSON.parse(base.toString()) === JSON.parse(other.toString()) ? 1 : 0) }
const compareWith = (other: Buffer) => { const s = side(other); return (): void => { sink += compare(legacy, s, rules).outcome.length } }

const n = Number(opt.n)
for (const [, other] of CASES) { time(parseBoth(other), 50); time(compareWith(other), 50) } // warm-up
const parse: number[] = []
const runs = new Map<string, number[]>(CASES.map(([name]) => [name, []]))
const ratios = new Map<string, number[]>(CASES.map(([name]) => [name, []]))
for (let round = 0; round < Number(opt.rounds); round++) {
  // The yardstick: both bodies of the "other whitespace" pair (the longer text) parsed.
  const p = time(parseBoth(CASES[1]?.[1] as Buffer), n)
  parse.push(p)
  for (const [name, other] of CASES) {
    const c = time(compareWith(other), n)
    runs.get(name)?.push(c)
    ratios.get(name)?.push(c / p)
  }
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number }
const result = {
  size: opt.size,
  parseUs: median(parse),
  cases: Object.fromEntries(CASES.map(([name]) => [name, { us: median(runs.get(name) ?? []), vsParse: median(ratios.get(name) ?? []), outcome: compare(legacy, side(CASES.find((c) => c[0] === name)?.[1] as Buffer), rules).outcome }]))
}
if (sink === -1) process.stderr.write('') // keeps the work observable
if (opt.json) {
  process.stdout.write(JSON.stringify(result) + '\n')
} else {
  process.stdout.write([
    `| comparison (${opt.size}) | µs | ÷ JSON.parse of both (${result.parseUs.toFixed(0)} µs) | outcome |`,
    '|---|---|---|---|',
    ...Object.entries(result.cases).map(([name, c]) => `| ${name} | ${c.us.toFixed(1)} | ${c.vsParse.toFixed(2)} | ${c.outcome} |`)
  ].join('\n') + '\n')
}
