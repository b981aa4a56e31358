import t from 'tap'
import { run } from '../helpers/spawn.js'

interface Report {
  readonly filesCrossed: number
  readonly callsBetweenFiles: { readonly pairs: number }
  readonly requestStateWrites: { readonly outside: number; readonly fields: readonly { field: string; files: Record<string, number> }[] }
  readonly files: Record<string, number>
  readonly mismatched: readonly string[]
  readonly unmapped: readonly string[]
}

// bench/request-path.ts keeps working, and the request state keeps its one owner: no file
// but the Exchange's own writes a field of it (docs/architecture.md, "The request's state").
t.test('bench/request-path: one GET runs the pipeline stages, and only the Exchange writes request state', async (t) => {
  t.setTimeout(120_000)
  const p = run(t, 'dist/bench/request-path.js', ['--json'])
  t.equal(await p.exitCode({ timeoutMs: 110_000 }), 0, p.stderr)
  const r = JSON.parse(p.stdout) as Report
  t.same(r.mismatched, [], 'both GETs ran the same functions as often (coverage and breakpoints agree)')
  t.same(r.unmapped, [], 'every executed function maps to its TypeScript source')
  t.equal(r.requestStateWrites.outside, 0, `request state written outside the Exchange: ${JSON.stringify(r.requestStateWrites.fields)}`)
  for (const stage of ['admit', 'decide', 'forward/forwarder', 'record']) {
    t.ok((r.files[`src/pipeline/${stage}.ts`] ?? 0) > 0, `the ${stage} stage ran`)
  }
  t.ok(r.callsBetweenFiles.pairs > 0, 'calls between files were seen')
})
