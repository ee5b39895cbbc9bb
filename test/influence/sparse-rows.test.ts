import test from 'ava';
import { createRng } from '../../src/data/random.ts';
import { ConfigError, DataError } from '../../src/errors.ts';
import { cancellationEffect } from '../../src/influence/cancellation.ts';
import { dataInfDamping } from '../../src/influence/datainf.ts';
import { influenceMatrixReference } from '../../src/influence/reference-matrix.ts';
import {
  sparseCancellationEffect,
  SparseCancellationAccumulator,
  sparseDot,
  sparseFromRowMap,
  sparseInfluenceMatrix,
  sparseNormSq,
  type SparseRowGradient,
  type SparseUnitGradients,
} from '../../src/influence/sparse-rows.ts';
import type { UnitGradients } from '../../src/influence/types.ts';

const METHODS = ['tracin', 'cosine', 'datainf'] as const;
const VOCAB = 50, D = 6;

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]) / Math.max(1e-300, Math.abs(want[i])));
  return got.length === want.length ? e : Infinity;
}

/** Relative to the largest |entry| of the matrix (entries near 0 after cancellation are not compared relatively). */
function matrixRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0, e = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]));
  return got.length === want.length ? e / Math.max(scale, 1e-300) : Infinity;
}

/**
 * n samples drawing tokens from a small shared pool (so token sets overlap) plus a few from the
 * whole vocabulary; sample `emptyAt` (if given) has no rows.
 */
function randomSparse(unit: string, n: number, seed: number, { emptyAt = -1, width = D } = {}): SparseUnitGradients {
  const rng = createRng(seed);
  const pool = rng.permutation(VOCAB).slice(0, 12);
  const samples: SparseRowGradient[] = [];
  for (let i = 0; i < n; i++) {
    const ids = new Set<number>();
    if (i !== emptyAt) {
      const k = 2 + rng.int(6);
      for (let t = 0; t < k; t++) ids.add(pool[rng.int(pool.length)]);
      if (rng.next() < 0.5) ids.add(rng.int(VOCAB));
    }
    const rows = Int32Array.from([...ids].sort((a, b) => a - b));
    const values = Float32Array.from({ length: rows.length * width }, () => rng.normal());
    samples.push({ rows, values });
  }
  return { unit, layer: -1, kind: 'embedding', D: width, vocab: VOCAB, samples };
}

function densify(g: SparseUnitGradients): UnitGradients {
  const d = g.vocab * g.D;
  const data = new Float64Array(g.samples.length * d);
  for (const [i, { rows, values }] of g.samples.entries()) {
    for (let r = 0; r < rows.length; r++) for (let p = 0; p < g.D; p++) data[i * d + rows[r] * g.D + p] = values[r * g.D + p];
  }
  return { unit: g.unit, layer: g.layer, kind: g.kind, n: g.samples.length, d, data };
}

test('sparse influence matrix equals the dense reference for every method (overlapping token sets)', (t) => {
  for (const [c, seed] of [11, 12, 13].entries()) {
    const train = randomSparse('we', 9, seed);
    const val = randomSparse('we', 4, seed + 100);
    // Sanity: the token sets overlap, so the products are not trivially zero.
    t.true(train.samples.some((s) => sparseDot(val.samples[0], s, D) !== 0));
    const dTrain = densify(train), dVal = densify(val);
    for (const method of METHODS) {
      const got = sparseInfluenceMatrix({ method, train, validation: val });
      const want = influenceMatrixReference({ method, train: dTrain, validation: dVal });
      const what = `${method} case ${c}`;
      t.is(got.m, 4, what);
      t.is(got.n, 9, what);
      t.is(got.unit, 'we');
      t.is(got.layer, -1);
      t.is(got.kind, 'embedding');
      t.is(got.method, method);
      t.is(got.convention, 'positive=helpful');
      t.true(got.data instanceof Float64Array);
      t.true(matrixRelErr(got.data, want.data) <= 1e-9, `${what}: max err ${matrixRelErr(got.data, want.data)}`);
      // Entry-wise relative check where the reference entry is not tiny.
      const idx = Array.from(want.data.keys()).filter((i) => Math.abs(want.data[i]) > 1e-6);
      t.true(maxRelErr(idx.map((i) => got.data[i]), idx.map((i) => want.data[i])) <= 1e-9, what);
      if (method === 'datainf') {
        t.true(Math.abs(got.lambda! - want.lambda!) <= 1e-12 * want.lambda!, what);
      } else {
        t.is(got.lambda, undefined);
      }
    }
    // Explicit λ and damping scale are honoured the same way.
    for (const args of [{ lambda: 0.37 }, { dampingScale: 0.5 }]) {
      const got = sparseInfluenceMatrix({ method: 'datainf', train, validation: val, ...args });
      const want = influenceMatrixReference({ method: 'datainf', train: dTrain, validation: dVal, ...args });
      t.true(matrixRelErr(got.data, want.data) <= 1e-9, JSON.stringify(args));
      t.true(Math.abs(got.lambda! - want.lambda!) <= 1e-12 * want.lambda!);
    }
  }
});

test('zero-norm samples: cosine gives 0 like the dense reference; other methods still match', (t) => {
  const train = randomSparse('we', 9, 21, { emptyAt: 3 });
  const val = randomSparse('we', 4, 22, { emptyAt: 1 });
  for (const method of METHODS) {
    const got = sparseInfluenceMatrix({ method, train, validation: val });
    const want = influenceMatrixReference({ method, train: densify(train), validation: densify(val) });
    t.true(matrixRelErr(got.data, want.data) <= 1e-9, method);
    for (let j = 0; j < 4; j++) t.is(got.data[j * 9 + 3], 0, `${method} column 3`);
    for (let k = 0; k < 9; k++) t.is(got.data[1 * 9 + k], 0, `${method} row 1`);
  }
});

test('tracin: hand-derived two-sample case', (t) => {
  // D = 2, vocab = 5.
  // g0 = rows {1: [1, 2], 3: [3, 4]},  g1 = rows {0: [1, 1], 3: [−1, 2]}
  // v0 = rows {3: [2, 1], 4: [9, 9]}   → v0·g0 = (row 3) 3·2 + 4·1 = 10,  v0·g1 = (row 3) −2 + 2 = 0
  // v1 = rows {0: [1, −1], 1: [2, 0]}  → v1·g0 = (row 1) 2·1 + 0·2 = 2,   v1·g1 = (row 0) 1 − 1 = 0
  const g = (rows: number[], values: number[]): SparseRowGradient => ({ rows: Int32Array.from(rows), values: Float32Array.from(values) });
  const unit = (samples: SparseRowGradient[]): SparseUnitGradients => ({ unit: 'we', layer: 0, D: 2, vocab: 5, samples });
  const train = unit([g([1, 3], [1, 2, 3, 4]), g([0, 3], [1, 1, -1, 2])]);
  const val = unit([g([3, 4], [2, 1, 9, 9]), g([0, 1], [1, -1, 2, 0])]);
  const got = sparseInfluenceMatrix({ method: 'tracin', train, validation: val });
  t.deepEqual(Array.from(got.data), [10, 0, 2, 0]);
  t.is(sparseDot(train.samples[0], train.samples[1], 2), 3 * -1 + 4 * 2);
  t.is(sparseNormSq(train.samples[0]), 1 + 4 + 9 + 16);
  // Cosine of the same: 10 / (‖v0‖ ‖g0‖) = 10 / (√167 · √30).
  const cos = sparseInfluenceMatrix({ method: 'cosine', train, validation: val });
  t.true(Math.abs(cos.data[0] - 10 / Math.sqrt(167 * 30)) < 1e-15);
});

test('datainf λ equals dataInfDamping with d = vocab · D', (t) => {
  const train = randomSparse('we', 9, 31);
  const val = randomSparse('we', 4, 32);
  const sumNormSq = train.samples.reduce((a, s) => a + sparseNormSq(s), 0);
  for (const scale of [undefined, 0.1, 2]) {
    const got = sparseInfluenceMatrix({ method: 'datainf', train, validation: val, dampingScale: scale });
    t.is(got.lambda, dataInfDamping({ sumNormSq, n: 9, d: VOCAB * D, scale }));
  }
  t.throws(() => sparseInfluenceMatrix({ method: 'datainf', train, validation: val, lambda: -1 }), { instanceOf: ConfigError });
  const zero: SparseUnitGradients = { ...train, samples: train.samples.map(() => ({ rows: new Int32Array(0), values: new Float32Array(0) })) };
  t.throws(() => sparseInfluenceMatrix({ method: 'datainf', train: zero, validation: val }), { instanceOf: DataError, message: /unit we/ });
});

test('malformed sparse gradients throw DataError naming the unit and sample', (t) => {
  const good = (): SparseUnitGradients => randomSparse('emb_tokens', 3, 41);
  const val = randomSparse('emb_tokens', 2, 42);
  const bad = (mutate: (u: SparseUnitGradients) => void): SparseUnitGradients => {
    const u = good();
    mutate(u);
    return u;
  };
  const cases: Array<[string, SparseUnitGradients, SparseUnitGradients, RegExp]> = [
    ['unsorted rows', bad((u) => (u.samples[1] = { rows: Int32Array.from([7, 3]), values: new Float32Array(2 * D) })), val, /unit emb_tokens\), sample 1.*ascending/],
    ['duplicate rows', bad((u) => (u.samples[2] = { rows: Int32Array.from([3, 3]), values: new Float32Array(2 * D) })), val, /sample 2.*ascending/],
    ['id ≥ vocab', bad((u) => (u.samples[0] = { rows: Int32Array.from([2, VOCAB]), values: new Float32Array(2 * D) })), val, /unit emb_tokens\), sample 0.*token id 50/],
    ['negative id', bad((u) => (u.samples[2] = { rows: Int32Array.from([-1]), values: new Float32Array(D) })), val, /sample 2.*token id -1/],
    ['values length', bad((u) => (u.samples[1] = { rows: Int32Array.from([1, 2]), values: new Float32Array(D) })), val, /sample 1.*expected rows·D/],
    ['NaN value', bad((u) => (u.samples[1].values[0] = NaN)), val, /unit emb_tokens\), sample 1.*NaN/],
    ['Infinity value', bad((u) => (u.samples[0].values[1] = Infinity)), val, /sample 0.*Infinity/],
    ['D mismatch', good(), randomSparse('emb_tokens', 2, 43, { width: D + 1 }), /unit emb_tokens.*D=6.*D=7/],
    ['vocab mismatch', good(), { ...val, vocab: VOCAB + 1 }, /unit emb_tokens.*vocab=50.*vocab=51/],
    ['empty train', bad((u) => (u.samples = [])), val, /unit emb_tokens.*empty/],
  ];
  for (const [what, train, validation, message] of cases) {
    for (const method of METHODS) {
      t.throws(() => sparseInfluenceMatrix({ method, train, validation }), { instanceOf: DataError, message }, `${what} (${method})`);
    }
  }
  // The same checks apply to the validation side.
  const badVal = bad((u) => (u.samples[1] = { rows: Int32Array.from([5, 4]), values: new Float32Array(2 * D) }));
  t.throws(() => sparseInfluenceMatrix({ method: 'tracin', train: good(), validation: badVal }), { instanceOf: DataError, message: /validation gradients \(unit emb_tokens\), sample 1/ });
});

test('sparse cancellation effect equals cancellationEffect on the densified matrix', (t) => {
  for (const seed of [51, 52, 53]) {
    const g = randomSparse('we', 9, seed, { emptyAt: 4 });
    const want = cancellationEffect(densify(g));
    const got = sparseCancellationEffect(g);
    t.true(Math.abs(got - want) <= 1e-12 * want, `seed ${seed}: ${got} vs ${want}`);
    t.true(got >= 1);
    // Streamed in two chunks: same value.
    const acc = new SparseCancellationAccumulator();
    acc.add({ ...g, samples: g.samples.slice(0, 5) });
    acc.add({ ...g, samples: g.samples.slice(5) });
    t.true(Math.abs(acc.value() - want) <= 1e-12 * want);
  }
  // One sample: nothing cancels, C = 1.
  t.true(Math.abs(sparseCancellationEffect(randomSparse('we', 1, 54)) - 1) < 1e-12);
  // g and −g cancel exactly: undefined.
  const s = randomSparse('we', 1, 55).samples[0];
  const neg = { rows: s.rows, values: s.values.map((x) => -x) };
  t.throws(() => sparseCancellationEffect({ unit: 'we', layer: 0, D, vocab: VOCAB, samples: [s, neg] }), { instanceOf: DataError, message: /exactly zero/ });
  t.throws(() => sparseCancellationEffect({ unit: 'we', layer: 0, D, vocab: VOCAB, samples: [] }), { instanceOf: DataError });
});

test('sparseFromRowMap sorts token ids and copies the rows', (t) => {
  const map = new Map<number, Float64Array>([
    [9, Float64Array.from([1, 2, 3])],
    [2, Float64Array.from([4, 5, 6])],
    [5, Float64Array.from([-1, 0, 0.5])],
  ]);
  const g = sparseFromRowMap(map, 3);
  t.deepEqual(Array.from(g.rows), [2, 5, 9]);
  t.deepEqual(Array.from(g.values), [4, 5, 6, -1, 0, 0.5, 1, 2, 3]);
  t.true(g.values instanceof Float32Array);
  t.deepEqual(Array.from(sparseFromRowMap(new Map(), 3).rows), []);
  t.throws(() => sparseFromRowMap(new Map([[1, new Float64Array(2)]]), 3), { instanceOf: DataError });
  t.throws(() => sparseFromRowMap(new Map([[-2, new Float64Array(3)]]), 3), { instanceOf: DataError });
});
