/**
 * Statistics for statements about samples (pure, no dependency: the binomial distribution
 * summed in logs, solved by bisection). Used by `ficus verify --mode sample` to say how
 * large the share of differing records can be, given what a sample showed.
 */

/**
 * P(X ≤ k) for X ~ Binomial(n, p), summed term by term in logs (exact to float precision for
 * any n; O(k) per call).
 */
export function binomialCdf(k: number, n: number, p: number): number {
  if (k >= n || p <= 0) return 1
  if (p >= 1) return 0
  const lp = Math.log(p)
  const lq = Math.log1p(-p)
  // log of the i = 0 term, then each next term from the one before: C(n,i+1)/C(n,i) = (n-i)/(i+1).
  let logTerm = n * lq
  let sum = Math.exp(logTerm)
  for (let i = 0; i < k; i++) {
    logTerm += Math.log(n - i) - Math.log(i + 1) + lp - lq
    sum += Math.exp(logTerm)
  }
  return Math.min(1, sum)
}

/**
 * The one-sided Clopper–Pearson upper bound of a proportion: the largest p for which seeing
 * `k` or fewer of `n` still has probability ≥ 1 − `confidence`. "0 of 3,000 differ" gives
 * 0.000998 at 0.95: the share that differs is below 0.1 % with 95 % confidence. Exact (never
 * below the true coverage), unlike the normal approximation, which says 0 for k = 0.
 */
export function upperBound(k: number, n: number, confidence = 0.95): number {
  if (!(n > 0)) return 1
  if (k >= n) return 1
  const alpha = 1 - confidence
  if (k === 0) return 1 - alpha ** (1 / n) // closed form
  let lo = k / n
  let hi = 1
  for (let i = 0; i < 64; i++) {
    const mid = (lo + hi) / 2
    if (binomialCdf(k, n, mid) > alpha) lo = mid
    else hi = mid
  }
  return hi
}

/** A share as a person reads it: `0.1 %`, `2.5 %`, `0.013 %` (two significant digits under 1 %). */
export function percent(x: number): string {
  const p = x * 100
  if (p >= 10) return `${p.toFixed(0)} %`
  if (p >= 1) return `${p.toFixed(1)} %`
  return `${Number(p.toPrecision(2))} %`
}
