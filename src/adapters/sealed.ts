import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

/**
 * Credentials kept in the sync store encrypted at rest (`sync.auth: { mode: passthrough }`):
 * AES-256-GCM under a key of 32 bytes given as base64 (`${FICUS_SYNC_KEY}`), a fresh 12-byte
 * nonce per value. A sealed value reads `sealed:v1:<base64 of nonce | tag | ciphertext>`;
 * one altered or sealed under another key does not open (an error, never a wrong value).
 */

const PREFIX = 'sealed:v1:'

/** The key as bytes, or null when the text is not 32 bytes of base64. */
export function sealKey(base64: string): Buffer | null {
  const key = Buffer.from(base64, 'base64')
  return key.length === 32 && key.toString('base64').replace(/=+$/, '') === base64.replace(/=+$/, '') ? key : null
}

export function seal(key: Buffer, plain: string): string {
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()])
  return PREFIX + Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64')
}

/** The value `seal` was given; throws when it was altered or sealed under another key. */
export function unseal(key: Buffer, sealed: string): string {
  if (!sealed.startsWith(PREFIX)) throw new Error('not a sealed value')
  const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64')
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
  decipher.setAuthTag(raw.subarray(12, 28))
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
}
