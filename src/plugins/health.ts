import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/** Lifecycle as readiness sees it: only `ready` takes traffic from a load balancer. */
export type Phase = 'starting' | 'ready' | 'draining'

export interface Health {
  phase: Phase
}

/**
 * `/healthz`: the process is alive (200 while it can answer at all).
 * `/readyz`: send traffic here (200 only when `ready`; 503 while starting or draining).
 */
async function health(fastify: FastifyInstance, opts: { health: Health }): Promise<void> {
  fastify.get('/healthz', async () => ({ status: 'ok' }))
  fastify.get('/readyz', async (_request, reply) => {
    const phase = opts.health.phase
    return reply.code(phase === 'ready' ? 200 : 503).send({ status: phase })
  })
}

export default fp(health, { name: 'ficus-health', fastify: '5.x' })
