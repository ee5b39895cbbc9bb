/** Weight matrices and pruning results (SCIENCE.md §3b). Layout: [rows = out × cols = in], row-major (PyTorch Linear). */
import { ConfigError, DataError } from '../errors.ts';

export interface WeightMatrix {
  name?: string;
  rows: number;
  cols: number;
  data: Float32Array | Float64Array;
}

export interface PruneResult {
  /** 1 = kept, 0 = pruned. */
  mask: Uint8Array;
  /** Copy of the weights with pruned entries set to 0. */
  pruned: Float32Array | Float64Array;
  /** Realised sparsity of this matrix: pruned / numel. */
  sparsity: number;
}

export function checkMatrix(w: WeightMatrix): void {
  const what = w.name ? `matrix ${w.name}` : 'matrix';
  if (!(w.rows > 0 && w.cols > 0) || w.data.length !== w.rows * w.cols) {
    throw new DataError(`${what}: [${w.rows} × ${w.cols}] with ${w.data.length} values; expected rows·cols values and rows, cols ≥ 1`);
  }
  for (let i = 0; i < w.data.length; i++) if (!Number.isFinite(w.data[i])) throw new DataError(`${what}: entry (${Math.floor(i / w.cols)}, ${i % w.cols}) is ${w.data[i]}; expected a finite number`);
}

export function checkSparsity(s: number, what: string): void {
  if (!(s >= 0 && s < 1)) throw new ConfigError(`${what}: sparsity ${s}; expected a number in [0, 1)`);
}

/** Apply a keep-mask: pruned copy and realised sparsity. */
export function applyMask(w: WeightMatrix, mask: Uint8Array): PruneResult {
  const pruned = w.data.slice();
  let zero = 0;
  for (let i = 0; i < mask.length; i++) if (!mask[i]) { pruned[i] = 0; zero++; }
  return { mask, pruned, sparsity: zero / mask.length };
}

/**
 * Clear mask[i] for the k smallest values in values[offset, offset+length) (ties: lower index
 * first). Uses a sorted typed-array copy for the threshold, so it scales to large matrices.
 */
export function pruneSmallest(values: ArrayLike<number>, k: number, mask: Uint8Array, offset = 0, length = values.length): void {
  if (k <= 0) return;
  const sorted = new Float64Array(length);
  for (let i = 0; i < length; i++) sorted[i] = values[offset + i];
  sorted.sort();
  const thr = sorted[k - 1];
  let below = 0;
  for (let i = 0; i < k; i++) if (sorted[i] < thr) below++;
  let ties = k - below;
  for (let i = offset; i < offset + length; i++) {
    if (values[i] < thr) mask[i] = 0;
    else if (values[i] === thr && ties > 0) { mask[i] = 0; ties--; }
  }
}
