import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import { aggregateInfluence, ranksAscending } from '../../src/influence/aggregation.ts';
import { noiseDetectionRate, oracleNdrBaseline, randomNdrBaseline } from '../../src/influence/ndr.ts';
import type { InfluenceMatrix } from '../../src/influence/types.ts';

const mat = (unit: string, rows: number[][]): InfluenceMatrix => ({
  unit, layer: 0, method: 'datainf', convention: 'positive=helpful', m: rows.length, n: rows[0].length, data: Float64Array.from(rows.flat()),
});
// Two units, m = 2 validation samples, n = 4 training samples (hand-ranked below).
const A = mat('A', [[3, 1, 2, 0], [0.5, 0.2, 0.9, -1]]);
const B = mat('B', [[-2, 5, 1, 1], [1, 2, 3, 4]]);

test('ranks ascending with stable ties', (t) => {
  t.deepEqual(Array.from(ranksAscending([-2, 5, 1, 1])), [0, 3, 1, 2]);
});

test('mean, rank and vote aggregation on a hand tensor', (t) => {
  const close = (a: Float64Array, b: number[]) => t.true(Array.from(a).every((x, i) => Math.abs(x - b[i]) < 1e-12), `${Array.from(a)} vs ${b}`);
  close(aggregateInfluence({ matrices: [A, B], mode: 'mean' }), [0.625, 2.05, 1.725, 1]);
  // Column ranks: A0 [3,1,2,0], A1 [2,1,3,0], B0 [0,3,1,2], B1 [0,1,2,3].
  close(aggregateInfluence({ matrices: [A, B], mode: 'rank' }), [1.25, 1.5, 2, 1.25]);
  // k_v = round(0.5·4) = 2 → −max(2 − rank, 0) summed.
  close(aggregateInfluence({ matrices: [A, B], mode: 'vote', p: 0.5 }), [-4, -3, -1, -4]);
  // -c variant: only validation sample 0 is predicted correctly.
  close(aggregateInfluence({ matrices: [A, B], mode: 'rank', correct: [true, false] }), [1.5, 2, 1.5, 1]);
  close(aggregateInfluence({ matrices: [A, B], mode: 'mean', correct: [false, true] }), [0.75, 1.1, 1.95, 1.5]);
});

test('aggregation rejects bad inputs', (t) => {
  t.throws(() => aggregateInfluence({ matrices: [], mode: 'mean' }), { instanceOf: DataError });
  t.throws(() => aggregateInfluence({ matrices: [A, mat('C', [[1, 2, 3]])], mode: 'mean' }), { instanceOf: DataError, message: /expected \[2 × 4\]/ });
  t.throws(() => aggregateInfluence({ matrices: [mat('N', [[1, NaN]])], mode: 'rank' }), { instanceOf: DataError, message: /NaN/ });
  t.throws(() => aggregateInfluence({ matrices: [A], mode: 'rank', correct: [false, false] }), { instanceOf: DataError, message: /keeps no validation/ });
  t.throws(() => aggregateInfluence({ matrices: [A], mode: 'vote', p: 0 }), { instanceOf: ConfigError });
});

test('NDR: oracle ordering reaches 1.0 at the noise fraction, reversed gives 0', (t) => {
  const n = 100;
  const noisyIds = Array.from({ length: 20 }, (_, i) => i * 5);
  const oracle = Array.from({ length: n }, (_, k) => (noisyIds.includes(k) ? -1 - k : k));
  const r = noiseDetectionRate({ scores: oracle, noisyIds, Ls: [10, 20, 30] });
  t.is(r.at[20], 1);
  t.is(r.at[10], 11 / 20); // index round(10) = 10 → first 11 samples, all noisy
  t.deepEqual(Array.from(r.curve), Array.from(oracleNdrBaseline({ n, noisy: 20 }).curve));
  t.is(r.auc, oracleNdrBaseline({ n, noisy: 20 }).auc);
  const reversed = noiseDetectionRate({ scores: oracle.map((x) => -x), noisyIds, Ls: [20, 30] });
  t.is(reversed.at[20], 0);
  t.is(reversed.at[30], 0);
  // AUC by hand for a 4-sample case: order [noisy, clean, noisy, clean] → curve .5 .5 1 1; denominator 2/2 + 2 = 3.
  const small = noiseDetectionRate({ scores: [0, 1, 2, 3], noisyIds: [0, 2] });
  t.deepEqual(Array.from(small.curve), [0.5, 0.5, 1, 1]);
  t.is(small.auc, 1);
});

test('random baseline is the expected curve of random orderings', (t) => {
  const base = randomNdrBaseline({ n: 10, noisy: 2, Ls: [30] });
  t.is(base.at[30], 4 / 10);
  t.is(base.curve[9], 1);
  t.throws(() => noiseDetectionRate({ scores: [1, 2], noisyIds: [] }), { instanceOf: DataError, message: /no noisy/ });
  t.throws(() => noiseDetectionRate({ scores: [1, NaN], noisyIds: [0] }), { instanceOf: DataError, message: /NaN/ });
  t.throws(() => noiseDetectionRate({ scores: [1, 2], noisyIds: [5] }), { instanceOf: DataError, message: /outside/ });
});
