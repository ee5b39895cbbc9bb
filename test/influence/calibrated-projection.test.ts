/**
 * The calibrated projection (src/influence/calibration-basis.ts): the basis of the first N training
 * gradients (orthonormal, spanning them, by decreasing eigenvalue, numerical rank), inner products
 * exact on its span, the ONNX projector equal to the plain-TS reference, and the `gradients` stage
 * with `projection.calibration` on the tiny model: the basis committed like a shard before the shards
 * projected with it, every stored row the calibrated projection of the full gradient with the stored
 * basis, a retry reusing basis and shards, and a retry without the basis recomputing every shard.
 */
import test from 'ava';
import fc from 'fast-check';
import { rm } from 'node:fs/promises';
import { calibratedProjectReference, calibrationBasis } from '../../src/influence/calibration-basis.ts';
import { GradientProjector } from '../../src/influence/projection-engine.ts';
import { calibratedRank, ProjectionSettings, projectionRows, randomPart, unitProjection } from '../../src/influence/projection.ts';
import { checkGradientIndex, readBasis, readDenseSet, readGradientIndex, type GradientIndex } from '../../src/influence/gradient-store.ts';
import { createRng } from '../../src/data/random.ts';
import { refOf, type ArtifactRef } from '../../src/store/artifacts.ts';
import { gradients, GradientSettings } from '../../activities/gradients.ts';
import { ctxOf, run, tinyUpstream } from './_tiny-stages.ts';
import { influence, InfluenceSettings } from '../../activities/influence.ts';
import { DataError } from '../../src/errors.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../../src/weights/safetensors.ts';

/** rows × d, each row Σ_c coef · b_c over `rank` random directions (+ noise when given). */
function lowRank(rows: number, d: number, rank: number, seed: number, noise = 0): Float64Array {
  const r = createRng(seed);
  const dirs = Array.from({ length: rank }, () => Float64Array.from({ length: d }, () => r.normal()));
  const out = new Float64Array(rows * d);
  for (let i = 0; i < rows; i++) {
    const c = dirs.map(() => r.normal());
    for (let j = 0; j < d; j++) out[i * d + j] = dirs.reduce((a, b, q) => a + c[q] * b[j], 0) + noise * r.normal();
  }
  return out;
}
const dot = (a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, n: number) => { let s = 0; for (let j = 0; j < n; j++) s += a[ao + j] * b[bo + j]; return s; };

test('calibration basis: orthonormal columns by decreasing eigenvalue, spanning the calibration rows, numerical rank', (t) => {
  const d = 40;
  const G = lowRank(6, d, 3, 1); // 6 rows in a 3-dim subspace
  const { U, rank, eigenvalues } = calibrationBasis(G, 6, d, 5);
  t.is(rank, 3, 'rank-3 rows give 3 directions, not the 5 allowed');
  t.true(eigenvalues.every((x, i) => i === 0 || x <= eigenvalues[i - 1]));
  for (let p = 0; p < rank; p++) for (let q = 0; q < rank; q++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += U[j * rank + p] * U[j * rank + q];
    t.true(Math.abs(s - (p === q ? 1 : 0)) < 1e-12, `UᵀU[${p},${q}] = ${s}`);
  }
  // each calibration row is in span(U): ‖g − UUᵀg‖ ≈ 0
  for (let i = 0; i < 6; i++) {
    const c = Array.from({ length: rank }, (_, q) => { let s = 0; for (let j = 0; j < d; j++) s += G[i * d + j] * U[j * rank + q]; return s; });
    let res = 0, nrm = 0;
    for (let j = 0; j < d; j++) { const x = G[i * d + j] - c.reduce((a, cq, q) => a + cq * U[j * rank + q], 0); res += x * x; nrm += G[i * d + j] ** 2; }
    t.true(Math.sqrt(res / nrm) < 1e-10, `row ${i} residual ${Math.sqrt(res / nrm)}`);
  }
  // the leading direction: the top eigenvector of GᵀG (power iteration as an independent check)
  let v = Float64Array.from({ length: d }, (_, j) => Math.sin(j + 1));
  for (let it = 0; it < 500; it++) {
    const Gv = Array.from({ length: 6 }, (_, i) => dot(G, i * d, v, 0, d));
    const w = new Float64Array(d);
    for (let i = 0; i < 6; i++) for (let j = 0; j < d; j++) w[j] += G[i * d + j] * Gv[i];
    const n = Math.hypot(...w);
    v = w.map((x) => x / n);
  }
  const u0 = Array.from({ length: d }, (_, j) => U[j * rank]);
  t.true(Math.abs(Math.abs(dot(u0, 0, v, 0, d)) - 1) < 1e-9, 'first column = leading eigenvector');
  // maxRank keeps the leading ones; all-zero rows give rank 0
  const two = calibrationBasis(G, 6, d, 2);
  t.is(two.rank, 2);
  t.deepEqual(two.eigenvalues, eigenvalues.slice(0, 2));
  t.is(calibrationBasis(new Float64Array(3 * d), 3, d, 3).rank, 0);
  t.throws(() => calibrationBasis(new Float64Array(5), 2, 3, 1), { instanceOf: DataError });
  t.throws(() => calibrationBasis(Float64Array.from([1, NaN, 0]), 1, 3, 1), { instanceOf: DataError });
});

test('property: for any rows (rank-deficient, scaled, duplicated), the basis is orthonormal, spans every calibration row, and keeps their inner products through the calibrated projection', (t) => {
  const arb = fc.record({
    rows: fc.integer({ min: 1, max: 9 }), d: fc.integer({ min: 2, max: 40 }), rank: fc.integer({ min: 1, max: 6 }),
    maxRank: fc.integer({ min: 1, max: 12 }), scale: fc.constantFrom(1e-6, 1, 1e4), seed: fc.integer({ min: 0, max: 1e6 }), duplicate: fc.boolean(),
  });
  fc.assert(fc.property(arb, ({ rows, d, rank, maxRank, scale, seed, duplicate }) => {
    const G = lowRank(rows, d, Math.min(rank, d), seed).map((x) => x * scale);
    if (duplicate && rows > 1) G.copyWithin(d, 0, d); // row 1 = row 0
    const { U, rank: r } = calibrationBasis(G, rows, d, maxRank);
    const trueRank = Math.min(rows - (duplicate && rows > 1 ? 1 : 0), d, rank); // random directions: generic rank
    if (r !== Math.min(trueRank, maxRank)) return false;
    for (let p = 0; p < r; p++) for (let q = 0; q < r; q++) {
      let x = 0;
      for (let j = 0; j < d; j++) x += U[j * r + p] * U[j * r + q];
      if (Math.abs(x - (p === q ? 1 : 0)) > 1e-9) return false;
    }
    if (r < trueRank) return true; // maxRank truncated the span: nothing more to check
    // every calibration row lies in span(U), so the calibrated projection keeps its inner products exactly
    const k = r + 3, Pt = projectionRows({ unit: 'p', seed: 1, from: d, to: k - r });
    const Y = calibratedProjectReference(G, rows, d, U, r, Pt, k);
    for (let i = 0; i < rows; i++) for (let j = 0; j < rows; j++) {
      const want = dot(G, i * d, G, j * d, d), ni = dot(G, i * d, G, i * d, d), nj = dot(G, j * d, G, j * d, d);
      if (Math.abs(dot(Y, i * k, Y, j * k, k) - want) > 1e-8 * Math.sqrt(ni * nj)) return false;
    }
    return true;
  }), { seed: 0xca11b, numRuns: 300 });
  t.pass();
});

test('calibrated projection: inner products exact inside the span, the random part only sees the residual; ONNX equals the reference', async (t) => {
  const d = 64, k = 16, N = 5, unit = 'u';
  const G = lowRank(N + 7, d, N, 3, 0.02); // calibration rows first, then others near the same span
  const b = calibrationBasis(G.subarray(0, N * d), N, d, calibratedRank(k, N));
  t.is(b.rank, 5);
  const pr = unitProjection(unit, d, ProjectionSettings.parse({ dim: k, seed: 9, calibration: N, matrix: 'rademacher' }), 'calibrated', b.rank)!;
  t.deepEqual(pr, { kind: 'calibrated', generator: 'layerflow.rademacher/1', seed: 9, from: d, to: k, rank: 5 });
  const spec = randomPart(unit, pr);
  t.is(spec.to, k - 5);
  const Pt = projectionRows(spec);
  const rows = N + 7;
  const Y = calibratedProjectReference(G, rows, d, b.U, b.rank, Pt, k);
  // calibration rows lie in span(U) up to the noise: their inner products are (almost) exact
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) {
    const want = dot(G, i * d, G, j * d, d), got = dot(Y, i * k, Y, j * k, k);
    t.true(Math.abs(got - want) < 1e-9 * Math.abs(dot(G, i * d, G, i * d, d)), `⟨y${i}, y${j}⟩ ${got} vs ${want}`);
  }
  // for a row orthogonal to the span the coordinates vanish and the rest is the plain JL of the row
  const x = Float64Array.from({ length: d }, (_, j) => Math.cos(3 * j));
  for (let q = 0; q < b.rank; q++) { let c = 0; for (let j = 0; j < d; j++) c += x[j] * b.U[j * b.rank + q]; for (let j = 0; j < d; j++) x[j] -= c * b.U[j * b.rank + q]; }
  const yx = calibratedProjectReference(x, 1, d, b.U, b.rank, Pt, k);
  t.true(Array.from(yx.subarray(0, b.rank)).every((v) => Math.abs(v) < 1e-12));
  const jl = Array.from({ length: k - b.rank }, (_, i) => { let s = 0; for (let j = 0; j < d; j++) s += x[j] * Pt[j * (k - b.rank) + i]; return s; });
  t.true(jl.every((v, i) => Math.abs(yx[b.rank + i] - v) < 1e-12));
  // the ONNX projector (float32) equals the float64 reference
  const proj = await GradientProjector.create({ device: 'cpu:0', threads: 1 });
  try {
    const U32 = Float32Array.from(b.U);
    const X32 = Float32Array.from(G);
    const got = await proj.projectCalibrated(unit, pr, U32, X32, rows);
    const want = calibratedProjectReference(X32, rows, d, U32, b.rank, Pt, k);
    const scale = Math.max(...want.map(Math.abs));
    t.true(want.every((v, q) => Math.abs(got[q] - v) <= 1e-5 * scale), 'ONNX vs reference');
    await t.throwsAsync(proj.projectCalibrated(unit, pr, new Float32Array(3), X32, rows), { instanceOf: DataError });
  } finally {
    await proj.release();
  }
});

test('the gradients stage with projection.calibration (tiny model): basis committed first, rows = calibrated projection of the full gradients, retries', async (t) => {
  const { home, store, slice, ds, ft } = await tinyUpstream(t, 'lf-calib-stage-');
  const full = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3 }), slice, { data: ds, finetune: ft }));
  // calibration 5 > shardSize 3: the first two training shards wait for the basis
  const settings = GradientSettings.parse({ shardSize: 3, projection: { factor: 4, seed: 3, calibration: 5, matrix: 'rademacher' } });
  const key = 'k-calibrated';
  const first = await gradients(ctxOf(store, home, 'gradients', settings, slice, { data: ds, finetune: ft }, key));
  const proj = refOf(await store.commit({ key, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: first.files }));
  const [fi, pi] = [await readGradientIndex(store, full), await readGradientIndex(store, proj)];
  const plan = pi.sets.train.shards.length + pi.sets.influence.shards.length;
  t.is(pi.basis?.index, plan, 'the basis record is numbered after the last shard');
  t.is(pi.basis?.samples, 5);
  t.is((await store.lookup(key)).status, 'hit', 'the manifest lists (and verifies) the basis with the shards');
  // every unit calibrated; rank ≥ 1 exactly where its calibration rows are not all zero (LoRA A
  // gradients vanish while B is still zero), at most min(N, ⌊k/2⌋)
  const fullTrain = await readDenseSet(store, fi, 'train');
  for (const u of pi.units) {
    const g = fullTrain.get(u.unit)!;
    const nonzero = g.data.subarray(0, 5 * g.d).some((x) => x !== 0);
    t.is(u.projection?.kind, 'calibrated');
    t.true(nonzero ? u.projection!.rank! >= 1 && u.projection!.rank! <= calibratedRank(u.d, 5) : u.projection!.rank === 0, `${u.unit}: rank ${u.projection!.rank}`);
  }
  t.true(pi.units.some((u) => u.projection!.rank! > 0));
  t.is(first.metrics!.basis_directions, pi.units.reduce((a, u) => a + u.projection!.rank!, 0));
  const basis = await readBasis(store, pi);
  for (const set of ['train', 'influence'] as const) {
    const [f, p] = [await readDenseSet(store, fi, set), await readDenseSet(store, pi, set)];
    for (const u of pi.units) {
      const g = f.get(u.unit)!, pr = u.projection!;
      const want = calibratedProjectReference(g.data, g.n, pr.from, basis.get(u.unit)!, pr.rank!, projectionRows(randomPart(u.unit, pr)), pr.to);
      const got = p.get(u.unit)!.data;
      const scale = Math.max(1e-30, ...want.map(Math.abs));
      t.true(want.every((v, q) => Math.abs(got[q] - v) <= 1e-4 * scale), `${set} ${u.unit}`);
    }
  }
  // the calibration samples' inner products are kept: ⟨y_i, y_j⟩ = ⟨g_i, g_j⟩ for i, j < 5
  const [ft5, pt5] = [await readDenseSet(store, fi, 'train'), await readDenseSet(store, pi, 'train')];
  let worst = 0;
  for (const u of pi.units) {
    const g = ft5.get(u.unit)!, y = pt5.get(u.unit)!;
    for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) {
      const want = dot(g.data, i * g.d, g.data, j * g.d, g.d), norm = Math.sqrt(dot(g.data, i * g.d, g.data, i * g.d, g.d) * dot(g.data, j * g.d, g.data, j * g.d, g.d));
      if (norm > 0) worst = Math.max(worst, Math.abs(dot(y.data, i * y.d, y.data, j * y.d, y.d) - want) / norm);
    }
  }
  t.true(worst < 1e-4, `calibration inner products off by ${worst} of ‖g_i‖‖g_j‖`);
  // the influence stage reads it
  const method = { method: { id: 'tracin', influence: 'tracin', dampingScale: 0.1 } };
  await t.notThrowsAsync(run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { ...slice, ...method }, { gradients: proj })));

  // a retry reuses the basis and every shard
  const again = await gradients(ctxOf(store, home, 'gradients', settings, slice, { data: ds, finetune: ft }, key));
  t.is(again.metrics!.shards_reused, plan);
  t.is(again.files['index.json'], first.files['index.json']);
  // without its basis record, shards projected with it cannot be trusted: all recomputed, same store
  await rm(store.shardPath(key, plan));
  const rebuilt = await gradients(ctxOf(store, home, 'gradients', settings, slice, { data: ds, finetune: ft }, key));
  t.is(rebuilt.metrics!.shards_computed, plan);
  t.is(rebuilt.metrics!.shards_reused, 0);
  const ri = JSON.parse(rebuilt.files['index.json'] as string) as GradientIndex;
  t.deepEqual(ri.units, pi.units);
  t.is(ri.basis!.sha256, pi.basis!.sha256, 'the same basis again (deterministic)');

  // calibration 'influence': influence shards first, the basis spans every influence gradient, so each
  // TracIn entry ⟨v_j, g_k⟩ of the dense units (and so of every layer) is exact (up to float32),
  // whatever the random part does; the sparse WE rows stay randomly projected
  const inflSettings = GradientSettings.parse({ shardSize: 3, projection: { factor: 4, seed: 3, calibration: 'influence' } });
  const ir = await run(gradients, ctxOf(store, home, 'gradients', inflSettings, slice, { data: ds, finetune: ft }));
  const ii = await readGradientIndex(store, ir);
  t.deepEqual({ set: ii.basis!.set, samples: ii.basis!.samples }, { set: 'influence', samples: 4 });
  t.true(Math.max(...ii.sets.influence.shards.map((x) => x.index)) < Math.min(...ii.sets.train.shards.map((x) => x.index)), 'influence shards come first');
  const scoresOf = async (g: ArtifactRef, influenceMethod: 'tracin' | 'cosine') => {
    const r = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { ...slice, method: { id: influenceMethod, influence: influenceMethod, dampingScale: 0.1 } }, { gradients: g }));
    const { tensors } = parseSafetensorsBytes(await store.read(r, 'scores.safetensors'), 'scores');
    return new Map([...tensors].map(([name, x]) => [name, rawToFloat32(x, name)]));
  };
  for (const m of ['tracin'] as const) {
    const [exact, calibrated] = [await scoresOf(full, m), await scoresOf(ir, m)];
    let worstEntry = 0;
    for (const [name, x] of exact) {
      if (name.includes('embed_tokens')) continue; // WE rows are randomly projected (rademacher-rows), never calibrated
      const y = calibrated.get(name)!;
      const scale = Math.max(1e-30, ...x.map(Math.abs));
      x.forEach((v, q) => { worstEntry = Math.max(worstEntry, Math.abs(y[q] - v) / scale); });
    }
    t.true(worstEntry < 1e-4, `${m} on the influence-calibrated store off by ${worstEntry} of the largest score`);
  }

  // an index whose calibrated units have no basis record is refused
  const { basis: _b, ...noBasis } = pi;
  t.throws(() => checkGradientIndex(noBasis as GradientIndex), { instanceOf: DataError, message: /calibrated.*no basis/ });
});

test('the projector’s basis (float64 ONNX GEMMs, symmetric re-orthonormalisation) spans what the TypeScript reference spans: same rank, eigenvalues, projector UUᵀ; orthonormal to 1e-12', async (t) => {
  const r = createRng(21);
  const proj = await GradientProjector.create({ device: 'cpu:0', threads: 1 });
  try {
    for (const [rows, d, maxRank, rank] of [[16, 700, 16, 6], [5, 300, 3, 5], [8, 64, 8, 8], [3, 10, 2, 0]]) {
      // rows gradients in a `rank`-dimensional span with spread scales (rank 0: all zero)
      const basisVecs = Array.from({ length: rank }, () => Float64Array.from({ length: d }, () => r.normal()));
      const G = new Float32Array(rows * d);
      for (let a = 0; a < rows; a++) basisVecs.forEach((v, c) => { const w = r.normal() * 10 ** (-c / 2); for (let j = 0; j < d; j++) G[a * d + j] += w * v[j]; });
      const [ref, got] = [calibrationBasis(G, rows, d, maxRank), await proj.calibrationBasis(G, rows, d, maxRank)];
      t.is(got.rank, ref.rank, `${rows} × ${d}: rank`);
      got.eigenvalues.forEach((x, i) => t.true(Math.abs(x / ref.eigenvalues[i] - 1) < 1e-9, `eigenvalue ${i}`));
      const k = got.rank;
      let orth = 0;
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) { let s = 0; for (let j = 0; j < d; j++) s += got.U[j * k + a] * got.U[j * k + b]; orth = Math.max(orth, Math.abs(s - (a === b ? 1 : 0))); }
      t.true(orth < 1e-12, `UᵀU − I: ${orth}`);
      // the same subspace: UUᵀ x equal for random x
      for (let trial = 0; trial < 3; trial++) {
        const x = Float64Array.from({ length: d }, () => r.normal());
        const apply = (U: Float64Array) => { const c = new Float64Array(k); for (let j = 0; j < d; j++) for (let i = 0; i < k; i++) c[i] += U[j * k + i] * x[j]; return Float64Array.from({ length: d }, (_, j) => { let s = 0; for (let i = 0; i < k; i++) s += U[j * k + i] * c[i]; return s; }); };
        const [p, q] = [apply(ref.U), apply(got.U)];
        const off = Math.max(0, ...p.map((v, j) => Math.abs(v - q[j])));
        t.true(off < 1e-8 * Math.sqrt(d), `projector UUᵀ x differs by ${off}`);
      }
    }
  } finally {
    await proj.release();
  }
});
