import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { Session } from 'node:inspector/promises'
import { SourceMap, type SourceMapPayload } from 'node:module'
import type { AddressInfo } from 'node:net'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker } from 'node:worker_threads'
import ts from 'typescript'
import { Agent, request } from 'undici'
import { createLogger } from '../src/adapters/logger.js'
import { parseConfig } from '../src/config/load-config.js'
import { startFicus } from '../src/start.js'

/**
 * `node dist/bench/request-path.js [--shadow] [--json]` (after `npm run build`): how long is
 * the path of one proxied GET through the code, before and after a refactor?
 * - files crossed: src/ files with at least one function executed for that GET;
 * - calls between files: distinct caller → callee function pairs declared in different src/
 *   files, the caller calling the callee directly during that GET (also: call sites, calls);
 * - writes to request state: a static count of assignments (=, op=, ++/--, delete) to a
 *   property of a value typed as the class `Exchange`, outside the file that declares it.
 *
 * A loopback upstream and a Ficus (access log at info, as in production, into a sink) run in
 * this process. After 200 warm-up GETs (lazy paths taken, JIT warm):
 * 1. V8 precise coverage with call counts around one GET (a take resets the counts, so a
 *    first take is the zero point): the functions it ran, and how often.
 * 2. A breakpoint in each of those functions around one more GET, set from a worker thread (a
 *    session cannot pause its own thread): each pause gives the callee and its direct
 *    caller, so calls through callbacks, interfaces and getters count too. Each function must
 *    be hit as often as coverage counted it: the two GETs agree.
 * JS functions and frames map to the innermost TypeScript function through dist/'s source
 * maps (a class's field initialisers and implicit constructor are `Class.<fields>`). Nothing
 * in src/ is named here but the class, so the script survives files moving.
 */
const ROOT = join(import.meta.dirname, '..', '..')
const SRC = join(ROOT, 'src') + sep
const DIST_SRC = pathToFileURL(join(ROOT, 'dist', 'src') + sep).href
const WARMUP = 200
const PATH = '/orders/42'

interface Loc { scriptId: string; lineNumber: number; columnNumber: number }
type Frame = Loc & { url: string }
/** One pause: where the called function starts, and where its caller was (none at the bottom of a stack). */
interface Hit { callee: Frame; caller: Frame | undefined }
/** A function coverage saw run: offsets in its dist/ script. */
interface Fn { url: string; scriptId: string; name: string; start: number; end: number; count: number }

const sleep = (ms: number): Promise<void> => new Promise((r) => { setTimeout(r, ms) })

/** Worker thread: the main thread's debugger. Sets the breakpoints, records every pause. */
function tracer (): void {
  const session = new Session()
  session.connectToMainThread()
  const urls = new Map<string, string>()
  const hits: Hit[] = []
  const frame = (l: { scriptId: string; lineNumber: number; columnNumber?: number } | undefined): Frame | undefined =>
    l === undefined ? undefined : { ...l, columnNumber: l.columnNumber ?? 0, url: urls.get(l.scriptId) ?? '' }
  session.on('Debugger.scriptParsed', ({ params }) => { urls.set(params.scriptId, params.url) })
  session.on('Debugger.paused', ({ params }) => {
    const [callee, caller] = params.callFrames
    // The function paused in, by where it starts (its breakpoint may have resolved elsewhere).
    const start = frame(callee?.functionLocation ?? callee?.location)
    if (start !== undefined && (params.hitBreakpoints ?? []).length > 0) hits.push({ callee: start, caller: frame(caller?.location) })
    void session.post('Debugger.resume') // the main thread is stopped until then
  })
  parentPort!.on('message', (m: { functions?: { start: Loc; end: Loc }[] }) => {
    void (async () => {
      if (m.functions === undefined) {
        await session.post('Debugger.disable')
        parentPort!.postMessage(hits)
        return
      }
      await session.post('Debugger.enable')
      for (const { start, end } of m.functions) {
        // The first breakable place after the start: the one at an arrow's start belongs to
        // the enclosing function (where the closure is made).
        const { locations } = await session.post('Debugger.getPossibleBreakpoints', { start, end })
        const at = locations.find((l) => l.lineNumber > start.lineNumber || (l.columnNumber ?? 0) > start.columnNumber)
        if (at !== undefined) await session.post('Debugger.setBreakpoint', { location: at })
      }
      parentPort!.postMessage('ready')
    })()
  })
}

/** Runs Ficus; returns the dist/src functions one GET ran and the calls the next one made. */
async function measure (shadow: boolean): Promise<{ fns: Fn[]; hits: Hit[] }> {
  let answered = 0
  const upstream = createServer((req, res) => {
    res.on('close', () => { answered++ })
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":42,"items":[1,2,3]}')
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
  const config = parseConfig(`version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams: { legacy: { url: ${url} }, new: { url: ${url} } }
sticky: header:x-user-id
shutdown: { drainDelay: 0s }
routes:
  - { name: orders, match: { path: /orders/* }, new: 0${shadow ? ', shadow: 100' : ''} }
`, 'request-path.yaml', {})
  // Discards the log; counts access-log lines.
  const sink = Object.assign(new Writable({ write (c: Buffer, _e, cb) { if (c.toString().includes('"msg":"request"')) sink.lines++; cb() } }), { lines: 0 })
  const ficus = await startFicus(config, { logger: createLogger('info', sink) })
  const agent = new Agent({ keepAliveTimeout: 10_000 })
  const session = new Session()
  const worker = new Worker(new URL(import.meta.url))
  // Over when its access-log line is out (the response's close listener ran) and the upstream
  // answered every copy; `settle` leaves time for the shadow comparison (after a setImmediate).
  const get = async (settle = 0): Promise<void> => {
    const [lines, seen] = [sink.lines, answered]
    const r = await request(ficus.trafficUrl + PATH, { dispatcher: agent, headers: { 'x-user-id': 'u42' } })
    await r.body.text()
    if (r.statusCode !== 200) throw new Error(`GET ${PATH}: ${r.statusCode}`)
    for (let i = 0; sink.lines === lines || answered < seen + (shadow ? 2 : 1); i++) {
      if (i > 5000) throw new Error('no access-log line, or the upstream not answered, after 5 s')
      await sleep(1)
    }
    await sleep(settle)
  }
  try {
    for (let i = 0; i < WARMUP; i++) await get()
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false })
    await session.post('Profiler.takePreciseCoverage') // the zero point
    await get(50)
    const { result } = await session.post('Profiler.takePreciseCoverage')
    await session.post('Profiler.stopPreciseCoverage')
    const fns = result.filter((s) => s.url.startsWith(DIST_SRC)).flatMap((s) => s.functions.map((f) => ({
      url: s.url, scriptId: s.scriptId, name: f.functionName, start: f.ranges[0]?.startOffset ?? 0, end: f.ranges[0]?.endOffset ?? 0, count: f.ranges[0]?.count ?? 0
    })).filter((f) => f.count > 0))
    const loc = (f: Fn, offset: number): Loc => ({ scriptId: f.scriptId, ...script(f.url).lineCol(offset) })
    worker.postMessage({ functions: fns.map((f) => ({ start: loc(f, f.start), end: loc(f, f.end) })) })
    await once(worker, 'message')
    await get(50)
    worker.postMessage({})
    const [hits] = await once(worker, 'message') as [Hit[]]
    return { fns, hits }
  } finally {
    session.disconnect()
    await worker.terminate()
    await agent.close()
    await ficus.stop()
    await new Promise((r) => upstream.close(r))
  }
}

/* ---------- From dist/ JavaScript to src/ TypeScript ---------- */

let program: ts.Program
const rel = (f: ts.SourceFile): string => relative(ROOT, f.fileName)

/** A function as V8 runs it: a function-like node, or a class (field initialisers, implicit constructor). */
type Unit = ts.FunctionLikeDeclaration | ts.ClassLikeDeclaration
const isUnit = (n: ts.Node): n is Unit => (ts.isFunctionLike(n) && 'body' in n && n.body !== undefined) || ts.isClassLike(n)

function nameOf (n: Unit): string {
  const cls = (c: ts.Node): string => ts.isClassLike(c) && c.name !== undefined ? c.name.text + '.' : ''
  if (ts.isClassLike(n)) return `${n.name?.text ?? 'class'}.<fields>`
  if (ts.isConstructorDeclaration(n)) return `${cls(n.parent)}constructor`
  const pre = ts.isGetAccessor(n) ? 'get ' : ts.isSetAccessor(n) ? 'set ' : ''
  if (n.name !== undefined && !ts.isComputedPropertyName(n.name)) return pre + cls(n.parent) + n.name.getText()
  // An arrow or function expression: named after what it is assigned to (through ?? and ?:), or returned from.
  let p = n.parent
  while (ts.isParenthesizedExpression(p) || ts.isConditionalExpression(p) || ts.isBinaryExpression(p)) p = p.parent
  if ((ts.isVariableDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isPropertyAssignment(p)) && ts.isIdentifier(p.name)) return p.name.text
  if (ts.isReturnStatement(p) || ts.isArrowFunction(p)) {
    let outer: ts.Node = p
    while (!isUnit(outer)) outer = outer.parent
    return `${nameOf(outer)}/<returned>`
  }
  return `<anonymous:${n.getSourceFile().getLineAndCharacterOfPosition(n.getStart()).line + 1}>`
}

/** Innermost function or class of `sf` containing `pos`. */
function unitAt (sf: ts.SourceFile, pos: number): Unit | undefined {
  let found: Unit | undefined
  const visit = (n: ts.Node): void => {
    if (pos < n.getStart(sf) || pos >= n.end) return
    if (isUnit(n)) found = n
    ts.forEachChild(n, visit)
  }
  visit(sf)
  return found
}

/** A dist/ script: JS offset → line/column, and line/column → the TypeScript function there. */
const scripts = new Map<string, ReturnType<typeof loadScript>>()
const script = (url: string): ReturnType<typeof loadScript> => scripts.get(url) ?? scripts.set(url, loadScript(url)).get(url)!
function loadScript (url: string) {
  const file = fileURLToPath(url)
  const js = readFileSync(file, 'utf8')
  const map = new SourceMap(JSON.parse(readFileSync(file + '.map', 'utf8')) as SourceMapPayload)
  const lineCol = (offset: number): { lineNumber: number; columnNumber: number } => {
    const before = js.slice(0, offset)
    return { lineNumber: before.split('\n').length - 1, columnNumber: offset - before.lastIndexOf('\n') - 1 }
  }
  const unit = (line: number, col: number): { file: string; node: Unit } | undefined => {
    const e = map.findEntry(line, col)
    if (!('originalSource' in e)) return undefined
    const sf = program.getSourceFile(resolve(dirname(file), e.originalSource.replace(/^file:\/\//, '')))
    if (sf === undefined) return undefined
    // findEntry gives the mapping segment at or before the place: on its line, keep the distance.
    const ls = sf.getLineStarts()
    const pos = (ls[e.originalLine] ?? sf.end) + e.originalColumn + (e.generatedLine === line ? col - e.generatedColumn : 0)
    const node = unitAt(sf, Math.min(pos, (ls[e.originalLine + 1] ?? sf.end + 1) - 1))
    return node === undefined ? undefined : { file: rel(sf), node }
  }
  return { lineCol, unit }
}

/* ---------- Writes to request state (static) ---------- */

/** Assignments, ++/-- and deletes whose target is a property of a value typed `Exchange` (or a subclass). */
function exchangeWrites (srcFiles: readonly ts.SourceFile[]): { declaredIn: string[]; outside: Record<string, Record<string, number>>; inside: number } {
  const checker = program.getTypeChecker()
  const classes = new Set<ts.Node>()
  for (const sf of srcFiles) ts.forEachChild(sf, function find (n) { if (ts.isClassDeclaration(n) && n.name?.text === 'Exchange') classes.add(n); ts.forEachChild(n, find) })
  const isExchange = (t: ts.Type): boolean => {
    t = checker.getNonNullableType(t)
    if (t.isUnion() || t.isIntersection()) return t.types.some(isExchange)
    const c = t.isTypeParameter() ? checker.getBaseConstraintOfType(t) : undefined // `this`
    if (c !== undefined && c !== t) return isExchange(c)
    return (t.getSymbol()?.declarations ?? []).some((d) => classes.has(d)) || (t.isClass() && checker.getBaseTypes(t).some(isExchange))
  }
  const homes = new Set([...classes].map((c) => c.getSourceFile()))
  const w = { declaredIn: [...homes].map(rel), outside: {} as Record<string, Record<string, number>>, inside: 0 }
  for (const sf of srcFiles) {
    ts.forEachChild(sf, function visit (n) {
      let target: ts.Expression | undefined
      if (ts.isBinaryExpression(n) && n.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && n.operatorToken.kind <= ts.SyntaxKind.LastAssignment) target = n.left
      else if ((ts.isPrefixUnaryExpression(n) || ts.isPostfixUnaryExpression(n)) && (n.operator === ts.SyntaxKind.PlusPlusToken || n.operator === ts.SyntaxKind.MinusMinusToken)) target = n.operand
      else if (ts.isDeleteExpression(n)) target = n.expression
      while (target !== undefined && (ts.isParenthesizedExpression(target) || ts.isNonNullExpression(target) || ts.isAsExpression(target))) target = target.expression
      if (target !== undefined && (ts.isPropertyAccessExpression(target) || ts.isElementAccessExpression(target)) && isExchange(checker.getTypeAtLocation(target.expression))) {
        const field = ts.isPropertyAccessExpression(target) ? target.name.text : target.argumentExpression.getText(sf)
        if (homes.has(sf)) w.inside++
        else {
          const byFile = (w.outside[field] ??= {})
          byFile[rel(sf)] = (byFile[rel(sf)] ?? 0) + 1
        }
      }
      ts.forEachChild(n, visit)
    })
  }
  return w
}

/* ---------- Report ---------- */

async function main (): Promise<void> {
  const { values: opt } = parseArgs({ options: { shadow: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } })
  const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')) } })
  if (parsed === undefined) throw new Error('cannot read tsconfig.json')
  program = ts.createProgram(parsed.fileNames.filter((f) => resolve(f).startsWith(SRC)), parsed.options)
  program.getTypeChecker() // binds the files: sets the parent links nameOf walks
  const srcFiles = program.getSourceFiles().filter((f) => resolve(f.fileName).startsWith(SRC))
  // A timer of Ficus's own (the verify scheduler's 1 s tick, …) that fires inside the window
  // of one GET and not the other's shows as a mismatch that is not the request's: measured
  // again, three times at most; a mismatch the GETs themselves make stays in every attempt.
  let report = analyse(await measure(opt.shadow), srcFiles, opt.shadow)
  for (let attempt = 2; attempt <= 3 && report.mismatched.length > 0; attempt++) report = analyse(await measure(opt.shadow), srcFiles, opt.shadow)
  if (opt.json) { process.stdout.write(JSON.stringify(report, null, 2) + '\n'); return }
  const { callsBetweenFiles: c, requestStateWrites: w } = report
  const list = (title: string, xs: string[]): string[] => xs.length === 0 ? [] : ['', title, ...xs.map((x) => `  ${x}`)]
  process.stdout.write([
    `One ${report.request}:`,
    `  files crossed:       ${report.filesCrossed} (${report.functionsExecuted} functions executed)`,
    `  calls between files: ${c.pairs} caller → callee pairs (${c.sites} call sites, ${c.calls} calls)`,
    `  writes to Exchange:  ${w.outside} outside ${w.declaredIn.join(', ')}, in ${w.outsideFiles} files (static, all of src/); ${w.inside} inside it`,
    ...w.fields.map((f) => `    ${f.field}: ${f.writes} in ${Object.keys(f.files).length} file(s) (${Object.entries(f.files).map(([k, v]) => `${k} ${v}`).join(', ')})`),
    ...list('Files crossed (functions executed):', Object.entries(report.files).map(([f, n]) => `${f}  ${n}`)),
    ...list('Calls between files (direct calls seen at run time):', report.pairs),
    ...list('Entered from outside src/ (fastify hooks, undici handlers, listeners, timers):', report.enteredFromOutside),
    ...list('WARNING: run a different number of times by the two GETs (coverage, breakpoints):', report.mismatched),
    ...list('WARNING: not mapped to TypeScript (check the source maps):', report.unmapped)
  ].join('\n') + '\n')
}

/** What one measure's two GETs ran, mapped to TypeScript functions, and the static count of writes to request state. */
function analyse ({ fns, hits }: { fns: Fn[]; hits: Hit[] }, srcFiles: readonly ts.SourceFile[], shadow: boolean) {

  // Per TypeScript function: runs (coverage, first GET; several JS functions may map to one)
  // and breakpoint hits (second GET).
  const ran = new Map<Unit, { id: string; file: string; runs: number; hits: number }>()
  const entry = (u: { file: string; node: Unit }) => ran.get(u.node) ?? ran.set(u.node, { id: `${u.file}:${nameOf(u.node)}`, file: u.file, runs: 0, hits: 0 }).get(u.node)!
  const unmapped: string[] = []
  for (const f of fns) {
    const { lineNumber, columnNumber } = script(f.url).lineCol(f.start)
    const u = script(f.url).unit(lineNumber, columnNumber)
    if (u === undefined) unmapped.push(`${f.url.slice(DIST_SRC.length)}:${lineNumber + 1} ${f.name}`)
    else entry(u).runs += f.count
  }
  const pairs = new Map<string, string>() // by node pair: two functions may share a name
  const sites = new Set<string>()
  const entered = new Set<Unit>()
  let calls = 0
  const at = (f: Frame | undefined) => f === undefined || !f.url.startsWith(DIST_SRC) ? undefined : script(f.url).unit(f.lineNumber, f.columnNumber)
  for (const h of hits) {
    const [callee, caller] = [at(h.callee), at(h.caller)]
    if (callee === undefined) continue
    entry(callee).hits++
    if (caller === undefined) continue
    entered.add(callee.node)
    if (caller.file === callee.file) continue
    pairs.set(`${caller.node.pos}:${entry(caller).id}>${callee.node.pos}:${entry(callee).id}`, `${entry(caller).id} → ${entry(callee).id}`)
    sites.add(`${h.caller!.url}:${h.caller!.lineNumber}:${h.caller!.columnNumber}`)
    calls++
  }
  const runs = [...ran].filter(([, r]) => r.runs > 0)
  const files = new Map<string, number>()
  for (const [, r] of runs) files.set(r.file, (files.get(r.file) ?? 0) + 1)
  const w = exchangeWrites(srcFiles)
  const fields = Object.entries(w.outside).map(([field, byFile]) => ({ field, writes: Object.values(byFile).reduce((a, b) => a + b, 0), files: byFile }))
    .sort((a, b) => b.writes - a.writes || a.field.localeCompare(b.field))
  const writes = fields.reduce((a, f) => a + f.writes, 0)
  const writeFiles = new Set(fields.flatMap((f) => Object.keys(f.files)))
  const report = {
    request: `GET ${PATH} (${shadow ? 'shadow: 100, copied to new and compared' : 'pass-through to legacy'}), after ${WARMUP} warm-up requests`,
    filesCrossed: files.size,
    functionsExecuted: runs.length,
    callsBetweenFiles: { pairs: pairs.size, sites: sites.size, calls },
    requestStateWrites: { class: 'Exchange', declaredIn: w.declaredIn, outside: writes, outsideFiles: writeFiles.size, inside: w.inside, fields },
    files: Object.fromEntries([...files].sort((a, b) => a[0].localeCompare(b[0]))),
    pairs: [...pairs.values()].sort(),
    // Called by fastify, undici or node (hooks, listeners, handlers, timers): no src/ caller.
    enteredFromOutside: runs.filter(([u]) => !entered.has(u)).map(([, r]) => r.id).sort(),
    functions: Object.fromEntries([...ran.values()].sort((a, b) => a.id.localeCompare(b.id)).map((r) => [r.id, { runs: r.runs, hits: r.hits }] as const)),
    // Sanity: both GETs run the same functions as often, and every function maps to TypeScript.
    mismatched: [...ran.values()].filter((r) => r.runs !== r.hits).map((r) => `${r.id}: ${r.runs} runs, ${r.hits} breakpoint hits`).sort(),
    unmapped
  }
  return report
}

if (isMainThread) await main()
else tracer()
