/**
 * Noise Detection Rate (SCIENCE.md §4). Training samples are sorted by score ascending
 * (most harmful first; ties by index):
 *   curve[t] = (#noisy among the first t+1) / #noisy
 *   NDR@L    = curve[round(L·n/100)]   (index clamped to n−1; headline L = 30)
 *   AUC-NDR  = Σ_t curve[t] / (#noisy/2 + #clean)
 * Baselines: random ordering (expected curve (t+1)/n) and oracle (noisy first: min(t+1, N)/N).
 */
import { DataError } from '../errors.ts';

export interface NdrResult {
  curve: Float64Array;
  /** NDR@L for each requested L (percent). */
  at: Record<number, number>;
  auc: number;
  noisy: number;
  n: number;
}

function checkNoisy(n: number, noisyIds: Iterable<number>): Set<number> {
  if (n === 0) throw new DataError('noiseDetectionRate: no training samples (n = 0)');
  const set = new Set(noisyIds);
  for (const id of set) if (!Number.isInteger(id) || id < 0 || id >= n) throw new DataError(`noiseDetectionRate: noisy id ${id} is outside [0, ${n})`);
  if (set.size === 0) throw new DataError('noiseDetectionRate: no noisy samples; NDR is undefined without noise');
  return set;
}

/** Index into the curve for NDR@L. */
export function ndrIndex(L: number, n: number): number {
  return Math.min(n - 1, Math.max(0, Math.round((L * n) / 100)));
}

function summarise(curve: Float64Array, noisy: number, Ls: number[]): NdrResult {
  const n = curve.length;
  const at: Record<number, number> = {};
  for (const L of Ls) at[L] = curve[ndrIndex(L, n)];
  const auc = curve.reduce((a, b) => a + b, 0) / (noisy / 2 + (n - noisy));
  return { curve, at, auc, noisy, n };
}

/** NDR curve, NDR@L for each L in `Ls` (default [30]) and AUC-NDR from per-sample scores. */
export function noiseDetectionRate({ scores, noisyIds, Ls = [30] }: { scores: ArrayLike<number>; noisyIds: Iterable<number>; Ls?: number[] }): NdrResult {
  const n = scores.length;
  const noisy = checkNoisy(n, noisyIds);
  for (let k = 0; k < n; k++) if (!Number.isFinite(scores[k])) throw new DataError(`noiseDetectionRate: score of sample ${k} is ${scores[k]}; expected a finite number`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  const curve = new Float64Array(n);
  let found = 0;
  order.forEach((k, t) => { if (noisy.has(k)) found++; curve[t] = found / noisy.size; });
  return summarise(curve, noisy.size, Ls);
}

/** Expected NDR of a uniformly random ordering: curve[t] = (t+1)/n. */
export function randomNdrBaseline({ n, noisy, Ls = [30] }: { n: number; noisy: number; Ls?: number[] }): NdrResult {
  if (!(n > 0) || !(noisy > 0) || noisy > n) throw new DataError(`randomNdrBaseline: n = ${n}, noisy = ${noisy}; expected 0 < noisy ≤ n`);
  return summarise(Float64Array.from({ length: n }, (_, t) => (t + 1) / n), noisy, Ls);
}

/** Best possible ordering (all noisy samples first): curve[t] = min(t+1, N)/N. */
export function oracleNdrBaseline({ n, noisy, Ls = [30] }: { n: number; noisy: number; Ls?: number[] }): NdrResult {
  if (!(n > 0) || !(noisy > 0) || noisy > n) throw new DataError(`oracleNdrBaseline: n = ${n}, noisy = ${noisy}; expected 0 < noisy ≤ n`);
  return summarise(Float64Array.from({ length: n }, (_, t) => Math.min(t + 1, noisy) / noisy), noisy, Ls);
}
