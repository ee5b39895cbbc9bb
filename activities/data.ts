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
import type { ChoiceDataset, NdrDataset } from './shared.ts';
import { choiceSplits, loadBigBenchTask, loadChoiceJsonl } from '../src/eval/bigbench.ts';
import { ConfigError } from '../src/errors.ts';
import { createRng } from '../src/data/random.ts';
import type { ChoiceDoc } from '../src/eval/bigbench.ts';

export const DataSettings = z.strictObject({
  /** Fraction of training labels flipped (SCIENCE.md §4: 0.2 for classification tasks; multiple-choice tasks take none). */
  noise: z.number().min(0).lt(1, 'expected a noise fraction in [0, 1)').optional(),
  /**
   * Split sizes. Classification: omitted sizes follow the data (the paper's 4500 / 500 / 500 where
   * there is enough). Multiple choice: train / IF-validation default 300 / 50 (LayerIF), evaluation
   * (test) defaults to the rest.
   */
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
  if (entry.source === 'bigbench' || entry.source === 'choice-jsonl') return choiceData(ctx);
  // A path was resolved and hashed by the sweep loader ({ path, sha256 }): load that file.
  const p = entry.path as { path: string } | string | undefined;
  const task = loadClassificationTask({ ...entry, ...(p && typeof p === 'object' ? { path: p.path } : {}) });
  const { kept, removed } = s.dedupe ? dedupeExamples(task.examples) : { kept: task.examples, removed: 0 };
  const labels = kept.map((e) => e.label);
  const seed = ctx.slice.seed as number;
  const splits = ndrSplits({ labels, trainSize: s.trainSize, influenceSize: s.influenceSize, evaluationSize: s.evaluationSize, seed });
  const trainClean = splits.train.map((i) => kept[i]);
  const noise = s.noise ?? 0.2;
  const noisy = injectLabelNoise({ labels: trainClean.map((e) => e.label), fraction: noise, numClasses: task.numClasses, seed: seed + 1 });
  const out: NdrDataset = {
    task: entry.id,
    numClasses: task.numClasses,
    labelNames: task.labelNames ?? Array.from({ length: task.numClasses }, (_, i) => String(i)),
    train: trainClean.map((e, i) => ({ id: e.id, text: e.text, label: noisy.labels[i], cleanLabel: e.label })),
    influence: splits.influence.map((i) => kept[i]),
    evaluation: splits.evaluation.map((i) => kept[i]),
    noisyIds: noisy.noisyIds,
    noise,
    duplicatesRemoved: removed,
  };
  return {
    files: { 'dataset.json': JSON.stringify(out) },
    metrics: { train: out.train.length, influence: out.influence.length, evaluation: out.evaluation.length, noisy: out.noisyIds.length, duplicates_removed: removed },
  };
};

/**
 * Multiple-choice and generative tasks: seeded train / IF-validation / test splits of the task's
 * documents (a generative document trains on its first target; src/eval/bigbench.ts).
 */
const choiceData: StageImpl<DataSettings> = async (ctx) => {
  const s = ctx.settings;
  const entry = ctx.slice.task as { id: string; source: string; name?: string; path?: string | { path: string } };
  let docs, duplicates, generative;
  if (entry.source === 'bigbench') {
    if (!entry.name) throw new ConfigError(`task ${entry.id}: source bigbench needs name (a BIG-bench task, e.g. winowhy)`);
    const t = loadBigBenchTask(ctx.home, entry.name);
    docs = t.docs;
    duplicates = t.meta.duplicates ?? 0;
    generative = t.meta.generative === true;
  } else {
    const path = typeof entry.path === 'object' ? entry.path.path : entry.path;
    if (!path) throw new ConfigError(`task ${entry.id}: source choice-jsonl needs path`);
    const t = loadChoiceJsonl(path, { name: entry.id });
    docs = t.docs;
    duplicates = t.duplicates;
    generative = t.generative;
  }
  const seed = ctx.slice.seed as number;
  const sp = choiceSplits(docs, { train: s.trainSize, validation: s.influenceSize, test: s.evaluationSize, seed });
  if (generative && s.noise) throw new ConfigError(`stages.data.noise ${s.noise}: task ${entry.id} is generative (answers are free text, there is no wrong option to swap in); expected no noise for it`);
  const { train, noisyIds } = flipAnswers(sp.train, s.noise ?? 0, seed + 1);
  const out: ChoiceDataset = { kind: 'choice', task: entry.id, ...(generative ? { generative: true as const } : {}), train, influence: sp.validation, evaluation: sp.test, noisyIds, noise: s.noise ?? 0, duplicatesRemoved: duplicates };
  return {
    files: { 'dataset.json': JSON.stringify(out) },
    metrics: { train: sp.train.length, influence: sp.validation.length, evaluation: sp.test.length, noisy: noisyIds.length, duplicates_removed: duplicates },
  };
};

/**
 * Label noise for multiple-choice training documents (the NDR protocol on such tasks): round(noise·n)
 * documents chosen uniformly among those with a wrong option get their answer replaced by a
 * uniformly random wrong option (seeded); the true answers are kept in `cleanGold`.
 */
export function flipAnswers(docs: ChoiceDoc[], noise: number, seed: number): { train: ChoiceDataset['train']; noisyIds: number[] } {
  if (!noise) return { train: docs, noisyIds: [] };
  const flippable = docs.map((d, i) => i).filter((i) => docs[i].options.length > docs[i].gold.length);
  const count = Math.round(noise * docs.length);
  if (count > flippable.length) throw new ConfigError(`stages.data.noise ${noise} asks for ${count} flipped answers but only ${flippable.length} of ${docs.length} training documents have a wrong option`);
  const rng = createRng(seed);
  const noisyIds = rng.shuffle(flippable).slice(0, count).sort((a, b) => a - b);
  const train = docs.map((d, i) => {
    if (!noisyIds.includes(i)) return d;
    const wrong = d.options.map((_, k) => k).filter((k) => !d.gold.includes(k));
    return { ...d, gold: [wrong[rng.int(wrong.length)]], cleanGold: d.gold };
  });
  return { train, noisyIds };
}
