/**
 * The sparse sign projection (`matrix: sjlt`, generator layerflow.sjlt/1, src/influence/projection.ts
 * sjltLayout; projection-engine.ts): the layout against an independent Python implementation
 * (test/fixtures/scripts/projection_sjlt_reference.py), the exact multiply-high of the shuffle, every
 * coordinate in exactly one bucket, unbiased inner products with the variance q·(…) the header
 * derives (a statistical bound that a wrong sign stream, scale or bucketing fails), the ONNX projector
 * against the reference, the settings, and the gradients stage writing a sparse-projected store that
 * the influence stage reads.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { ConfigError, DataError } from '../../src/errors.ts';
import { createRng } from '../../src/data/random.ts';
import {
  mulHi32, PROJECTION_GENERATOR, projectionMatrix, projectionRows, ProjectionSettings, projectRowsReference, randomPart, sjltLayout, SJLT_GENERATOR, unitProjection, type ProjectionSpec,
} from '../../src/influence/projection.ts';
import { GradientProjector } from '../../src/influence/projection-engine.ts';
import { checkSketchMoments } from './_sketch-moments.ts';
import { readBasis, readDenseSet, readEmbeddingSet, readGradientIndex } from '../../src/influence/gradient-store.ts';
import type { ArtifactRef } from '../../src/store/artifacts.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../../src/weights/safetensors.ts';
import { gradients, GradientSettings } from '../../activities/gradients.ts';
import { influence, InfluenceSettings } from '../../activities/influence.ts';
import { ctxOf, run, tinyUpstream } from './_tiny-stages.ts';

interface FixtureCase { seed: number; unit: string; from: number; to: number; matrix: number[][]; x: number[][]; y: number[][] }
const fixture = JSON.parse(readFileSync(new URL('../fixtures/influence/projection-sjlt.json', import.meta.url), 'utf8')) as { generator: string; cases: FixtureCase[] };
const sparse = (unit: string, seed: number, from: number, to: number): ProjectionSpec => ({ unit, seed, from, to, generator: SJLT_GENERATOR });

test('the sparse matrix matches the Python reference entry for entry; projections to float64 rounding', (t) => {
  t.is(fixture.generator, SJLT_GENERATOR);
  for (const c of fixture.cases) {
    const spec = sparse(c.unit, c.seed, c.from, c.to);
    const S = projectionMatrix(spec);
    t.deepEqual(Array.from(S), c.matrix.flat(), `${c.unit}: matrix`);
    const y = projectRowsReference(spec, c.x.flat(), c.x.length);
    c.y.flat().forEach((v, q) => t.true(Math.abs(y[q] - v) <= 1e-9 * (1 + Math.abs(v)), `${c.unit}: y[${q}] ${y[q]} vs ${v}`));
  }
});

test('mulHi32 is ⌊w·n / 2³²⌋ exactly (the product exceeds 2⁵³)', (t) => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 0x100000000 }), (w, n) => {
    return BigInt(mulHi32(w, n)) === (BigInt(w) * BigInt(n)) >> 32n;
  }), { numRuns: 2000 });
  t.is(mulHi32(0xffffffff, 0x100000000), 0xffffffff);
  t.is(mulHi32(0xffffffff, 1), 0);
});

test('layout: every input coordinate in exactly one bucket with sign ±1, padding signed 0, buckets of m positions', (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 0xffffffff }), (d, k0, seed) => {
    const k = Math.min(k0, d);
    const { m, coord, sign } = sjltLayout(sparse('u', seed, d, k));
    if (m !== Math.ceil(d / k) || coord.length !== k * m) return false;
    const seen = new Uint8Array(d);
    let padding = 0;
    for (let p = 0; p < coord.length; p++) {
      if (sign[p] === 0) { padding++; continue; }
      if (Math.abs(sign[p]) !== 1 || coord[p] < 0 || coord[p] >= d || seen[coord[p]]++) return false;
    }
    return padding === k * m - d && seen.every((s) => s === 1);
  }), { numRuns: 300 });
  // Deterministic by (seed, unit); another seed gives another layout.
  const a = sjltLayout(sparse('v', 4, 1000, 100)), b = sjltLayout(sparse('v', 4, 1000, 100)), c = sjltLayout(sparse('v', 5, 1000, 100));
  t.deepEqual([a.coord, a.sign], [b.coord, b.sign]);
  t.notDeepEqual(a.coord, c.coord);
  // Fair signs: the mean of 1000 signs is 0 within 5 sd.
  t.true(Math.abs(a.sign.reduce((s, v) => s + v, 0)) < 5 * Math.sqrt(1000));
});

test('inner products and squared norms preserved in expectation; variance q (‖x‖²‖y‖² + (x·y)² − 2 Σ x_j² y_j²), q = (m − 1)/(D′ − 1)', (t) => {
  // Over S independent layouts (seeds): the mean of (Sx)·(Sy) within 4 standard errors of x·y, the
  // sample variance within 20 % of the derived one. Dense-style scaling by 1/√k, a biased sign
  // stream, or coordinates landing twice all fail.
  // m = 2 makes q = 1/63 half of 1/k: hashed (unbalanced) buckets or the dense variance fail too.
  const d = 64, k = 32; // m = 2, D′ = 64
  const q = (Math.ceil(d / k) - 1) / (k * Math.ceil(d / k) - 1);
  checkSketchMoments(t, { d, rngSeed: 11, samples: 1500, q, varianceTolerance: 0.2, name: 'S', project: (seed, v) => projectRowsReference(sparse('stat', seed, d, k), v, 1) });
});

test('the ONNX projector equals the reference for the sparse matrix (padding, k = d − 1, one row, many rows)', async (t) => {
  const r = createRng(13);
  const proj = await GradientProjector.create({ device: 'cpu:0', threads: 1, cacheBytes: 1 << 12 });
  try {
    for (const [rows, d, k] of [[5, 300, 40], [1, 37, 36], [33, 1000, 7], [2, 12, 12 - 1]]) {
      const spec = sparse(`model.layers.${d}.mlp.up_proj.lora_A.weight`, d + k, d, k);
      const X = Float32Array.from({ length: rows * d }, () => r.normal());
      const ref = projectRowsReference(spec, X, rows);
      for (const pass of ['first', 'second (layout kept or rebuilt)']) {
        const y = await proj.project(spec, X, rows);
        t.is(y.length, rows * k);
        t.true(y.every((v, i) => Math.abs(v - ref[i]) <= 1e-5 * (1 + Math.abs(ref[i]))), `${rows} × ${d} → ${k}, ${pass}`);
      }
    }
    await t.throwsAsync(proj.project(sparse('u', 1, 10, 3), new Float32Array(7), 1), { instanceOf: DataError });
  } finally {
    await proj.release();
  }
});

test('settings: matrix sjlt records the sparse generator; a dense row of it is refused; bad values are clear', (t) => {
  const s = ProjectionSettings.parse({ factor: 10, seed: 2, matrix: 'sjlt' });
  t.deepEqual(unitProjection('u', 4608, s), { kind: 'rademacher', generator: SJLT_GENERATOR, seed: 2, from: 4608, to: 461 });
  t.is(ProjectionSettings.parse({ factor: 10 }).matrix, 'sjlt', 'the default');
  t.is(unitProjection('u', 4608, ProjectionSettings.parse({ factor: 10, matrix: 'rademacher' }))!.generator, PROJECTION_GENERATOR);
  const bad = ProjectionSettings.safeParse({ factor: 10, matrix: 'gaussian' });
  t.false(bad.success);
  t.regex(bad.error!.issues[0].message, /expected sjlt .* or rademacher/);
  t.throws(() => projectionRows(sparse('u', 1, 10, 3)), { instanceOf: DataError, message: /sjltLayout/ });
  t.throws(() => sjltLayout(sparse('u', 1, 0, 3)), { instanceOf: ConfigError });
});

test('the gradients stage with matrix sjlt (tiny model): stored rows = the sparse projection of the full gradients; calibrated on the influence set, TracIn stays exact', async (t) => {
  const { home, store, slice, ds, ft } = await tinyUpstream(t, 'lf-sjlt-stage-');
  const full = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 5 }), slice, { data: ds, finetune: ft }));
  const sp = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 5, projection: { factor: 8, seed: 3, matrix: 'sjlt' } }), slice, { data: ds, finetune: ft }));
  const [fi, pi] = [await readGradientIndex(store, full), await readGradientIndex(store, sp)];
  t.true(pi.units.every((u) => u.projection?.generator === SJLT_GENERATOR) && pi.embedding!.projection!.generator === SJLT_GENERATOR);
  for (const set of ['train', 'influence'] as const) {
    const [f, p] = [await readDenseSet(store, fi, set), await readDenseSet(store, pi, set)];
    for (const u of pi.units) {
      const g = f.get(u.unit)!;
      const want = projectRowsReference({ unit: u.unit, ...u.projection! }, g.data, g.n);
      const scale = Math.max(1e-30, ...want.map(Math.abs));
      t.true(want.every((v, q) => Math.abs(p.get(u.unit)!.data[q] - v) <= 1e-5 * scale), `${set} ${u.unit}`);
    }
    const [fe, pe] = [await readEmbeddingSet(store, fi, set), await readEmbeddingSet(store, pi, set)];
    fe.samples.forEach((s, i) => {
      const want = projectRowsReference({ unit: pi.embedding!.unit, ...pi.embedding!.projection! }, s.values, s.rows.length);
      const scale = Math.max(1e-30, ...want.map(Math.abs));
      t.true(want.every((v, q) => Math.abs(pe.samples[i].values[q] - v) <= 1e-5 * scale), `${set} WE sample ${i}`);
    });
  }
  const scoresOf = async (g: ArtifactRef) => {
    const r = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { ...slice, method: { id: 'tracin', influence: 'tracin', dampingScale: 0.1 } }, { gradients: g }));
    const { tensors } = parseSafetensorsBytes(await store.read(r, 'scores.safetensors'), 'scores');
    return new Map([...tensors].map(([name, x]) => [name, rawToFloat32(x, name)]));
  };
  t.true([...(await scoresOf(sp)).values()].every((x) => x.every(Number.isFinite)), 'the influence stage reads the sparse store');
  // Calibrated on the influence set, the random part (here sparse) only ever meets a zero residual on
  // the influence side: every TracIn entry of the dense units equals the full store's.
  const cal = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3, projection: { factor: 4, seed: 3, matrix: 'sjlt', calibration: 'influence' } }), slice, { data: ds, finetune: ft }));
  const ci = await readGradientIndex(store, cal);
  t.true(ci.units.every((u) => u.projection?.kind === 'calibrated' && u.projection.generator === SJLT_GENERATOR));
  const [exact, calibrated] = [await scoresOf(full), await scoresOf(cal)];
  let worst = 0;
  for (const [name, x] of exact) {
    if (name.includes('embed_tokens')) continue;
    const y = calibrated.get(name)!, scale = Math.max(1e-30, ...x.map(Math.abs));
    x.forEach((v, q) => { worst = Math.max(worst, Math.abs(y[q] - v) / scale); });
  }
  t.true(worst < 1e-4, `TracIn on the influence-calibrated sparse store off by ${worst} of the largest score`);
  // and the random part of a calibrated row is the sparse projection of its residual
  const basis = await readBasis(store, ci);
  const [f, p] = [await readDenseSet(store, fi, 'train'), await readDenseSet(store, ci, 'train')];
  for (const u of ci.units) {
    const g = f.get(u.unit)!, pr = u.projection!, r = pr.rank!, U = basis.get(u.unit)!;
    const C = new Float64Array(g.n * r), R = Float64Array.from(g.data);
    for (let i = 0; i < g.n; i++) for (let c = 0; c < r; c++) {
      let s = 0;
      for (let j = 0; j < pr.from; j++) s += g.data[i * pr.from + j] * U[j * r + c];
      C[i * r + c] = s;
      for (let j = 0; j < pr.from; j++) R[i * pr.from + j] -= s * U[j * r + c];
    }
    const Z = projectRowsReference(randomPart(u.unit, pr), R, g.n), got = p.get(u.unit)!.data;
    const scale = Math.max(1e-30, ...g.data.map(Math.abs)) * Math.sqrt(pr.from);
    let off = 0;
    for (let i = 0; i < g.n; i++) {
      for (let c = 0; c < r; c++) off = Math.max(off, Math.abs(got[i * pr.to + c] - C[i * r + c]));
      for (let c = 0; c < pr.to - r; c++) off = Math.max(off, Math.abs(got[i * pr.to + r + c] - Z[i * (pr.to - r) + c]));
    }
    t.true(off <= 1e-4 * scale, `${u.unit}: calibrated row off by ${off}`);
  }
});
