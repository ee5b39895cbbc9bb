/**
 * TracIn (single checkpoint), SCIENCE.md §2: I(k) = v · g_k, positive = helpful.
 */
import { DataError } from '../errors.ts';
import { checkUnitGradients, SIGN_CONVENTION, type UnitGradients, type UnitInfluence, type ValidationReduction } from './types.ts';
import { resolveValidation } from './validation.ts';
import { rowDot } from './vector.ts';

export interface TracInArgs {
  train: UnitGradients;
  /** Validation gradients [m × d] (reduced with `reduction`) or an already-reduced d-vector. */
  validation: UnitGradients | Float64Array;
  reduction?: ValidationReduction;
}

/** One TracIn score per training sample: `v · g_k` (SCIENCE.md §2). */
export function tracInInfluence({ train, validation, reduction = 'mean' }: TracInArgs): UnitInfluence {
  checkUnitGradients(train, 'training gradients');
  if (train.n === 0) throw new DataError(`training gradients (unit ${train.unit}): empty set; expected n ≥ 1 samples`);
  const v = resolveValidation(validation, reduction, train.d, train.unit);
  const scores = new Float64Array(train.n);
  for (let k = 0; k < train.n; k++) scores[k] = rowDot(train.data, k, train.d, v);
  return { unit: train.unit, layer: train.layer, kind: train.kind, method: 'tracin', convention: SIGN_CONVENTION, validation: reduction, scores };
}
