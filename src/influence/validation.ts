/**
 * Reduce validation gradients v_{l,j} to one vector per unit (SCIENCE.md §2, last bullet:
 * LayerIF scores against the validation set's summed or mean gradient).
 */
import { DataError } from '../errors.ts';
import { checkUnitGradients, type UnitGradients, type ValidationReduction } from './types.ts';

/** v = Σ_j v_j (`sum`) or (1/m) Σ_j v_j (`mean`). Throws DataError on an empty or malformed set. */
export function reduceValidation(validation: UnitGradients, reduction: ValidationReduction = 'mean'): Float64Array {
  checkUnitGradients(validation, 'validation gradients');
  if (validation.n === 0) throw new DataError(`validation gradients (unit ${validation.unit}): empty set; expected m ≥ 1 samples`);
  const { n: m, d, data } = validation;
  const v = new Float64Array(d);
  for (let j = 0; j < m; j++) for (let p = 0; p < d; p++) v[p] += data[j * d + p];
  if (reduction === 'mean') for (let p = 0; p < d; p++) v[p] /= m;
  return v;
}

/** Resolve a `validation` argument (gradients or an already-reduced vector) and check its width. */
export function resolveValidation(
  validation: UnitGradients | Float64Array,
  reduction: ValidationReduction,
  d: number,
  unit: string,
): Float64Array {
  const v = validation instanceof Float64Array ? validation : reduceValidation(validation, reduction);
  if (v.length !== d) {
    throw new DataError(`unit ${unit}: validation gradient has ${v.length} values; expected d = ${d} (same as training gradients)`);
  }
  for (let p = 0; p < d; p++) {
    if (!Number.isFinite(v[p])) throw new DataError(`unit ${unit}: validation gradient element ${p} is ${v[p]}; expected a finite number`);
  }
  return v;
}
