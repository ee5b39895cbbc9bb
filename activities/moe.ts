/**
 * `moe_finetune` (LayerIF §3a): a LoRA-MoE model (MoLA-style: per target module s_l LoRA experts,
 * softmax router, top-K renormalised, load-balancing loss) with the allocated experts per block,
 * trained as an answer-token LM on the task's training split; the checkpoint with the lowest
 * IF-validation loss is kept. Artifact: routers and experts (PEFT-style names, `moe.router` /
 * `moe.lora_A` / `moe.lora_B` per module) and the record the benchmark rebuilds the model from.
 */
import { z } from 'zod';
import { ConfigError } from '../src/errors.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { trainClassifier } from './finetune.ts';
import { adapterFiles, adapterTrainingSettings, modelOf, type ChoiceDataset, type ClassifierRecord, type TaskDataset } from './shared.ts';

/** LoRA-MoE experts: LayerIF's MoE code uses rank 8, alpha 16 on q,k,v,o,gate,up,down; q and v (the default) keep CPU runs short. */
export const MoeSettings = z.strictObject({
  ...adapterTrainingSettings({ epochs: 3, batchSize: 16, rank: 8, alpha: 16 }),
  topK: z.number().int().min(1).default(2),
});
export type MoeSettings = z.output<typeof MoeSettings>;

export const moe_finetune: StageImpl<MoeSettings> = async (ctx) => {
  const s = ctx.settings;
  const ds = await ctx.store.readJson<TaskDataset>(ctx.inputs.data, 'dataset.json');
  if (ds.kind !== 'choice') throw new ConfigError(`moe_finetune: task ${ds.task} is a classification task; LoRA-MoE training takes a multiple-choice task (source: bigbench or choice-jsonl)`);
  const { experts } = await ctx.store.readJson<{ experts: number[] }>(ctx.inputs.allocate_experts, 'experts.json');
  const model = await modelOf(ctx);
  const rec: ClassifierRecord = {
    objective: 'answer-lm',
    spec: { moe: { r: s.rank, alpha: s.alpha, targets: s.targets, experts, topK: s.topK } },
    maxLength: s.maxLength, padId: model.tokenizer.padId ?? model.tokenizer.eosId ?? 0, labelNames: [],
    train: { epochs: s.epochs, lr: s.lr, batchSize: s.batchSize, microBatchSize: s.microBatchSize, warmupRatio: s.warmupRatio, weightDecay: s.weightDecay },
  };
  const r = await trainClassifier<ChoiceDataset['train'][number]>(ctx, rec, ds.train, ds, 'loss');
  return {
    files: { ...adapterFiles(rec, r.params, r.shapes, model.id), 'classifier.json': JSON.stringify(rec, null, 1), 'history.json': JSON.stringify({ stepLosses: r.stepLosses, epochs: r.epochs, bestEpoch: r.bestEpoch }) },
    metrics: { best_epoch: r.bestEpoch, best_validation_loss: r.bestValLoss, experts: experts.reduce((a, b) => a + b, 0), steps: r.steps },
    series: { train_loss: r.stepLosses, validation_loss: r.epochs.map((e) => e.valLoss) },
  };
};
