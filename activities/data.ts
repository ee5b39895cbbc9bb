/**
 * `data` (NDR paper §4 data protocol): load the task, drop exact duplicates, stratified train /
 * influence / evaluation splits, flip the labels of a seeded `noise` fraction of the training set.
 * The flipped ids are part of the artifact (dataset.json), so NDR can be recomputed from it.
 */
import { z } from 'zod';
import { loadClassificationTask } from '../src/data/task.ts';
import { dedupeExamples } from '../src/data/dedupe.ts';
import { ndrSplits } from '../src/data/splits.ts';
import { injectLabelNoise } from '../src/data/noise.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import type { NdrDataset } from './shared.ts';

export const DataSettings = z.strictObject({
  /** Fraction of training labels flipped (SCIENCE.md §4: 0.2). */
  noise: z.number().min(0).lt(1, 'expected a noise fraction in [0, 1)').default(0.2),
  /** Split sizes; omitted sizes follow the data (the paper's 4500 / 500 / 500 where there is enough). */
  trainSize: z.number().int().min(2).optional(),
  influenceSize: z.number().int().min(1).optional(),
  evaluationSize: z.number().int().min(1).optional(),
  /** Remove exact duplicate texts first (identical gradients tie every score). */
  dedupe: z.boolean().default(true),
});
export type DataSettings = z.output<typeof DataSettings>;

export const data: StageImpl<DataSettings> = async (ctx) => {
  const s = ctx.settings;
  const entry = ctx.slice.task as Record<string, unknown> & { id: string };
  // A path was resolved and hashed by the sweep loader ({ path, sha256 }): load that file.
  const p = entry.path as { path: string } | string | undefined;
  const task = loadClassificationTask({ ...entry, ...(p && typeof p === 'object' ? { path: p.path } : {}) });
  const { kept, removed } = s.dedupe ? dedupeExamples(task.examples) : { kept: task.examples, removed: 0 };
  const labels = kept.map((e) => e.label);
  const seed = ctx.slice.seed as number;
  const splits = ndrSplits({ labels, trainSize: s.trainSize, influenceSize: s.influenceSize, evaluationSize: s.evaluationSize, seed });
  const trainClean = splits.train.map((i) => kept[i]);
  const noisy = injectLabelNoise({ labels: trainClean.map((e) => e.label), fraction: s.noise, numClasses: task.numClasses, seed: seed + 1 });
  const out: NdrDataset = {
    task: entry.id,
    numClasses: task.numClasses,
    labelNames: task.labelNames ?? Array.from({ length: task.numClasses }, (_, i) => String(i)),
    train: trainClean.map((e, i) => ({ id: e.id, text: e.text, label: noisy.labels[i], cleanLabel: e.label })),
    influence: splits.influence.map((i) => kept[i]),
    evaluation: splits.evaluation.map((i) => kept[i]),
    noisyIds: noisy.noisyIds,
    noise: s.noise,
    duplicatesRemoved: removed,
  };
  return {
    files: { 'dataset.json': JSON.stringify(out) },
    metrics: { train: out.train.length, influence: out.influence.length, evaluation: out.evaluation.length, noisy: out.noisyIds.length, duplicates_removed: removed },
  };
};
