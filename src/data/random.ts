/**
 * Seeded pseudo-random numbers (mulberry32). Deterministic per seed across platforms,
 * so splits and noise injection are reproducible (SCIENCE.md §4 "seeded").
 */
import { ConfigError } from '../errors.ts';

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
  /** Fisher–Yates shuffle of a copy. */
  shuffle<T>(items: readonly T[]): T[];
  /** Fisher–Yates permutation of 0..n−1. */
  permutation(n: number): number[];
  /** The whole generator state (one uint32): `createRng(state)` continues the same sequence. */
  readonly state: number;
}

/** mulberry32 generator seeded with a 32-bit integer. */
export function createRng(seed: number): Rng {
  if (!Number.isInteger(seed)) throw new ConfigError(`random seed is ${seed}; expected an integer`);
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const rng: Rng = {
    next,
    int,
    get state() {
      return a;
    },
    permutation: (n: number) => rng.shuffle(Array.from({ length: n }, (_, i) => i)),
    normal() {
      let u = 0;
      while (u === 0) u = next();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    },
    shuffle<T>(items: readonly T[]): T[] {
      const out = items.slice();
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
  };
  return rng;
}
