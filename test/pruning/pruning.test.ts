import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import { magnitudePrune } from '../../src/pruning/magnitude.ts';
import { activationNorms, wandaPrune, wandaScores } from '../../src/pruning/wanda.ts';

const W = { name: 'q', rows: 2, cols: 4, data: new Float64Array([0.5, -3, 0.1, 2, -1, 0.2, 4, -0.3]) };

test('magnitude: one threshold per matrix', (t) => {
  const r = magnitudePrune({ weight: W, sparsity: 0.5 });
  // Four smallest |W|: 0.1, 0.2, 0.3, 0.5 — row 0 loses two, row 1 loses two.
  t.deepEqual(Array.from(r.mask), [0, 1, 0, 1, 1, 0, 1, 0]);
  t.deepEqual(Array.from(r.pruned), [0, -3, 0, 2, -1, 0, 4, 0]);
  t.is(r.sparsity, 0.5);
  t.is(magnitudePrune({ weight: W, sparsity: 0.3 }).sparsity, 2 / 8); // floor(2.4) = 2
  t.deepEqual(Array.from(W.data), [0.5, -3, 0.1, 2, -1, 0.2, 4, -0.3]); // input untouched
});

test('Wanda: |W|·‖X‖ pruned per output row', (t) => {
  // X: 2 tokens × 4 features → norms (5, 0.1, 1, 1).
  const norms = activationNorms({ data: [3, 0.1, 1, 0, 4, 0, 0, 1], tokens: 2, cols: 4 });
  t.deepEqual(Array.from(norms).map((x) => Math.round(x * 1e12) / 1e12), [5, 0.1, 1, 1]);
  t.deepEqual(Array.from(wandaScores(W, norms)).map((x) => Math.round(x * 1e12) / 1e12), [2.5, 0.3, 0.1, 2, 5, 0.02, 4, 0.3]);
  const r = wandaPrune({ weight: W, inputNorms: norms, sparsity: 0.5 });
  // Row 0 scores 2.5, 0.3, 0.1, 2 → prune columns 1, 2; row 1 scores 5, 0.02, 4, 0.3 → prune 1, 3.
  t.deepEqual(Array.from(r.mask), [1, 0, 0, 1, 1, 0, 1, 0]);
  t.is(r.sparsity, 0.5);
  // Magnitude alone would keep −3 (col 1); Wanda prunes it because feature 1 is nearly silent.
  t.is(r.pruned[1], 0);
});

test('pruning rejects bad inputs', (t) => {
  t.throws(() => magnitudePrune({ weight: W, sparsity: 1 }), { instanceOf: ConfigError, message: /\[0, 1\)/ });
  t.throws(() => magnitudePrune({ weight: { ...W, rows: 3 }, sparsity: 0.5 }), { instanceOf: DataError, message: /expected rows·cols/ });
  t.throws(() => magnitudePrune({ weight: { ...W, data: new Float64Array([NaN, 0, 0, 0, 0, 0, 0, 0]) }, sparsity: 0.5 }), { instanceOf: DataError, message: /NaN/ });
  t.throws(() => wandaPrune({ weight: W, inputNorms: [1, 2], sparsity: 0.5 }), { instanceOf: DataError, message: /one per input column/ });
});

test('ties are broken by index and exactly floor(s·numel) entries are pruned', (t) => {
  const w = { rows: 1, cols: 6, data: new Float64Array([1, -1, 1, 2, 1, 3]) };
  t.deepEqual(Array.from(magnitudePrune({ weight: w, sparsity: 0.5 }).mask), [0, 0, 0, 1, 1, 1]);
  t.deepEqual(Array.from(wandaPrune({ weight: w, inputNorms: new Array(6).fill(1), sparsity: 0.34 }).mask), [0, 0, 1, 1, 1, 1]);
});
