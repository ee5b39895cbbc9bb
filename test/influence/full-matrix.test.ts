import { existsSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import { cosineInfluence } from '../../src/influence/cosine.ts';
import { dataInfInfluence } from '../../src/influence/datainf.ts';
import { createInfluenceEngine, rowBlockBytesFor, rowBlocks, type InfluenceEngine } from '../../src/influence/full-matrix.ts';
import { influenceMatrixReference } from '../../src/influence/reference-matrix.ts';
import type { GradientShard } from '../../src/influence/streaming.ts';
import { tracInInfluence } from '../../src/influence/tracin.ts';
import type { InfluenceMatrix, UnitGradients } from '../../src/influence/types.ts';
import { reduceValidation } from '../../src/influence/validation.ts';
import { cudaProviderPath } from '../../src/runtime/index.ts';
import { invert, randomGrads, row } from './helpers.ts';

const METHODS = ['tracin', 'cosine', 'datainf'] as const;
/** Tolerance per precision, relative to max(1, |expected|). */
const TOL = { float64: 1e-10, float32: 2e-4 } as const;

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return got.length === want.length ? e : Infinity;
}

function withEngine(precision: 'float32' | 'float64', fn: (t: ExecutionContext, e: InfluenceEngine) => Promise<void>): (t: ExecutionContext) => Promise<void> {
  return async (t) => {
    const e = createInfluenceEngine({ device: 'cpu:0', threads: 2, precision });
    try {
      await fn(t, e);
    } finally {
      await e.release();
    }
  };
}

const f32 = (g: UnitGradients): UnitGradients => ({ ...g, data: Float32Array.from(g.data) });

for (const precision of ['float64', 'float32'] as const) {
  test(`ONNX full matrix (${precision}) equals the plain-TS reference for every method, shape and association`, withEngine(precision, async (t, e) => {
    // Shapes: m < n, m > n (auto picks gram), n = 1, m = 1, d = 1.
    const shapes = [[3, 11, 7], [9, 4, 6], [2, 1, 5], [1, 6, 3], [4, 5, 1]];
    for (const [i, [m, n, d]] of shapes.entries()) {
      const train = randomGrads(`u${i}`, n, d, 100 + i, i);
      const val = randomGrads(`u${i}`, m, d, 200 + i, i);
      // Feed float32 data to the float32 engine (the usual case), float64 to the float64 one.
      const tr = precision === 'float32' ? f32(train) : train;
      const va = precision === 'float32' ? f32(val) : val;
      for (const method of METHODS) {
        const ref = influenceMatrixReference({ method, train, validation: val });
        const assocs = method === 'datainf' ? (['auto', 'gram', 'projection'] as const) : (['auto'] as const);
        for (const association of assocs) {
          const got = await e.influenceMatrix({ method, train: tr, validation: va, association });
          const what = `${method} ${association} m=${m} n=${n} d=${d}`;
          t.is(got.m, m, what);
          t.is(got.n, n, what);
          t.is(got.unit, `u${i}`);
          t.is(got.layer, i);
          t.is(got.method, method);
          t.is(got.convention, 'positive=helpful');
          t.true(got.data instanceof Float64Array);
          t.true(maxRelErr(got.data, ref.data) < TOL[precision], `${what}: err ${maxRelErr(got.data, ref.data)}`);
          if (method === 'datainf') t.true(Math.abs(got.lambda! - ref.lambda!) <= 1e-6 * ref.lambda!, what);
          else t.is(got.lambda, undefined);
        }
      }
    }
    // One graph per (kind, precision): project, rowStats (norms), correction (gram / projection), whatever the shapes.
    t.is(e.sessionCount, 1);
  }));
}

test('DataInf matrix equals brute force: v_jᵀ [(1/n) Σ_i (g_i g_iᵀ + λI)⁻¹] g_k, inverted explicitly in float64', withEngine('float64', async (t, e) => {
  const n = 8, d = 5, m = 3;
  const train = randomGrads('q', n, d, 21);
  const val = randomGrads('q', m, d, 22);
  let sq = 0;
  for (const x of train.data) sq += x * x;
  const lambda = (0.1 * sq) / (n * d);
  const hinv = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (let i = 0; i < n; i++) {
    const g = row(train, i);
    const inv = invert(g.map((gi, r) => g.map((gj, c) => gi * gj + (r === c ? lambda : 0))));
    for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) hinv[r][c] += inv[r][c] / n;
  }
  const brute = new Float64Array(m * n);
  for (let j = 0; j < m; j++) {
    const v = row(val, j);
    for (let k = 0; k < n; k++) {
      const g = row(train, k);
      brute[j * n + k] = v.reduce((s, vr, r) => s + vr * hinv[r].reduce((a, h, c) => a + h * g[c], 0), 0);
    }
  }
  for (const association of ['gram', 'projection'] as const) {
    const got = await e.influenceMatrix({ method: 'datainf', train, validation: val, association });
    t.true(Math.abs(got.lambda! - lambda) < 1e-14, `λ ${got.lambda} vs ${lambda}`);
    t.true(maxRelErr(got.data, brute) < 1e-9, `${association}: err ${maxRelErr(got.data, brute)}`);
    const streamed = await e.influenceMatrix({ method: 'datainf', train, validation: val, blockRows: 3 });
    t.true(maxRelErr(streamed.data, brute) < 1e-9);
  }
  // An explicit λ is used as given (brute force with λ = 0.7).
  const lam = 0.7;
  const h2 = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (let i = 0; i < n; i++) {
    const g = row(train, i);
    const inv = invert(g.map((gi, r) => g.map((gj, c) => gi * gj + (r === c ? lam : 0))));
    for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) h2[r][c] += inv[r][c] / n;
  }
  const got = await e.influenceMatrix({ method: 'datainf', train, validation: val, lambda: lam });
  t.is(got.lambda, lam);
  const v = row(val, 2), g = row(train, 5);
  const want = v.reduce((s, vr, r) => s + vr * h2[r].reduce((a, h, c) => a + h * g[c], 0), 0);
  t.true(Math.abs(got.data[2 * n + 5] - want) < 1e-9 * Math.max(1, Math.abs(want)));
}));

for (const precision of ['float64', 'float32'] as const) {
  test(`streamed (${precision}) equals unstreamed: blockRows, multi-unit async shards, λ given or derived`, withEngine(precision, async (t, e) => {
    const n = 13, m = 4;
    const units = [randomGrads('q', n, 6, 31, 0), randomGrads('v', n, 9, 32, 1)].map((g) => (precision === 'float32' ? f32(g) : g));
    const vals = [randomGrads('q', m, 6, 41, 0), randomGrads('v', m, 9, 42, 1)].map((g) => (precision === 'float32' ? f32(g) : g));
    const tol = precision === 'float64' ? 1e-12 : 1e-5;
    let reads = 0;
    // Shards of uneven sizes (5, 1, 7 rows), each holding a chunk of both units; async like shard files.
    const source = async function* (): AsyncGenerator<GradientShard> {
      reads++;
      const cuts = [0, 5, 6, 13];
      for (let s = 0; s + 1 < cuts.length; s++) {
        yield units.map((u) => ({ ...u, n: cuts[s + 1] - cuts[s], data: u.data.subarray(cuts[s] * u.d, cuts[s + 1] * u.d), rowOffset: cuts[s] }));
      }
    };
    for (const method of METHODS) {
      const whole = await Promise.all(units.map((u, i) => e.influenceMatrix({ method, train: u, validation: vals[i] })));
      for (const blockRows of [1, 4, n - 1, n, 100]) {
        const b = await e.influenceMatrix({ method, train: units[0], validation: vals[0], blockRows });
        t.true(maxRelErr(b.data, whole[0].data) < tol, `${method} blockRows=${blockRows}`);
        t.is(b.convention, 'positive=helpful');
      }
      reads = 0;
      const streamed = await e.influenceMatrixStream({ method, train: source, validation: vals });
      t.is(reads, method === 'datainf' ? 3 : 1, `${method}: passes over the shards`);
      t.deepEqual(streamed.map((s) => [s.unit, s.layer, s.m, s.n]), [['q', 0, m, n], ['v', 1, m, n]]);
      streamed.forEach((s, i) => {
        t.true(maxRelErr(s.data, whole[i].data) < tol, `${method} unit ${s.unit}: ${maxRelErr(s.data, whole[i].data)}`);
        t.is(s.convention, 'positive=helpful');
        if (method === 'datainf') t.true(Math.abs(s.lambda! - whole[i].lambda!) < 1e-6 * whole[i].lambda!);
      });
      if (method === 'datainf') {
        reads = 0;
        const lambda = { q: 0.25, v: 1.5 };
        const known = await e.influenceMatrixStream({ method, train: source, validation: vals, lambda });
        t.is(reads, 2, 'λ given: two passes');
        for (const [i, u] of units.entries()) {
          const w = await e.influenceMatrix({ method, train: u, validation: vals[i], lambda: lambda[u.unit as 'q' | 'v'] });
          t.true(maxRelErr(known[i].data, w.data) < tol);
          t.is(known[i].lambda, w.lambda);
        }
      }
    }
    // project (Pᵀ = B Vᵀ, also the streamed Cᵀ = B Rᵀ), rowStats (norms), accumulate (R += W B),
    // correction (in-memory DataInf, projection).
    t.is(e.sessionCount, 1);
  }));
}

test('row-mean of the matrix equals the mean-gradient scores where linear in v (TracIn, DataInf); ONNX mean path equals the TS one', withEngine('float64', async (t, e) => {
  const train = randomGrads('o', 10, 7, 51);
  const val = randomGrads('o', 5, 7, 52);
  const { m, n } = { m: 5, n: 10 };
  for (const method of ['tracin', 'datainf'] as const) {
    const mat = await e.influenceMatrix({ method, train, validation: val });
    const s = await e.influenceScores({ method, train, validation: val });
    t.is(s.validation, 'mean');
    t.is(s.convention, 'positive=helpful');
    for (let k = 0; k < n; k++) {
      let avg = 0;
      for (let j = 0; j < m; j++) avg += mat.data[j * n + k] / m;
      t.true(Math.abs(avg - s.scores[k]) < 1e-10 * Math.max(1, Math.abs(avg)), `${method} k=${k}: ${avg} vs ${s.scores[k]}`);
    }
  }
  // Cosine is not linear in v: the row-mean differs from the score against the mean gradient.
  const cm = await e.influenceMatrix({ method: 'cosine', train, validation: val });
  const cs = await e.influenceScores({ method: 'cosine', train, validation: val });
  const avg0 = [0, 1, 2, 3, 4].reduce((a, j) => a + cm.data[j * n] / m, 0);
  t.true(Math.abs(avg0 - cs.scores[0]) > 1e-6);

  // The ONNX mean path equals the colleague's plain-TS functions (mean, sum, pre-reduced vector, explicit λ, scale).
  const ts = { tracin: tracInInfluence, cosine: cosineInfluence, datainf: dataInfInfluence } as const;
  for (const method of METHODS) {
    for (const reduction of ['mean', 'sum'] as const) {
      const want = ts[method]({ train, validation: val, reduction });
      const got = await e.influenceScores({ method, train, validation: val, reduction });
      t.true(maxRelErr(got.scores, want.scores) < 1e-10, `${method} ${reduction}`);
      t.is(got.validation, reduction);
      if (method === 'datainf') t.true(Math.abs(got.lambda! - want.lambda!) < 1e-14);
    }
    const v = reduceValidation(val, 'sum');
    const got = await e.influenceScores({ method, train, validation: v });
    t.true(maxRelErr(got.scores, ts[method]({ train, validation: v }).scores) < 1e-10, `${method} reduced vector`);
  }
  for (const opt of [{ lambda: 0.3 }, { dampingScale: 2 }]) {
    const got = await e.influenceScores({ method: 'datainf', train, validation: val, ...opt });
    const want = dataInfInfluence({ train, validation: val, ...opt });
    t.true(maxRelErr(got.scores, want.scores) < 1e-10);
    t.true(Math.abs(got.lambda! - want.lambda!) < 1e-14);
  }
}));

test('positive = helpful: a training gradient aligned with the validation gradient scores positive, an opposed one negative', withEngine('float32', async (t, e) => {
  const val: UnitGradients = { unit: 'u', layer: 0, n: 1, d: 3, data: Float32Array.from([1, 2, 0]) };
  const train: UnitGradients = { unit: 'u', layer: 0, n: 2, d: 3, data: Float32Array.from([1, 2, 0.5, -1, -2, 0.5]) };
  for (const method of METHODS) {
    const mat: InfluenceMatrix = await e.influenceMatrix({ method, train, validation: val });
    t.true(mat.data[0] > 0, method);
    t.true(mat.data[1] < 0, method);
    t.is(mat.convention, 'positive=helpful');
  }
}));

test('known row norms (normSq, as the gradient store keeps them) replace the norm pass: equal when exact, used as given otherwise; bad ones are DataErrors', withEngine('float64', async (t, e) => {
  const train = randomGrads('u', 9, 7, 21), val = randomGrads('u', 3, 7, 22);
  const norms = (g: UnitGradients) => Float64Array.from({ length: g.n }, (_, i) => { let s = 0; for (let k = 0; k < g.d; k++) s += g.data[i * g.d + k] ** 2; return s; });
  const known = { ...train, normSq: norms(train) }, knownVal = { ...val, normSq: norms(val) };
  for (const method of METHODS) {
    const [a, b] = [await e.influenceMatrix({ method, train, validation: val }), await e.influenceMatrix({ method, train: known, validation: knownVal })];
    t.true(maxRelErr(b.data, a.data) < 1e-12, `${method} matrix`);
    const [c, d] = [await e.influenceScores({ method, train, validation: val }), await e.influenceScores({ method, train: known, validation: val })];
    t.true(maxRelErr(d.scores, c.scores) < 1e-12, `${method} mean-gradient scores`);
    const streamed = await e.influenceMatrix({ method, train: known, validation: knownVal, blockRows: 4 });
    t.true(maxRelErr(streamed.data, a.data) < 1e-12, `${method} streamed`);
  }
  // Norms 4× the true ones: cosine halves exactly, so the given norms are what the engine used.
  const scaled = { ...train, normSq: norms(train).map((x) => 4 * x) };
  const [plain, fromGiven] = [await e.influenceMatrix({ method: 'cosine', train, validation: val }), await e.influenceMatrix({ method: 'cosine', train: scaled, validation: val })];
  t.true(maxRelErr(fromGiven.data, plain.data.map((x) => x / 2)) < 1e-12);
  const fromGivenStreamed = await e.influenceMatrix({ method: 'cosine', train: scaled, validation: val, blockRows: 4 });
  t.true(maxRelErr(fromGivenStreamed.data, plain.data.map((x) => x / 2)) < 1e-12, 'row blocks carry their rows\' norms');
  await t.throwsAsync(e.influenceMatrix({ method: 'cosine', train: { ...train, normSq: new Float64Array(2) }, validation: val }), { instanceOf: DataError, message: /normSq has 2 values/ });
  await t.throwsAsync(e.influenceMatrix({ method: 'datainf', train: { ...train, normSq: norms(train).map((x, i) => (i === 4 ? -1 : x)) }, validation: val }), { instanceOf: DataError, message: /normSq of row 4 is -1/ });
}));

test('cosine is 0 for a zero gradient (as cosine.ts); float64 inputs are converted for a float32 engine', withEngine('float32', async (t, e) => {
  const train: UnitGradients = { unit: 'z', layer: 0, n: 2, d: 2, data: new Float64Array([0, 0, 3, 4]) };
  const val: UnitGradients = { unit: 'z', layer: 0, n: 2, d: 2, data: new Float64Array([1, 0, 0, 0]) };
  const mat = await e.influenceMatrix({ method: 'cosine', train, validation: val });
  t.deepEqual(Array.from(mat.data).map((x) => Math.round(x * 1e6) / 1e6), [0, 0.6, 0, 0]);
  const streamed = await e.influenceMatrix({ method: 'cosine', train, validation: val, blockRows: 1 });
  t.deepEqual(Array.from(streamed.data).map((x) => Math.round(x * 1e6) / 1e6), [0, 0.6, 0, 0]);
}));

test('typed errors: shapes, NaN/Inf (located by row and column), overflow, λ, config', withEngine('float32', async (t, e) => {
  const train = f32(randomGrads('q', 4, 3, 61));
  const val = f32(randomGrads('q', 2, 3, 62));
  const bad = (x: Partial<UnitGradients>) => ({ ...train, ...x });
  const M = (args: Partial<Parameters<InfluenceEngine['influenceMatrix']>[0]>) => e.influenceMatrix({ method: 'tracin', train, validation: val, ...args });

  await t.throwsAsync(M({ validation: f32(randomGrads('q', 2, 4, 1)) }), { instanceOf: DataError, message: /training gradients have d=3, validation gradients \(unit q\) have d=4; expected equal/ });
  await t.throwsAsync(M({ train: bad({ n: 5 }) }), { instanceOf: DataError, message: /expected n·d = 5·3 = 15/ });
  await t.throwsAsync(M({ train: bad({ n: 0, data: new Float32Array(0) }) }), { instanceOf: DataError, message: /empty set; expected n ≥ 1/ });
  await t.throwsAsync(M({ validation: { ...val, n: 0, data: new Float32Array(0) } }), { instanceOf: DataError, message: /empty set; expected m ≥ 1/ });
  await t.throwsAsync(M({ train: bad({ d: 0, n: 4, data: new Float32Array(0) }) }), { instanceOf: DataError, message: /expected integer n ≥ 0 and d ≥ 1/ });

  const nan = Float32Array.from(train.data);
  nan[2 * 3 + 1] = NaN;
  for (const method of METHODS) {
    await t.throwsAsync(e.influenceMatrix({ method, train: bad({ data: nan }), validation: val }), { instanceOf: DataError, message: /training gradients \(unit q\): row 2, column 1 is NaN; expected a finite number/ }, method);
    await t.throwsAsync(e.influenceScores({ method, train: bad({ data: nan }), validation: val }), { instanceOf: DataError, message: /row 2, column 1 is NaN/ });
  }
  const inf = Float32Array.from(val.data);
  inf[1 * 3 + 2] = -Infinity;
  for (const method of METHODS) {
    for (const blockRows of [undefined, 2]) {
      await t.throwsAsync(M({ validation: { ...val, data: inf }, method, blockRows }), { instanceOf: DataError, message: /validation gradients \(unit q\): row 1, column 2 is -Infinity/ }, `${method} ${blockRows}`);
    }
    await t.throwsAsync(e.influenceScores({ method, train, validation: { ...val, data: inf } }), { instanceOf: DataError, message: /validation gradients \(unit q\): row 1, column 2 is -Infinity/ });
  }
  // Streamed: the row index is global (chunk offset added).
  await t.throwsAsync(M({ train: bad({ data: nan }), blockRows: 2 }), { instanceOf: DataError, message: /row 2, column 1 is NaN/ });
  // Finite values whose square or product overflows float32.
  const huge = Float32Array.from(train.data);
  huge[0] = 3e38;
  for (const method of ['cosine', 'datainf'] as const) {
    await t.throwsAsync(M({ method, train: bad({ data: huge }) }), { instanceOf: DataError, message: /training gradients \(unit q\): row 0 has squared norm Infinity in float32 \(overflow\)/ });
    await t.throwsAsync(M({ method, train: bad({ data: huge }), blockRows: 3 }), { instanceOf: DataError, message: /row 0 has squared norm Infinity in float32 \(overflow\)/ });
  }
  const big = Float32Array.from(val.data);
  big[0] = 10;
  await t.throwsAsync(M({ train: bad({ data: huge }), validation: { ...val, data: big } }), { instanceOf: DataError, message: /unit q: tracin influence entry 0 is (-)?Infinity in float32 \(overflow\)/ });
  const e64 = createInfluenceEngine({ device: 'cpu:0', threads: 1, precision: 'float64' });
  const ok = await e64.influenceMatrix({ method: 'tracin', train: bad({ data: huge }), validation: { ...val, data: big } });
  t.true(ok.data[0] > 1e39, 'the same data is fine in float64');
  await e64.release();

  // DataInf damping.
  const zero = bad({ data: new Float32Array(12) });
  await t.throwsAsync(M({ method: 'datainf', train: zero }), { instanceOf: DataError, message: /λ = 0/ });
  await t.throwsAsync(M({ method: 'datainf', train: zero, blockRows: 2 }), { instanceOf: DataError, message: /λ = 0/ });
  await t.throwsAsync(M({ method: 'datainf', lambda: -1 }), { instanceOf: ConfigError, message: /λ = -1; expected a positive finite number/ });
  await t.throwsAsync(M({ method: 'datainf', dampingScale: 0 }), { instanceOf: ConfigError, message: /damping scale is 0/ });
  await t.throwsAsync(M({ method: 'datainf', blockRows: 0 }), { instanceOf: ConfigError, message: /blockRows must be a positive integer/ });
  await t.throwsAsync(M({ method: 'datainf', association: 'inverse' as never }), { instanceOf: ConfigError, message: /association 'inverse'/ });
  await t.throwsAsync(M({ method: 'exact' as never }), { instanceOf: ConfigError, message: /influence method 'exact'/ });
  await t.throwsAsync(e.influenceScores({ method: 'tracin', train, validation: new Float64Array(4) }), { instanceOf: DataError, message: /expected d = 3/ });

  // Streams: unknown unit, non-contiguous shards, a source that changes between passes.
  const other = f32(randomGrads('k', 2, 3, 63));
  await t.throwsAsync(e.influenceMatrixStream({ method: 'tracin', train: () => [other], validation: [val] }), { instanceOf: DataError, message: /unit k\): no validation gradients for this unit; expected one of \[q\]/ });
  await t.throwsAsync(e.influenceMatrixStream({ method: 'tracin', train: () => [{ ...train, rowOffset: 3 }], validation: [val] }), { instanceOf: DataError, message: /shard starts at row 3; expected row 0/ });
  await t.throwsAsync(e.influenceMatrixStream({ method: 'tracin', train: () => [], validation: [val] }), { instanceOf: DataError, message: /yielded no rows/ });
  await t.throwsAsync(e.influenceMatrixStream({ method: 'tracin', train: () => [train], validation: [val, val] }), { instanceOf: DataError, message: /appears twice/ });
  let calls = 0;
  const shrinking = () => (calls++ === 0 ? rowBlocks(train, 2) : rowBlocks({ ...train, n: 2, data: train.data.subarray(0, 6) }, 2));
  await t.throwsAsync(e.influenceMatrixStream({ method: 'datainf', train: shrinking, validation: [val] }), { instanceOf: DataError, message: /pass 2 \(R = W G\) saw 2 rows; pass 1 saw 4/ });

  t.throws(() => createInfluenceEngine({ device: 'gpu:0' }), { instanceOf: ConfigError, message: /expected 'cpu:N' or 'cuda:N'/ });
  t.throws(() => createInfluenceEngine({ device: 'cpu:0', precision: 'float16' as never }), { instanceOf: ConfigError });
  t.throws(() => createInfluenceEngine({ device: 'cpu:0', threads: 0 }), { instanceOf: ConfigError });
}));

test('cuda:N: runs on the GPU when the CUDA EP is installed, otherwise fails loudly (no CPU fallback)', async (t) => {
  const train = f32(randomGrads('c', 6, 4, 71));
  const val = f32(randomGrads('c', 3, 4, 72));
  const e = createInfluenceEngine({ device: 'cuda:0' });
  try {
    if (!existsSync(cudaProviderPath())) {
      await t.throwsAsync(e.influenceMatrix({ method: 'tracin', train, validation: val }), { instanceOf: ConfigError, message: /cuda:0/ });
      return;
    }
    for (const method of METHODS) {
      const got = await e.influenceMatrix({ method, train, validation: val });
      const ref = influenceMatrixReference({ method, train, validation: val });
      t.true(maxRelErr(got.data, ref.data) < TOL.float32, method);
    }
  } finally {
    await e.release();
  }
});

test('row norms over Scan blocks: a row count that is not a multiple of the block (tail rows), and fewer rows than a block', async (t) => {
  // float64, d = 64: 512 B per row; rowBlockBytes = 4 KiB → blocks of 8 rows; n = 19 → 2 blocks + 3 tail rows.
  const e = createInfluenceEngine({ device: 'cpu:0', threads: 2, precision: 'float64', rowBlockBytes: 4096 });
  try {
    const d = 64;
    for (const n of [19, 5, 16]) {
      const train = randomGrads('t', n, d, 300 + n);
      const val = randomGrads('t', 2, d, 400 + n);
      for (const method of ['cosine', 'datainf'] as const) {
        const ref = influenceMatrixReference({ method, train, validation: val });
        const got = await e.influenceMatrix({ method, train, validation: val });
        t.true(maxRelErr(got.data, ref.data) < 1e-10, `matrix ${method} n=${n}`);
        const want = (method === 'cosine' ? cosineInfluence : dataInfInfluence)({ train, validation: val });
        const scores = await e.influenceScores({ method, train, validation: val });
        t.true(maxRelErr(scores.scores, want.scores) < 1e-10, `scores ${method} n=${n}`);
      }
    }
  } finally {
    await e.release();
  }
});

test('row block size: L3 / 8 within [256 KiB, 8 MiB], 4 MiB when the cache size is unknown; a bad option is a ConfigError', (t) => {
  t.is(rowBlockBytesFor(8 << 20), 1 << 20);
  t.is(rowBlockBytesFor(32 << 20), 4 << 20);
  t.is(rowBlockBytesFor(1 << 20), 256 << 10);
  t.is(rowBlockBytesFor(256 << 20), 8 << 20);
  t.is(rowBlockBytesFor(undefined), 4 << 20);
  for (const rowBlockBytes of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => createInfluenceEngine({ device: 'cpu:0', rowBlockBytes }), { instanceOf: ConfigError, message: /rowBlockBytes must be a positive integer/ });
  }
});
