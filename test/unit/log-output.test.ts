import { spawnSync } from 'node:child_process'
import { once, EventEmitter } from 'node:events'
import t from 'tap'
import { ACCESS_BUFFER_CHARS, LogOutput, type Sink } from '../../src/adapters/log-output.js'
import { createLogger, lineWriter, type LineWriter } from '../../src/adapters/logger.js'
import { waitFor } from '../helpers/wait.js'

/** A sink that keeps each write(2) Ficus would make, and says when one happens. */
class Writes extends EventEmitter implements Sink {
  readonly calls: string[] = []
  write (data: string): void {
    this.calls.push(data)
    this.emit('write')
  }

  flushSync (): void {}
  lines (): Record<string, unknown>[] {
    return this.calls.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
  }
}

/** A logger over LogOutput over Writes, and its access-line writer: what Ficus builds at start. */
function rig(level: string): { sink: Writes; out: LogOutput; log: ReturnType<typeof createLogger>; access: LineWriter } {
  const sink = new Writes()
  const out = new LogOutput(sink)
  const log = createLogger(level, out)
  return { sink, out, log, access: lineWriter(log, 'request') }
}

t.test('access lines are batched; other lines go out at once, after them, in order', async (t) => {
  const { sink, log, access } = rig('info')
  access('info', '"reqId":"a","status":200')
  access('info', '"reqId":"b","status":200')
  t.equal(sink.calls.length, 0, 'access lines wait in the buffer')
  log.warn({ route: 'r' }, 'something to see now')
  t.equal(sink.calls.length, 1, 'a warning is written at once, with the access lines before it in the same write')
  t.same(sink.lines().map((l) => l.reqId ?? l.msg), ['a', 'b', 'something to see now'])
  t.match(sink.lines()[0], { level: 'info', service: 'ficus', reqId: 'a', status: 200, msg: 'request' }, 'shaped as pino shapes its lines')
  t.type(sink.lines()[0]?.time, 'number')

  // Up to 4 KiB of lines (PIPE_BUF: workers share stdout) make one write, cut between lines.
  const line = `"reqId":"${'x'.repeat(200)}"`
  while (sink.calls.length === 1) access('info', line)
  const batch = sink.calls[1]!
  t.ok(batch.length <= ACCESS_BUFFER_CHARS && batch.length > ACCESS_BUFFER_CHARS - 300, `one write of ${batch.split('\n').length - 1} lines (${batch.length} chars)`)
  t.ok(batch.endsWith('\n') && batch.split('\n').length - 1 >= 10, 'whole lines, many per write')
  // One access line is buffered now; a warning that would take the write past PIPE_BUF
  // with it goes out as a write of its own, after the buffered line.
  const before = sink.calls.length
  log.warn('x'.repeat(ACCESS_BUFFER_CHARS - 150))
  const writes = sink.calls.slice(before)
  t.equal(writes.length, 2, 'the buffered line, then the warning')
  t.ok(writes.every((w) => w.length <= ACCESS_BUFFER_CHARS), 'no write longer than PIPE_BUF')
  t.match(writes[1], /"level":"warn"/)

  // Fewer lines than that are written by the timer, without any further request.
  access('info', '"reqId":"late"')
  const alive = setInterval(() => {}, 1000) // the flush timer is unref'd: a server's sockets keep the process alive, here this does
  await waitFor(once(sink, 'write'), { timeoutMs: 5_000, message: 'the flush timer did not write the buffered access line' }).finally(() => { clearInterval(alive) })
  t.equal(sink.lines().at(-1)?.reqId, 'late', 'a quiet proxy still writes its last lines (within 100 ms)')
})

t.test('the log level applies to access lines; flush writes what is buffered', async (t) => {
  const { sink, out, log, access } = rig('warn')
  access('info', '"reqId":"ok"')
  access('warn', '"reqId":"failed"')
  log.flush()
  t.same(sink.lines().map((l) => [l.level, l.reqId]), [['warn', 'failed']], 'level warn: only failed requests are logged')
  log.level = 'info'
  access('info', '"reqId":"after"')
  out.flushSync()
  t.equal(sink.lines().at(-1)?.reqId, 'after', 'a level changed at runtime applies to the next line')
})

t.test('lines buffered when the process exits are written', async (t) => {
  const script = `
    import { createLogger, lineWriter } from './dist/src/adapters/logger.js'
    const w = lineWriter(createLogger('info'), 'request')
    for (let i = 0; i < 10; i++) w('info', '"reqId":"' + i + '"')
    process.exit(3)`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  t.equal(r.status, 3)
  t.same(r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { reqId: string }).reqId), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
})
