/**
 * OWL outlier-weighted layer-wise sparsity (SCIENCE.md §3b):
 *   LOD_l = #(score > M · mean(score)) / numel over the layer's Wanda scores |W|·‖X‖ (M = 5)
 *   sparsity_l = 1 − (2λ·minmax(LOD)_l − mean_l(2λ·minmax(LOD)) + (1 − S)),  λ = 0.08
 * so sparsity ∈ S ± λ and more outliers mean less pruning. The mean is unweighted (as in the
 * OWL code): the parameter-weighted realised sparsity equals S only when layers are equal-sized.
 */
import { ConfigError } from '../errors.ts';
import { checkScores } from './apportion.ts';
import { checkSizes, checkTarget, weightedMean, type SparsityAllocation } from './sparsity.ts';
import { DataError } from '../errors.ts';

/** Layer outlier distribution: fraction of scores above M × their mean (all matrices of the layer pooled). */
export function outlierRatio({ scores, M = 5 }: { scores: Array<ArrayLike<number>>; M?: number }): number {
  let sum = 0, count = 0;
  for (const s of scores) for (let i = 0; i < s.length; i++) {
    if (!Number.isFinite(s[i])) throw new DataError(`outlierRatio: score ${i} is ${s[i]}; expected a finite number`);
    sum += s[i]; count++;
  }
  if (count === 0) throw new DataError('outlierRatio: no scores; expected the Wanda scores of at least one matrix');
  const thr = (M * sum) / count;
  let out = 0;
  for (const s of scores) for (let i = 0; i < s.length; i++) if (s[i] > thr) out++;
  return out / count;
}

export function owlSparsity({ lod, target, lambda = 0.08, sizes }: { lod: ArrayLike<number>; target: number; lambda?: number; sizes?: ArrayLike<number> }): SparsityAllocation {
  checkScores(lod, 'owlSparsity LOD');
  checkTarget(target, 'owlSparsity');
  const L = lod.length;
  if (sizes) checkSizes(sizes, L, 'owlSparsity');
  if (!(lambda >= 0) || target - lambda <= 0 || target + lambda >= 1) throw new ConfigError(`owlSparsity: λ = ${lambda} with target ${target}; expected 0 ≤ λ and S ± λ inside (0, 1)`);
  const v = Array.from(lod);
  const lo = Math.min(...v), hi = Math.max(...v);
  const r = v.map((x) => (hi > lo ? ((x - lo) / (hi - lo)) * 2 * lambda : 0));
  const mean = r.reduce((a, b) => a + b, 0) / L;
  const sparsity = r.map((x) => 1 - (x - mean + (1 - target)));
  return { method: 'owl', sparsity, target, realised: weightedMean(sparsity, sizes ?? new Array(L).fill(1)), clipped: [] };
}
