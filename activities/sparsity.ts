/**
 * `allocate_sparsity` (LayerIF §3b): per-block sparsity ratios at target S — LayerIF (layer scores
 * → min-max, Savitzky–Golay, band [1−ε, 1+ε]·η, η solved for S, clipped at 0.99), AlphaPruning (the
 * same mapping of α̂), OWL (outlier ratios of the Wanda scores over calibration text, S ± λ) or
 * uniform. ε defaults by the pruning criterion it is read with: 0.3 magnitude, 0.1 Wanda.
 * Per-matrix layer scores are averaged over each block's matrices first (as α̂ is); `alphaFit`
 * selects AlphaPruning's α̂ fit. Heartbeats carry progress (α̂: matrices; OWL: calibration batches).
 */
import { z } from 'zod';
import { layerIfSparsity, alphaPruningSparsity, uniformSparsity, type SparsityAllocation } from '../src/allocation/sparsity.ts';
import { owlSparsity } from '../src/allocation/owl.ts';
import { blockOutlierRatios, blockSizes, calibrationNorms } from '../src/pruning/model.ts';
import { loadMobyDick, splitDocuments } from '../src/data/corpus.ts';
import { chunkTokens } from '../src/train/lm.ts';
import type { LoadedModel } from '../src/models/load.ts';
import type * as M from '../src/models/index.ts';
import type { StageContext, StageImpl } from '../src/store/stage-context.ts';
import { modelOf } from './shared.ts';
import { DataError } from '../src/errors.ts';
import { modelBlockAlphas, blockLayerScores } from './experts.ts';
import { ALPHA_FITS } from '../src/allocation/alpha-hill.ts';
import { withProgress } from '../src/runtime/progress.ts';

export const SparsitySettings = z.strictObject({
  allocator: z.enum(['layerif', 'owl', 'alphapruning', 'uniform']).default('layerif'),
  /** Target global sparsity S over the blocks' linear weights. */
  sparsity: z.number().gt(0, 'expected S in (0, 1)').lt(1, 'expected S in (0, 1)').default(0.5),
  epsilon: z.number().min(0).max(1).optional(),
  /** OWL: λ (sparsity ∈ S ± λ) and the outlier multiple M. */
  lambda: z.number().min(0).default(0.08),
  outlierM: z.number().positive().default(5),
  /** 'clip' (authors: clip at 0.99, no re-solving) or 'resolve'. */
  clip: z.enum(['clip', 'resolve']).default('clip'),
  /** Calibration for OWL (Wanda scores): sequences × tokens of held-in Moby Dick text. */
  calibration: z.number().int().min(1).default(128),
  calibrationLength: z.number().int().min(2).default(128),
  /** AlphaPruning's α̂ fit: 'authors' (xmin_peak, no zero filter) or 'legacy' (LayerFlow's earlier fit); omitted = authors (cache keys unchanged). */
  alphaFit: z.enum(ALPHA_FITS).optional(),
});
export type SparsitySettings = z.output<typeof SparsitySettings>;

/** `count` calibration windows of `length` tokens from the Moby Dick training documents (a real corpus in the project). */
export function calibrationSamples(model: LoadedModel, count: number, length: number): M.Sample[] {
  const { train } = splitDocuments(loadMobyDick(), { validationFraction: 0.1, seed: 0 });
  const out: M.Sample[] = [];
  for (const d of train) {
    out.push(...chunkTokens([model.tokenizer.encode(d.text)], length));
    if (out.length >= count) break;
  }
  return out.slice(0, count);
}

/** ‖X_j‖₂ per module over the calibration windows. */
export async function calibrationNormsOf(ctx: StageContext<unknown>, count: number, length: number): Promise<Map<string, Float64Array>> {
  const model = await modelOf(ctx);
  const samples = calibrationSamples(model, count, length);
  const batchSize = 8, batches = Math.ceil(samples.length / batchSize);
  let done = 0;
  ctx.heartbeat(withProgress(ctx, 0, batches, 'batch', { phase: 'calibration' }));
  return calibrationNorms({ config: model.config, weights: model.weights, samples, batchSize, device: ctx.device, onBatch: () => ctx.heartbeat(withProgress(ctx, Math.min(++done, batches), batches, 'batch', { phase: 'calibration' })) });
}

export const allocate_sparsity: StageImpl<SparsitySettings> = async (ctx) => {
  const s = ctx.settings;
  const criterion = (ctx.slice['stages.prune.criterion'] as string | undefined) ?? 'magnitude';
  const epsilon = s.epsilon ?? (criterion === 'wanda' ? 0.1 : 0.3);
  const model = await modelOf(ctx);
  const sizes = blockSizes(model.config);
  const L = sizes.length;
  let a: SparsityAllocation;
  let metric: number[] | undefined;
  let scored: Awaited<ReturnType<typeof blockLayerScores>> | undefined;
  if (s.allocator === 'layerif') {
    scored = await blockLayerScores(ctx);
    metric = scored.scores;
    if (metric.length !== L) throw new DataError(`allocate_sparsity: the layer scores cover ${metric.length} blocks; the model has ${L}`);
    a = layerIfSparsity({ scores: metric, sizes, target: s.sparsity, epsilon, clip: s.clip });
  } else if (s.allocator === 'alphapruning') {
    metric = await modelBlockAlphas(ctx, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], s.alphaFit);
    a = alphaPruningSparsity({ alphas: metric, sizes, target: s.sparsity, epsilon, clip: s.clip });
  } else if (s.allocator === 'owl') {
    const norms = await calibrationNormsOf(ctx, s.calibration, s.calibrationLength);
    metric = blockOutlierRatios(model.config, model.weights, norms, s.outlierM);
    a = owlSparsity({ lod: metric, target: s.sparsity, lambda: s.lambda, sizes });
  } else a = uniformSparsity({ target: s.sparsity, layers: L, sizes });
  return {
    files: { 'sparsity.json': JSON.stringify({ allocator: s.allocator, criterion, epsilon, target: s.sparsity, ratios: a.sparsity, realised: a.realised, clipped: a.clipped, metric, sizes, ...(s.allocator === 'alphapruning' ? { alphaFit: s.alphaFit ?? 'authors' } : {}), ...(scored ? { scores: { grouping: scored.grouping, aggregation: scored.aggregation } } : {}) }, null, 1) },
    metrics: { target: s.sparsity, realised: a.realised, min_ratio: Math.min(...a.sparsity), max_ratio: Math.max(...a.sparsity), clipped: a.clipped.length },
    series: { ratio: a.sparsity },
  };
};
