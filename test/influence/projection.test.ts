/**
 * The gradient projection (src/influence/projection.ts, projection-engine.ts): the seeded Rademacher
 * matrix against an independent numpy implementation (test/fixtures/scripts/projection_reference.py),
 * determinism by seed and unit, column blocks equal to the whole matrix, inner products and norms
 * preserved in expectation (statistical bounds that fail if the matrix is biased or mis-scaled), the
 * ONNX projector against the plain-TS reference (whole and block by block), and bad settings.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { ConfigError, DataError } from '../../src/errors.ts';
import { createRng } from '../../src/data/random.ts';
import {
  fnv1a32, mix32, PROJECTION_GENERATOR, projectedDamping, projectedSize, projectionMatrix, projectionRows, ProjectionSettings, projectRowsReference, unitProjection,
  type ProjectionSpec,
} from '../../src/influence/projection.ts';
import { GradientProjector } from '../../src/influence/projection-engine.ts';
import { checkSketchMoments } from './_sketch-moments.ts';
import { dataInfDamping } from '../../src/influence/datainf.ts';

interface FixtureCase { seed: number; unit: string; from: number; to: number; signs: number[][]; x: number[][]; y: number[][] }
const fixture = JSON.parse(readFileSync(new URL('../fixtures/influence/projection.json', import.meta.url), 'utf8')) as { generator: string; cases: FixtureCase[] };

test('the generator matches the numpy reference bit for bit; projections match to float64 rounding', (t) => {
  t.is(fixture.generator, PROJECTION_GENERATOR);
  for (const c of fixture.cases) {
    const spec: ProjectionSpec = { unit: c.unit, seed: c.seed, from: c.from, to: c.to };
    const P = projectionMatrix(spec);
    const s = 1 / Math.sqrt(c.to);
    let mismatched = 0;
    for (let i = 0; i < c.to; i++) for (let j = 0; j < c.from; j++) if (Math.abs(P[i * c.from + j] - c.signs[i][j] * s) > 1e-7 * s) mismatched++;
    t.is(mismatched, 0, `${c.unit}: signs`);
    const y = projectRowsReference(spec, c.x.flat(), c.x.length);
    c.y.flat().forEach((v, q) => t.true(Math.abs(y[q] - v) <= 1e-6 * (1 + Math.abs(v)), `${c.unit}: y[${q}] ${y[q]} vs ${v}`));
  }
});

test('hash building blocks: lowbias32 and FNV-1a on known values', (t) => {
  t.is(mix32(0), 0); // lowbias32 maps 0 to 0 (why the counter is xored with a key first)
  t.is(fnv1a32(''), 0x811c9dc5);
  t.is(fnv1a32('a'), 0xe40c292c); // FNV-1a test vector
  t.not(mix32(1), mix32(2));
});

test('deterministic by (seed, unit); another seed or unit gives an unrelated matrix', (t) => {
  const spec = { unit: 'model.layers.3.self_attn.v_proj.lora_B.weight', seed: 42, from: 768, to: 48 };
  const a = projectionRows(spec), b = projectionRows({ ...spec });
  t.deepEqual(Buffer.from(a.buffer), Buffer.from(b.buffer));
  const agree = (x: Float32Array, y: Float32Array) => x.reduce((n, v, q) => n + (Math.sign(v) === Math.sign(y[q]) ? 1 : 0), 0) / x.length;
  // Independent fair signs agree on half the entries: N = 36864, 5 sd = 5 · 0.5/√N ≈ 0.013.
  const N = a.length, bound = 5 * 0.5 / Math.sqrt(N);
  t.true(Math.abs(agree(a, projectionRows({ ...spec, seed: 43 })) - 0.5) < bound);
  t.true(Math.abs(agree(a, projectionRows({ ...spec, unit: 'model.layers.4.self_attn.v_proj.lora_B.weight' })) - 0.5) < bound);
  // Fair signs: the mean sign is 0 within 5 sd.
  t.true(Math.abs(a.reduce((s, v) => s + Math.sign(v), 0) / N) < 5 / Math.sqrt(N));
  // Entries are exactly ±1/√k.
  const s = Math.fround(1 / Math.sqrt(48));
  t.true(a.every((v) => v === s || v === -s));
});

test('any block of columns equals the same rows of the whole Pᵀ', (t) => {
  const spec = { unit: 'u', seed: 7, from: 100, to: 70 }; // 3 words per column
  const whole = projectionRows(spec);
  for (const [j0, j1] of [[0, 1], [13, 57], [99, 100], [40, 40]]) {
    t.deepEqual(Array.from(projectionRows(spec, j0, j1)), Array.from(whole.subarray(j0 * 70, j1 * 70)), `${j0}..${j1}`);
  }
  t.throws(() => projectionRows(spec, 5, 101), { instanceOf: DataError });
});

test('inner products and squared norms are preserved in expectation, with the Rademacher variance', (t) => {
  // Fixed x, y (correlated, heavy-ish tails); over S independent matrices (seeds), the mean of (Px)·(Py)
  // must be within 4 standard errors of x·y, and the sample variance within 30% of
  // (‖x‖²‖y‖² + (x·y)² − 2 Σ x_j² y_j²)/k. A mis-scaled (e.g. 1/k) or biased matrix fails both.
  const d = 256, k = 32;
  checkSketchMoments(t, { d, rngSeed: 5, samples: 600, q: 1 / k, varianceTolerance: 0.3, name: 'P', project: (seed, v) => projectRowsReference({ unit: 'stat', seed, from: d, to: k }, v, 1) });
});

test('the ONNX projector equals the reference, whole and block by block (partial last block)', async (t) => {
  const r = createRng(9);
  const rows = 5, d = 300, k = 40;
  const X = Float32Array.from({ length: rows * d }, () => r.normal());
  const spec = { unit: 'model.layers.0.self_attn.q_proj.lora_A.weight', seed: 3, from: d, to: k };
  const ref = projectRowsReference(spec, X, rows);
  const close = (y: Float32Array) => y.length === ref.length && y.every((v, q) => Math.abs(v - ref[q]) <= 1e-4 * (1 + Math.abs(ref[q])));
  const whole = await GradientProjector.create({ device: 'cpu:0', threads: 1 });
  // blocks of 7 columns of Pᵀ: 43 blocks, the last one of 6 columns.
  const blocked = await GradientProjector.create({ device: 'cpu:0', threads: 1, blockBytes: 4 * k * 7, cacheBytes: 0 });
  try {
    t.true(close(await whole.project(spec, X, rows)));
    t.true(close(await whole.project(spec, X, rows)), 'second call (cached Pᵀ)');
    t.true(close(await blocked.project(spec, X, rows)));
    t.is((await whole.project(spec, new Float32Array(0), 0)).length, 0);
    await t.throwsAsync(whole.project(spec, X, rows + 1), { instanceOf: DataError });
    t.true(whole.seconds > 0);
  } finally {
    await whole.release();
    await blocked.release();
  }
});

test('settings: exactly one of dim or factor; sizes; a unit that would not shrink is kept', (t) => {
  t.deepEqual(ProjectionSettings.parse({ dim: 144 }), { dim: 144, seed: 0, embedding: true, matrix: 'sjlt' });
  t.deepEqual(ProjectionSettings.parse({ factor: 16, seed: 5, embedding: false, matrix: 'rademacher' }), { factor: 16, seed: 5, embedding: false, matrix: 'rademacher' });
  for (const bad of [{}, { dim: 8, factor: 4 }, { dim: 0 }, { dim: 1.5 }, { factor: 0.5 }, { dim: 8, seed: -1 }, { dim: 8, seed: 2 ** 32 }, { dim: 8, kind: 'gaussian' }]) {
    t.false(ProjectionSettings.safeParse(bad).success, JSON.stringify(bad));
  }
  t.regex(ProjectionSettings.safeParse({ dim: 8, factor: 4 }).error!.issues[0].message, /exactly one of dim .* or factor/);
  t.is(projectedSize(2304, { factor: 16 }), 144);
  t.is(projectedSize(768, { factor: 16 }), 48);
  t.is(projectedSize(1000, { factor: 3 }), 334);
  t.is(projectedSize(768, { dim: 144 }), 144);
  t.is(projectedSize(100, { dim: 144 }), 100);
  t.is(unitProjection('u', 100, ProjectionSettings.parse({ dim: 144 })), undefined);
  t.deepEqual(unitProjection('u', 2304, ProjectionSettings.parse({ factor: 16, seed: 9, matrix: 'rademacher' })), { kind: 'rademacher', generator: PROJECTION_GENERATOR, seed: 9, from: 2304, to: 144 });
  t.throws(() => projectedSize(10, { dim: 2, factor: 2 }), { instanceOf: ConfigError });
  t.throws(() => projectionRows({ unit: 'u', seed: -3, from: 4, to: 2 }), { instanceOf: ConfigError });
  t.throws(() => projectionRows({ unit: 'u', seed: 1, from: 2 ** 31, to: 100 }), { instanceOf: ConfigError, message: /too large/ });
});

test('DataInf λ on projected gradients uses the original size', (t) => {
  // 4 rows whose squared norms sum to 80, original d = 2304 stored in k = 144: λ = 0.1 · 80 / (4 · 2304).
  t.is(projectedDamping({ sumNormSq: 80, n: 4, originalD: 2304 }), (0.1 * 80) / (4 * 2304));
  t.is(projectedDamping({ sumNormSq: 80, n: 4, originalD: 2304, scale: 0.5 }), dataInfDamping({ sumNormSq: 80, n: 4, d: 2304, scale: 0.5 }));
  t.throws(() => projectedDamping({ sumNormSq: 0, n: 4, originalD: 2304 }), { instanceOf: DataError });
});
