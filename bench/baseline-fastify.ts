import proxy from '@fastify/http-proxy'
import Fastify from 'fastify'

/**
 * The baseline: bare fastify 5 + @fastify/http-proxy with library defaults and logger off,
 * the same program as ../shared/bench/anchors/proxy-fastify.js. Env: PORT, LEGACY_URL.
 */
const app = Fastify({ logger: false })
await app.register(proxy, { upstream: process.env.LEGACY_URL as string })
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
process.on('SIGTERM', () => process.exit(0))
