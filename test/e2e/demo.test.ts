import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { ROOT, run } from '../helpers/spawn.js'

t.test('npm run demo: sample backends, Ficus, a traffic summary, and a proxy to curl', async (t) => {
  const p = run(t, join(ROOT, 'dist', 'demo', 'run-demo.js'), [], { LEGACY_PORT: '0', NEW_PORT: '0', FICUS_PORT: '0', FICUS_ADMIN_PORT: '0' })
  const out = await p.waitFor(/Ctrl-C stops the demo\./)
  const proxy = /proxy\s+(http:\/\/\S+)/.exec(out)?.[1] as string
  const admin = /admin\s+(http:\/\/\S+)\/metrics/.exec(out)?.[1] as string
  t.match(out, /\/api\/customers\/1\s+route customers\s+new: 100 %\s+→ 20 on new,\s+0 on legacy/)
  t.match(out, /\/api\/orders\/1\s+route orders\s+new:\s+25 %/)
  t.match(out, /\/api\/reports\/daily\s+route reports\s+new:\s+0 %\s+→\s+0 on new, 20 on legacy/)
  t.match(out, /\/api\/customers\/3 .* 0 on new, 20 on legacy .*fallback/)
  t.match(out, /ficus_fallbacks_total\{route="customers",reason="status_503"\} 20/)
  const alice1 = await request(`${proxy}/api/orders/1`, { headers: { 'x-user-id': 'alice' } })
  const alice2 = await request(`${proxy}/api/orders/1`, { headers: { 'x-user-id': 'alice' } })
  t.equal(alice1.headers['x-ficus-backend'], alice2.headers['x-ficus-backend'], 'sticky')
  t.match(await alice1.body.json(), { id: 1, currency: 'EUR' })
  await alice2.body.dump()
  t.match(await (await request(`${admin}/metrics`)).body.text(), /ficus_requests_total\{route="orders"/)
  p.child.kill('SIGTERM')
  t.equal(await p.exited, 0)
})
