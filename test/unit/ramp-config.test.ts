import t from 'tap'
import { parseConfig } from '../../src/config/load-config.js'
import { ConfigError } from '../../src/config/problems.js'

/** `ramp:` plans in routes.yaml (config/ramp.ts): what a plan becomes, and a clear message for each mistake. */

const base = `version: 1
sticky: header:x-user-id
upstreams:
  legacy: { url: 'http://127.0.0.1:1' }
  new: { url: 'http://127.0.0.1:2' }
verify:
  orders: { route: orders, list: { path: /api/orders, items: body.items, id: id } }
`
const route = (extra = 'ramp: default'): string => `routes:
  - { name: orders, match: { path: /api/orders/* }, new: 0, shadow: 100, ${extra} }
`

function problems (yaml: string): string {
  try {
    parseConfig(base + yaml, '/tmp/routes.yaml', {})
    return ''
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map((p) => `${p.path}: ${p.message}`).join('\n')
  }
}

t.test('DESIGN.md\'s plan, as the rest of Ficus reads it', async (t) => {
  const config = parseConfig(`${base}ramp:
  plans:
    default:
      steps:
        - { new: 1,  hold: 10m, minRequests: 300 }
        - { new: 5,  hold: 15m, minRequests: 1000 }
        - { new: 25, hold: 1h }
        - { new: 100, require: [verify] }
      gates:
        divergence: { max: 2% }
        errors:     { maxIncrease: 0.5pp }
        latency:    { p99Delta: 20ms, slowerBy: 20ms, maxShare: 5% }
        verify:     { job: orders, maxAge: 24h, maxMismatchRate: 0 }
      tripwire: { failureShare: 50%, minRequests: 20 }
      onFail: rollback
${route()}`, '/tmp/routes.yaml', {})
  t.same(config.ramp.routes, { orders: 'default' })
  const plan = config.ramp.plans.default
  t.same(plan?.steps, [
    { new: 1, holdMs: 600_000, minRequests: 300, requireVerify: false },
    { new: 5, holdMs: 900_000, minRequests: 1000, requireVerify: false },
    { new: 25, holdMs: 3_600_000, minRequests: 0, requireVerify: false },
    { new: 100, holdMs: 0, minRequests: 0, requireVerify: true }
  ])
  t.same(plan?.gates, {
    divergence: { max: 0.02 },
    errors: { maxIncrease: 0.005 },
    latency: { p99DeltaMs: 20, slowerByMs: 20, maxShare: 0.05 },
    sync: null,
    verify: { job: 'orders', maxAgeMs: 86_400_000, maxMismatchRate: 0 }
  })
  t.match(plan, { windowMs: 300_000, confidence: { advance: 0.95, rollback: 0.99 }, tripwire: { failureShare: 0.5, minRequests: 20 }, onFail: 'rollback' })
})

t.test('each mistake is named, with what to write instead', async (t) => {
  const plan = (body: string): string => `ramp:\n  plans:\n    default:\n${body}\n`
  const steps = '      steps: [{ new: 5 }, { new: 100 }]'
  const cases: [string, RegExp][] = [
    [plan('      steps: [{ new: 5 }, { new: 5 }, { new: 100 }]') + route(), /steps\[1\]\.new: must be more than the step before \(5\)/],
    [plan('      steps: [{ new: 5 }, { new: 50 }]') + route(), /must end at new: 100 \(the last step is 50\)/],
    [plan('      steps: [{ new: 0 }, { new: 100 }]') + route(), /^ramp\.plans\.default\.steps\[0\]\.new: must be the share of users on new in this step, 1 to 100$/],
    [plan('      steps: [{ new: 5 }, { new: 100, require: [verify] }]') + route(), /names verify, and the plan has no gates\.verify/],
    [plan(`${steps}\n      gates: { verify: { job: nope } }`) + route(), /no verify job named "nope" \(jobs: orders\)/],
    [plan(`${steps}\n      gates: { latency: { slowerBy: 10ms } }`) + route(), /needs p99Delta .*maxShare/],
    [plan(`${steps}\n      gates: { divergence: { max: two } }`) + route(), /must be a percentage like 2%/],
    [plan(`${steps}\n      gates: { errors: { maxIncrease: 0.5% } }`) + route(), /must be percentage points like 0\.5pp/],
    [plan(`${steps}\n      confidence: { advance: 0.99, rollback: 0.9 }`) + route(), /confidence\.rollback: must be at least confidence\.advance \(0\.99\)/],
    [plan(steps) + route('ramp: fast'), /routes\[0\]\.ramp: no ramp plan named "fast" \(plans: default\)/],
    [plan(`${steps}\n      gates: { sync: { maxLag: 30s } }`) + route(), /has a sync gate, and the route's writes are not dual/],
    [plan(`${steps}\n      gates: { divergence: { max: 2% } }`) + 'routes:\n  - { name: orders, match: { path: /api/orders/* }, new: 0, ramp: default }\n', /gates on divergence of shadowed requests, and the route shadows none/],
    [plan(`${steps}\n      onFail: panic`) + route(), /onFail: must be rollback or pause/]
  ]
  for (const [yaml, expected] of cases) t.match(problems(yaml), expected, yaml)
  t.equal(problems(plan(steps) + route()), '', 'a plan of steps alone is valid')
})
