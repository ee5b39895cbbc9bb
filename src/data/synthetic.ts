/**
 * Synthetic tasks with known structure, for tests and quick pipelines.
 *  - keyword: label = 1 iff the text contains the keyword (default "great"), otherwise random filler.
 *  - addition: multiple choice "a + b =" with the true sum among distractors.
 *  - gaussian: two Gaussian clusters in d dimensions (features, label) — linearly separable
 *    up to `overlap`.
 */
import { createRng } from './random.ts';
import type { ChoiceExample, ClassificationExample, TaskDataset } from './types.ts';

const FILLER = ['the', 'movie', 'was', 'plot', 'actor', 'scene', 'long', 'film', 'story', 'music', 'ending', 'quite', 'very', 'and', 'but'];

export function syntheticKeywordTask({ n, seed, keyword = 'great', length = 8 }: { n: number; seed: number; keyword?: string; length?: number }): TaskDataset {
  const rng = createRng(seed);
  const examples: ClassificationExample[] = Array.from({ length: n }, (_, id) => {
    const label = id % 2;
    const words = Array.from({ length }, () => FILLER[rng.int(FILLER.length)]);
    if (label === 1) words[rng.int(length)] = keyword;
    return { id, text: words.join(' '), label };
  });
  return { name: 'synthetic-keyword', kind: 'classification', examples, numClasses: 2, labelNames: ['absent', 'present'] };
}

export function syntheticAdditionTask({ n, seed, choices = 4 }: { n: number; seed: number; choices?: number }): TaskDataset {
  const rng = createRng(seed);
  const examples: ChoiceExample[] = Array.from({ length: n }, (_, id) => {
    const a = rng.int(50), b = rng.int(50);
    const opts = new Set([a + b]);
    while (opts.size < choices) opts.add(a + b + 1 + rng.int(2 * choices + 10));
    const shuffled = rng.shuffle([...opts]);
    return { id, prompt: `${a} + ${b} =`, choices: shuffled.map((x) => ` ${x}`), answer: shuffled.indexOf(a + b) };
  });
  return { name: 'synthetic-addition', kind: 'choice', examples };
}

export function syntheticGaussianTask({ n, d, seed, overlap = 0.5 }: { n: number; d: number; seed: number; overlap?: number }): { features: Float64Array; labels: number[]; d: number } {
  const rng = createRng(seed);
  const labels = Array.from({ length: n }, (_, i) => i % 2);
  const features = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) features[i * d + j] = (labels[i] === 1 ? 1 : -1) / Math.sqrt(d) + overlap * rng.normal();
  return { features, labels, d };
}
