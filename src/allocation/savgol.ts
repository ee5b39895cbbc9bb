/**
 * Savitzky–Golay smoothing with scipy.signal.savgol_filter(x, window, polyorder, mode='interp')
 * semantics (SCIENCE.md §3b): interior points use the centred least-squares polynomial of the
 * window; the first and last floor(window/2) points are the values of the polynomial fitted to
 * the first / last `window` samples, evaluated at their positions.
 */
import { ConfigError, DataError } from '../errors.ts';

/** Hat matrix H = V (VᵀV)⁻¹ Vᵀ of the polynomial fit over positions 0..w−1 (centred for conditioning). */
function hatMatrix(w: number, order: number): number[][] {
  const c = (w - 1) / 2;
  const V = Array.from({ length: w }, (_, i) => Array.from({ length: order + 1 }, (_, p) => (i - c) ** p));
  const q = order + 1;
  // (VᵀV)⁻¹ by Gauss–Jordan.
  const M = Array.from({ length: q }, (_, a) => [
    ...Array.from({ length: q }, (_, b) => V.reduce((s, row) => s + row[a] * row[b], 0)),
    ...Array.from({ length: q }, (_, b) => (a === b ? 1 : 0)),
  ]);
  for (let col = 0; col < q; col++) {
    let piv = col;
    for (let r = col + 1; r < q; r++) if (Math.abs(M[r][col]) > Math.abs(M[piv][col])) piv = r;
    [M[col], M[piv]] = [M[piv], M[col]];
    const pv = M[col][col];
    for (let j = 0; j < 2 * q; j++) M[col][j] /= pv;
    for (let r = 0; r < q; r++) if (r !== col) { const f = M[r][col]; for (let j = 0; j < 2 * q; j++) M[r][j] -= f * M[col][j]; }
  }
  const inv = M.map((row) => row.slice(q));
  return V.map((vi) => V.map((vj) => {
    let s = 0;
    for (let a = 0; a < q; a++) for (let b = 0; b < q; b++) s += vi[a] * inv[a][b] * vj[b];
    return s;
  }));
}

export function savgolFilter(x: ArrayLike<number>, window = 7, polyorder = 3): Float64Array {
  const N = x.length;
  if (!Number.isInteger(window) || window < 1 || window % 2 === 0) throw new ConfigError(`savgolFilter: window ${window}; expected a positive odd integer`);
  if (!Number.isInteger(polyorder) || polyorder < 0 || polyorder >= window) throw new ConfigError(`savgolFilter: polyorder ${polyorder}; expected 0 ≤ polyorder < window (${window})`);
  if (window > N) throw new DataError(`savgolFilter: window ${window} is longer than the signal (${N} values); mode 'interp' needs window ≤ length`);
  for (let i = 0; i < N; i++) if (!Number.isFinite(x[i])) throw new DataError(`savgolFilter: value ${i} is ${x[i]}; expected a finite number`);
  const H = hatMatrix(window, polyorder);
  const half = (window - 1) / 2;
  const out = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const start = i < half ? 0 : i >= N - half ? N - window : i - half;
    const row = H[i - start];
    let s = 0;
    for (let j = 0; j < window; j++) s += row[j] * x[start + j];
    out[i] = s;
  }
  return out;
}
