/**
 * Layer scores per block for the allocators (SCIENCE.md §3a–b). The allocators give one count or
 * ratio per transformer block, so they need one S_l per block. `layer_scores` writes one entry per
 * block (`per-block`, default) or, for the per-matrix ablation, one per unit (LoRA matrix) tagged
 * with its block. Per-matrix scores are aggregated to blocks here by the mean of the block's
 * per-matrix S values — the same way AlphaLoRA / AlphaPruning average the per-matrix α̂ of a block
 * (`blockAlphas`), and the same as `layerScores(..., { blockMean: 'layer-scores' })`. A block must
 * have at least one entry; blocks are returned in layer order 0..L−1.
 */
import { DataError } from '../errors.ts';

export interface ScoredEntry {
  layer: number;
  score: number;
  units?: string[];
}

export interface BlockScores {
  /** S_l per block, by layer index. */
  scores: number[];
  /** 'as-is' (per-block input) or 'mean-of-matrices' (per-matrix input, averaged per block). */
  aggregation: 'as-is' | 'mean-of-matrices';
}

/** One S_l per block from a layer-scores artifact's entries (`grouping` as recorded in it). */
export function blockScores(layers: ScoredEntry[], grouping: string = 'per-block'): BlockScores {
  if (!layers.length) throw new DataError('layer scores: no entries; expected at least one block');
  const byLayer = new Map<number, number[]>();
  for (const e of layers) {
    if (!Number.isInteger(e.layer) || e.layer < 0) throw new DataError(`layer scores: entry with layer ${e.layer}; expected a block index ≥ 0`);
    if (!Number.isFinite(e.score)) throw new DataError(`layer scores: block ${e.layer} score is ${e.score}; expected a finite number`);
    byLayer.set(e.layer, [...(byLayer.get(e.layer) ?? []), e.score]);
  }
  const L = Math.max(...byLayer.keys()) + 1;
  const missing = Array.from({ length: L }, (_, l) => l).filter((l) => !byLayer.has(l));
  if (missing.length) throw new DataError(`layer scores: no score for block${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of 0..${L - 1}; expected every block scored`);
  if (grouping !== 'per-matrix') {
    const dup = [...byLayer].find(([, v]) => v.length > 1);
    if (dup) throw new DataError(`layer scores (${grouping}): block ${dup[0]} has ${dup[1].length} entries; expected one per block (per-matrix scores are recorded as grouping "per-matrix")`);
  }
  const scores = Array.from({ length: L }, (_, l) => {
    const v = byLayer.get(l)!;
    return v.reduce((a, b) => a + b, 0) / v.length;
  });
  return { scores, aggregation: grouping === 'per-matrix' ? 'mean-of-matrices' : 'as-is' };
}
