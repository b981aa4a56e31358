// Starts a real Unleash server for Ficus tests (see test/helpers/unleash-server.ts).
// Everything comes from the environment; it prints `UNLEASH_READY <port>` once listening
// and exits 0 after a clean shutdown on SIGTERM or SIGINT.
//
//   UNLEASH_PORT            HTTP port (127.0.0.1 only)
//   UNLEASH_DB_PORT         PostgreSQL port on 127.0.0.1
//   UNLEASH_DB_USER         PostgreSQL user (trust auth, no password)
//   UNLEASH_DB_NAME         PostgreSQL database (must exist, migrations run on start)
//   UNLEASH_CLIENT_TOKEN    backend (client SDK) token secret, `default:development.<hex>`
//   UNLEASH_ADMIN_TOKEN     admin token secret, `*:*.<hex>`
//   UNLEASH_LOG_LEVEL       optional, default warn
//   UNLEASH_EXIT_ON_STDIN_EOF=1  also shut down when stdin closes, so a parent that dies
//                           (even by SIGKILL) does not leave this server running

// Unleash reads these while its config module loads, and `telemetry: false` in the
// options is ignored (`options.telemetry || env`), so they must be set before importing.
process.env.CHECK_VERSION = 'false'
process.env.SEND_TELEMETRY = 'false'
process.env.DATABASE_SSL = 'false'

const { start } = await import('unleash-server')

function need (name) {
  const v = process.env[name]
  if (v === undefined || v === '') {
    console.error(`start.mjs: ${name} is not set`)
    process.exit(2)
  }
  return v
}

const port = Number(need('UNLEASH_PORT'))
const clientToken = need('UNLEASH_CLIENT_TOKEN')
const adminToken = need('UNLEASH_ADMIN_TOKEN')

let unleash
try {
  unleash = await start({
    db: {
      host: '127.0.0.1',
      port: Number(need('UNLEASH_DB_PORT')),
      user: need('UNLEASH_DB_USER'),
      database: need('UNLEASH_DB_NAME'),
      ssl: false
    },
    server: {
      host: '127.0.0.1',
      port,
      unleashUrl: `http://127.0.0.1:${port}`,
      // we own SIGTERM below; Unleash's own handler would race ours
      gracefulShutdownEnable: false,
      gracefulShutdownTimeout: 200
    },
    logLevel: process.env.UNLEASH_LOG_LEVEL ?? 'warn',
    versionCheck: { enable: false },
    telemetry: false,
    authentication: {
      // no UI login is needed: both tokens are inserted straight into the fresh database
      createAdminUser: false,
      initApiTokens: [
        { tokenName: 'ficus-test-client', type: 'backend', projects: ['default'], environment: 'development', secret: clientToken },
        { tokenName: 'ficus-test-admin', type: 'admin', projects: ['*'], environment: '*', secret: adminToken }
      ]
    }
  })
} catch (err) {
  console.error('start.mjs: Unleash failed to start:', err)
  process.exit(1)
}

const address = unleash.server.address()
console.log(`UNLEASH_READY ${typeof address === 'object' && address !== null ? address.port : port}`)

let stopping = false
async function shutdown (signal) {
  if (stopping) return
  stopping = true
  const hard = setTimeout(() => {
    console.error(`start.mjs: shutdown on ${signal} took over 10s, exiting`)
    process.exit(1)
  }, 10_000)
  hard.unref()
  try {
    await unleash.stop()
    process.exit(0)
  } catch (err) {
    console.error('start.mjs: shutdown failed:', err)
    process.exit(1)
  }
}
process.on('SIGTERM', () => { void shutdown('SIGTERM') })
process.on('SIGINT', () => { void shutdown('SIGINT') })
if (process.env.UNLEASH_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => { void shutdown('stdin EOF') })
  process.stdin.on('error', () => { void shutdown('stdin error') })
  process.stdin.resume()
}
