/**
 * Seeded stratified splits (SCIENCE.md §4): a training set of up to 4500 examples and a
 * validation set of up to 1000 split 50/50 into an *influence* set and an *evaluation* set.
 *
 * Sizes: `trainSize`, `influenceSize`, `evaluationSize` are explicit integers ≥ 1, or undefined
 * for the paper's cap (4500, 500, 500). When the data cannot hold the caps, the undefined sizes
 * share what the explicit ones leave in the paper's 4500:500:500 proportions (largest
 * remainder; e.g. 1200 examples → 982:109:109), each at least one per class. Explicit sizes
 * that do not fit throw ConfigError naming the fields; they are never shrunk silently.
 *
 * Stratification: every split holds at least one example of every class present (else
 * ConfigError "too few samples per class" naming the class and split); beyond that a split of
 * size s takes s·m_c/n examples of a class with m_c of the n examples (largest remainder).
 * Each class's ids are shuffled once with the seeded PRNG and cut into influence, evaluation
 * and train in that order, so the splits are disjoint and reproducible per seed.
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
  /** Ascending example positions of each split (disjoint). */
  train: number[];
  influence: number[];
  evaluation: number[];
  seed: number;
}

export interface NdrSplitOptions {
  labels: ArrayLike<number>;
  /** Training-set size; undefined: 4500, or proportionally less on smaller data. */
  trainSize?: number;
  /** Influence-set size (half the paper's validation set); undefined: 500, or proportionally less. */
  influenceSize?: number;
  /** Evaluation-set size (the other half); undefined: 500, or proportionally less. */
  evaluationSize?: number;
  seed: number;
}

type Split = 'train' | 'influence' | 'evaluation';
const SPLITS: readonly Split[] = ['train', 'influence', 'evaluation'];
/** Order in which classes are cut: the small sets first, so they stay closest to proportional. */
const CUT_ORDER: readonly Split[] = ['influence', 'evaluation', 'train'];
/** The paper's caps (SCIENCE.md §4): train 4500, validation 1000 = 500 + 500. */
export const NDR_PAPER_SIZES: Readonly<Record<Split, number>> = { train: 4500, influence: 500, evaluation: 500 };

/**
 * Integers a_i summing to `size` with min_i ≤ a_i ≤ max_i, as close to `quotas` as largest
 * remainder gets. Callers guarantee Σ min ≤ size ≤ Σ max.
 */
function apportion(size: number, quotas: number[], min: number[], max: number[]): number[] {
  const a = quotas.map((q, i) => Math.min(max[i], Math.max(min[i], Math.floor(q))));
  let diff = size - a.reduce((s, x) => s + x, 0);
  while (diff !== 0) {
    let best = -1;
    for (let i = 0; i < a.length; i++) {
      if (diff > 0 ? a[i] >= max[i] : a[i] <= min[i]) continue;
      const gap = diff > 0 ? quotas[i] - a[i] : a[i] - quotas[i];
      if (best < 0 || gap > (diff > 0 ? quotas[best] - a[best] : a[best] - quotas[best])) best = i;
    }
    if (best < 0) throw new Error(`apportion: cannot place ${size} within [${min.join(',')}]..[${max.join(',')}]`);
    a[best] += Math.sign(diff);
    diff -= Math.sign(diff);
  }
  return a;
}

/** Split sizes from the explicit ones and the paper's caps (see the header). */
function resolveSizes(given: Record<Split, number | undefined>, n: number, classes: number): Record<Split, number> {
  for (const s of SPLITS) {
    const v = given[s];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new ConfigError(`ndrSplits: ${s}Size ${v}; expected an integer ≥ 1, or undefined for the paper's size`);
  }
  const explicit = SPLITS.filter((s) => given[s] !== undefined);
  const defaulted = SPLITS.filter((s) => given[s] === undefined);
  const used = explicit.reduce((t, s) => t + given[s]!, 0);
  const terms = explicit.map((s) => `${s}Size ${given[s]}`).join(' + ');
  if (used > n) throw new ConfigError(`ndrSplits: ${terms}${explicit.length > 1 ? ` = ${used}` : ''} exceeds the ${n} examples available`);
  const sizes = Object.fromEntries(explicit.map((s) => [s, given[s]!])) as Record<Split, number>;
  if (defaulted.length === 0) return sizes;
  const caps = defaulted.map((s) => NDR_PAPER_SIZES[s]);
  const capTotal = caps.reduce((t, c) => t + c, 0);
  const avail = n - used;
  if (capTotal <= avail) {
    defaulted.forEach((s, i) => { sizes[s] = caps[i]; });
    return sizes;
  }
  if (avail < classes * defaulted.length) {
    const after = explicit.length ? ` after ${terms}` : '';
    throw new ConfigError(`ndrSplits: too few samples per class: ${avail} of the ${n} examples left${after} for ${defaulted.map((s) => `${s}Size`).join(', ')}; expected at least ${classes * defaulted.length} (one example of each of the ${classes} classes per split)`);
  }
  const got = apportion(avail, caps.map((c) => (avail * c) / capTotal), caps.map(() => classes), caps);
  defaulted.forEach((s, i) => { sizes[s] = got[i]; });
  return sizes;
}

export function ndrSplits({ labels, trainSize, influenceSize, evaluationSize, seed }: NdrSplitOptions): NdrSplits {
  const n = labels.length;
  if (n < 3) throw new DataError(`ndrSplits: ${n} examples; expected at least 3 (train, influence, evaluation)`);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0) throw new DataError(`ndrSplits: label of example ${i} is ${y}; expected an integer class id`);
    const list = byClass.get(y);
    if (list) list.push(i);
    else byClass.set(y, [i]);
  }
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const counts = classes.map((c) => byClass.get(c)!.length);
  const K = classes.length;
  const sizes = resolveSizes({ train: trainSize, influence: influenceSize, evaluation: evaluationSize }, n, K);

  for (const s of CUT_ORDER) {
    if (sizes[s] >= K) continue;
    let rarest = 0;
    for (let k = 1; k < K; k++) if (counts[k] <= counts[rarest]) rarest = k;
    throw new ConfigError(`ndrSplits: too few samples per class: ${s}Size ${sizes[s]} is less than the ${K} classes, so the ${s} split would have no example of class ${classes[rarest]}; expected at least one example of every class per split`);
  }
  counts.forEach((m, k) => {
    if (m < CUT_ORDER.length) throw new ConfigError(`ndrSplits: too few samples per class: class ${classes[k]} has ${m} example${m === 1 ? '' : 's'}, so the ${CUT_ORDER[m]} split would have none; expected at least ${CUT_ORDER.length} per class (one per split)`);
  });

  // Per-class counts of each split, cut in CUT_ORDER; every class keeps one example for each later split.
  const take = new Map<Split, number[]>();
  const left = [...counts];
  CUT_ORDER.forEach((s, j) => {
    const later = CUT_ORDER.length - 1 - j;
    const a = apportion(sizes[s], counts.map((m) => (sizes[s] * m) / n), counts.map(() => 1), left.map((r) => r - later));
    a.forEach((x, k) => { left[k] -= x; });
    take.set(s, a);
  });

  const rng = createRng(seed);
  const out: Record<Split, number[]> = { train: [], influence: [], evaluation: [] };
  classes.forEach((c, k) => {
    const shuffled = rng.shuffle(byClass.get(c)!);
    let at = 0;
    for (const s of CUT_ORDER) {
      const x = take.get(s)![k];
      out[s].push(...shuffled.slice(at, at + x));
      at += x;
    }
  });
  for (const s of SPLITS) out[s].sort((a, b) => a - b);
  return { ...out, seed };
}
