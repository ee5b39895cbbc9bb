/**
 * DataInf's λ from the gradient store's index (`trainNormSqSum`, written by the gradients stage from
 * each shard record's per-unit Σ‖g‖²): the sums equal the exact gradients' (dense and WE), the index's
 * shard entries do not repeat them, a record without sums leaves the index without them; the influence
 * stage's DataInf scores and λ with the index sums equal those computed without them (the shard pass /
 * the engine's own), on an unprojected F32 store and on a projected one; the passes over the shards
 * with and without the shard cache; and the stage refusing a non-finite gradient (found through the
 * row norms it keeps).
 */
import test from 'ava';
import { gradients, GradientSettings } from '../../activities/gradients.ts';
import { finetune, FinetuneSettings } from '../../activities/finetune.ts';
import { indexLambdas, influence, InfluenceSettings, type ScoresMeta } from '../../activities/influence.ts';
import { readDenseSet, readEmbeddingSet, readGradientIndex, shardCacheBudget, trainNormSqSums, type GradientIndex } from '../../src/influence/gradient-store.ts';
import { ConfigError, DataError } from '../../src/errors.ts';
import { sparseNormSq } from '../../src/influence/sparse-rows.ts';
import { refOf, type ArtifactRef, type ArtifactStore } from '../../src/store/artifacts.ts';
import { parseSafetensorsBytes, rawToFloat32, serializeSafetensors } from '../../src/weights/safetensors.ts';
import { ctxOf, run, tinyUpstream } from './_tiny-stages.ts';

/** A copy of a store's index committed under a new key, edited (same shards). */
async function withIndex(store: ArtifactStore, ref: ArtifactRef, key: string, edit: (ix: GradientIndex) => void): Promise<ArtifactRef> {
  const ix = await readGradientIndex(store, ref);
  edit(ix);
  return refOf(await store.commit({ key, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: { 'index.json': JSON.stringify(ix) } }));
}

test('the index keeps Σ‖g‖² of the training set per unit; DataInf with λ from it equals DataInf without (F32 and projected stores)', async (t) => {
  const { home, store, slice, ds } = await tinyUpstream(t, 'lf-index-lambda-');
  // Three epochs, so that LoRA A's gradients are not all zero (B starts at zero) and DataInf's λ > 0.
  const ft = await run(finetune, ctxOf(store, home, 'finetune', FinetuneSettings.parse({ epochs: 3, batchSize: 4, microBatchSize: 4, maxLength: 12 }), slice, { data: ds }));
  const full = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3 }), slice, { data: ds, finetune: ft }));
  const proj = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3, projection: { factor: 4, seed: 2 } }), slice, { data: ds, finetune: ft }));
  const fi = await readGradientIndex(store, full);
  t.truthy(fi.trainNormSqSum);
  t.true(fi.sets.train.shards.every((s) => !(s.meta && 'normSqSum' in s.meta)), 'index entries do not repeat the sums');
  const train = await readDenseSet(store, fi, 'train');
  for (const u of fi.units) {
    const g = train.get(u.unit)!;
    let want = 0;
    for (let q = 0; q < g.data.length; q++) want += g.data[q] ** 2;
    t.true(Math.abs(fi.trainNormSqSum![u.unit] - want) <= 1e-9 * (1 + want), `${u.unit}: ${fi.trainNormSqSum![u.unit]} vs ${want}`);
  }
  const we = await readEmbeddingSet(store, fi, 'train');
  const weWant = we.samples.reduce((a, x) => a + sparseNormSq(x), 0);
  t.true(Math.abs(fi.trainNormSqSum![fi.embedding!.unit] - weWant) <= 1e-9 * (1 + weWant), 'WE');
  // the projected store's sums are the exact (unprojected) gradients' too
  const pi = await readGradientIndex(store, proj);
  t.deepEqual(Object.keys(pi.trainNormSqSum!).sort(), Object.keys(fi.trainNormSqSum!).sort());
  for (const [u, x] of Object.entries(fi.trainNormSqSum!)) t.true(Math.abs(pi.trainNormSqSum![u] - x) <= 1e-9 * (1 + x), u);
  // a record without sums (a store from before): no index sums
  t.is(trainNormSqSums([...fi.sets.train.shards, { sha256: 'x', size: 1, meta: { set: 'train', rows: 1 } }], Object.keys(fi.trainNormSqSum!)), undefined);

  const scores = async (g: ArtifactRef) => {
    const r = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { ...slice, method: { id: 'datainf', influence: 'datainf', dampingScale: 0.1 } }, { gradients: g }));
    const meta = await store.readJson<ScoresMeta>(r, 'scores.json');
    const { tensors } = parseSafetensorsBytes(await store.read(r, 'scores.safetensors'), 'scores');
    return { meta, tensors: new Map([...tensors].map(([name, x]) => [name, rawToFloat32(x, name)])) };
  };
  for (const [what, ref] of [['F32', full], ['projected', proj]] as const) {
    const ix = await readGradientIndex(store, ref);
    t.truthy(indexLambdas(ix, 0.1), `${what}: λ from the index`);
    const without = await withIndex(store, ref, `no-sums-${what}`, (x) => { delete x.trainNormSqSum; });
    t.is(indexLambdas(await readGradientIndex(store, without), 0.1), undefined);
    const [a, b] = [await scores(ref), await scores(without)];
    const lam = new Map(b.meta.units.map((u) => [u.unit, u.lambda]));
    for (const u of a.meta.units) t.true(Math.abs(u.lambda! / lam.get(u.unit)! - 1) < 1e-9, `${what} ${u.unit}: λ ${u.lambda} vs ${lam.get(u.unit)}`);
    for (const [name, x] of b.tensors) {
      const y = a.tensors.get(name)!, scale = Math.max(1e-30, ...x.map(Math.abs));
      const off = Math.max(...x.map((v, q) => Math.abs(y[q] - v))) / scale;
      t.true(off < 1e-5, `${what} ${name}: off by ${off} of the largest score`);
    }
  }

  // Passes over the training shards: DataInf with λ from the index walks them twice (V Gᵀ with R = W G,
  // then R Gᵀ); the shard cache decodes each once, and without a budget (0) each pass reads them again.
  const shardsN = fi.sets.train.shards.length;
  const metricsOf = async (g: ArtifactRef) => (await influence(ctxOf(store, home, 'influence', InfluenceSettings.parse({}), { ...slice, method: { id: 'datainf', influence: 'datainf', dampingScale: 0.1 } }, { gradients: g }))).metrics!;
  const cached = await metricsOf(full);
  t.deepEqual([cached.shard_reads, cached.shard_cache_hits], [shardsN, shardsN]);
  const before = process.env.LAYERFLOW_SHARD_CACHE_MB;
  try {
    process.env.LAYERFLOW_SHARD_CACHE_MB = '0';
    const uncached = await metricsOf(full);
    t.deepEqual([uncached.shard_reads, uncached.shard_cache_hits], [2 * shardsN, 0]);
    const noSums = await metricsOf(await withIndex(store, full, 'no-sums-passes', (x) => { delete x.trainNormSqSum; }));
    t.is(noSums.shard_reads, 3 * shardsN, 'without the index sums: three passes');
    process.env.LAYERFLOW_SHARD_CACHE_MB = 'lots';
    t.throws(() => shardCacheBudget(), { instanceOf: ConfigError, message: /LAYERFLOW_SHARD_CACHE_MB="lots"/ });
  } finally {
    if (before === undefined) delete process.env.LAYERFLOW_SHARD_CACHE_MB;
    else process.env.LAYERFLOW_SHARD_CACHE_MB = before;
  }
});

test('the gradients stage refuses a non-finite gradient, naming the unit and sample (checked through the row norms it keeps)', async (t) => {
  const { home, store, slice, ds, ft } = await tinyUpstream(t, 'lf-nonfinite-');
  // The fine-tuned adapter with one LoRA B entry made NaN: every gradient through it is NaN.
  const hit = await store.lookup(ft.key);
  if (hit.status !== 'hit') throw new Error('no finetune artifact');
  const files: Record<string, Uint8Array> = {};
  for (const name of Object.keys(hit.manifest.files)) files[name] = await store.read(ft, name);
  const adapterName = Object.keys(files).find((n) => n.endsWith('.safetensors'))!;
  const { tensors, metadata } = parseSafetensorsBytes(files[adapterName], 'adapter');
  const bName = [...tensors.keys()].find((n) => n.includes('lora_B'))!;
  const values = new Map([...tensors].map(([name, x]) => [name, rawToFloat32(x, name)]));
  values.get(bName)![0] = NaN;
  files[adapterName] = serializeSafetensors(Object.fromEntries([...tensors].map(([name, x]) => [name, { dtype: 'F32' as const, shape: [...x.shape], values: values.get(name)! }])), metadata);
  const bad = refOf(await store.commit({ key: 'nan-adapter', parts: { stage: 'finetune', version: 1, slice: {}, upstream: {} }, kind: 'finetune', files }));
  const err = await gradients(ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3 }), slice, { data: ds, finetune: bad })).then(() => undefined, (e: unknown) => e);
  t.true(err instanceof DataError, String(err));
  t.regex((err as Error).message, /gradients: unit \S+, train sample 0 has a non-finite gradient/);
});
