import test from 'ava';
import { DataError } from '../../src/errors.ts';
import { cosineInfluence } from '../../src/influence/cosine.ts';
import { dataInfInfluence } from '../../src/influence/datainf.ts';
import { tracInInfluence } from '../../src/influence/tracin.ts';
import { reduceValidation } from '../../src/influence/validation.ts';
import { influenceMatrixReference } from '../../src/influence/reference-matrix.ts';
import { invert, randomGrads, row } from './helpers.ts';

const close = (a: number, b: number, tol = 1e-9) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test('TracIn and cosine match hand computation', (t) => {
  // g_0 = (1, 2), g_1 = (3, −1); validation rows (1, 0), (1, 2) → mean v = (1, 1).
  const train = { unit: 'u', layer: 0, n: 2, d: 2, data: new Float64Array([1, 2, 3, -1]) };
  const val = { unit: 'u', layer: 0, n: 2, d: 2, data: new Float64Array([1, 0, 1, 2]) };
  const tr = tracInInfluence({ train, validation: val });
  t.deepEqual(Array.from(tr.scores), [3, 2]);
  t.is(tr.convention, 'positive=helpful');
  t.deepEqual(Array.from(tracInInfluence({ train, validation: val, reduction: 'sum' }).scores), [6, 4]);
  const cs = cosineInfluence({ train, validation: val });
  t.true(close(cs.scores[0], 3 / (Math.SQRT2 * Math.sqrt(5))));
  t.true(close(cs.scores[1], 2 / (Math.SQRT2 * Math.sqrt(10))));
  t.is(cs.convention, 'positive=helpful');
});

test('DataInf equals the average of explicitly inverted per-sample damped matrices', (t) => {
  const n = 7, d = 5;
  const train = randomGrads('q', n, d, 11);
  const val = randomGrads('q', 4, d, 12);
  const res = dataInfInfluence({ train, validation: val });
  // λ = 0.1 · mean squared gradient entry.
  let sq = 0;
  for (const x of train.data) sq += x * x;
  const lambda = (0.1 * sq) / (n * d);
  t.true(close(res.lambda!, lambda));
  // H̃⁻¹ = (1/n) Σ_i (g_i g_iᵀ + λI)⁻¹, each inverted explicitly.
  const hinv = Array.from({ length: d }, () => new Array(d).fill(0));
  for (let i = 0; i < n; i++) {
    const g = row(train, i);
    const a = g.map((gi, r) => g.map((gj, c) => gi * gj + (r === c ? lambda : 0)));
    const inv = invert(a);
    for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) hinv[r][c] += inv[r][c] / n;
  }
  const v = Array.from(reduceValidation(val, 'mean'));
  for (let k = 0; k < n; k++) {
    const g = row(train, k);
    const hg = hinv.map((hr) => hr.reduce((s, x, c) => s + x * g[c], 0));
    const expected = v.reduce((s, x, p) => s + x * hg[p], 0);
    t.true(close(res.scores[k], expected, 1e-8), `k=${k}: ${res.scores[k]} vs ${expected}`);
  }
  t.is(res.convention, 'positive=helpful');
});

test('damping scale and explicit λ are honoured', (t) => {
  const train = randomGrads('q', 6, 3, 1);
  const val = randomGrads('q', 2, 3, 2);
  const a = dataInfInfluence({ train, validation: val, dampingScale: 0.5 });
  const b = dataInfInfluence({ train, validation: val, lambda: a.lambda });
  t.deepEqual(Array.from(a.scores), Array.from(b.scores));
  t.true(close(a.lambda! / dataInfInfluence({ train, validation: val }).lambda!, 5));
});

test('the reference full matrix rows average to the mean-gradient scores', (t) => {
  const train = randomGrads('v', 6, 4, 3);
  const val = randomGrads('v', 3, 4, 4);
  for (const method of ['tracin', 'datainf'] as const) {
    const mat = influenceMatrixReference({ method, train, validation: val });
    t.is(mat.m, 3);
    t.is(mat.n, 6);
    const fn = method === 'tracin' ? tracInInfluence : dataInfInfluence;
    const s = fn({ train, validation: val });
    for (let k = 0; k < 6; k++) {
      const avg = (mat.data[k] + mat.data[6 + k] + mat.data[12 + k]) / 3;
      t.true(close(avg, s.scores[k]), `${method} k=${k}`);
    }
  }
  // Cosine per validation sample against a hand computation.
  const mat = influenceMatrixReference({ method: 'cosine', train, validation: val });
  const g = row(train, 2), v = row(val, 1);
  const dotp = g.reduce((s, x, p) => s + x * v[p], 0);
  const nrm = (x: number[]) => Math.sqrt(x.reduce((s, y) => s + y * y, 0));
  t.true(close(mat.data[1 * 6 + 2], dotp / (nrm(g) * nrm(v))));
});

test('bad inputs throw DataError with clear messages', (t) => {
  const train = randomGrads('q', 3, 2, 1);
  const nan = { ...train, data: Float64Array.from(train.data) };
  nan.data[3] = NaN;
  t.throws(() => dataInfInfluence({ train: nan, validation: train }), { instanceOf: DataError, message: /row 1, column 1 is NaN/ });
  t.throws(() => tracInInfluence({ train, validation: randomGrads('q', 2, 3, 2) }), { instanceOf: DataError, message: /expected d = 2/ });
  t.throws(() => tracInInfluence({ train: { ...train, n: 0, data: new Float64Array(0) }, validation: train }), { instanceOf: DataError, message: /empty set/ });
  t.throws(() => cosineInfluence({ train, validation: { ...train, n: 0, data: new Float64Array(0) } }), { instanceOf: DataError, message: /empty set/ });
  t.throws(() => tracInInfluence({ train: { ...train, n: 4 }, validation: train }), { instanceOf: DataError, message: /expected n·d/ });
  const zero = { ...train, data: new Float64Array(6) };
  t.throws(() => dataInfInfluence({ train: zero, validation: train }), { instanceOf: DataError, message: /λ = 0/ });
});
