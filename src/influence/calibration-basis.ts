/**
 * A calibrated projection of per-example gradients (projection setting `calibration: N`): per unit,
 * the principal directions of the first N training samples' gradients are kept exactly and only what
 * lies outside them is randomly projected,
 *
 *   y(g) = [ Uᵀ g ; P (g − U Uᵀ g) ]        U [d × r] orthonormal, P [(k − r) × d] Rademacher (projection.ts)
 *
 * so ⟨y(a), y(b)⟩ = ⟨Uᵀa, Uᵀb⟩ + ⟨P a⊥, P b⊥⟩ with a⊥ = (I − UUᵀ) a: exact on span(U), an unbiased JL
 * estimate on the rest (E[PᵀP] = I), whose error has standard deviation ≈ ‖a⊥‖‖b⊥‖/√(k − r) instead of
 * ‖a‖‖b‖/√k. Per-example LoRA gradients of one model and task are nearly low-rank: on SmolLM2 +
 * BIG-bench winowhy 98 % of a held-out training gradient's energy (median) lies in the span of 16
 * other samples' gradients (bench/README.md), so the residual — and the projection's error — shrinks
 * by about an order of magnitude at the same stored size. A pure random projection (LESS, LoGra's
 * random init) pays the full ‖a‖‖b‖/√k; a pure PCA projection (LoGra's PCA init) is biased on what the
 * basis misses; this keeps the first's unbiasedness and most of the second's accuracy.
 *
 * The basis: U = Gᵀ V Λ^(−1/2) from the eigendecomposition G Gᵀ = V Λ Vᵀ of the N × N Gram matrix of
 * the calibration gradients G [N × d] (float64; ml-matrix's symmetric solver), the r = min(N, maxRank)
 * leading directions with λ > 10⁻¹⁰ λ_max, re-orthonormalised by two passes of modified Gram–Schmidt.
 * The stage rounds U to the store's dtype and projects with the rounded U it stores, so a resumed
 * stage and a later reader use exactly the same map.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { DataError } from '../errors.ts';

/** Relative eigenvalue floor: directions below it are numerical noise, not part of the span. */
export const BASIS_EIGEN_FLOOR = 1e-10;

/**
 * Orthonormal basis of the leading principal directions of `rows` gradients of width `d` (row-major):
 * U [d × r] row-major (column c = direction c, by decreasing eigenvalue), r ≤ maxRank. r is 0 when the
 * gradients are all zero.
 */
export function calibrationBasis(G: ArrayLike<number>, rows: number, d: number, maxRank: number): { U: Float64Array; rank: number; eigenvalues: number[] } {
  checkCalibrationRows(G, rows, d, maxRank);
  const K = new Matrix(rows, rows);
  for (let a = 0; a < rows; a++) {
    for (let b = 0; b <= a; b++) {
      let s = 0;
      for (let j = 0, oa = a * d, ob = b * d; j < d; j++) s += G[oa + j] * G[ob + j];
      K.set(a, b, s);
      K.set(b, a, s);
    }
  }
  const { W, rank: r, eigenvalues } = basisDirections(K, rows, maxRank);
  // The directions are built and orthonormalised one contiguous vector at a time (Ut [r × d]), then
  // transposed: walking U [d × r] by column strides r values per step.
  const Ut = new Float64Array(r * d);
  for (let c = 0; c < r; c++) {
    const col = Ut.subarray(c * d, (c + 1) * d);
    for (let a = 0; a < rows; a++) {
      const w = W[c * rows + a];
      if (w === 0) continue;
      for (let j = 0, o = a * d; j < d; j++) col[j] += w * G[o + j];
    }
  }
  orthonormalizeRows(Ut, r, d);
  return { U: transposeRows(Ut, r, d), rank: r, eigenvalues };
}

/** The arguments of a calibration basis: `rows` × `d` finite values and a rank ≥ 0 (DataError otherwise). */
export function checkCalibrationRows(G: ArrayLike<number>, rows: number, d: number, maxRank: number): void {
  if (!(Number.isInteger(rows) && rows >= 1 && Number.isInteger(d) && d >= 1 && G.length === rows * d)) {
    throw new DataError(`calibration basis: ${G.length} values for ${rows} rows of ${d}`);
  }
  if (!(Number.isInteger(maxRank) && maxRank >= 0)) throw new DataError(`calibration basis: rank ${maxRank}; expected an integer ≥ 0`);
  for (let i = 0; i < G.length; i++) if (!Number.isFinite(G[i])) throw new DataError(`calibration basis: value ${i} is ${G[i]}`);
}

/**
 * From the Gram matrix K = G Gᵀ [rows × rows] of the calibration rows: the r ≤ maxRank leading
 * eigen-directions with λ > 10⁻¹⁰ λ_max (by decreasing λ), as the weights W [r × rows] (row-major)
 * that make them from the rows: direction c = Σ_a W[c, a] · G_a = (Gᵀ v_c / √λ_c).
 */
export function basisDirections(K: Matrix, rows: number, maxRank: number): { W: Float64Array; rank: number; eigenvalues: number[] } {
  const e = new EigenvalueDecomposition(K, { assumeSymmetric: true });
  const lam = e.realEigenvalues;
  const V = e.eigenvectorMatrix;
  const order = lam.map((_, i) => i).sort((p, q) => lam[q] - lam[p] || p - q);
  const top = Math.max(0, lam[order[0]]);
  const keep = top > 0 ? order.filter((i) => lam[i] > BASIS_EIGEN_FLOOR * top).slice(0, maxRank) : [];
  const W = new Float64Array(keep.length * rows);
  keep.forEach((i, c) => {
    const s = 1 / Math.sqrt(lam[i]);
    for (let a = 0; a < rows; a++) W[c * rows + a] = V.get(a, i) * s;
  });
  return { W, rank: keep.length, eigenvalues: keep.map((i) => lam[i]) };
}

/**
 * Symmetric (Löwdin) orthonormalisation of r vectors from their Gram matrix S = V Vᵀ [r × r]: T = S^(−1/2),
 * so that T V has orthonormal rows and stays the closest such set to V (no reordering, no mixing
 * beyond what non-orthogonality forces). Row-major [r × r]; a vanished vector is a DataError.
 */
export function inverseSqrt(S: Matrix): Float64Array {
  const r = S.rows;
  const e = new EigenvalueDecomposition(S, { assumeSymmetric: true });
  const lam = e.realEigenvalues, Q = e.eigenvectorMatrix;
  const top = Math.max(...lam);
  if (!(lam.every((x) => x > 1e-12 * top) && top > 0)) throw new DataError(`calibration basis: the directions lost their rank in orthonormalisation (eigenvalues ${lam.map((x) => x.toExponential(2)).join(', ')})`);
  const T = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += Q.get(i, k) * Q.get(j, k) / Math.sqrt(lam[k]);
    T[i * r + j] = s;
  }
  return T;
}

/** V [r × d] row-major → [d × r] row-major. */
export function transposeRows(V: Float64Array, r: number, d: number): Float64Array {
  const U = new Float64Array(d * r);
  for (let c = 0; c < r; c++) for (let j = 0, o = c * d; j < d; j++) U[j * r + c] = V[o + j];
  return U;
}

/** Two passes of modified Gram–Schmidt over the r rows of V [r × d] (row-major: each vector contiguous), in place. */
export function orthonormalizeRows(V: Float64Array, r: number, d: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 0; c < r; c++) {
      const v = V.subarray(c * d, (c + 1) * d);
      for (let p = 0; p < c; p++) {
        const u = V.subarray(p * d, (p + 1) * d);
        let dot = 0;
        for (let j = 0; j < d; j++) dot += u[j] * v[j];
        for (let j = 0; j < d; j++) v[j] -= dot * u[j];
      }
      let nrm = 0;
      for (let j = 0; j < d; j++) nrm += v[j] * v[j];
      nrm = Math.sqrt(nrm);
      if (!(nrm > 0)) throw new DataError(`calibration basis: direction ${c} vanished in orthonormalisation`);
      for (let j = 0; j < d; j++) v[j] /= nrm;
    }
  }
}

/**
 * Plain-TS reference of the calibrated projection (the stage runs it through ONNX,
 * projection-engine.ts): rows of X [rows × d] → [rows × k] = [X U, (X − X U Uᵀ) Pᵀ], with Pᵀ [d × (k − r)]
 * row-major (projectionRows of the residual's spec) and U [d × r] as stored. Float64 accumulation.
 */
export function calibratedProjectReference(X: ArrayLike<number>, rows: number, d: number, U: ArrayLike<number>, r: number, Pt: ArrayLike<number>, k: number): Float64Array {
  if (X.length !== rows * d || U.length !== d * r || Pt.length !== d * (k - r)) throw new DataError(`calibrated projection: X ${X.length}, U ${U.length}, Pᵀ ${Pt.length} values for rows ${rows}, d ${d}, r ${r}, k ${k}`);
  const k2 = k - r;
  const Y = new Float64Array(rows * k);
  const res = new Float64Array(d);
  for (let q = 0; q < rows; q++) {
    const c = new Float64Array(r);
    for (let j = 0; j < d; j++) for (let i = 0; i < r; i++) c[i] += X[q * d + j] * U[j * r + i];
    for (let j = 0; j < d; j++) {
      let s = X[q * d + j];
      for (let i = 0; i < r; i++) s -= U[j * r + i] * c[i];
      res[j] = s;
    }
    Y.set(c, q * k);
    for (let j = 0; j < d; j++) for (let i = 0; i < k2; i++) Y[q * k + r + i] += res[j] * Pt[j * k2 + i];
  }
  return Y;
}
