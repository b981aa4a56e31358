import { parseArgs } from 'node:util'
import { compare, type ComparedSide } from '../src/core/compare.js'
import { compileCompare } from '../src/core/compare-rules.js'
import { median } from './procs.js'
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
 * Each case and the parse of its own two bodies run interleaved, `--rounds` times `--n`
 * iterations after a warm-up; reported: median µs of each, and the median [min–max] of the
 * rounds' ratios (comparison ÷ parse in the same round).
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
/** name, new's body, and whether it is the same document as legacy's (by construction). */
const CASES: [string, Buffer, boolean][] = [
  ['same bytes', Buffer.from(base), true],
  ['other whitespace', Buffer.from(JSON.stringify(doc, null, 2)), true],
  ['other key order', Buffer.from(JSON.stringify(reversed(doc))), true],
  ['one value differs', jsonBody(bytes, 43), false]
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
/** Per case: its comparison and the parse of its own two bodies (the yardstick), µs, and their ratio, per round. */
const runs = new Map(CASES.map(([name]) => [name, { us: [] as number[], parseUs: [] as number[], ratio: [] as number[] }]))
for (let round = 0; round < Number(opt.rounds); round++) {
  for (const [name, other] of CASES) {
    const p = time(parseBoth(other), n)
    const c = time(compareWith(other), n)
    const r = runs.get(name)
    r?.us.push(c)
    r?.parseUs.push(p)
    r?.ratio.push(c / p)
  }
}
const result = {
  size: opt.size,
  cases: Object.fromEntries(CASES.map(([name, other, equal]) => {
    const r = runs.get(name) ?? { us: [], parseUs: [], ratio: [] }
    return [name, { us: median(r.us), parseUs: median(r.parseUs), vsParse: median(r.ratio), min: Math.min(...r.ratio), max: Math.max(...r.ratio), equal, outcome: compare(legacy, side(other), rules).outcome }]
  }))
}
if (sink === -1) process.stderr.write('') // keeps the work observable
if (opt.json) {
  process.stdout.write(JSON.stringify(result) + '\n')
} else {
  process.stdout.write([
    `| comparison (${opt.size}) | µs | JSON.parse of both, µs | ÷ the parse (median of rounds [min–max]) | equal documents | outcome |`,
    '|---|---|---|---|---|---|',
    ...Object.entries(result.cases).map(([name, c]) => `| ${name} | ${c.us.toFixed(1)} | ${c.parseUs.toFixed(1)} | ${c.vsParse.toFixed(2)} [${c.min.toFixed(2)}–${c.max.toFixed(2)}] | ${c.equal ? 'yes' : 'no'} | ${c.outcome} |`)
  ].join('\n') + '\n')
}
