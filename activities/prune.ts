/**
 * `prune` (LayerIF §3b): the base model's linear weights pruned block by block to the allocated
 * ratios, by magnitude or Wanda (calibration: 128 Moby Dick windows). The realised sparsity of every
 * block is checked against the allocation; the artifact is a normal HF model folder (config.json,
 * model.safetensors, tokenizer.json) that loads like any other model. Heartbeats carry progress
 * (calibration batches for Wanda, then blocks).
 */
import { z } from 'zod';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pruneSteps, type PruneArgs, type PrunedModel } from '../src/pruning/model.ts';
import { withProgress } from '../src/runtime/progress.ts';
import { hfConfigJson } from '../src/weights/hf-config.ts';
import { serializeSafetensors, type TensorInput } from '../src/weights/safetensors.ts';
import { GgufReader } from '../src/weights/gguf.ts';
import { tokenizerJsonFromGguf } from '../src/tokenize/gguf-vocab.ts';
import { DataError } from '../src/errors.ts';
import type { LoadedModel } from '../src/models/load.ts';
import type { StageContext, StageImpl } from '../src/store/stage-context.ts';
import { modelOf } from './shared.ts';
import { blockModules } from '../src/models/lora.ts';
import { calibrationNormsOf } from './sparsity.ts';

export const PruneSettings = z.strictObject({
  criterion: z.enum(['magnitude', 'wanda']).default('wanda'),
  calibration: z.number().int().min(1).default(128),
  calibrationLength: z.number().int().min(2).default(128),
});
export type PruneSettings = z.output<typeof PruneSettings>;

/** tokenizer.json (+ tokenizer_config.json) of a loaded model, for a derived model folder. */
export async function tokenizerFiles(model: LoadedModel): Promise<Record<string, string>> {
  if (model.format === 'hf') {
    const out: Record<string, string> = { 'tokenizer.json': await readFile(join(model.path, 'tokenizer.json'), 'utf8') };
    const cfg = await readFile(join(model.path, 'tokenizer_config.json'), 'utf8').catch(() => undefined);
    if (cfg !== undefined) out['tokenizer_config.json'] = cfg;
    return out;
  }
  const r = await GgufReader.open(model.path);
  try {
    const { json, special } = tokenizerJsonFromGguf(r.metadata, model.path);
    const tok = (id: number | null) => (id === null ? null : model.tokenizer.idToToken(id) ?? null);
    return {
      'tokenizer.json': JSON.stringify(json),
      'tokenizer_config.json': JSON.stringify({ bos_token: tok(special.bos), eos_token: tok(special.eos), pad_token: tok(special.pad), clean_up_tokenization_spaces: false }),
    };
  } finally {
    await r.close();
  }
}

/**
 * src/pruning/model.ts `pruneModel`, awaiting between blocks so the stage's heartbeats — with
 * progress `{ done, total, unit: 'block' }` — go out and a cancellation is seen mid-way (one
 * synchronous pass over a 135M model is over a minute). The result equals pruneModel's (tested).
 */
export async function pruneByBlock(ctx: Pick<StageContext<unknown>, 'stage' | 'heartbeat' | 'signal'>, a: PruneArgs): Promise<PrunedModel> {
  const L = a.config.numLayers;
  const steps = pruneSteps(a);
  ctx.heartbeat(withProgress(ctx, 0, L, 'block', { phase: 'prune' }));
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    ctx.heartbeat(withProgress(ctx, r.value, L, 'block', { phase: 'prune' }));
    await new Promise<void>((res) => setImmediate(res));
    ctx.signal.throwIfAborted();
  }
}

export const prune: StageImpl<PruneSettings> = async (ctx) => {
  const s = ctx.settings;
  const model = await modelOf(ctx);
  const { ratios } = await ctx.store.readJson<{ ratios: number[] }>(ctx.inputs.allocate_sparsity, 'sparsity.json');
  const norms = s.criterion === 'wanda' ? await calibrationNormsOf(ctx, s.calibration, s.calibrationLength) : undefined;
  const p = await pruneByBlock(ctx, { config: model.config, weights: model.weights, ratios, criterion: s.criterion, norms });
  // Realised per block vs the allocation: each matrix rounds its own count (magnitude: ⌊φ·numel⌋,
  // Wanda: ⌊φ·in⌋ per row), so a block may fall short by less than one row per matrix.
  const tol = 1 / Math.min(...blockModules(model.config, 0).map((m) => m.inF)) + 1e-12;
  p.realised.forEach((r, l) => {
    if (Math.abs(r - ratios[l]) > tol) throw new DataError(`prune: block ${l} realised sparsity ${r.toFixed(5)} differs from the allocated ${ratios[l].toFixed(5)}`);
  });
  const tensors: Record<string, TensorInput> = {};
  for (const [k, v] of p.weights) tensors[k] = { dtype: 'F32', shape: v.dims, values: v.data };
  return {
    files: {
      'config.json': JSON.stringify(hfConfigJson(model.config), null, 1),
      'model.safetensors': serializeSafetensors(tensors, { format: 'pt', pruned_from: model.id, criterion: s.criterion }),
      ...(await tokenizerFiles(model)),
      'pruning.json': JSON.stringify({ criterion: s.criterion, allocated: ratios, realised: p.realised, modules: p.modules }, null, 1),
    },
    metrics: { realised_mean: p.realised.reduce((a, r) => a + r, 0) / p.realised.length, max_deviation: Math.max(...p.realised.map((r, l) => Math.abs(r - ratios[l]))) },
    series: { realised: p.realised },
  };
};
