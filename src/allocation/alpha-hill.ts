/**
 * Heavy-tail metric α̂ of a weight matrix (SCIENCE.md §3a, AlphaLoRA / AlphaPruning; the
 * WeightWatcher-style estimator of AlphaPruning's `net_esd_estimator`):
 * eigenvalues λ of WᵀW sorted ascending (optionally dropping λ ≤ threshold); for each
 * candidate x_min = λ_i (i < N−1), with n = N − i tail values,
 *   α_i = 1 + n / (Σ_{j≥i} ln λ_j − n ln x_min)                 (Hill / power-law MLE)
 *   D_i = max_{t<n} | 1 − (λ_{i+t}/x_min)^{1−α_i} − t/n |       (KS distance; 1 if α_i ≤ 1)
 * α̂ = α_i at the first i minimising D_i.
 */
import { DataError } from '../errors.ts';
import { gramEigenvalues } from './eigen.ts';

export interface HillFit {
  alpha: number;
  xmin: number;
  ksDistance: number;
  /** Number of eigenvalues in the fitted tail. */
  tail: number;
}

export interface HillOptions {
  /** Drop eigenvalues ≤ `zeroThreshold` (default true; AlphaPruning's EVALS_THRESH = 1e-5). */
  filterZeros?: boolean;
  zeroThreshold?: number;
}

/** Power-law fit of an eigenvalue spectrum (any order; copied and sorted). */
export function hillAlpha(eigenvalues: ArrayLike<number>, { filterZeros = true, zeroThreshold = 1e-5 }: HillOptions = {}): HillFit {
  for (let i = 0; i < eigenvalues.length; i++) if (!Number.isFinite(eigenvalues[i])) throw new DataError(`hillAlpha: eigenvalue ${i} is ${eigenvalues[i]}; expected a finite number`);
  const ev = Float64Array.from(eigenvalues).sort().filter((x) => (filterZeros ? x > zeroThreshold : x > 0));
  const N = ev.length;
  if (N < 2) throw new DataError(`hillAlpha: ${N} positive eigenvalues after filtering; expected at least 2`);
  const logs = ev.map(Math.log);
  const suffix = new Float64Array(N + 1);
  for (let i = N - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + logs[i];
  let best: HillFit | undefined;
  for (let i = 0; i < N - 1; i++) {
    const n = N - i;
    const alpha = 1 + n / (suffix[i] - n * logs[i]);
    let D = 1;
    if (alpha > 1 && Number.isFinite(alpha)) {
      D = 0;
      for (let t = 0; t < n; t++) D = Math.max(D, Math.abs(1 - (ev[i + t] / ev[i]) ** (1 - alpha) - t / n));
    }
    if (!best || D < best.ksDistance) best = { alpha, xmin: ev[i], ksDistance: D, tail: n };
  }
  return best!;
}

/** α̂ of one weight matrix W [rows × cols] (row-major). */
export function matrixAlpha({ data, rows, cols }: { data: ArrayLike<number>; rows: number; cols: number }, options?: HillOptions): HillFit {
  return hillAlpha(gramEigenvalues(data, rows, cols), options);
}

/** Per-block α̂: mean of the block's matrices' α̂ values. */
export function blockAlphas(matrices: Array<{ layer: number; alpha: number }>): Array<{ layer: number; alpha: number }> {
  const byLayer = new Map<number, number[]>();
  for (const m of matrices) byLayer.set(m.layer, [...(byLayer.get(m.layer) ?? []), m.alpha]);
  return [...byLayer.entries()].sort((a, b) => a[0] - b[0]).map(([layer, as]) => ({ layer, alpha: as.reduce((x, y) => x + y, 0) / as.length }));
}
