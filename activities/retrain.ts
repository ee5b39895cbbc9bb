/**
 * `retrain` — the ground truth NDR is compared with (NDR paper §4): drop the `dropFraction`
 * lowest-scored training samples by the cell's aggregation (the most harmful first), fine-tune again
 * from the same base with the same recipe, and keep the best evaluation accuracy over the epochs.
 */
import { z } from 'zod';
import { ConfigError } from '../src/errors.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { trainClassifier } from './finetune.ts';
import { adapterFiles, choicePredictions, modelOf, type ClassifierRecord, type TaskDataset } from './shared.ts';
import type { ParamMap, ShapeMap } from '../src/train/checkpoint.ts';

export const RetrainSettings = z.strictObject({
  /** Fraction of the training set dropped (SCIENCE.md §4: 30%). */
  dropFraction: z.number().min(0).lt(1).default(0.3),
  /** Epochs of the retraining run (default: the fine-tuning's). */
  epochs: z.number().int().min(1).optional(),
});
export type RetrainSettings = z.output<typeof RetrainSettings>;

/** Training positions kept after dropping the `fraction` lowest scores (ties: lower position dropped first). */
export function keptAfterDrop(scores: number[], fraction: number): { kept: number[]; dropped: number[] } {
  const order = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  const k = Math.round(fraction * scores.length);
  return { dropped: order.slice(0, k).sort((a, b) => a - b), kept: order.slice(k).sort((a, b) => a - b) };
}

export const retrain: StageImpl<RetrainSettings> = async (ctx) => {
  const ds = await ctx.store.readJson<TaskDataset>(ctx.inputs.data, 'dataset.json');
  const rec = await ctx.store.readJson<ClassifierRecord>(ctx.inputs.finetune, 'classifier.json');
  const { scores, aggregation, group } = await ctx.store.readJson<{ scores: number[]; aggregation: string; group: string }>(ctx.inputs.ndr, 'scores.json');
  if (scores.length !== ds.train.length) throw new ConfigError(`retrain: ${scores.length} scores for ${ds.train.length} training samples`);
  const { kept, dropped } = keptAfterDrop(scores, ctx.settings.dropFraction);
  if (kept.length === 0) throw new ConfigError(`stages.retrain.dropFraction ${ctx.settings.dropFraction} drops every training sample`);
  const model = await modelOf(ctx);
  // Multiple-choice tasks: accuracy by option log-likelihood on the evaluation documents.
  const accuracyOf = ds.kind === 'choice'
    ? async (params: ParamMap, shapes: ShapeMap) => {
      const pred = await choicePredictions({ model, rec, params, shapes, docs: ds.evaluation, device: ctx.device });
      return pred.filter((p, i) => ds.evaluation[i].gold.includes(p)).length / pred.length;
    }
    : undefined;
  const train = (ds.train as unknown[]);
  const r = await trainClassifier(ctx, rec, kept.map((i) => train[i]), ds, 'accuracy', ctx.settings.epochs ?? rec.train.epochs, accuracyOf);
  const noisy = new Set(ds.noisyIds);
  const noisyDropped = dropped.filter((i) => noisy.has(i)).length;
  return {
    files: {
      ...adapterFiles(rec, r.params, r.shapes, model.id),
      'retrain.json': JSON.stringify({ aggregation, group, dropped, noisyDropped, bestEpoch: r.bestEpoch, epochs: r.epochs }),
    },
    metrics: { retrain_accuracy: r.bestValAccuracy!, best_epoch: r.bestEpoch, dropped: dropped.length, noisy_dropped: noisyDropped, noisy_dropped_fraction: noisyDropped / Math.max(1, ds.noisyIds.length) },
    series: { evaluation_accuracy: r.epochs.map((e) => e.valAccuracy ?? NaN), train_loss: r.stepLosses },
  };
};
