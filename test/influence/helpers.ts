import { createRng } from '../../src/data/random.ts';
import type { UnitGradients } from '../../src/influence/types.ts';

export function randomGrads(unit: string, n: number, d: number, seed: number, layer = 0): UnitGradients {
  const rng = createRng(seed);
  return { unit, layer, n, d, data: Float64Array.from({ length: n * d }, () => rng.normal()) };
}

/** Inverse of a dense d×d matrix by Gauss–Jordan elimination with partial pivoting. */
export function invert(a: number[][]): number[][] {
  const d = a.length;
  const m = a.map((row, i) => [...row, ...Array.from({ length: d }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < d; c++) {
    let piv = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(m[r][c]) > Math.abs(m[piv][c])) piv = r;
    [m[c], m[piv]] = [m[piv], m[c]];
    const p = m[c][c];
    for (let j = 0; j < 2 * d; j++) m[c][j] /= p;
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = m[r][c];
      for (let j = 0; j < 2 * d; j++) m[r][j] -= f * m[c][j];
    }
  }
  return m.map((row) => row.slice(d));
}

export function row(g: UnitGradients, i: number): number[] {
  return Array.from(g.data.subarray(i * g.d, (i + 1) * g.d));
}
