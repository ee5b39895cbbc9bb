/**
 * Seeded stratified splits (SCIENCE.md §4): training set up to `trainSize` (4500), validation
 * up to `validationSize` (1000) split 50/50 into an influence set and an evaluation set, each
 * stratified by label. Per class, a sample of size c is taken in proportion to the class's
 * share (largest remainder), from a seeded shuffle.
 */
import { ConfigError, DataError } from '../errors.ts';
import { createRng, type Rng } from './random.ts';

/** Stratified sample of `count` ids; returns the picked ids and the rest (both ascending). */
export function stratifiedSample(ids: number[], labels: ArrayLike<number>, count: number, rng: Rng): { picked: number[]; rest: number[] } {
  if (!Number.isInteger(count) || count < 0 || count > ids.length) throw new ConfigError(`stratifiedSample: count ${count}; expected an integer in [0, ${ids.length}]`);
  const byClass = new Map<number, number[]>();
  for (const id of ids) {
    const list = byClass.get(labels[id]);
    if (list) list.push(id);
    else byClass.set(labels[id], [id]);
  }
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const raw = classes.map((c) => (byClass.get(c)!.length * count) / ids.length);
  const take = raw.map(Math.floor);
  let left = count - take.reduce((a, b) => a + b, 0);
  const order = classes.map((_, i) => i).sort((a, b) => raw[b] - take[b] - (raw[a] - take[a]) || a - b);
  for (const i of order) { if (left === 0) break; if (take[i] < byClass.get(classes[i])!.length) { take[i]++; left--; } }
  const picked: number[] = [];
  const rest: number[] = [];
  classes.forEach((c, i) => {
    const shuffled = rng.shuffle(byClass.get(c)!);
    picked.push(...shuffled.slice(0, take[i]));
    rest.push(...shuffled.slice(take[i]));
  });
  return { picked: picked.sort((a, b) => a - b), rest: rest.sort((a, b) => a - b) };
}

export interface NdrSplits {
  train: number[];
  influence: number[];
  evaluation: number[];
  seed: number;
}

export function ndrSplits({ labels, trainSize = 4500, validationSize = 1000, seed }: { labels: ArrayLike<number>; trainSize?: number; validationSize?: number; seed: number }): NdrSplits {
  const n = labels.length;
  if (n < 3) throw new DataError(`ndrSplits: ${n} examples; expected at least 3 (train, influence, evaluation)`);
  for (let i = 0; i < n; i++) if (!Number.isInteger(labels[i]) || labels[i] < 0) throw new DataError(`ndrSplits: label of example ${i} is ${labels[i]}; expected an integer class id`);
  if (!(trainSize >= 1) || !(validationSize >= 2)) throw new ConfigError(`ndrSplits: trainSize ${trainSize}, validationSize ${validationSize}; expected ≥ 1 and ≥ 2`);
  const rng = createRng(seed);
  const all = Array.from({ length: n }, (_, i) => i);
  const valCount = Math.min(validationSize, Math.max(2, n - trainSize), n - 1);
  const { picked: val, rest } = stratifiedSample(all, labels, valCount, rng);
  const { picked: train } = stratifiedSample(rest, labels, Math.min(trainSize, rest.length), rng);
  const { picked: influence, rest: evaluation } = stratifiedSample(val, labels, Math.floor(val.length / 2), rng);
  return { train, influence, evaluation, seed };
}
