import autocannon from 'autocannon'

/**
 * One measured load run, as a child process (so it can be pinned to its own CPU): prints
 * one JSON line. Every request carries an `x-user-id` drawn from 10,000 users, in every
 * configuration, so the load generator costs the same whatever it measures.
 * Env: URL, CONNECTIONS, DURATION (s), RATE (req/s; 0 = as fast as possible),
 * AMOUNT (a number of requests instead of a duration).
 */
const USERS = 10_000
const result = await autocannon({
  url: process.env.URL as string,
  connections: Number(process.env.CONNECTIONS ?? 50),
  duration: Number(process.env.DURATION ?? 10),
  amount: Number(process.env.AMOUNT ?? 0) || undefined,
  overallRate: Number(process.env.RATE ?? 0) || undefined,
  requests: [{
    method: 'GET',
    setupRequest: (req) => ({
      ...req,
      headers: { ...req.headers, 'x-user-id': `user-${Math.floor(Math.random() * USERS)}` }
    })
  }]
})
process.stdout.write(JSON.stringify({
  rps: result.requests.average,
  p50: result.latency.p50,
  p99: result.latency.p99,
  errors: result.errors + result.timeouts,
  non2xx: result.non2xx,
  total: result.requests.total
}) + '\n')
