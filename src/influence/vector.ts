/** Small dense-vector helpers over row-major matrices (no allocation in the inner loops). */

export type Vec = Float32Array | Float64Array | number[];

/** Dot product of row `row` of a row-major [· × d] matrix with vector v. */
export function rowDot(data: ArrayLike<number>, row: number, d: number, v: ArrayLike<number>): number {
  let s = 0;
  const o = row * d;
  for (let p = 0; p < d; p++) s += data[o + p] * v[p];
  return s;
}

/** Squared Euclidean norm of row `row`. */
export function rowNormSq(data: ArrayLike<number>, row: number, d: number): number {
  let s = 0;
  const o = row * d;
  for (let p = 0; p < d; p++) s += data[o + p] * data[o + p];
  return s;
}

/** acc += c · row `row` (in place). */
export function addScaledRow(acc: Float64Array, data: ArrayLike<number>, row: number, d: number, c: number): void {
  const o = row * d;
  for (let p = 0; p < d; p++) acc[p] += c * data[o + p];
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let p = 0; p < a.length; p++) s += a[p] * b[p];
  return s;
}
