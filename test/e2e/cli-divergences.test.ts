import t from 'tap'
import { CLI, run } from '../helpers/spawn.js'
import { diverging } from '../helpers/diverging.js'

/** `ficus divergences --since` and `ficus divergences reset` against a running Ficus (docs/shadow.md "Epochs and windows"). */

t.test('ficus divergences --since: counts over the last minutes; past the hour it says to use epoch', async (t) => {
  const f = await diverging(t)
  const recent = run(t, CLI, ['divergences', 'orders', '--since', '15m', '--admin-url', f.adminUrl, '--token', 'tok-1'])
  t.equal(await recent.exitCode(), 0)
  t.match(recent.stdout, /^orders: 3 compared, 3 diverged/)
  const old = run(t, CLI, ['divergences', '--since', '3h', '--admin-url', f.adminUrl, '--token', 'tok-1'])
  t.equal(await old.exitCode(), 1)
  t.match(old.stderr, /since: counts are kept per minute for the last 60 minutes; for more, since=epoch .*\[FICUS_ERR_BAD_ADMIN_REQUEST\]/)
  const resetSince = run(t, CLI, ['divergences', 'reset', '--since', '5m'])
  t.equal(await resetSince.exitCode(), 2, '--since is no option of a reset')
})

t.test('ficus divergences reset: a route\'s counts start a new epoch, audited with the reason', async (t) => {
  const f = await diverging(t)
  const env = { FICUS_ADMIN_URL: f.adminUrl, FICUS_ADMIN_TOKEN: 'tok-1' }
  const reset = run(t, CLI, ['divergences', 'reset', 'orders', '--reason', 'fixed the envelope'], env)
  t.equal(await reset.exitCode(), 0)
  t.match(reset.stdout, /^orders: divergence counts reset, epoch 2 from \S+Z\n$/)
  const one = run(t, CLI, ['divergences', 'orders'], env)
  t.equal(await one.exitCode(), 0)
  t.match(one.stdout, /^orders: 0 compared, 0 diverged \(-\), 0 errors, 0 skipped\n {2}since \S+: epoch 2, after a reset \(fixed the envelope\)\n/)
  const log = run(t, CLI, ['audit', '--limit', '1'], env)
  t.equal(await log.exitCode(), 0)
  t.match(log.stdout, /\n\S+\s+admin\s+reset-divergences\s+orders\s+divergence counts start a new epoch\s+fixed the envelope\n$/)
})

