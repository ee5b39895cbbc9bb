/**
 * `allocate_experts` (LayerIF §3a): experts per block for LoRA-MoE from the layer scores (LayerIF:
 * w_l = S_l^β, one expert minimum, largest remainder), AlphaLoRA (α̂ of the block's weight spectra,
 * round(α^β/Σα^β·T) with fix-ups), MoLA's fixed patterns scaled to the model's depth, or uniform.
 * T defaults to 5 experts per block (the papers' 160 over 32 layers). Per-matrix layer scores (the
 * `layer_scores.grouping: per-matrix` ablation) are averaged over each block's matrices first, as
 * α̂ is. `alphaFit` selects the α̂ fit (authors' default path or LayerFlow's legacy one).
 * Heartbeats carry progress over the weight matrices while α̂ is computed.
 */
import { z } from 'zod';
import { allocateExperts, type ExpertAllocation } from '../src/allocation/experts.ts';
import { alphaLoraExperts } from '../src/allocation/alphalora.ts';
import { molaExperts, MOLA_PATTERNS, type MolaPatternName } from '../src/allocation/mola.ts';
import { matrixAlpha, blockAlphas, hillOptionsFor, ALPHA_FITS, type AlphaFit } from '../src/allocation/alpha-hill.ts';
import { blockScores } from '../src/allocation/block-scores.ts';
import { withProgress } from '../src/runtime/progress.ts';
import { blockModules } from '../src/models/lora.ts';
import { ConfigError, DataError } from '../src/errors.ts';
import type { StageContext, StageImpl } from '../src/store/stage-context.ts';
import { modelOf } from './shared.ts';
import type { LayerScoresJson } from './layer-scores.ts';

export const ExpertSettings = z.strictObject({
  allocator: z.enum(['layerif', 'alphalora', 'mola', 'uniform']).default('layerif'),
  /** Total experts T over all blocks (default 5 per block). */
  total: z.number().int().min(1).optional(),
  /** β: LayerIF 3, AlphaLoRA 2.5 by default. */
  beta: z.number().positive().optional(),
  pattern: z.enum(Object.keys(MOLA_PATTERNS) as [MolaPatternName]).default('5-5-5-5'),
  /** AlphaLoRA apportionment: 'share' (largest remainder, ≥ 1 expert each) or the authors' fix-up rule (expert_number.py). */
  rounding: z.enum(['share', 'authors']).default('share'),
  /** The weight matrices whose spectra give a block's α̂ (AlphaLoRA). */
  alphaModules: z.array(z.string()).min(1).default(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
  /**
   * AlphaLoRA's α̂ fit: 'authors' (their default path: xmin_peak, no zero filter) or 'legacy'
   * (LayerFlow's fit before the alignment: every x_min scanned, λ ≤ 1e-5 dropped). Omitted = authors
   * (left out of the settings, so the cache keys of sweeps that do not set it stay as they were).
   */
  alphaFit: z.enum(ALPHA_FITS).optional(),
});
export type ExpertSettings = z.output<typeof ExpertSettings>;

/** α̂ per block, per loaded model and module list: the spectra are the slow part (minutes on 135M), and every AlphaLoRA / AlphaPruning allocation of a model shares them. */
const alphaMemo = new WeakMap<object, Map<string, number[]>>();

/** α̂ per block from the weight spectra of `leaves` (AlphaLoRA / AlphaPruning; `fit` 'authors' = xmin_peak by default). */
export async function modelBlockAlphas(ctx: StageContext<unknown>, leaves: string[], fit: AlphaFit = 'authors'): Promise<number[]> {
  const model = await modelOf(ctx);
  const memo = alphaMemo.get(model) ?? new Map<string, number[]>();
  alphaMemo.set(model, memo);
  const id = `${fit}:${[...leaves].sort().join(',')}`;
  const hit = memo.get(id);
  if (hit) return [...hit];
  const alphas = await computeBlockAlphas(ctx, model, leaves, fit);
  memo.set(id, alphas);
  return [...alphas];
}

async function computeBlockAlphas(ctx: StageContext<unknown>, model: Awaited<ReturnType<typeof modelOf>>, leaves: string[], fit: AlphaFit): Promise<number[]> {
  const options = hillOptionsFor(fit);
  const todo = Array.from({ length: model.config.numLayers }, (_, l) => blockModules(model.config, l).filter((x) => leaves.includes(x.leaf)).map((m) => ({ layer: l, name: m.name }))).flat();
  const mats: Array<{ layer: number; alpha: number }> = [];
  ctx.heartbeat(withProgress(ctx, 0, todo.length, 'matrix', { phase: 'alpha' }));
  for (const [i, m] of todo.entries()) {
    const w = model.weights.get(`${m.name}.weight`)!;
    mats.push({ layer: m.layer, alpha: matrixAlpha({ data: w.data, rows: w.dims[0], cols: w.dims[1] }, options).alpha });
    ctx.heartbeat(withProgress(ctx, i + 1, todo.length, 'matrix', { phase: 'alpha', alpha: m.name }));
    // Each spectrum is seconds of synchronous work: yield so the heartbeat goes out and a cancellation is seen.
    await new Promise<void>((r) => setImmediate(r));
    ctx.signal.throwIfAborted();
  }
  if (!mats.length) throw new ConfigError(`alpha modules ${leaves.join(', ')} match no weight of the model`);
  return blockAlphas(mats).map((b) => b.alpha);
}

/**
 * The layer scores as one S_l per block (LayerIF allocators): per-block scores as they are,
 * per-matrix scores (the ablation) averaged over each block's matrices (src/allocation/block-scores.ts).
 */
export async function blockLayerScores(ctx: StageContext<unknown>): Promise<{ grouping: string; aggregation: string; scores: number[] }> {
  const ls = await ctx.store.readJson<LayerScoresJson>(ctx.inputs.layer_scores, 'layer-scores.json');
  const b = blockScores(ls.layers, ls.grouping);
  return { grouping: ls.grouping ?? 'per-block', aggregation: b.aggregation, scores: b.scores };
}

export const allocate_experts: StageImpl<ExpertSettings> = async (ctx) => {
  const s = ctx.settings;
  const scored = s.allocator === 'layerif' ? await blockLayerScores(ctx) : undefined;
  const layers = scored?.scores;
  const L = (await modelOf(ctx)).config.numLayers;
  if (layers && layers.length !== L) throw new DataError(`allocate_experts: the layer scores cover ${layers.length} blocks; the model has ${L}`);
  const T = s.total ?? 5 * L;
  if (T < L) throw new ConfigError(`stages.allocate_experts.total: T = ${T} is smaller than the model's ${L} layers; expected at least one expert per layer`);
  let a: ExpertAllocation | { method: string; experts: number[]; total: number; shares: number[] };
  let alphas: number[] | undefined;
  if (layers) a = allocateExperts({ scores: layers, total: T, beta: s.beta ?? 3 });
  else if (s.allocator === 'alphalora') {
    alphas = await modelBlockAlphas(ctx, s.alphaModules, s.alphaFit);
    a = alphaLoraExperts({ alphas, total: T, beta: s.beta ?? 2.5, rounding: s.rounding });
  } else if (s.allocator === 'mola') a = molaExperts({ pattern: s.pattern, layers: L, total: T });
  else {
    const base = Math.floor(T / L), extra = T - base * L;
    const experts = Array.from({ length: L }, (_, l) => base + (l < extra ? 1 : 0));
    a = { method: 'uniform', experts, total: T, shares: experts.map(() => T / L) };
  }
  return {
    files: { 'experts.json': JSON.stringify({ allocator: s.allocator, total: T, experts: a.experts, shares: a.shares, alphas, ...(s.allocator === 'alphalora' ? { alphaFit: s.alphaFit ?? 'authors' } : {}), ...(scored ? { scores: scored } : {}) }, null, 1) },
    metrics: { total: a.experts.reduce((x, y) => x + y, 0), min_experts: Math.min(...a.experts), max_experts: Math.max(...a.experts) },
    series: { experts: a.experts },
  };
};
