import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Metrics } from '../adapters/metrics-registry.js'

/** `GET /metrics` on the admin port: Prometheus text format, every Ficus family plus process metrics. */
async function metricsEndpoint(fastify: FastifyInstance, opts: { metrics: Metrics }): Promise<void> {
  const { register } = opts.metrics
  fastify.get('/metrics', async (_request, reply) => {
    return reply.type(register.contentType).send(await register.metrics())
  })
}

export default fp(metricsEndpoint, { name: 'ficus-metrics', fastify: '5.x' })
