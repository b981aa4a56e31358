import { randomBytes } from 'node:crypto'
import t from 'tap'
import { seal, sealKey, unseal } from '../../src/adapters/sealed.js'

t.test('a sealed credential opens with its key only, and an altered one does not open', async (t) => {
  const text = randomBytes(32).toString('base64')
  const key = sealKey(text)!
  t.equal(key.length, 32)
  const a = seal(key, 'Bearer user-secret')
  const b = seal(key, 'Bearer user-secret')
  t.match(a, /^sealed:v1:[A-Za-z0-9+/=]+$/)
  t.not(a, b, 'a fresh nonce each time: equal credentials do not look equal at rest')
  t.notMatch(Buffer.from(a.slice('sealed:v1:'.length), 'base64').toString('latin1'), /user-secret/, 'not there in clear')
  t.equal(unseal(key, a), 'Bearer user-secret')
  t.throws(() => unseal(sealKey(randomBytes(32).toString('base64'))!, a), 'another key: an error, never a wrong value')
  const raw = Buffer.from(a.slice('sealed:v1:'.length), 'base64')
  raw[raw.length - 1] = (raw[raw.length - 1] ?? 0) ^ 1
  t.throws(() => unseal(key, `sealed:v1:${raw.toString('base64')}`), 'one bit changed')
  t.throws(() => unseal(key, 'Bearer x'), 'not sealed')
  t.equal(sealKey('c2hvcnQ='), null, 'a key of 5 bytes')
  t.equal(sealKey('not base64 at all, clearly'), null)
})
