/**
 * Heavy-tail metric α̂ of a weight matrix (SCIENCE.md §3a, AlphaLoRA / AlphaPruning): the
 * power-law (Hill) fit of the eigenvalues λ of WᵀW, as in the authors' esd utilities
 * (haiquanlu/AlphaPruning lib/esd_utils.py `net_esd_estimator`, also copied in LayerIF's pruning
 * code; morelife2017/alphalora expert_number.py `fix_finger`).
 *
 * Eigenvalues sorted ascending (optionally dropping λ ≤ threshold, `filterZeros`); for a
 * candidate x_min = λ_i with n = N − i tail values
 *   α_i = 1 + n / (Σ_{j≥i} ln λ_j − n ln λ_i)                      (Hill / power-law MLE)
 *   D_i = max_{t<n} | 1 − (λ_{i+t}/λ_i)^{1−α_i} − t/n |            (KS distance; 1 if α_i ≤ 1)
 * How x_min is chosen (`fixFingers`):
 *   - 'xmin_peak' (default; the authors' default path — AlphaPruning's default metric
 *     `alpha_peak`, AlphaLoRA's `pl_fitting=True`): histogram of log10 λ over [min, max] with
 *     `bins` = 100 bins (torch.histc semantics), xmin2 = 10^(left edge of the first fullest bin);
 *     candidates are scanned in ascending order, skipped while λ_i < log10(0.95·xmin2) and the
 *     scan stops at the first λ_i > 1.5·xmin2; α̂ = α_i at the first i minimising D_i among the
 *     scanned ones. NB the lower bound compares λ with a *log10* value: that is what the authors'
 *     code does (`xmin_min = torch.log10(0.95 * xmin2)`), so for xmin2 < 1/0.95 nothing is skipped.
 *   - 'xmin_mid': x_min = λ_{floor(N / xminPos)} (xminPos = 2), no KS choice.
 *   - 'scan': every λ_i, i < N − 1, is a candidate (the authors' `fix_fingers=None`).
 * `filterZeros` (default false, as in the authors' code): drop λ ≤ `zeroThreshold` (1e-5,
 * AlphaPruning's EVALS_THRESH; AlphaLoRA's is 1e-4); if nothing is left, keep every eigenvalue
 * (AlphaPruning's fallback).
 * LayerFlow's behaviour before this alignment is `LEGACY_HILL_OPTIONS` = { fixFingers: 'scan',
 * filterZeros: true }; sweeps select it with `alphaFit: legacy` (`hillOptionsFor`).
 * The authors compute in float32; this is float64 (their results agree to ~1e-6 relative).
 */
import { ConfigError, DataError } from '../errors.ts';
import { gramEigenvalues } from './eigen.ts';

export type FixFingers = 'xmin_peak' | 'xmin_mid' | 'scan';

export interface HillFit {
  alpha: number;
  xmin: number;
  ksDistance: number;
  /** Number of eigenvalues in the fitted tail. */
  tail: number;
}

export interface HillOptions {
  /** x_min choice (default 'xmin_peak', the authors' default). */
  fixFingers?: FixFingers;
  /** Drop eigenvalues ≤ `zeroThreshold` (default false, as the authors' code). */
  filterZeros?: boolean;
  zeroThreshold?: number;
  /** Histogram bins for 'xmin_peak' (default 100). */
  bins?: number;
  /** 'xmin_mid' takes x_min = λ_{floor(N / xminPos)} (default 2). */
  xminPos?: number;
}

/** LayerFlow's α̂ before it was aligned with the authors' default path (kept as an option). */
export const LEGACY_HILL_OPTIONS: Readonly<HillOptions> = Object.freeze({ fixFingers: 'scan', filterZeros: true });

/**
 * The α̂ fits a sweep can select (`alphaFit` of allocate_experts / allocate_sparsity):
 * 'authors' (default) = the authors' default path (xmin_peak, no zero filter);
 * 'legacy' = LayerFlow's behaviour before the alignment (`LEGACY_HILL_OPTIONS`).
 */
export const ALPHA_FITS = ['authors', 'legacy'] as const;
export type AlphaFit = (typeof ALPHA_FITS)[number];

/** The Hill options of a named α̂ fit. */
export function hillOptionsFor(fit: AlphaFit = 'authors'): HillOptions {
  if (fit === 'authors') return {};
  if (fit === 'legacy') return { ...LEGACY_HILL_OPTIONS };
  throw new ConfigError(`alphaFit = ${JSON.stringify(fit)}; expected one of ${ALPHA_FITS.join(', ')} (default authors)`);
}

/** Correctly rounded a·b + c in all but pathological cases (error-free transforms). */
function fma(a: number, b: number, c: number): number {
  const p = a * b;
  if (!Number.isFinite(p) || p === 0) return p + c;
  // Veltkamp split → exact error of the product.
  const split = (x: number): [number, number] => {
    const t = 134217729 * x; // 2^27 + 1
    const hi = t - (t - x);
    return [hi, x - hi];
  };
  const [ah, al] = split(a);
  const [bh, bl] = split(b);
  const pe = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
  const s = p + c;
  const bb = s - p;
  const se = (p - (s - bb)) + (c - bb);
  return s + (se + pe);
}

/** Left edge of bin `i` as torch.linspace(lo, hi, bins + 1)[i] computes it on CPU. */
function linspaceAt(lo: number, hi: number, bins: number, i: number): number {
  const steps = bins + 1;
  const step = (hi - lo) / bins;
  return i < Math.floor(steps / 2) ? fma(step, i, lo) : fma(-step, steps - i - 1, hi);
}

/** xmin2 of the 'xmin_peak' rule: 10^(left edge of the first fullest torch.histc bin of log10 λ). */
function peakXmin(ev: Float64Array, bins: number): number {
  const h = Array.from(ev, Math.log10);
  let lo = Infinity, hi = -Infinity;
  for (const x of h) { if (x < lo) lo = x; if (x > hi) hi = x; }
  // torch.histc widens an empty range by ±1; the edges come from the un-widened min/max.
  const [a, b] = lo === hi ? [lo - 1, hi + 1] : [lo, hi];
  const counts = new Float64Array(bins);
  for (const x of h) {
    if (!(x >= a && x <= b)) continue;
    let pos = Math.trunc(((x - a) * bins) / (b - a));
    if (pos === bins) pos -= 1;
    counts[pos] += 1;
  }
  let ih = 0;
  for (let k = 1; k < bins; k++) if (counts[k] > counts[ih]) ih = k;
  return 10 ** linspaceAt(lo, hi, bins, ih);
}

/** Power-law fit of an eigenvalue spectrum (any order; copied and sorted). */
export function hillAlpha(eigenvalues: ArrayLike<number>, options: HillOptions = {}): HillFit {
  const { fixFingers = 'xmin_peak', filterZeros = false, zeroThreshold = 1e-5, bins = 100, xminPos = 2 } = options;
  if (fixFingers !== 'xmin_peak' && fixFingers !== 'xmin_mid' && fixFingers !== 'scan') {
    throw new ConfigError(`hillAlpha: fixFingers = ${JSON.stringify(fixFingers)}; expected 'xmin_peak' (default), 'xmin_mid' or 'scan'`);
  }
  if (!Number.isInteger(bins) || bins < 1) throw new ConfigError(`hillAlpha: bins = ${bins}; expected a positive integer (default 100)`);
  if (!(xminPos >= 1)) throw new ConfigError(`hillAlpha: xminPos = ${xminPos}; expected a number ≥ 1 (default 2)`);
  for (let i = 0; i < eigenvalues.length; i++) if (!Number.isFinite(eigenvalues[i])) throw new DataError(`hillAlpha: eigenvalue ${i} is ${eigenvalues[i]}; expected a finite number`);
  const sorted = Float64Array.from(eigenvalues).sort();
  let ev = sorted;
  if (filterZeros) {
    const kept = sorted.filter((x) => x > zeroThreshold);
    ev = kept.length > 0 ? kept : sorted; // AlphaPruning: "if N == 0, we don't filter eigs"
  }
  if (fixFingers === 'scan') ev = ev.filter((x) => x > 0); // a zero λ_i only yields a NaN candidate there
  const N = ev.length;
  if (N < 2) throw new DataError(`hillAlpha: ${N} positive eigenvalues${filterZeros ? ` above ${zeroThreshold}` : ''}; expected at least 2`);
  if (fixFingers === 'xmin_peak' && !(ev[0] > 0)) {
    throw new DataError(
      `hillAlpha: smallest eigenvalue is ${ev[0]} (rank-deficient matrix); the 'xmin_peak' histogram of log10 λ needs every λ > 0 — ` +
        (filterZeros ? `every eigenvalue is ≤ zeroThreshold ${zeroThreshold}, so none could be kept` : 'pass filterZeros: true'),
    );
  }
  const logs = ev.map(Math.log);
  const suffix = new Float64Array(N + 1);
  for (let i = N - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + logs[i];
  const fitAt = (i: number, checkAlpha: boolean): HillFit => {
    const n = N - i;
    const alpha = 1 + n / (suffix[i] - n * logs[i]);
    let D = 1;
    if (!checkAlpha || alpha > 1) {
      D = 0;
      // 1 ** ±Infinity is NaN in JS but 1 in Python/torch (a constant tail gives α = ∞).
      for (let t = 0; t < n; t++) {
        const r = ev[i + t] / ev[i];
        D = Math.max(D, Math.abs(1 - (r === 1 ? 1 : r ** (1 - alpha)) - t / n));
      }
    }
    return { alpha, xmin: ev[i], ksDistance: D, tail: n };
  };

  if (fixFingers === 'xmin_mid') {
    const i = Math.trunc(N / xminPos);
    if (!(ev[i] > 0)) throw new DataError(`hillAlpha: x_min = λ_${i} = ${ev[i]} for 'xmin_mid'; expected > 0 — pass filterZeros: true`);
    const fit = fitAt(i, false);
    if (!Number.isFinite(fit.alpha)) throw new DataError(`hillAlpha: 'xmin_mid' tail λ_${i}.. is constant (${ev[i]}); α̂ is infinite`);
    return fit;
  }

  let lower = -Infinity, upper = Infinity;
  if (fixFingers === 'xmin_peak') {
    const xmin2 = peakXmin(ev, bins);
    lower = Math.log10(0.95 * xmin2); // sic: the authors compare λ with log10(0.95·xmin2)
    upper = 1.5 * xmin2;
  }
  let best: HillFit | undefined;
  for (let i = 0; i < N - 1; i++) {
    if (ev[i] < lower) continue;
    if (ev[i] > upper) break;
    const fit = fitAt(i, true);
    if (!best || fit.ksDistance < best.ksDistance) best = fit;
  }
  // Every scanned candidate has D < 1 (or D = 1 when α ≤ 1), so the authors' arg-min over D
  // (un-scanned candidates D = 1, α = 0) lands on a scanned one unless none was scanned.
  if (!best) throw new DataError(`hillAlpha: no x_min candidate inside the 'xmin_peak' window [${lower}, ${upper}] (the authors' code would return α = 0)`);
  return best;
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
