/**
 * `benchmark_base` / `benchmark_moe` / `benchmark_pruned` (LayerIF §3c; one implementation under
 * three names): zero-shot multiple-choice accuracy on the task's held-out test documents by option
 * log-likelihood, as lm-evaluation-harness computes it (acc: argmax of Σ log p(option tokens |
 * context) is a gold option; acc_norm: the same divided by the bare option's UTF-8 length), through LayerFlow's own
 * ONNX graph — for the LoRA-MoE model (base + routers + experts), the pruned model (its own
 * weights) or, with neither input (`benchmark_base`, needs only `data`), the base model as loaded:
 * the dense, not fine-tuned reference row of the LayerIF tables. Pruned and base models also get
 * perplexity on held-out Moby Dick text (the dense reference of the perplexity table). Per-option
 * log-likelihoods are kept, so accuracies can be recomputed from the artifact.
 *
 * A generative task (dataset.generative) is scored instead by BIG-bench exact_str_match of the
 * model's greedy answer (src/eval/generate.ts, same graph and weights): metrics `exact_match` and
 * `documents`, and per document {id, input, targets, raw, generated, match} in benchmark.json, where
 * `generated` is the post-processed response that was compared (match = it equals a target, both
 * whitespace-stripped), so the metric can be recomputed from the artifact.
 * Heartbeats carry `progress: { done, total, unit: 'doc' }` on both paths.
 */
import { z } from 'zod';
import { LoglikelihoodScorer, scoreChoiceDocs, multipleChoiceFromLoglikelihoods } from '../src/eval/loglikelihood.ts';
import { perplexity } from '../src/eval/perplexity.ts';
import { DEFAULT_MAX_NEW_TOKENS, generateAnswers, type GenerativeResult } from '../src/eval/generate.ts';
import { withProgress } from '../src/runtime/progress.ts';
import * as M from '../src/models/index.ts';
import { createSession } from '../src/runtime/index.ts';
import { loadMobyDick, splitDocuments } from '../src/data/corpus.ts';
import { chunkTokens } from '../src/train/lm.ts';
import { parseHfConfig, type ModelConfig } from '../src/weights/hf-config.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../src/weights/safetensors.ts';
import { ConfigError } from '../src/errors.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { modelOf, readAdapter, type ChoiceDataset, type ClassifierRecord, type TaskDataset } from './shared.ts';

export const ChoiceBenchmarkSettings = z.strictObject({
  batchSize: z.number().int().min(1).default(16),
  /** Between the context and the bare option; BIG-bench contexts end with "A: ", so none. */
  delimiter: z.string().default(''),
  /** Longest scored input in tokens (contexts are left-truncated). */
  maxLength: z.number().int().min(8).default(512),
  /** Pruned and base models: perplexity on this many held-out Moby Dick windows of `perplexityLength` tokens (0 = off). */
  perplexityWindows: z.number().int().min(0).default(16),
  perplexityLength: z.number().int().min(2).default(128),
  /** Generative tasks: most tokens generated per document (default 32; below maxLength). */
  maxNewTokens: z.number().int().min(1).optional(),
});
export type ChoiceBenchmarkSettings = z.output<typeof ChoiceBenchmarkSettings>;

export const benchmarkChoice: StageImpl<ChoiceBenchmarkSettings> = async (ctx) => {
  const s = ctx.settings;
  const ds = await ctx.store.readJson<TaskDataset>(ctx.inputs.data, 'dataset.json');
  if (ds.kind !== 'choice') throw new ConfigError(`${ctx.stage}: task ${ds.task} is not multiple choice`);
  const docs = (ds as ChoiceDataset).evaluation;
  const model = await modelOf(ctx);
  let config: ModelConfig = model.config, weights: M.WeightMap = model.weights, moe: M.MoeSpec | undefined;
  const which = ctx.inputs.moe_finetune ? 'moe' : ctx.inputs.prune ? 'pruned' : 'base';
  if (which === 'moe') {
    const rec = await ctx.store.readJson<ClassifierRecord>(ctx.inputs.moe_finetune, 'classifier.json');
    const { params, shapes } = await readAdapter(ctx.store, ctx.inputs.moe_finetune);
    weights = new Map(model.weights);
    for (const [k, v] of params) weights.set(k, { dims: shapes.get(k)!, data: v });
    moe = rec.spec.moe;
  } else if (which === 'pruned') {
    config = parseHfConfig(await ctx.store.readJson(ctx.inputs.prune, 'config.json'), 'prune/config.json');
    const { tensors } = parseSafetensorsBytes(await ctx.store.read(ctx.inputs.prune, 'model.safetensors'), 'prune/model.safetensors');
    weights = new Map([...tensors].map(([k, t]) => [k, { dims: t.shape, data: rawToFloat32(t, k) }]));
  }
  const scorer = await LoglikelihoodScorer.create({ config, weights, moe, tokenizer: model.tokenizer, device: ctx.device, batchSize: s.batchSize, maxLength: s.maxLength });
  if ((ds as ChoiceDataset).generative) {
    const maxNewTokens = s.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
    let g: GenerativeResult;
    try {
      ctx.heartbeat(withProgress(ctx, 0, docs.length, 'doc', { docs: 0 }));
      g = await generateAnswers(scorer, docs, { maxNewTokens, signal: ctx.signal, onProgress: (done, total) => ctx.heartbeat(withProgress(ctx, done, total, 'doc', { docs: done })) });
    } finally {
      await scorer.release();
    }
    const metrics: Record<string, number> = { exact_match: g.exactMatch, documents: g.n };
    if (which !== 'moe' && s.perplexityWindows > 0) metrics.perplexity = await heldOutPerplexity(config, weights, model.tokenizer, s.perplexityWindows, s.perplexityLength, ctx.device);
    return {
      files: { 'benchmark.json': JSON.stringify({ model: which, generative: true, maxNewTokens, docs: g.docs }) },
      metrics,
    };
  }
  let lls: number[][];
  try {
    lls = [];
    for (let i = 0; i < docs.length; i += 8) {
      ctx.signal.throwIfAborted();
      lls.push(...(await scoreChoiceDocs(scorer, docs.slice(i, i + 8), { delimiter: s.delimiter })));
      ctx.heartbeat(withProgress(ctx, Math.min(i + 8, docs.length), docs.length, 'doc', { docs: i + 8 }));
    }
  } finally {
    await scorer.release();
  }
  const r = multipleChoiceFromLoglikelihoods(docs, lls);
  const metrics: Record<string, number> = { acc: r.acc, acc_norm: r.accNorm, documents: r.n };
  if (which !== 'moe' && s.perplexityWindows > 0) metrics.perplexity = await heldOutPerplexity(config, weights, model.tokenizer, s.perplexityWindows, s.perplexityLength, ctx.device);
  return {
    files: { 'benchmark.json': JSON.stringify({ model: which, delimiter: s.delimiter, docs: docs.map((d, i) => ({ id: d.id, gold: d.gold, options: d.options, loglikelihoods: lls[i], acc: r.docs[i].acc, accNorm: r.docs[i].accNorm })) }) },
    metrics,
  };
};

/** Perplexity on held-out Moby Dick windows (the validation documents of the corpus split). */
async function heldOutPerplexity(config: ModelConfig, weights: M.WeightMap, tok: { encode(s: string): number[] }, windows: number, length: number, device: string): Promise<number> {
  const { validation } = splitDocuments(loadMobyDick(), { validationFraction: 0.1, seed: 0 });
  const samples = chunkTokens(validation.slice(0, 8).map((d) => tok.encode(d.text)), length).slice(0, windows);
  const fwd = M.buildForwardGraph({ config, withLoss: true });
  const session = await createSession({ model: fwd.model, device });
  try {
    const nlls: number[][] = [];
    for (let i = 0; i < samples.length; i += 4) {
      const chunk = samples.slice(i, i + 4);
      const out = await session.run(M.feedsFor(fwd, weights, M.padBatch(chunk)), ['loss']);
      const loss = out.loss.data as Float32Array;
      // Per-sample mean token NLL → token NLLs of that window (equal-length windows: same weight each).
      chunk.forEach((c, b) => nlls.push(new Array(c.inputIds.length - 1).fill(loss[b])));
    }
    return perplexity({ tokenNlls: nlls }).perplexity;
  } finally {
    await session.release();
  }
}
