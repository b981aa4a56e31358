import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { joined, type Body, type ComparedSide } from '../../core/compare.js'
import type { UpstreamHeaders } from '../exchange.js'

/**
 * Bodies as the comparison reads them: compared as received when neither names a coding
 * (the usual case, without a promise per side), else decoded off the event loop.
 */

/** One side's answer as it was kept: status, headers, the body's chunks (null: too large to keep). */
export interface KeptAnswer {
  readonly status: number
  readonly headers: UpstreamHeaders
  readonly chunks: Body | null
}

/** The side as the comparator reads it when its body needs no decoding, else null (see `decoded`). */
export function unencoded(side: KeptAnswer): ComparedSide | null {
  if (side.chunks === null) return { status: side.status, headers: side.headers, body: null }
  if (side.headers['content-encoding'] !== undefined && codingsOf(side.headers).length > 0) return null
  // The chunks as received: compare joins them only if the two bodies differ.
  return { status: side.status, headers: side.headers, body: side.chunks }
}

/** Content-Encoding's codings, in the order they were applied (`identity` left out). */
function codingsOf(headers: UpstreamHeaders): string[] {
  const encoding = headers['content-encoding']
  return (Array.isArray(encoding) ? encoding.join(',') : encoding ?? '').split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity')
}

const gunzip = promisify(zlib.gunzip)
const inflate = promisify(zlib.inflate)
const inflateRaw = promisify(zlib.inflateRaw)
const brotli = promisify(zlib.brotliDecompress)

/**
 * One side as the comparator reads it: the body joined and decoded (gzip, deflate, br,
 * off the event loop, capped at `max` bytes: past it the body counts as too large). Only for a
 * side `unencoded` refused: one kept (not too large) whose Content-Encoding names a coding.
 */
export async function decoded(side: KeptAnswer, max: number): Promise<ComparedSide> {
  const raw = joined(side.chunks ?? [])
  const codings = codingsOf(side.headers)
  let body = raw
  try {
    for (const c of codings.reverse()) {
      const opts = { maxOutputLength: max }
      if (c === 'gzip' || c === 'x-gzip') body = await gunzip(body, opts)
      else if (c === 'br') body = await brotli(body, opts)
      // Some servers send raw deflate (no zlib header) under that name.
      else if (c === 'deflate') {
        const input = body
        body = await inflate(input, opts).catch(async (err: unknown) => {
          if ((err as { code?: string }).code !== 'Z_DATA_ERROR') throw err
          return inflateRaw(input, opts)
        })
      }
      else break // an unknown coding: compared as the bytes that were sent
    }
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return { status: side.status, headers: side.headers, body: null }
    body = raw // a body that does not decode is compared as the bytes that were sent
  }
  return { status: side.status, headers: side.headers, body }
}
