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
 * AlphaLoRA-style apportionment: s_l = max(1, round(raw_l)), then ±1 fix-ups until Σ s = T:
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

/** Throws DataError unless every value is finite. */
export function checkScores(values: ArrayLike<number>, what: string): void {
  if (values.length === 0) throw new DataError(`${what}: empty; expected one value per layer`);
  for (let l = 0; l < values.length; l++) {
    if (!Number.isFinite(values[l])) throw new DataError(`${what}: layer ${l} is ${values[l]}; expected a finite number`);
  }
}
