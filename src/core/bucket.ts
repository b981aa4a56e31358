import murmurhash3js from 'murmurhash3js'

/**
 * Seed of Unleash's strategy hash. Variants use another seed (86028157) so the two kinds
 * of bucket do not correlate (unleash-client-node src/strategy/util.ts); we only need this one.
 */
const STRATEGY_SEED = 0

/**
 * The user's bucket, 1..100, exactly as Unleash's flexibleRollout / gradualRollout compute
 * it: `(murmur3_x86_32("<group>:<key>", 0) % 100) + 1`, with the same library Unleash's Node
 * SDK uses, so Ficus and the apps' SDKs agree on every user (proven against
 * @unleash/client-specification in test/unit/bucket.test.ts). A user is on new iff
 * `bucket <= percentage`, so raising the percentage never moves anyone back.
 * @example bucket('orders', 'user-42') // always the same number in 1..100
 */
export function bucket(group: string, key: string): number {
  return (murmurhash3js.x86.hash32(`${group}:${key}`, STRATEGY_SEED) % 100) + 1
}
