/**
 * Cosine influence, SCIENCE.md §2: I(k) = v · g_k / (‖v‖ ‖g_k‖), positive = helpful.
 * A zero vector has no direction: its score is defined as 0 (documented choice).
 */
import { DataError } from '../errors.ts';
import { checkUnitGradients, SIGN_CONVENTION, type UnitGradients, type UnitInfluence, type ValidationReduction } from './types.ts';
import { resolveValidation } from './validation.ts';
import { dot, rowDot, rowNormSq } from './vector.ts';

export interface CosineArgs {
  train: UnitGradients;
  validation: UnitGradients | Float64Array;
  reduction?: ValidationReduction;
}

/** Cosine similarity of v with each g_k; 0 where either norm is 0. */
export function cosineFromParts(vg: number, vNormSq: number, gNormSq: number): number {
  const den = Math.sqrt(vNormSq) * Math.sqrt(gNormSq);
  return den > 0 ? vg / den : 0;
}

/** One cosine score per training sample (SCIENCE.md §2). */
export function cosineInfluence({ train, validation, reduction = 'mean' }: CosineArgs): UnitInfluence {
  checkUnitGradients(train, 'training gradients');
  if (train.n === 0) throw new DataError(`training gradients (unit ${train.unit}): empty set; expected n ≥ 1 samples`);
  const v = resolveValidation(validation, reduction, train.d, train.unit);
  const vv = dot(v, v);
  const scores = new Float64Array(train.n);
  for (let k = 0; k < train.n; k++) {
    scores[k] = cosineFromParts(rowDot(train.data, k, train.d, v), vv, rowNormSq(train.data, k, train.d));
  }
  return { unit: train.unit, layer: train.layer, kind: train.kind, method: 'cosine', convention: SIGN_CONVENTION, validation: reduction, scores };
}
