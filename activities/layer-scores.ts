/**
 * `layer_scores` (LayerIF, SCIENCE.md §3): per block, the task-specific layer quality
 * S_l = Σ_k 1[I_l(k) > 0]·I_l(k) (+VE, default), ALL or TOP25, where I_l(k) is the influence of
 * training sample k on the mean validation gradient: the mean over validation samples of the
 * influence stage's [m × n] tensor (exact for TracIn and DataInf, which are linear in v), or its
 * [1 × n] tensor as it is when that stage ran with `validation: mean`. Sign:
 * positive = helpful, as in the influence artifact; a higher S_l marks a worse-trained layer (more
 * experts, more pruning).
 */
import { z } from 'zod';
import { layerScores } from '../src/influence/layer-scores.ts';
import type { UnitInfluence } from '../src/influence/types.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../src/weights/safetensors.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import type { ScoresMeta } from './influence.ts';

export const LayerScoreSettings = z.strictObject({
  variant: z.enum(['+VE', 'ALL', 'TOP25']).default('+VE'),
  grouping: z.enum(['per-block', 'per-matrix']).default('per-block'),
});
export type LayerScoreSettings = z.output<typeof LayerScoreSettings>;

export interface LayerScoresJson {
  variant: string;
  grouping: string;
  method: string;
  convention: string;
  /** One entry per block (or per unit for per-matrix), by layer index. */
  layers: Array<{ layer: number; score: number; units: string[] }>;
}

export const layer_scores: StageImpl<LayerScoreSettings> = async (ctx) => {
  const meta = await ctx.store.readJson<ScoresMeta>(ctx.inputs.influence, 'scores.json');
  const { tensors } = parseSafetensorsBytes(await ctx.store.read(ctx.inputs.influence, 'scores.safetensors'), 'influence/scores.safetensors');
  // Rows of each tensor: m (the matrix), or 1 when the influence stage already took the mean (validation: mean).
  const { n } = meta, m = meta.validation === 'mean' ? 1 : meta.m;
  const influences: UnitInfluence[] = meta.units.filter((u) => u.kind === 'block').map((u) => {
    const M = rawToFloat32(tensors.get(u.tensor)!, u.tensor);
    const scores = new Float64Array(n);
    for (let j = 0; j < m; j++) for (let k = 0; k < n; k++) scores[k] += M[j * n + k] / m;
    return { unit: u.unit, layer: u.layer, kind: 'block', method: meta.method, convention: meta.convention, validation: 'mean', lambda: u.lambda, scores };
  });
  const ls = layerScores({ influences, variant: ctx.settings.variant, grouping: ctx.settings.grouping });
  const out: LayerScoresJson = { variant: ctx.settings.variant, grouping: ctx.settings.grouping, method: meta.method, convention: meta.convention, layers: ls.map((l) => ({ layer: l.layer, score: l.score, units: l.units })) };
  return {
    files: { 'layer-scores.json': JSON.stringify(out, null, 1) },
    metrics: { layers: ls.length, max_score: Math.max(...ls.map((l) => l.score)), min_score: Math.min(...ls.map((l) => l.score)) },
    series: { layer_score: ls.map((l) => l.score) },
  };
};
