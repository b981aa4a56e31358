import type { IncomingHttpHeaders } from 'node:http'

/** The hand-tuned baselines' header handling: hop-by-hop headers (and Host) are not forwarded. */
export const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

export function strip(h: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const k in h) {
    const v = h[k]
    if (!HOP.has(k) && v !== undefined) out[k] = v
  }
  return out
}
