/**
 * Integer apportionment helpers shared by the expert allocators (SCIENCE.md §3a).
 */
import { ConfigError, DataError } from '../errors.ts';

/** Throws ConfigError unless T is an integer ≥ L (every layer needs one expert). */
export function checkBudget(total: number, layers: number): void {
  if (!Number.isInteger(layers) || layers < 1) throw new DataError(`expert allocation: ${layers} layers; expected at least one layer`);
  if (!Number.isInteger(total) || total < layers) {
    throw new ConfigError(`expert allocation: total T = ${total} experts for L = ${layers} layers; expected an integer T ≥ L (every layer keeps at least one expert)`);
  }
}

/**
 * LayerIF apportionment: s_l = floor(f_l) + 1, then the remaining T − Σ s_l experts go one
 * each to the layers with the largest f_l − floor(f_l) (ties: lower layer index first).
 * Expects Σ f = T − L.
 */
export function expertsFromShares(shares: ArrayLike<number>, total: number): number[] {
  const L = shares.length;
  checkBudget(total, L);
  const s = Array.from(shares, (f) => Math.floor(f) + 1);
  const remaining = total - s.reduce((a, b) => a + b, 0);
  if (remaining < 0 || remaining > L) throw new DataError(`expertsFromShares: shares sum to ${Array.from(shares).reduce((a, b) => a + b, 0)}; expected T − L = ${total - L}`);
  const order = Array.from({ length: L }, (_, l) => l).sort((a, b) => (shares[b] - Math.floor(shares[b])) - (shares[a] - Math.floor(shares[a])) || a - b);
  for (let i = 0; i < remaining; i++) s[order[i]] += 1;
  return s;
}

/**
 * Share-based apportionment (LayerFlow's rule, AlphaLoRA `rounding: 'share'` and MoLA):
 * s_l = max(1, round(raw_l)), then ±1 fix-ups until Σ s = T:
 * while too many, decrement (among s_l > 1) the layer most over its raw share; while too few,
 * increment the layer most under it (ties: lower index).
 */
export function roundWithFixups(raw: ArrayLike<number>, total: number): number[] {
  const L = raw.length;
  checkBudget(total, L);
  const s = Array.from(raw, (x) => Math.max(1, Math.round(x)));
  let diff = s.reduce((a, b) => a + b, 0) - total;
  while (diff !== 0) {
    let best = -1;
    for (let l = 0; l < L; l++) {
      if (diff > 0 && s[l] <= 1) continue;
      const gap = diff > 0 ? s[l] - raw[l] : raw[l] - s[l];
      if (best < 0 || gap > (diff > 0 ? s[best] - raw[best] : raw[best] - s[best])) best = l;
    }
    s[best] += diff > 0 ? -1 : 1;
    diff += diff > 0 ? -1 : 1;
  }
  return s;
}

/** numpy's float64 `np.sum` of a contiguous 1-D array (pairwise summation, 8-way unrolled blocks ≤ 128). */
export function numpySum(a: ArrayLike<number>, start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = -0; // numpy starts from -0.0 so that a sum of -0.0 values stays -0.0
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = Array.from({ length: 8 }, (_, j) => a[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return numpySum(a, start, n2) + numpySum(a, start + n2, n - n2);
}

/** numpy's `np.round` (round half to even). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * AlphaLoRA's own apportionment, `exponential_scaling` in the authors' expert_number.py
 * (morelife2017/alphalora; identical in peijunallin/alphalora): with w_l = α_l^β,
 *   s = np.round(w / Σ w · T)                                 (round half to even)
 *   while Σ s ≠ T: too few → s[argmin(w − s)] += 1; too many → s[argmax(w − s)] −= 1
 * (first index on ties). The fix-up compares the raw weights w (not the shares) with the counts
 * and keeps no layer at ≥ 1: if a layer ends with fewer than one expert this throws ConfigError
 * instead of returning it (use the share-based `roundWithFixups`, or a larger T).
 * Returns the shares w/Σw·T and the counts.
 */
export function roundAlphaLoraAuthors(weights: ArrayLike<number>, total: number, what = 'AlphaLoRA rounding'): { shares: number[]; experts: number[] } {
  const L = weights.length;
  checkBudget(total, L);
  const w = Array.from(weights);
  const sum = numpySum(w);
  const shares = w.map((x) => (x / sum) * total);
  const s = shares.map(roundHalfEven);
  let acc = s.reduce((a, b) => a + b, 0);
  while (acc !== total) {
    const up = total - acc > 0;
    let k = 0;
    for (let l = 1; l < L; l++) {
      const g = w[l] - s[l], gk = w[k] - s[k];
      if (up ? g < gk : g > gk) k = l;
    }
    s[k] += up ? 1 : -1;
    acc += up ? 1 : -1;
  }
  const short = s.map((x, l) => [l, x]).filter(([, x]) => x < 1);
  if (short.length > 0) {
    throw new ConfigError(
      `${what}: the authors' rule (rounding 'authors') gives ${short.map(([l, x]) => `layer ${l} ${x} experts`).join(', ')} for T = ${total}, L = ${L}; ` +
        `expected at least one expert per layer — use rounding 'share' (keeps ≥ 1 per layer) or a larger T`,
    );
  }
  return { shares, experts: s };
}

/** Throws DataError unless every value is finite. */
export function checkScores(values: ArrayLike<number>, what: string): void {
  if (values.length === 0) throw new DataError(`${what}: empty; expected one value per layer`);
  for (let l = 0; l < values.length; l++) {
    if (!Number.isFinite(values[l])) throw new DataError(`${what}: layer ${l} is ${values[l]}; expected a finite number`);
  }
}
