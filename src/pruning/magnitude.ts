/**
 * Magnitude pruning (SCIENCE.md §3b): score |W_ij|, one threshold per matrix — the
 * floor(sparsity · numel) entries with the smallest |W| are pruned (ties by flat index).
 */
import { applyMask, checkMatrix, checkSparsity, pruneSmallest, type PruneResult, type WeightMatrix } from './types.ts';

export function magnitudePrune({ weight, sparsity }: { weight: WeightMatrix; sparsity: number }): PruneResult {
  checkMatrix(weight);
  checkSparsity(sparsity, `magnitudePrune ${weight.name ?? ''}`.trim());
  const n = weight.data.length;
  const abs = Float64Array.from(weight.data, Math.abs);
  const mask = new Uint8Array(n).fill(1);
  pruneSmallest(abs, Math.floor(sparsity * n), mask);
  return applyMask(weight, mask);
}
