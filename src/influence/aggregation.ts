/**
 * Aggregation of per-unit influence matrices into one score per training sample
 * (SCIENCE.md §4). Columns are (unit, validation sample j); each column holds n scores.
 *
 *   mean: mean over all columns.
 *   rank: in each column rank training samples ascending (rank 0 = most harmful, ties broken
 *         by sample index); score = mean rank.
 *   vote: k_v = round(p·n) (p = 0.2); score = −Σ_columns max(k_v − rank, 0).
 *   "-c" variants: pass `correct` (mask over validation samples the checkpoint predicts
 *   correctly); only those columns are used.
 * Lower score = more harmful, in every mode (so NDR sorts ascending).
 */
import { ConfigError, DataError } from '../errors.ts';
import type { InfluenceMatrix } from './types.ts';

export type AggregationMode = 'mean' | 'rank' | 'vote';

export interface AggregateArgs {
  matrices: InfluenceMatrix[];
  mode: AggregationMode;
  /** Vote fraction p (default 0.2). */
  p?: number;
  /** "-c" variant: keep validation sample j only where correct[j] is true. */
  correct?: ArrayLike<boolean>;
}

/** Ascending ordinal ranks of one column (stable: equal scores ranked by index). */
export function ranksAscending(col: ArrayLike<number>): Int32Array {
  const idx = Array.from({ length: col.length }, (_, i) => i).sort((a, b) => col[a] - col[b] || a - b);
  const ranks = new Int32Array(col.length);
  idx.forEach((k, r) => { ranks[k] = r; });
  return ranks;
}

/** One aggregated score per training sample. */
export function aggregateInfluence({ matrices, mode, p = 0.2, correct }: AggregateArgs): Float64Array {
  if (matrices.length === 0) throw new DataError('aggregateInfluence: no influence matrices; expected at least one unit');
  const { m, n } = matrices[0];
  for (const mat of matrices) {
    if (mat.m !== m || mat.n !== n || mat.data.length !== m * n) {
      throw new DataError(`aggregateInfluence: unit ${mat.unit} is [${mat.m} × ${mat.n}] with ${mat.data.length} values; expected [${m} × ${n}] like unit ${matrices[0].unit}`);
    }
    for (let i = 0; i < mat.data.length; i++) {
      if (!Number.isFinite(mat.data[i])) throw new DataError(`aggregateInfluence: unit ${mat.unit}, validation ${Math.floor(i / n)}, train ${i % n} is ${mat.data[i]}; expected a finite number`);
    }
  }
  if (n === 0) throw new DataError('aggregateInfluence: no training samples (n = 0)');
  if (correct && correct.length !== m) throw new DataError(`aggregateInfluence: correct-mask has ${correct.length} entries; expected m = ${m}`);
  if (mode === 'vote' && !(p > 0 && p <= 1)) throw new ConfigError(`aggregateInfluence: vote fraction p = ${p}; expected 0 < p ≤ 1`);
  const cols = Array.from({ length: m }, (_, j) => j).filter((j) => !correct || correct[j]);
  if (cols.length === 0) throw new DataError('aggregateInfluence: the correct-mask keeps no validation samples; expected at least one');
  const out = new Float64Array(n);
  const kv = Math.round(p * n);
  const col = new Float64Array(n);
  for (const mat of matrices) {
    for (const j of cols) {
      for (let k = 0; k < n; k++) col[k] = mat.data[j * n + k];
      if (mode === 'mean') { for (let k = 0; k < n; k++) out[k] += col[k]; continue; }
      const ranks = ranksAscending(col);
      for (let k = 0; k < n; k++) out[k] += mode === 'rank' ? ranks[k] : -Math.max(kv - ranks[k], 0);
    }
  }
  if (mode !== 'vote') {
    const count = matrices.length * cols.length;
    for (let k = 0; k < n; k++) out[k] /= count;
  }
  return out;
}
