/**
 * Label-noise injection (SCIENCE.md §4): flip the label of exactly round(fraction · n)
 * uniformly random training samples (seeded). Binary labels flip 0 ↔ 1; with more classes a
 * flipped label becomes a uniformly random *different* class. The noisy ids are recorded.
 */
import { ConfigError, DataError } from '../errors.ts';
import { createRng } from './random.ts';

export interface NoisyLabels {
  labels: number[];
  /** Ascending positions (into the given label array) whose label was flipped. */
  noisyIds: number[];
  fraction: number;
  seed: number;
}

export function injectLabelNoise({ labels, fraction = 0.2, numClasses = 2, seed }: { labels: ArrayLike<number>; fraction?: number; numClasses?: number; seed: number }): NoisyLabels {
  if (!(fraction >= 0 && fraction <= 1)) throw new ConfigError(`injectLabelNoise: fraction ${fraction}; expected a number in [0, 1]`);
  if (!Number.isInteger(numClasses) || numClasses < 2) throw new ConfigError(`injectLabelNoise: numClasses ${numClasses}; expected an integer ≥ 2`);
  const n = labels.length;
  if (n === 0) throw new DataError('injectLabelNoise: empty label set');
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(labels[i]) || labels[i] < 0 || labels[i] >= numClasses) throw new DataError(`injectLabelNoise: label ${i} is ${labels[i]}; expected an integer in [0, ${numClasses})`);
  }
  const rng = createRng(seed);
  const count = Math.round(fraction * n);
  const noisyIds = rng.shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, count).sort((a, b) => a - b);
  const out = Array.from(labels);
  for (const i of noisyIds) {
    if (numClasses === 2) out[i] = 1 - out[i];
    else { const r = rng.int(numClasses - 1); out[i] = r >= out[i] ? r + 1 : r; }
  }
  return { labels: out, noisyIds, fraction, seed };
}
