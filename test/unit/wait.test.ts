import { once, EventEmitter } from 'node:events'
import t from 'tap'
import { waitFor } from '../helpers/wait.js'

t.test('waitFor gives an event\'s value when it happens before the deadline', async (t) => {
  const e = new EventEmitter()
  setImmediate(() => e.emit('ready', 42))
  t.same(await waitFor(once(e, 'ready'), { timeoutMs: 5_000, message: 'ready was not emitted' }), [42])
})

t.test('waitFor fails with its message, from the caller, once the deadline passes', async (t) => {
  const never = new Promise<void>(() => {})
  const err = await waitFor(never, { timeoutMs: 20, message: 'the copy did not reach new' }).then(() => null, (e: unknown) => e as Error)
  t.equal(err?.message, 'the copy did not reach new (waited 20 ms)')
  t.match(err?.stack, /wait\.test\.ts/, 'the stack names the wait that failed')
  let count = 0
  await t.rejects(waitFor(() => false, { timeoutMs: 20, message: () => `only ${count} of 3`, intervalMs: 1 }).finally(() => { count = 1 }), { message: /^only 0 of 3 \(waited 20 ms\)$/ }, 'a message function is read when the deadline passes')
})

t.test('waitFor polls a condition, sync or async, and returns its first truthy value', async (t) => {
  let n = 0
  t.equal(await waitFor(() => ++n >= 3 && n, { message: 'n did not reach 3', intervalMs: 1 }), 3)
  let m = 0
  t.equal(await waitFor(async () => (++m >= 2 ? 'done' : ''), { message: 'not done', intervalMs: 1 }), 'done')
  await t.rejects(waitFor(() => { throw new Error('boom') }, { message: 'x' }), { message: 'boom' }, 'a check that throws fails the wait with its error')
})

t.test('a rejected event fails the wait with its own error', async (t) => {
  await t.rejects(waitFor(Promise.reject(new Error('refused')), { message: 'x' }), { message: 'refused' })
})
