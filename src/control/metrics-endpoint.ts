import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { MetricJson } from '../core/ramp.js'

/** What `/metrics` renders: a prom-client Registry, or a cluster primary's aggregate of its workers' registries. */
export interface MetricsText {
  readonly contentType: string
  metrics(): Promise<string>
  /** The same metrics as prom-client's JSON (a Registry's getMetricsAsJSON): what the ramp controller reads. */
  getMetricsAsJSON(): Promise<readonly MetricJson[]>
}

/** `GET /metrics` on the admin port: Prometheus text format, every Ficus family plus process metrics. */
async function metricsEndpoint(fastify: FastifyInstance, opts: { metrics: MetricsText }): Promise<void> {
  const source = opts.metrics
  fastify.get('/metrics', async (_request, reply) => {
    return reply.type(source.contentType).send(await source.metrics())
  })
}

export default fp(metricsEndpoint, { name: 'ficus-metrics', fastify: '5.x' })
