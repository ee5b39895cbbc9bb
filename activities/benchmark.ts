/**
 * `benchmark` (NDR pipeline): evaluation-set accuracy of the noisy fine-tuned model and of the
 * retrained one — a classifier's argmax over its head (per-sample logits kept), or for a
 * multiple-choice task the option with the highest log-likelihood (predictions kept). Progress
 * (src/runtime/progress.ts) counts the evaluation items of both models: one bar, 2 × items long.
 */
import { z } from 'zod';
import { ClassifierPredictor, accuracy } from '../src/train/classifier.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { stageMicroBatch } from '../src/runtime/oom.ts';
import { withProgress } from '../src/runtime/progress.ts';
import { choicePredictions, encodeExample, modelOf, readAdapter, type ClassifierRecord, type TaskDataset } from './shared.ts';

export const BenchmarkSettings = z.strictObject({
  batchSize: z.number().int().min(1).default(16),
});
export type BenchmarkSettings = z.output<typeof BenchmarkSettings>;

export const benchmark: StageImpl<BenchmarkSettings> = async (ctx) => {
  const ds = await ctx.store.readJson<TaskDataset>(ctx.inputs.data, 'dataset.json');
  const rec = await ctx.store.readJson<ClassifierRecord>(ctx.inputs.finetune, 'classifier.json');
  const model = await modelOf(ctx);
  if (ds.kind === 'choice') {
    const out: Record<string, { accuracy: number; predictions: number[] }> = {};
    const n = ds.evaluation.length;
    ctx.heartbeat(withProgress(ctx, 0, 2 * n, 'doc', { model: 'finetune' }));
    for (const [m, which] of (['finetune', 'retrain'] as const).entries()) {
      const { params, shapes } = await readAdapter(ctx.store, ctx.inputs[which]);
      const predictions = await choicePredictions({
        model, rec, params, shapes, docs: ds.evaluation, device: ctx.device, signal: ctx.signal,
        onProgress: (done) => ctx.heartbeat(withProgress(ctx, m * n + done, 2 * n, 'doc', { model: which })),
      });
      out[which] = { accuracy: predictions.filter((p, i) => ds.evaluation[i].gold.includes(p)).length / predictions.length, predictions };
      ctx.heartbeat(withProgress(ctx, (m + 1) * n, 2 * n, 'doc', { done: which }));
    }
    return {
      files: { 'benchmark.json': JSON.stringify({ gold: ds.evaluation.map((d) => d.gold), ...out }) },
      metrics: { accuracy_noisy: out.finetune.accuracy, accuracy_retrained: out.retrain.accuracy, accuracy_gain: out.retrain.accuracy - out.finetune.accuracy, evaluation: ds.evaluation.length },
    };
  }
  const samples = ds.evaluation.map((e) => encodeExample(model.tokenizer, e, rec.maxLength));
  const labels = ds.evaluation.map((e) => e.label);
  const predictor = await ClassifierPredictor.create({ config: model.config, spec: rec.spec, device: ctx.device });
  const out: Record<string, { accuracy: number; logits: number[] }> = {};
  const n = samples.length, C = rec.spec.numLabels!;
  try {
    ctx.heartbeat(withProgress(ctx, 0, 2 * n, 'sample', { model: 'finetune' }));
    for (const [m, which] of (['finetune', 'retrain'] as const).entries()) {
      ctx.signal.throwIfAborted();
      const { params, shapes } = await readAdapter(ctx.store, ctx.inputs[which]);
      const batchSize = stageMicroBatch(ctx, ctx.settings.batchSize);
      // A batch per call (the same batches one call would run), so progress is reported between them.
      const logits = new Float32Array(n * C);
      for (let i = 0; i < n; i += batchSize) {
        ctx.signal.throwIfAborted();
        const part = await predictor.logits({ base: model.weights, params, shapes, samples: samples.slice(i, i + batchSize), batchSize, padId: rec.padId });
        logits.set(part, i * C);
        ctx.heartbeat(withProgress(ctx, m * n + Math.min(i + batchSize, n), 2 * n, 'sample', { model: which }));
      }
      out[which] = { accuracy: accuracy(logits, labels, C), logits: Array.from(logits) };
      ctx.heartbeat(withProgress(ctx, (m + 1) * n, 2 * n, 'sample', { done: which }));
    }
  } finally {
    await predictor.release();
  }
  return {
    files: { 'benchmark.json': JSON.stringify({ labels, ...out }) },
    metrics: { accuracy_noisy: out.finetune.accuracy, accuracy_retrained: out.retrain.accuracy, accuracy_gain: out.retrain.accuracy - out.finetune.accuracy, evaluation: labels.length },
  };
};
