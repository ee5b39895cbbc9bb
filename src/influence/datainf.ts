/**
 * DataInf influence, SCIENCE.md §2 (positive = helpful):
 *
 *   I(k) = (1/λ) [ v·g_k − (1/n) Σ_i (v·g_i)(g_i·g_k) / (λ + ‖g_i‖²) ]
 *
 * which is v·H̃⁻¹·g_k with H̃⁻¹ = (1/n) Σ_i (g_i g_iᵀ + λI)⁻¹ expanded by Sherman–Morrison.
 * Computed in O(n·d) without the n×n Gram matrix:
 *   r = Σ_i (v·g_i)/(λ + ‖g_i‖²) · g_i,   I(k) = (v·g_k − r·g_k / n) / λ.
 * Damping per unit: λ_l = scale · (1/(n·d_l)) Σ_i ‖g_{l,i}‖², scale = 0.1 by default.
 */
import { ConfigError, DataError } from '../errors.ts';
import { checkUnitGradients, SIGN_CONVENTION, type UnitGradients, type UnitInfluence, type ValidationReduction } from './types.ts';
import { resolveValidation } from './validation.ts';
import { addScaledRow, rowDot, rowNormSq } from './vector.ts';

export const DEFAULT_DAMPING_SCALE = 0.1;

/** λ_l = scale · Σ_i ‖g_i‖² / (n·d). Throws if λ is not a positive finite number. */
export function dataInfDamping({ sumNormSq, n, d, scale = DEFAULT_DAMPING_SCALE, unit = '?' }: {
  sumNormSq: number; n: number; d: number; scale?: number; unit?: string;
}): number {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new ConfigError(`DataInf damping scale is ${scale}; expected a positive finite number (default 0.1)`);
  if (n < 1) throw new DataError(`unit ${unit}: DataInf needs n ≥ 1 training samples; got ${n}`);
  const lambda = (scale * sumNormSq) / (n * d);
  if (!(lambda > 0) || !Number.isFinite(lambda)) {
    throw new DataError(`unit ${unit}: DataInf damping λ = ${lambda} (all training gradients are zero?); expected λ > 0`);
  }
  return lambda;
}

/** Check an explicitly supplied λ. */
export function checkLambda(lambda: number, unit: string): number {
  if (!(lambda > 0) || !Number.isFinite(lambda)) throw new ConfigError(`unit ${unit}: DataInf λ = ${lambda}; expected a positive finite number`);
  return lambda;
}

export interface DataInfArgs {
  train: UnitGradients;
  validation: UnitGradients | Float64Array;
  reduction?: ValidationReduction;
  /** Multiplier of the mean squared gradient entry in λ_l (default 0.1). */
  dampingScale?: number;
  /** Use this λ instead of the data-dependent default. */
  lambda?: number;
}

/** One DataInf score per training sample against the reduced validation gradient. */
export function dataInfInfluence({ train, validation, reduction = 'mean', dampingScale, lambda }: DataInfArgs): UnitInfluence {
  checkUnitGradients(train, 'training gradients');
  const { n, d, data, unit } = train;
  if (n === 0) throw new DataError(`training gradients (unit ${unit}): empty set; expected n ≥ 1 samples`);
  const v = resolveValidation(validation, reduction, d, unit);
  const normSq = new Float64Array(n);
  const vg = new Float64Array(n);
  let sumNormSq = 0;
  for (let i = 0; i < n; i++) {
    normSq[i] = rowNormSq(data, i, d);
    vg[i] = rowDot(data, i, d, v);
    sumNormSq += normSq[i];
  }
  const lam = lambda !== undefined ? checkLambda(lambda, unit) : dataInfDamping({ sumNormSq, n, d, scale: dampingScale, unit });
  const r = new Float64Array(d);
  for (let i = 0; i < n; i++) addScaledRow(r, data, i, d, vg[i] / (lam + normSq[i]));
  const scores = new Float64Array(n);
  for (let k = 0; k < n; k++) scores[k] = (vg[k] - rowDot(data, k, d, r) / n) / lam;
  return { unit, layer: train.layer, kind: train.kind, method: 'datainf', convention: SIGN_CONVENTION, validation: reduction, lambda: lam, scores };
}
