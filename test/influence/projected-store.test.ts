/**
 * The compressed (projected) gradient store end to end without services: the shard round trip with
 * projected units, index checks (format /2 read, format /1 still read, inconsistent records refused),
 * the `influence` stage on a projected store (λ from the original size, the projection recorded) and
 * `layer_scores` after it, the `gradients` stage with `projection` on the tiny model (stored values =
 * the projection of the full gradients), and the cache key (the setting keys `gradients` and what
 * follows; absent, keys are what they were).
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkGradientIndex, decodeShard, encodeShard, isProjected, originalD, readDenseSet, readEmbeddingSet, readGradientIndex, readShard,
  GRADIENT_STORE_FORMAT, GRADIENT_STORE_FORMAT_COMPRESSED, type DecodedShard, type GradientIndex, type GradientUnit,
} from '../../src/influence/gradient-store.ts';
import { SJLT_GENERATOR, projectedDamping, ProjectionSettings, projectRowsReference, unitProjection } from '../../src/influence/projection.ts';
import { influenceMatrixReference } from '../../src/influence/reference-matrix.ts';
import { sparseInfluenceMatrix, sparseNormSq, type SparseRowGradient } from '../../src/influence/sparse-rows.ts';
import { ArtifactStore, refOf, type ArtifactRef } from '../../src/store/artifacts.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../../src/weights/safetensors.ts';
import { DataError } from '../../src/errors.ts';
import { createRng } from '../../src/data/random.ts';
import { influence, InfluenceSettings, type ScoresMeta } from '../../activities/influence.ts';
import { layer_scores, LayerScoreSettings, type LayerScoresJson } from '../../activities/layer-scores.ts';
import { gradients, GradientSettings } from '../../activities/gradients.ts';
import { ctxOf, run, tinySweepYaml, tinyUpstream } from './_tiny-stages.ts';
import { ndr, NdrSettings } from '../../activities/ndr.ts';
import { parseSweep } from '../../src/config/sweep.ts';
import { planSweep } from '../../src/config/plan.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { ndrDef } from '../../pipelines/ndr.ts';


// ---- a synthetic store: original gradients of low rank (as per-example gradients are), projected ----

const ORIGINAL: GradientUnit[] = [
  { unit: 'l0.q.A', layer: 0, kind: 'block', d: 96, shape: [4, 24] },
  { unit: 'l0.q.B', layer: 0, kind: 'block', d: 48, shape: [12, 4] },
  { unit: 'l1.q.A', layer: 1, kind: 'block', d: 96, shape: [4, 24] },
  { unit: 'score.weight', layer: 2, kind: 'classifier', d: 10, shape: [2, 5] },
];
const D = 16, VOCAB = 50;

/** Rows g_i = Σ_r c_ir b_r (rank 3) + small noise: what a projection must keep the ranking of. */
function lowRank(rows: number, d: number, seed: number): Float32Array {
  const r = createRng(seed);
  const basis = Array.from({ length: 3 }, () => Float64Array.from({ length: d }, () => r.normal()));
  const out = new Float32Array(rows * d);
  for (let i = 0; i < rows; i++) {
    const c = [r.normal(), r.normal(), r.normal()];
    for (let p = 0; p < d; p++) out[i * d + p] = c[0] * basis[0][p] + c[1] * basis[1][p] + c[2] * basis[2][p] + 0.05 * r.normal();
  }
  return out;
}

function originalShard(rows: number, seed: number): DecodedShard {
  const r = createRng(seed + 1000);
  return {
    rows,
    losses: Float32Array.from({ length: rows }, () => r.next()),
    dense: new Map(ORIGINAL.map((u, q) => [u.unit, lowRank(rows, u.d, seed * 10 + q)])),
    embedding: Array.from({ length: rows }, (_, i): SparseRowGradient => {
      const ids = [...new Set([i % 7, 3, 10 + (i % 5), 40])].sort((a, b) => a - b);
      return { rows: Int32Array.from(ids), values: Float32Array.from({ length: ids.length * D }, () => r.normal()) };
    }),
  };
}

const settings = ProjectionSettings.parse({ factor: 4, seed: 11 });
const STORED: GradientUnit[] = ORIGINAL.map((u) => {
  const projection = unitProjection(u.unit, u.d, settings);
  return projection ? { ...u, d: projection.to, projection } : u;
});
const WE_PROJ = unitProjection('emb', D, settings, 'rademacher-rows')!;
const EMB_ORIGINAL = { unit: 'emb', layer: -1, kind: 'embedding' as const, d: VOCAB * D, shape: [VOCAB, D], D, vocab: VOCAB };
const EMB_STORED = { ...EMB_ORIGINAL, D: WE_PROJ.to, d: VOCAB * WE_PROJ.to, projection: WE_PROJ };

function project(s: DecodedShard): DecodedShard {
  const dense = new Map<string, Float32Array>();
  for (const u of STORED) {
    const g = s.dense.get(u.unit)!;
    dense.set(u.unit, u.projection ? Float32Array.from(projectRowsReference({ unit: u.unit, ...u.projection }, g, s.rows)) : g);
  }
  const embedding = s.embedding!.map((e) => ({ rows: e.rows, values: Float32Array.from(projectRowsReference({ unit: 'emb', ...WE_PROJ }, e.values, e.rows.length)) }));
  return { rows: s.rows, losses: s.losses, dense, embedding };
}

/** Commit a gradient store (train shards of 5 rows, then influence shards) and its index; returns the ref. */
async function commitStore(store: ArtifactStore, key: string, shards: Array<{ set: 'train' | 'influence'; s: DecodedShard }>, projected: boolean, keepNorms = false): Promise<{ ref: ArtifactRef; index: GradientIndex }> {
  const units = projected ? STORED : ORIGINAL, emb = projected ? EMB_STORED : EMB_ORIGINAL;
  const entries = [];
  const offsets = { train: 0, influence: 0 };
  for (const [i, { set, s }] of shards.entries()) {
    const f = await store.commitShard(key, i, encodeShard(projected ? { ...project(s), ...(keepNorms && s.normSq ? { normSq: s.normSq } : {}) } : s, units, emb.D));
    entries.push({ ...f, index: i, set, rowOffset: offsets[set], rows: s.rows });
    offsets[set] += s.rows;
  }
  const index: GradientIndex = {
    format: projected ? GRADIENT_STORE_FORMAT_COMPRESSED : GRADIENT_STORE_FORMAT, dtype: 'F32', shardSize: 5, units, embedding: emb, loss: 'test',
    ...(projected ? { projection: settings } : {}),
    sets: { train: { n: offsets.train, shards: entries.filter((e) => e.set === 'train') }, influence: { n: offsets.influence, shards: entries.filter((e) => e.set === 'influence') } },
  };
  const m = await store.commit({ key, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: { 'index.json': JSON.stringify(index) } });
  return { ref: refOf(m), index };
}

const SHARDS = [{ set: 'train' as const, s: originalShard(5, 1) }, { set: 'train' as const, s: originalShard(4, 2) }, { set: 'influence' as const, s: originalShard(3, 3) }];


test('a shard with projected units round-trips; the index says stored and original sizes', async (t) => {
  t.deepEqual(STORED.map((u) => u.d), [24, 12, 24, 3]);
  const s = project(originalShard(5, 1));
  const back = decodeShard(encodeShard(s, STORED, EMB_STORED.D), STORED, 'shard', EMB_STORED.D);
  for (const u of STORED) t.deepEqual(back.dense.get(u.unit), s.dense.get(u.unit));
  t.deepEqual(back.embedding!.map((e) => [...e.values]), s.embedding!.map((e) => [...e.values]));
  const dir = await mkdtemp(join(tmpdir(), 'lf-proj-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(dir);
  const { ref, index } = await commitStore(store, 'kp', SHARDS, true);
  const read = await readGradientIndex(store, ref);
  t.true(isProjected(read));
  t.deepEqual(read.units.map((u) => [u.d, originalD(u)]), [[24, 96], [12, 48], [24, 96], [3, 10]]);
  t.deepEqual(read.units[0].projection, { kind: 'rademacher', generator: SJLT_GENERATOR, seed: 11, from: 96, to: 24 });
  t.is(originalD(read.embedding!), VOCAB * D);
  t.is(read.embedding!.D, 4);
  t.is((await readDenseSet(store, index, 'train')).get('l0.q.A')!.data.length, 9 * 24);
  t.is((await readEmbeddingSet(store, index, 'influence')).samples[0].values.length, 4 * 4);
});

test('BF16 values: half the bytes, every value within bfloat16 rounding (2⁻⁸ relative), read back as float32', async (t) => {
  const s = project(originalShard(200, 4));
  const [f32, bf16] = [encodeShard(s, STORED, EMB_STORED.D), encodeShard(s, STORED, EMB_STORED.D, 'BF16')];
  t.true(bf16.length < 0.6 * f32.length, `${f32.length} → ${bf16.length} bytes`);
  const back = decodeShard(bf16, STORED, 'shard', EMB_STORED.D);
  t.deepEqual(back.losses, s.losses); // losses stay F32
  const within = (a: Float32Array, b: ArrayLike<number>) => a.every((v, q) => Math.abs(v - b[q]) <= 2 ** -8 * Math.abs(b[q]));
  for (const u of STORED) t.true(within(back.dense.get(u.unit)!, s.dense.get(u.unit)!), u.unit);
  t.true(back.embedding!.every((e, i) => within(e.values as Float32Array, s.embedding![i].values)));
  t.false(back.dense.get('l0.q.A')!.every((v, q) => v === s.dense.get('l0.q.A')![q]), 'rounded, not copied');
});

test('index checks: format /1 is read as before; inconsistent or unknown records are DataErrors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-proj-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(dir);
  const { index: plain } = await commitStore(store, 'k1', SHARDS, false);
  t.is(checkGradientIndex(plain), plain);
  t.false(isProjected(plain));
  t.is(originalD(plain.units[0]), 96);
  const { index: proj } = await commitStore(store, 'k2', SHARDS, true);
  const bad = (f: (x: GradientIndex) => void, re: RegExp) => {
    const x = structuredClone(proj);
    f(x);
    t.throws(() => checkGradientIndex(x), { instanceOf: DataError, message: re });
  };
  bad((x) => { x.format = 'layerflow.gradients/9' as never; }, /format "layerflow.gradients\/9"/);
  bad((x) => { x.format = GRADIENT_STORE_FORMAT; }, /l0.q.A has a projection record, but format/);
  bad((x) => { x.units[0].d = 25; }, /l0.q.A is projected to 24 values but stores 25/);
  bad((x) => { x.units[1].projection!.generator = 'other/1' as never; }, /generator "other\/1"/);
  bad((x) => { x.units[1].projection!.kind = 'rademacher-rows'; }, /expected rademacher or calibrated$/);
  bad((x) => { x.units[1].projection!.kind = 'calibrated'; x.units[1].projection!.rank = 2; }, /calibrated, but the index has no basis file record/);
  bad((x) => { x.units[1].projection!.kind = 'calibrated'; x.units[1].projection!.rank = x.units[1].d; x.basis = { index: 3, sha256: 'ab', size: 1, samples: 2, set: 'train' }; }, /rank \d+; expected an integer in/);
  bad((x) => { x.embedding!.d = 7; }, /embedding unit emb has d = 7/);
  bad((x) => { x.embedding!.D = 5; }, /emb is projected to 4 values but stores 5/);
  bad((x) => { x.dtype = 'F16' as never; }, /dtype "F16"; expected F32 or BF16/);
  const p1 = structuredClone(plain);
  p1.dtype = 'BF16';
  t.throws(() => checkGradientIndex(p1), { instanceOf: DataError, message: /stores F32 only/ });
});

test('the influence stage reads a projected store: λ from the original size, scores from the stored rows; layer_scores follows', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-proj-inf-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const { ref, index } = await commitStore(store, 'kg', SHARDS, true);
  const [train, val] = [await readDenseSet(store, index, 'train'), await readDenseSet(store, index, 'influence')];
  const [weT, weV] = [await readEmbeddingSet(store, index, 'train'), await readEmbeddingSet(store, index, 'influence')];
  for (const method of ['datainf', 'tracin'] as const) {
    const ctx = ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { method: { id: method, influence: method, dampingScale: 0.1 } }, { gradients: ref });
    const out = await run(influence, ctx);
    const meta = await store.readJson<ScoresMeta>(out, 'scores.json');
    const { tensors } = parseSafetensorsBytes(await store.read(out, 'scores.safetensors'), 'scores');
    for (const u of STORED) {
      const g = train.get(u.unit)!;
      let sum = 0;
      for (const x of g.data) sum += x * x;
      const lam = method === 'datainf' ? projectedDamping({ sumNormSq: sum, n: 9, originalD: originalD(u) }) : undefined;
      const entry = meta.units.find((x) => x.unit === u.unit)!;
      t.deepEqual(entry.projection, u.projection, u.unit);
      if (lam !== undefined) t.true(Math.abs(entry.lambda! / lam - 1) < 1e-6, `${u.unit}: λ ${entry.lambda} vs ${lam}`);
      // λ with the stored size would be originalD/d times larger: not what was used.
      const ref2 = influenceMatrixReference({ method, train: g, validation: val.get(u.unit)!, lambda: lam });
      const got = rawToFloat32(tensors.get(entry.tensor)!, entry.tensor);
      const scale = Math.max(...ref2.data.map(Math.abs));
      t.true(ref2.data.every((v, q) => Math.abs(got[q] - v) <= 1e-3 * scale), `${method} ${u.unit}`);
    }
    const we = meta.units.find((x) => x.unit === 'emb')!;
    t.is(we.projection?.kind, 'rademacher-rows');
    const weLam = method === 'datainf' ? projectedDamping({ sumNormSq: weT.samples.reduce((a, s) => a + sparseNormSq(s), 0), n: 9, originalD: VOCAB * D }) : undefined;
    if (weLam !== undefined) t.true(Math.abs(we.lambda! / weLam - 1) < 1e-9);
    const weRef = sparseInfluenceMatrix({ method, train: weT, validation: weV, lambda: weLam });
    const weGot = rawToFloat32(tensors.get(we.tensor)!, we.tensor);
    t.true(weRef.data.every((v, q) => Math.abs(weGot[q] - v) <= 1e-4 * (1 + Math.abs(v))), `${method} WE`);
    // layer_scores reads the influence artifact as it always did.
    const ls = await run(layer_scores, ctxOf(store, home, 'layer_scores', LayerScoreSettings.parse({}), {}, { influence: out }));
    const layers = (await store.readJson<LayerScoresJson>(ls, 'layer-scores.json')).layers;
    t.deepEqual(layers.map((l) => l.layer), [0, 1]);
    t.true(layers.every((l) => Number.isFinite(l.score)));
  }
});

test('a projected store whose shards keep the exact ‖g‖² gives DataInf exactly the unprojected λ', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-proj-n2-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const rowsSq = (g: ArrayLike<number>, rows: number, d: number) => Float64Array.from({ length: rows }, (_, i) => { let x = 0; for (let k = 0; k < d; k++) x += g[i * d + k] ** 2; return x; });
  // The projected shards as the gradients stage writes them: n2.<unit> = ‖g‖² of each original row.
  const withNorms = SHARDS.map(({ set, s }) => ({ set, s: { ...s, normSq: new Map([
    ...ORIGINAL.filter((u) => STORED.find((x) => x.unit === u.unit)!.projection).map((u) => [u.unit, rowsSq(s.dense.get(u.unit)!, s.rows, u.d)] as const),
    ['emb', Float64Array.from(s.embedding!, (e) => sparseNormSq(e))] as const,
  ]) } }));
  const projectedShard = project(withNorms[0].s);
  const back = decodeShard(encodeShard({ ...projectedShard, normSq: withNorms[0].s.normSq }, STORED, EMB_STORED.D), STORED, 'shard', EMB_STORED.D);
  t.deepEqual([...back.normSq!.keys()].sort(), [...withNorms[0].s.normSq.keys()].sort());
  for (const [k, v] of withNorms[0].s.normSq) t.deepEqual([...back.normSq!.get(k)!], [...v], k);
  const units = [...STORED.map((u) => u.unit), 'emb'];
  const { ref } = await commitStore(store, 'kn2', withNorms, true, true);
  const { ref: ref1 } = await commitStore(store, 'kn1', SHARDS, false);
  const lambdas = async (gradients: ArtifactRef) => {
    const out = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { method: { id: 'd', influence: 'datainf', dampingScale: 0.1 } }, { gradients }));
    return new Map((await store.readJson<ScoresMeta>(out, 'scores.json')).units.map((u) => [u.unit, u.lambda!]));
  };
  const [exact, original] = [await lambdas(ref), await lambdas(ref1)];
  for (const u of units) t.true(Math.abs(exact.get(u)! / original.get(u)! - 1) < 1e-5, `${u}: ${exact.get(u)} vs ${original.get(u)}`);
});

test('the influence stage on an unprojected (format /1) store is unchanged: the engine’s own λ', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-proj-inf1-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const { ref, index } = await commitStore(store, 'kg1', SHARDS, false);
  const train = await readDenseSet(store, index, 'train'), val = await readDenseSet(store, index, 'influence');
  const out = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { method: { id: 'd', influence: 'datainf', dampingScale: 0.1 } }, { gradients: ref }));
  const meta = await store.readJson<ScoresMeta>(out, 'scores.json');
  for (const u of ORIGINAL) {
    const entry = meta.units.find((x) => x.unit === u.unit)!;
    t.is(entry.projection, undefined);
    const r = influenceMatrixReference({ method: 'datainf', train: train.get(u.unit)!, validation: val.get(u.unit)! });
    t.true(Math.abs(entry.lambda! / r.lambda! - 1) < 1e-5, u.unit);
  }
});

test('the gradients stage with projection and BF16 (tiny model): each stored row is the projection of the full gradient', async (t) => {
  const { home, store, slice, ds, ft } = await tinyUpstream(t, 'lf-proj-stage-');
  const full = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 5 }), slice, { data: ds, finetune: ft }));
  const pSettings = GradientSettings.parse({ shardSize: 5, projection: { factor: 8, seed: 3 }, dtype: 'BF16' });
  const pctx = ctxOf(store, home, 'gradients', pSettings, slice, { data: ds, finetune: ft });
  const res = await gradients(pctx);
  const proj = refOf(await store.commit({ key: pctx.key, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: res.files }));
  const [fi, pi] = [await readGradientIndex(store, full), await readGradientIndex(store, proj)];
  t.is(fi.format, GRADIENT_STORE_FORMAT);
  t.is(pi.format, GRADIENT_STORE_FORMAT_COMPRESSED);
  t.is(pi.dtype, 'BF16');
  t.deepEqual(pi.projection, { factor: 8, seed: 3, embedding: true, matrix: 'sjlt' });
  t.true(pi.units.every((u, q) => u.projection?.from === fi.units[q].d && u.d === Math.ceil(fi.units[q].d / 8)));
  t.is(pi.embedding!.projection!.from, fi.embedding!.D);
  t.true((res.metrics!.projection_seconds as number) > 0);
  t.is(res.metrics!.dense_values_original, fi.units.reduce((a, u) => a + u.d, 0));
  // Kept norms stand in for the engine's norm pass only where they are the stored rows' norms: the full
  // F32 store, not the projected (nor BF16) one, whose DataInf must weight rows by their stored norms.
  const [fullTrain, projTrain] = [await readDenseSet(store, fi, 'train'), await readDenseSet(store, pi, 'train')];
  for (const [unit, g] of fullTrain) {
    const want = Array.from({ length: g.n }, (_, i) => { let x = 0; for (let k = 0; k < g.d; k++) x += g.data[i * g.d + k] ** 2; return x; });
    t.true(!!g.normSq && want.every((x, i) => Math.abs(g.normSq![i] - x) <= 1e-9 * (1 + x)), `full store ${unit}: normSq`);
    t.is(projTrain.get(unit)!.normSq, undefined, `projected store ${unit}: no normSq`);
  }
  const bytes = (ix: GradientIndex) => [...ix.sets.train.shards, ...ix.sets.influence.shards].reduce((a, s) => a + s.size, 0);
  t.true(bytes(fi) > 8 * bytes(pi), `store bytes ${bytes(fi)} → ${bytes(pi)}`);
  for (const set of ['train', 'influence'] as const) {
    const [f, p] = [await readDenseSet(store, fi, set), await readDenseSet(store, pi, set)];
    for (const u of pi.units) {
      const g = f.get(u.unit)!;
      const want = projectRowsReference({ unit: u.unit, ...u.projection! }, g.data, g.n);
      const got = p.get(u.unit)!.data;
      const scale = Math.max(1e-30, ...want.map(Math.abs));
      // float32 matmul rounding + bfloat16 rounding of the stored value
      t.true(want.every((v, q) => Math.abs(got[q] - v) <= (2 ** -8 + 1e-5) * Math.abs(v) + 1e-5 * scale), `${set} ${u.unit}`);
    }
    const [fe, pe] = [await readEmbeddingSet(store, fi, set), await readEmbeddingSet(store, pi, set)];
    fe.samples.forEach((s, i) => {
      t.deepEqual([...pe.samples[i].rows], [...s.rows]);
      const want = projectRowsReference({ unit: pi.embedding!.unit, ...pi.embedding!.projection! }, s.values, s.rows.length);
      const scale = Math.max(1e-30, ...want.map(Math.abs));
      t.true(want.every((v, q) => Math.abs(pe.samples[i].values[q] - v) <= (2 ** -8 + 1e-5) * Math.abs(v) + 1e-5 * scale), `${set} WE sample ${i}`);
    });
  }
  // The stage keeps each row's exact ‖g‖² beside the projected rows, so DataInf's λ on the projected
  // store is the full store's (not an estimate): the stored norms equal the full rows' norms.
  for (const set of ['train', 'influence'] as const) {
    const f = await readDenseSet(store, fi, set), fe = await readEmbeddingSet(store, fi, set);
    const shards = await Promise.all(pi.sets[set].shards.map((sh) => readShard(store, pi, sh)));
    for (const u of pi.units) {
      const stored = shards.flatMap((d) => [...d.normSq!.get(u.unit)!]);
      const g = f.get(u.unit)!;
      const want = Array.from({ length: g.n }, (_, i) => { let x = 0; for (let k = 0; k < g.d; k++) x += g.data[i * g.d + k] ** 2; return x; });
      t.true(stored.length === want.length && stored.every((x, i) => Math.abs(x - want[i]) <= 1e-9 * (1 + want[i])), `${set} ${u.unit}`);
    }
    const storedWe = shards.flatMap((d) => [...d.normSq!.get(pi.embedding!.unit)!]);
    t.true(storedWe.every((x, i) => Math.abs(x - sparseNormSq(fe.samples[i])) <= 1e-9 * (1 + x)), `${set} WE`);
  }

  // ndr on either store: the cancellation effect of a projected store is named as the JL estimate it is.
  const method = { method: { id: 'tracin', influence: 'tracin', dampingScale: 0.1 } };
  const ndrOn = async (grads: ArtifactRef) => {
    const inf = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { ...slice, ...method }, { gradients: grads }));
    return (await ndr(ctxOf(store, home, 'ndr', NdrSettings.parse({}), { ...slice, ...method }, { data: ds, finetune: ft, gradients: grads, influence: inf }))).metrics ?? {};
  };
  const [mf, mp] = [await ndrOn(full), await ndrOn(proj)];
  const names = (m: Record<string, number>, prefix: string) => Object.keys(m).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)).sort();
  t.true(names(mf, 'cancellation.').length > 0);
  t.deepEqual(names(mp, 'cancellation.'), []);
  t.deepEqual(names(mp, 'cancellation_jl.'), names(mf, 'cancellation.'));
});

test('cache key: projection keys gradients and what follows, not what precedes; absent, the slice has no trace of it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-proj-plan-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const yaml = (grad: string) => tinySweepYaml('ndr', { gradients: grad });
  const plan = async (grad: string) => planSweep(await parseSweep(join(dir, 'sweep.yaml'), yaml(grad), { ndr: ndrDef }), ndrDef).cells[0];
  const key = (c: Awaited<ReturnType<typeof plan>>, s: string) => c.stages.find((x) => x.name === s)!;
  const none = await plan('{ shardSize: 16 }');
  const a = await plan('{ shardSize: 16, projection: { factor: 16, seed: 1 } }');
  const b = await plan('{ shardSize: 16, projection: { factor: 16, seed: 2 } }');
  const c = await plan('{ shardSize: 16, projection: { dim: 144, seed: 1 } }');
  const h = await plan('{ shardSize: 16, dtype: BF16 }');
  t.not(key(h, 'gradients').key, key(none, 'gradients').key);
  t.is(key(await plan('{ shardSize: 16, projection: { factor: 16, seed: 1 } }'), 'gradients').key, key(a, 'gradients').key, 'same settings, same key');
  t.false('projection' in (key(none, 'gradients').parts.slice.settings as object));
  t.is(key(a, 'finetune').key, key(none, 'finetune').key);
  for (const s of ['gradients', 'influence', 'ndr']) {
    t.not(key(a, s).key, key(none, s).key, s);
    t.not(key(a, s).key, key(b, s).key, s);
    t.not(key(a, s).key, key(c, s).key, s);
  }
  t.deepEqual((key(a, 'gradients').parts.slice.settings as { projection: unknown }).projection, { factor: 16, seed: 1, embedding: true, matrix: 'sjlt' });
  const err = await parseSweep(join(dir, 'sweep.yaml'), yaml('{ projection: { dim: 8, factor: 4 } }'), { ndr: ndrDef }).then(() => undefined, (e: unknown) => e);
  t.true(err instanceof SweepConfigError);
  t.regex((err as SweepConfigError).message, /stages\.gradients\.projection.*exactly one of dim/);
  const err2 = await parseSweep(join(dir, 'sweep.yaml'), yaml('{ projection: { dim: 8, sed: 4 } }'), { ndr: ndrDef }).then(() => undefined, (e: unknown) => e);
  t.true(err2 instanceof SweepConfigError);
  t.regex((err2 as SweepConfigError).message, /unknown setting "sed"/);
  // calibration keys gradients and what follows; a bad value names the field and what is expected
  const cal = await plan('{ shardSize: 16, projection: { factor: 16, seed: 1, calibration: 16 } }');
  const inf = await plan('{ shardSize: 16, projection: { factor: 16, seed: 1, calibration: influence } }');
  for (const s of ['gradients', 'influence', 'ndr']) {
    t.not(key(cal, s).key, key(a, s).key, s);
    t.not(key(cal, s).key, key(inf, s).key, s);
  }
  t.is(key(cal, 'finetune').key, key(a, 'finetune').key);
  const err3 = await parseSweep(join(dir, 'sweep.yaml'), yaml('{ projection: { factor: 4, calibration: inflence } }'), { ndr: ndrDef }).then(() => undefined, (e: unknown) => e);
  t.true(err3 instanceof SweepConfigError);
  t.regex((err3 as SweepConfigError).message, /stages\.gradients\.projection\.calibration: expected a number of training samples .* or "influence"/);
});
