/**
 * Reference (plain TypeScript, in-memory) full influence matrix per unit, SCIENCE.md §2 and §4:
 * entry (j, k) = influence of training sample k on validation sample j, layout [m × n] row-major.
 *
 *   TracIn:  V Gᵀ
 *   cosine:  (V Gᵀ) / (‖v_j‖ ‖g_k‖)   (0 where a norm is 0)
 *   DataInf: (1/λ) [ V Gᵀ − (1/n) (V Gᵀ) diag(1/(λ+‖g_i‖²)) (G Gᵀ) ]
 *
 * O(m·n·d + n²·d): for tests and small problems. The ONNX version lives in full-matrix.ts
 * and can reuse `InfluenceMatrix`, `dataInfDamping` and `checkMatrixInputs` from here.
 */
import { DataError } from '../errors.ts';
import { cosineFromParts } from './cosine.ts';
import { checkLambda, dataInfDamping } from './datainf.ts';
import { checkUnitGradients, checkUnitShape, SIGN_CONVENTION, type InfluenceMatrix, type InfluenceMethod, type UnitGradients } from './types.ts';
import { rowNormSq } from './vector.ts';

export interface InfluenceMatrixArgs {
  method: InfluenceMethod;
  train: UnitGradients;
  validation: UnitGradients;
  dampingScale?: number;
  lambda?: number;
}

/**
 * Validate a (train, validation) pair for a full-matrix computation. `scanValues: false` checks
 * shapes only, for callers that detect NaN/Inf from their outputs instead (the ONNX path).
 */
export function checkMatrixInputs(train: UnitGradients, validation: UnitGradients, { scanValues = true } = {}): void {
  const check = scanValues ? checkUnitGradients : checkUnitShape;
  check(train, 'training gradients');
  check(validation, 'validation gradients');
  if (train.n === 0) throw new DataError(`training gradients (unit ${train.unit}): empty set; expected n ≥ 1 samples`);
  if (validation.n === 0) throw new DataError(`validation gradients (unit ${validation.unit}): empty set; expected m ≥ 1 samples`);
  if (train.d !== validation.d) {
    throw new DataError(`unit ${train.unit}: training gradients have d=${train.d}, validation gradients (unit ${validation.unit}) have d=${validation.d}; expected equal`);
  }
}

/** Dense A·Bᵀ for row-major A [a × d], B [b × d]. */
function gram(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number, d: number): Float64Array {
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++) {
    for (let k = 0; k < nb; k++) {
      let s = 0;
      for (let p = 0; p < d; p++) s += a[i * d + p] * b[k * d + p];
      out[i * nb + k] = s;
    }
  }
  return out;
}

/** Full [m × n] influence matrix of one unit (plain TS reference). */
export function influenceMatrixReference({ method, train, validation, dampingScale, lambda }: InfluenceMatrixArgs): InfluenceMatrix {
  checkMatrixInputs(train, validation);
  const { n, d } = train;
  const m = validation.n;
  const vg = gram(validation.data, m, train.data, n, d);
  const base = { unit: train.unit, layer: train.layer, kind: train.kind, method, convention: SIGN_CONVENTION, m, n };
  if (method === 'tracin') return { ...base, data: vg };
  const gNorm = Float64Array.from({ length: n }, (_, k) => rowNormSq(train.data, k, d));
  if (method === 'cosine') {
    const vNorm = Float64Array.from({ length: m }, (_, j) => rowNormSq(validation.data, j, d));
    const data = vg.map((x, idx) => cosineFromParts(x, vNorm[Math.floor(idx / n)], gNorm[idx % n]));
    return { ...base, data };
  }
  const sum = gNorm.reduce((a, b) => a + b, 0);
  const lam = lambda !== undefined ? checkLambda(lambda, train.unit) : dataInfDamping({ sumNormSq: sum, n, d, scale: dampingScale, unit: train.unit });
  const gg = gram(train.data, n, train.data, n, d);
  const data = new Float64Array(m * n);
  for (let j = 0; j < m; j++) {
    for (let k = 0; k < n; k++) {
      let corr = 0;
      for (let i = 0; i < n; i++) corr += (vg[j * n + i] * gg[i * n + k]) / (lam + gNorm[i]);
      data[j * n + k] = (vg[j * n + k] - corr / n) / lam;
    }
  }
  return { ...base, lambda: lam, data };
}
