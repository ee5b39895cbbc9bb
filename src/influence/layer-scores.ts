/**
 * LayerIF layer quality scores (SCIENCE.md §3).
 *
 *   +VE (default): S_l = Σ_k 1[I_l(k) > 0] · I_l(k)
 *   ALL:           S_l = Σ_k I_l(k)
 *   TOP25:         sum of the positive scores at or above the 75th percentile of the positive
 *                  scores (numpy `quantile(pos, 0.75)`, linear interpolation)
 *
 * Grouping: `per-block` (default) — a layer is a transformer block and I_l(k) is the mean of
 * its units' scores for sample k (`blockMean: 'scores'`, default) or, alternatively, the mean
 * of the per-unit S values (`blockMean: 'layer-scores'`); `per-matrix` — every unit is scored
 * on its own (ablation). Higher S_l = worse-trained layer (more experts, more pruning).
 */
import { DataError } from '../errors.ts';
import { SIGN_CONVENTION, type SignConvention, type UnitInfluence } from './types.ts';

export type LayerScoreVariant = '+VE' | 'ALL' | 'TOP25';

export interface LayerScore {
  /** Block index (per-block) or the unit's block index (per-matrix). */
  layer: number;
  units: string[];
  score: number;
  variant: LayerScoreVariant;
  convention: SignConvention;
}

/** 75th-percentile threshold with numpy's default linear interpolation. */
function quantile(sortedAsc: number[], q: number): number {
  const pos = (sortedAsc.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sortedAsc.length - 1);
  return sortedAsc[lo] + (sortedAsc[hi] - sortedAsc[lo]) * (pos - lo);
}

/** S for one score vector under a variant. */
export function scoreVariant(scores: ArrayLike<number>, variant: LayerScoreVariant = '+VE'): number {
  let s = 0;
  if (variant === 'ALL') {
    for (let k = 0; k < scores.length; k++) s += scores[k];
    return s;
  }
  const pos: number[] = [];
  for (let k = 0; k < scores.length; k++) if (scores[k] > 0) pos.push(scores[k]);
  if (variant === '+VE') return pos.reduce((a, b) => a + b, 0);
  if (pos.length === 0) return 0;
  pos.sort((a, b) => a - b);
  const thr = quantile(pos, 0.75);
  for (const x of pos) if (x >= thr) s += x;
  return s;
}

export interface LayerScoresArgs {
  influences: UnitInfluence[];
  variant?: LayerScoreVariant;
  grouping?: 'per-block' | 'per-matrix';
  blockMean?: 'scores' | 'layer-scores';
}

/** One LayerIF score per block (or per unit), sorted by layer index. Only `block` units are used. */
export function layerScores({ influences, variant = '+VE', grouping = 'per-block', blockMean = 'scores' }: LayerScoresArgs): LayerScore[] {
  const units = influences.filter((u) => (u.kind ?? 'block') === 'block');
  if (units.length === 0) throw new DataError('layerScores: no block units given; expected influence scores for at least one transformer-block unit');
  const n = units[0].scores.length;
  for (const u of units) {
    if (u.scores.length !== n) throw new DataError(`layerScores: unit ${u.unit} has ${u.scores.length} scores; unit ${units[0].unit} has ${n} (expected the same training set)`);
    for (let k = 0; k < n; k++) if (!Number.isFinite(u.scores[k])) throw new DataError(`layerScores: unit ${u.unit}, sample ${k} score is ${u.scores[k]}; expected a finite number`);
  }
  const make = (layer: number, names: string[], score: number): LayerScore => ({ layer, units: names, score, variant, convention: SIGN_CONVENTION });
  if (grouping === 'per-matrix') {
    return units.map((u) => make(u.layer, [u.unit], scoreVariant(u.scores, variant))).sort((a, b) => a.layer - b.layer);
  }
  const blocks = new Map<number, UnitInfluence[]>();
  for (const u of units) blocks.set(u.layer, [...(blocks.get(u.layer) ?? []), u]);
  return [...blocks.entries()].sort((a, b) => a[0] - b[0]).map(([layer, us]) => {
    const names = us.map((u) => u.unit);
    if (blockMean === 'layer-scores') return make(layer, names, us.reduce((s, u) => s + scoreVariant(u.scores, variant), 0) / us.length);
    const mean = new Float64Array(n);
    for (const u of us) for (let k = 0; k < n; k++) mean[k] += u.scores[k] / us.length;
    return make(layer, names, scoreVariant(mean, variant));
  });
}
