/**
 * Eigenvalues of a real symmetric matrix: Householder reduction to tridiagonal form followed
 * by the implicit QL algorithm with Wilkinson-style shifts (Numerical Recipes tred2/tqli,
 * eigenvalues only). O(n³); fine for n up to ~1024.
 */
import { DataError } from '../errors.ts';

/** Eigenvalues (ascending) of the symmetric n×n row-major matrix `a` (not modified). */
export function symmetricEigenvalues(a: ArrayLike<number>, n: number): Float64Array {
  if (a.length !== n * n) throw new DataError(`symmetricEigenvalues: ${a.length} values; expected n² = ${n * n}`);
  const A = Float64Array.from(a);
  const d = new Float64Array(n);
  const e = new Float64Array(n); // e[i] couples i and i+1
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Householder vector for column k below the diagonal.
    let norm = 0;
    for (let i = k + 1; i < n; i++) norm += A[i * n + k] * A[i * n + k];
    norm = Math.sqrt(norm);
    const x0 = A[(k + 1) * n + k];
    const alpha = x0 > 0 ? -norm : norm;
    e[k] = alpha;
    if (norm === 0) { e[k] = 0; continue; }
    let vn = 0;
    for (let i = k + 1; i < n; i++) { v[i] = A[i * n + k] - (i === k + 1 ? alpha : 0); vn += v[i] * v[i]; }
    if (vn === 0) { e[k] = x0; continue; }
    vn = Math.sqrt(vn);
    for (let i = k + 1; i < n; i++) v[i] /= vn;
    // A ← H A H on the trailing block, H = I − 2vvᵀ: A − 2 v wᵀ − 2 w vᵀ, w = p − (vᵀp) v.
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      let s = 0;
      for (let j = k + 1; j < n; j++) s += A[i * n + j] * v[j];
      p[i] = s;
      vp += v[i] * s;
    }
    for (let i = k + 1; i < n; i++) p[i] -= vp * v[i];
    for (let i = k + 1; i < n; i++) for (let j = k + 1; j < n; j++) A[i * n + j] -= 2 * (v[i] * p[j] + p[i] * v[j]);
  }
  for (let i = 0; i < n; i++) d[i] = A[i * n + i];
  if (n >= 2) e[n - 2] = A[(n - 1) * n + (n - 2)];
  e[n - 1] = 0;
  // Implicit QL.
  for (let l = 0; l < n; l++) {
    let iter = 0;
    let m: number;
    do {
      for (m = l; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * dd) break;
      }
      if (m !== l) {
        if (iter++ === 100) throw new DataError('symmetricEigenvalues: QL iteration did not converge (matrix not symmetric or not finite?)');
        let g = (d[l + 1] - d[l]) / (2 * e[l]);
        let r = Math.hypot(g, 1);
        g = d[m] - d[l] + e[l] / (g + (g >= 0 ? Math.abs(r) : -Math.abs(r)));
        let s = 1, c = 1, pp = 0;
        let i: number;
        for (i = m - 1; i >= l; i--) {
          const f = s * e[i];
          const b = c * e[i];
          r = Math.hypot(f, g);
          e[i + 1] = r;
          if (r === 0) { d[i + 1] -= pp; e[m] = 0; break; }
          s = f / r;
          c = g / r;
          g = d[i + 1] - pp;
          r = (d[i] - g) * s + 2 * c * b;
          pp = s * r;
          d[i + 1] = g + pp;
          g = c * r - b;
        }
        if (r === 0 && i >= l) continue;
        d[l] -= pp;
        e[l] = g;
        e[m] = 0;
      }
    } while (m !== l);
  }
  return d.sort();
}

/**
 * Eigenvalues of WᵀW for W [rows × cols] row-major, i.e. the squared singular values:
 * the Gram matrix of the smaller side is used, so min(rows, cols) values are returned.
 */
export function gramEigenvalues(w: ArrayLike<number>, rows: number, cols: number): Float64Array {
  if (w.length !== rows * cols) throw new DataError(`gramEigenvalues: ${w.length} values; expected rows·cols = ${rows * cols}`);
  const k = Math.min(rows, cols);
  const g = new Float64Array(k * k);
  if (rows >= cols) {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let i = 0; i < cols; i++) {
        const wi = w[o + i];
        if (wi === 0) continue;
        for (let j = i; j < cols; j++) g[i * k + j] += wi * w[o + j];
      }
    }
  } else {
    for (let i = 0; i < rows; i++) for (let j = i; j < rows; j++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[i * cols + c] * w[j * cols + c];
      g[i * k + j] = s;
    }
  }
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) g[i * k + j] = g[j * k + i];
  return symmetricEigenvalues(g, k);
}
