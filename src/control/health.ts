import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/** Lifecycle as readiness sees it: only `ready` takes traffic from a load balancer. */
export type Phase = 'starting' | 'ready' | 'draining'

export interface Health {
  phase: Phase
}

/** Cluster mode (`ficus start --workers N`): workers serving traffic, of the number started. */
export interface WorkersReady {
  readonly ready: number
  readonly of: number
}

/**
 * `/healthz`: the process is alive (200 while it can answer at all).
 * `/readyz`: send traffic here (200 only when `ready`; 503 while starting or draining). In
 * cluster mode it also needs every worker ready, and says how many are: a worker being
 * restarted makes it `starting` until the replacement listens.
 */
async function health(fastify: FastifyInstance, opts: { health: Health; workers?: () => WorkersReady }): Promise<void> {
  const workersOf = opts.workers
  fastify.get('/healthz', async () => ({ status: 'ok' }))
  fastify.get('/readyz', async (_request, reply) => {
    const phase = opts.health.phase
    if (workersOf === undefined) return reply.code(phase === 'ready' ? 200 : 503).send({ status: phase })
    const workers = workersOf()
    const status: Phase = phase === 'ready' && workers.ready < workers.of ? 'starting' : phase
    return reply.code(status === 'ready' ? 200 : 503).send({ status, workers })
  })
}

export default fp(health, { name: 'ficus-health', fastify: '5.x' })
