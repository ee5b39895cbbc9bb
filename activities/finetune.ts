/**
 * `finetune` (NDR §4): LoRA fine-tuning of the pretrained model with a sequence-classification head
 * (the paper's CL layer) on the noisy training set; AdamW, cosine schedule with warmup; the
 * checkpoint with the lowest influence-set loss is kept. Artifact: the PEFT adapter, the classifier
 * record every later stage rebuilds the model from, the checkpoint's influence-set predictions (for
 * the "-c" aggregations) and the training history. Loss per step and per epoch go to MLflow as series.
 */
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { z } from 'zod';
import { fineTuneClassifier, ClassifierPredictor, predictions, accuracy, type FineTuneArgs } from '../src/train/classifier.ts';
import { ConfigError } from '../src/errors.ts';
import type { StageContext, StageImpl, StageResult } from '../src/store/stage-context.ts';
import { withProgress } from '../src/runtime/progress.ts';
import { stageMicroBatch } from '../src/runtime/oom.ts';
import { adapterFiles, adapterTrainingSettings, choicePredictions, encodeFor, modelOf, type ClassifierRecord, type TaskDataset } from './shared.ts';

/** LoRA fine-tuning (NDR code: rank 4, alpha 4 on q and v; 10 epochs, batch 32). */
export const FinetuneSettings = z.strictObject(adapterTrainingSettings({ epochs: 10, batchSize: 32, rank: 4, alpha: 4 }));
export type FinetuneSettings = z.output<typeof FinetuneSettings>;

export const finetune: StageImpl<FinetuneSettings> = async (ctx): Promise<StageResult> => {
  const s = ctx.settings;
  const ds = await ctx.store.readJson<TaskDataset>(ctx.inputs.data, 'dataset.json');
  const model = await modelOf(ctx);
  const padId = model.tokenizer.padId ?? model.tokenizer.eosId ?? 0;
  const choice = ds.kind === 'choice';
  const rec: ClassifierRecord = {
    objective: choice ? 'answer-lm' : 'classifier',
    spec: { lora: { r: s.rank, alpha: s.alpha, targets: s.targets }, ...(choice ? {} : { numLabels: ds.numClasses }) },
    maxLength: s.maxLength, padId, labelNames: choice ? [] : ds.labelNames,
    train: { epochs: s.epochs, lr: s.lr, batchSize: s.batchSize, microBatchSize: s.microBatchSize, warmupRatio: s.warmupRatio, weightDecay: s.weightDecay },
  };
  const r = await trainClassifier<unknown>(ctx, rec, ds.train, ds, 'loss');
  const files = {
    ...adapterFiles(rec, r.params, r.shapes, model.id),
    'classifier.json': JSON.stringify(rec, null, 1),
    'history.json': JSON.stringify({ stepLosses: r.stepLosses, epochs: r.epochs, bestEpoch: r.bestEpoch }),
  };
  const series = { train_loss: r.stepLosses, influence_loss: r.epochs.map((e) => e.valLoss), epoch_train_loss: r.epochs.map((e) => e.trainLoss) };
  if (ds.kind === 'choice') {
    // The "-c" aggregations need which influence documents the checkpoint answers correctly.
    const pred = await choicePredictions({ model, rec, params: r.params, shapes: r.shapes, docs: ds.influence, device: ctx.device });
    const correct = pred.map((p, i) => ds.influence[i].gold.includes(p));
    return {
      files: { ...files, 'influence-predictions.json': JSON.stringify({ predictions: pred, correct }) },
      metrics: { best_epoch: r.bestEpoch, best_influence_loss: r.bestValLoss, influence_accuracy: correct.filter(Boolean).length / correct.length, steps: r.steps },
      series,
    };
  }
  const influence = ds.influence.map((e) => encodeFor(model.tokenizer, rec, e));
  const predictor = await ClassifierPredictor.create({ config: model.config, spec: rec.spec, device: ctx.device });
  let logits: Float32Array;
  try {
    logits = await predictor.logits({ base: model.weights, params: r.params, shapes: r.shapes, samples: influence, batchSize: stageMicroBatch(ctx, s.microBatchSize), padId });
  } finally {
    await predictor.release();
  }
  const pred = predictions(logits, ds.numClasses);
  return {
    files: { ...files, 'influence-predictions.json': JSON.stringify({ predictions: pred, correct: pred.map((p, i) => p === ds.influence[i].label) }) },
    metrics: { best_epoch: r.bestEpoch, best_influence_loss: r.bestValLoss, influence_accuracy: accuracy(logits, ds.influence.map((e) => e.label), ds.numClasses), steps: r.steps },
    series,
  };
};

/**
 * Fine-tune the adapter of `rec` on `train` (model selection on the influence set by loss, or on
 * the evaluation set by accuracy); resumable from the stage's scratch checkpoints after a crash.
 * After an out-of-memory failure the cell retries it with a smaller micro-batch (ctx.microBatchScale):
 * the optimizer step's batch stays `batchSize` (more gradient accumulation), so the result is the
 * same to float tolerance; the adapter record keeps the configured micro-batch.
 */
export async function trainClassifier<E>(ctx: StageContext<unknown>, rec: ClassifierRecord, train: E[], ds: { influence: unknown[]; evaluation: unknown[] }, selectBy: 'loss' | 'accuracy', epochs = rec.train.epochs, accuracyOf?: FineTuneArgs['accuracyOf']) {
  const model = await modelOf(ctx);
  const enc = (e: unknown) => encodeFor(model.tokenizer, rec, e as Parameters<typeof encodeFor>[2]);
  if (rec.train.batchSize % rec.train.microBatchSize !== 0) throw new ConfigError(`stages.${ctx.stage}: batchSize ${rec.train.batchSize} must be a multiple of microBatchSize ${rec.train.microBatchSize}`);
  const microBatchSize = stageMicroBatch(ctx, rec.train.microBatchSize, { divides: rec.train.batchSize });
  // Checkpoints record their micro-batch: a run at another one keeps its own (a crash retry at the same one resumes).
  const scratch = join(ctx.home, 'scratch', ctx.key);
  const checkpointDir = microBatchSize === rec.train.microBatchSize ? scratch : `${scratch}@mb${microBatchSize}`;
  const r = await fineTuneClassifier({
    config: model.config, base: model.weights, spec: rec.spec,
    train: train.map(enc), validation: (selectBy === 'loss' ? ds.influence : ds.evaluation).map(enc),
    ...rec.train, microBatchSize, epochs, seed: (ctx.slice.seed as number) ?? 0, padId: rec.padId, device: ctx.device,
    selectBy, accuracyOf, checkpointDir, signal: ctx.signal,
    onStep: (i) => ctx.heartbeat(withProgress(ctx, i.step, i.totalSteps, 'step', { step: i.step, of: i.totalSteps, loss: i.loss })),
  });
  await rm(checkpointDir, { recursive: true, force: true });
  if (checkpointDir !== scratch) await rm(scratch, { recursive: true, force: true });
  return r;
}
