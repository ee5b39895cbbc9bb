/**
 * Wanda pruning (SCIENCE.md §3b): score S_ij = |W_ij| · ‖X_j‖₂ over calibration activations X
 * [tokens × cols]; in every output row the floor(sparsity · cols) lowest-scored weights are
 * pruned (ties by column index). Scaling ‖X‖ by a constant (e.g. the Wanda code's per-sample
 * mean of squared norms) does not change the ranking.
 */
import { DataError } from '../errors.ts';
import { applyMask, checkMatrix, checkSparsity, pruneSmallest, type PruneResult, type WeightMatrix } from './types.ts';

/** ‖X_j‖₂ for every input feature j of activations X [tokens × cols] (row-major). */
export function activationNorms({ data, tokens, cols }: { data: ArrayLike<number>; tokens: number; cols: number }): Float64Array {
  if (data.length !== tokens * cols) throw new DataError(`activationNorms: ${data.length} values; expected tokens·cols = ${tokens * cols}`);
  const out = new Float64Array(cols);
  for (let t = 0; t < tokens; t++) for (let j = 0; j < cols; j++) {
    const x = data[t * cols + j];
    if (!Number.isFinite(x)) throw new DataError(`activationNorms: token ${t}, feature ${j} is ${x}; expected a finite number`);
    out[j] += x * x;
  }
  return out.map(Math.sqrt);
}

/** Wanda scores |W_ij|·‖X_j‖ (same layout as W). */
export function wandaScores(weight: WeightMatrix, inputNorms: ArrayLike<number>): Float64Array {
  checkMatrix(weight);
  if (inputNorms.length !== weight.cols) throw new DataError(`wandaScores ${weight.name ?? ''}: ${inputNorms.length} input norms; expected one per input column (${weight.cols})`);
  for (let j = 0; j < inputNorms.length; j++) if (!(inputNorms[j] >= 0) || !Number.isFinite(inputNorms[j])) throw new DataError(`wandaScores: input norm ${j} is ${inputNorms[j]}; expected a finite number ≥ 0`);
  return Float64Array.from(weight.data, (w, i) => Math.abs(w) * inputNorms[i % weight.cols]);
}

export function wandaPrune({ weight, inputNorms, sparsity }: { weight: WeightMatrix; inputNorms: ArrayLike<number>; sparsity: number }): PruneResult {
  checkSparsity(sparsity, `wandaPrune ${weight.name ?? ''}`.trim());
  const scores = wandaScores(weight, inputNorms);
  const { rows, cols } = weight;
  const k = Math.floor(sparsity * cols);
  const mask = new Uint8Array(rows * cols).fill(1);
  for (let r = 0; r < rows; r++) pruneSmallest(scores, k, mask, r * cols, cols);
  return applyMask(weight, mask);
}
