/**
 * A seeded generator whose whole state is one uint32 (mulberry32, the same sequence as
 * src/data/random.ts createRng), so a training checkpoint can save and restore it exactly.
 */
import { ConfigError } from '../errors.ts';

export class StatefulRng {
  private a: number;
  constructor(seedOrState: number) {
    if (!Number.isInteger(seedOrState)) throw new ConfigError(`random seed is ${seedOrState}; expected an integer`);
    this.a = seedOrState >>> 0;
  }
  /** The state to save; `new StatefulRng(state)` continues the same sequence. */
  get state(): number { return this.a; }
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  /** Fisher–Yates permutation of 0..n−1. */
  permutation(n: number): number[] {
    const out = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}
