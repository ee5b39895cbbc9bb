/**
 * The allocation and pruning stages on a fake context with the committed tiny Llama (no services):
 * `alphaFit` selects the α̂ fit of AlphaLoRA / AlphaPruning (authors' path by default, LayerFlow's
 * legacy fit as an option), is checked at plan time with the field named, and enters the stage's
 * cache key only where a sweep sets it; per-matrix layer scores are averaged per block before an
 * allocator reads them (one count / ratio per block, as moe_finetune and prune expect); the long
 * loops heartbeat progress; pruning block by block equals `pruneModel`.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSweep } from '../../src/config/sweep.ts';
import { planSweep } from '../../src/config/plan.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { DataError } from '../../src/errors.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { StageContext } from '../../src/store/stage-context.ts';
import { layerifDef } from '../../pipelines/layerif.ts';
import { allocate_experts, ExpertSettings } from '../../activities/experts.ts';
import { allocate_sparsity, SparsitySettings } from '../../activities/sparsity.ts';
import { prune, pruneByBlock, PruneSettings } from '../../activities/prune.ts';
import { layer_scores, LayerScoreSettings } from '../../activities/layer-scores.ts';
import { blockAlphas, hillOptionsFor, LEGACY_HILL_OPTIONS, matrixAlpha } from '../../src/allocation/alpha-hill.ts';
import { blockScores } from '../../src/allocation/block-scores.ts';
import { allocateExperts } from '../../src/allocation/experts.ts';
import { layerIfSparsity } from '../../src/allocation/sparsity.ts';
import { pruneModel, blockSizes } from '../../src/pruning/model.ts';
import { loadModel } from '../../src/models/load.ts';
import { blockModules } from '../../src/models/lora.ts';
import { serializeSafetensors, type TensorInput } from '../../src/weights/safetensors.ts';
import { progressOf } from '../../src/runtime/progress.ts';
import { createRng } from '../../src/data/random.ts';

const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

async function ctxWith<S>(t: ExecutionContext, stage: string, settings: S, slice: Record<string, unknown>, files: Record<string, string | Uint8Array> = {}): Promise<StageContext<S> & { beats: unknown[] }> {
  const home = await mkdtemp(join(tmpdir(), 'lf-alloc-stage-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const inputs: StageContext<S>['inputs'] = {};
  const byStage = new Map<string, Record<string, string | Uint8Array>>();
  for (const [k, v] of Object.entries(files)) {
    const [name, file] = k.split(':');
    byStage.set(name, { ...(byStage.get(name) ?? {}), [file]: v });
  }
  for (const [name, fs] of byStage) {
    const m = await store.commit({ key: `k-${name}`, parts: { stage: name, version: 1, slice: {}, upstream: {} }, kind: 'x', files: fs });
    inputs[name] = { key: m.key, stage: name, kind: 'x', files: m.files };
  }
  const beats: unknown[] = [];
  return { sweep: 's', cellId: 'c', stage, key: 'k', inputs, store, home, device: 'cpu:0', attempt: 1, heartbeat: (d) => beats.push(d), signal: new AbortController().signal, settings, slice, beats };
}

const model = { id: 'tiny', path: TINY };
const json = (x: unknown) => JSON.parse(x as string);

test('alphaFit: legacy changes α̂ (AlphaLoRA and AlphaPruning), each fit recomputed from the weights; progress over the matrices', async (t) => {
  const tiny = await loadModel(model);
  const alphasBy = (fit: 'authors' | 'legacy') => {
    const mats = [];
    for (let l = 0; l < 4; l++) for (const m of blockModules(tiny.config, l)) {
      const w = tiny.weights.get(`${m.name}.weight`)!;
      mats.push({ layer: l, alpha: matrixAlpha({ data: w.data, rows: w.dims[0], cols: w.dims[1] }, hillOptionsFor(fit)).alpha });
    }
    return blockAlphas(mats).map((b) => b.alpha);
  };
  const authors = alphasBy('authors'), legacy = alphasBy('legacy');
  t.deepEqual(hillOptionsFor('legacy'), { ...LEGACY_HILL_OPTIONS });
  t.true(authors.some((a, l) => Math.abs(a - legacy[l]) > 1e-6 * Math.abs(a)), `the two fits give different α̂ on the tiny model: ${authors} vs ${legacy}`);

  const experts = async (alphaFit?: 'authors' | 'legacy') => {
    const ctx = await ctxWith(t, 'allocate_experts', ExpertSettings.parse({ allocator: 'alphalora', total: 12, ...(alphaFit ? { alphaFit } : {}) }), { model });
    const out = await allocate_experts(ctx);
    return { file: json(out.files['experts.json']), beats: ctx.beats };
  };
  const def = await experts(), leg = await experts('legacy'), aut = await experts('authors');
  t.deepEqual(def.file.alphas, authors, 'default = authors');
  t.deepEqual(aut.file.alphas, authors);
  t.deepEqual(leg.file.alphas, legacy);
  t.is(def.file.alphaFit, 'authors');
  t.is(leg.file.alphaFit, 'legacy');
  // Heartbeats: progress over the 4 × 7 weight matrices (the memo may serve a later call without any).
  const prog = [...def.beats, ...leg.beats].map(progressOf).filter((p) => p !== undefined);
  t.true(prog.length > 0);
  t.true(prog.every((p) => p.total === 28 && p.unit === 'matrix'));
  t.true(prog.some((p) => p.done === 28));

  const sparsity = async (alphaFit?: 'legacy') => {
    const ctx = await ctxWith(t, 'allocate_sparsity', SparsitySettings.parse({ allocator: 'alphapruning', sparsity: 0.5, ...(alphaFit ? { alphaFit } : {}) }), { model, 'stages.prune.criterion': 'magnitude' });
    return json((await allocate_sparsity(ctx)).files['sparsity.json']);
  };
  const sd = await sparsity(), sl = await sparsity('legacy');
  t.deepEqual(sd.metric, authors);
  t.deepEqual(sl.metric, legacy);
  t.is(sl.alphaFit, 'legacy');
  t.notDeepEqual(sd.ratios, sl.ratios);
});

const SWEEP = (stages: string, axes = '') => `sweep: s\npipeline: layerif\nmodels: [{ id: tiny, path: ${TINY} }]\ntasks: [{ id: p, source: bigbench, name: english_proverbs }]\nmethods: [{ id: datainf, influence: datainf }]\nstages:\n${stages}\n${axes}`;

test('alphaFit: an invalid value is a plan-time error naming the field and the choices; in the cache key only when set', async (t) => {
  const d = await mkdtemp(join(tmpdir(), 'lf-alphafit-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  const file = join(d, 'sweep.yaml');
  await writeFile(file, '');
  for (const stage of ['allocate_experts', 'allocate_sparsity']) {
    const err = await parseSweep(file, SWEEP(`  ${stage}: { alphaFit: newest }`), { layerif: layerifDef }).then(() => undefined, (e: unknown) => e);
    t.true(err instanceof SweepConfigError, stage);
    const issue = (err as SweepConfigError).issues[0];
    t.is(issue.field, `stages.${stage}.alphaFit`);
    t.regex(issue.message, /authors/);
    t.regex(issue.message, /legacy/);
    // As a sweep axis too.
    const ax = await parseSweep(file, SWEEP('  data: {}', `axes:\n  stages.${stage}.alphaFit: [legacy, newest]\n`), { layerif: layerifDef }).then(() => undefined, (e: unknown) => e);
    t.true(ax instanceof SweepConfigError);
    t.regex((ax as SweepConfigError).issues[0].field, new RegExp(`alphaFit`));
    t.regex((ax as SweepConfigError).issues[0].message, /authors.*legacy|legacy.*authors/);
  }
  // Keys: omitted = as before the setting existed; legacy and explicit authors re-key the stage (and what follows it).
  const keyOf = async (stages: string, stage: string) => {
    const plan = planSweep(await parseSweep(file, SWEEP(stages), { layerif: layerifDef }), layerifDef);
    return Object.fromEntries(plan.cells[0].stages.map((s) => [s.name, s.key]))[stage] ?? '';
  };
  for (const [stage, alloc] of [['allocate_experts', 'alphalora'], ['allocate_sparsity', 'alphapruning']] as const) {
    const none = await keyOf(`  ${stage}: { allocator: ${alloc} }`, stage);
    const legacy = await keyOf(`  ${stage}: { allocator: ${alloc}, alphaFit: legacy }`, stage);
    t.not(none, legacy, stage);
    t.is(await keyOf(`  ${stage}: { allocator: ${alloc} }`, 'influence'), await keyOf(`  ${stage}: { allocator: ${alloc}, alphaFit: legacy }`, 'influence'), 'upstream keys unchanged');
  }
});

/** A layer-scores artifact of the tiny model: per-matrix (two units per block) with known scores. */
const PER_MATRIX = Array.from({ length: 4 }, (_, l) => [
  { layer: l, score: 1 + l, units: [`model.layers.${l}.self_attn.q_proj.lora_A`] },
  { layer: l, score: 3 + 2 * l * l, units: [`model.layers.${l}.self_attn.v_proj.lora_A`] },
]).flat();
const BLOCK_MEANS = [0, 1, 2, 3].map((l) => (1 + l + 3 + 2 * l * l) / 2);

test('per-matrix layer scores: the LayerIF allocators average them per block (one count / ratio per block), recorded in the artifact', async (t) => {
  const ls = JSON.stringify({ variant: '+VE', grouping: 'per-matrix', method: 'datainf', convention: 'positive = helpful', layers: PER_MATRIX });
  t.deepEqual(blockScores(PER_MATRIX, 'per-matrix'), { scores: BLOCK_MEANS, aggregation: 'mean-of-matrices' });

  const ex = await allocate_experts(await ctxWith(t, 'allocate_experts', ExpertSettings.parse({ allocator: 'layerif', total: 12 }), { model }, { 'layer_scores:layer-scores.json': ls }));
  const e = json(ex.files['experts.json']);
  t.is(e.experts.length, 4, 'one expert count per block, as moe_finetune expects');
  t.deepEqual(e.experts, allocateExperts({ scores: BLOCK_MEANS, total: 12, beta: 3 }).experts);
  t.deepEqual(e.scores, { grouping: 'per-matrix', aggregation: 'mean-of-matrices', scores: BLOCK_MEANS });

  const tiny = await loadModel(model);
  const sp = await allocate_sparsity(await ctxWith(t, 'allocate_sparsity', SparsitySettings.parse({ allocator: 'layerif', sparsity: 0.5 }), { model, 'stages.prune.criterion': 'magnitude' }, { 'layer_scores:layer-scores.json': ls }));
  const s = json(sp.files['sparsity.json']);
  t.is(s.ratios.length, 4);
  t.deepEqual(s.ratios, layerIfSparsity({ scores: BLOCK_MEANS, sizes: blockSizes(tiny.config), target: 0.5, epsilon: 0.3, clip: 'clip' }).sparsity);
  t.deepEqual(s.scores, { grouping: 'per-matrix', aggregation: 'mean-of-matrices' });

  // The layer_scores stage itself, per-matrix on a synthetic influence artifact → the allocator still gets 4 blocks.
  const n = 5, m = 2, rng = createRng(3);
  const units = [0, 1, 2, 3].flatMap((l) => ['q', 'v'].map((x) => ({ unit: `model.layers.${l}.self_attn.${x}_proj`, layer: l, kind: 'block', tensor: `t${l}${x}`, lambda: 0.1 })));
  const tensors: Record<string, TensorInput> = Object.fromEntries(units.map((u) => [u.tensor, { dtype: 'F32', shape: [m, n], values: Float32Array.from({ length: m * n }, () => rng.normal()) }]));
  const inf = { 'influence:scores.json': JSON.stringify({ n, m, method: 'datainf', convention: 'positive = helpful', units }), 'influence:scores.safetensors': serializeSafetensors(tensors) };
  const lsOut = await layer_scores(await ctxWith(t, 'layer_scores', LayerScoreSettings.parse({ grouping: 'per-matrix' }), {}, inf));
  t.is(json(lsOut.files['layer-scores.json']).layers.length, 8);
  const ex2 = await allocate_experts(await ctxWith(t, 'allocate_experts', ExpertSettings.parse({ allocator: 'layerif', total: 12 }), { model }, { 'layer_scores:layer-scores.json': lsOut.files['layer-scores.json'] as string }));
  t.is(json(ex2.files['experts.json']).experts.length, 4);
});

test('block scores: a missing block, or several entries per block in per-block scores, is a DataError; per-block scores pass unchanged', (t) => {
  t.deepEqual(blockScores([{ layer: 1, score: 2 }, { layer: 0, score: 5 }]), { scores: [5, 2], aggregation: 'as-is' });
  t.throws(() => blockScores([{ layer: 0, score: 1 }, { layer: 2, score: 1 }], 'per-matrix'), { instanceOf: DataError, message: /no score for block 1 of 0\.\.2/ });
  t.throws(() => blockScores([{ layer: 0, score: 1 }, { layer: 0, score: 2 }], 'per-block'), { instanceOf: DataError, message: /block 0 has 2 entries/ });
  t.throws(() => blockScores([]), { instanceOf: DataError });
});

test('layer scores covering fewer blocks than the model: a clear DataError in the allocator, not a shape error downstream', async (t) => {
  const ls = JSON.stringify({ variant: '+VE', grouping: 'per-block', method: 'datainf', convention: 'c', layers: [0, 1, 2].map((l) => ({ layer: l, score: l + 1, units: [] })) });
  const err = await t.throwsAsync(allocate_experts(await ctxWith(t, 'allocate_experts', ExpertSettings.parse({ allocator: 'layerif', total: 12 }), { model }, { 'layer_scores:layer-scores.json': ls })), { instanceOf: DataError });
  t.regex(err!.message, /cover 3 blocks; the model has 4/);
});

test('prune: block by block equals pruneModel (magnitude and Wanda), with progress per block; the stage commits the same weights', async (t) => {
  const tiny = await loadModel(model);
  const ratios = [0.3, 0.5, 0.6, 0.45];
  const rng = createRng(7);
  const norms = new Map<string, Float64Array>();
  for (let l = 0; l < 4; l++) for (const mod of blockModules(tiny.config, l)) norms.set(mod.name, Float64Array.from({ length: mod.inF }, () => Math.abs(rng.normal()) + 0.1));
  for (const criterion of ['magnitude', 'wanda'] as const) {
    const beats: unknown[] = [];
    const a = { config: tiny.config, weights: tiny.weights, ratios, criterion, norms: criterion === 'wanda' ? norms : undefined };
    const mine = await pruneByBlock({ stage: 'prune', heartbeat: (d) => beats.push(d), signal: new AbortController().signal }, a);
    const ref = pruneModel(a);
    t.deepEqual(mine.realised, ref.realised);
    t.deepEqual(mine.modules, ref.modules);
    for (const [k, v] of ref.weights) t.deepEqual(mine.weights.get(k)!.data, v.data, k);
    t.deepEqual(beats.map(progressOf).map((p) => p && [p.done, p.total, p.unit]), [0, 1, 2, 3, 4].map((d) => [d, 4, 'block']));
  }
  // Cancelled mid-way: stops with the abort reason.
  const ac = new AbortController();
  const cancelled = pruneByBlock({ stage: 'prune', heartbeat: (d) => { if (progressOf(d)?.done === 2) ac.abort(new Error('cancelled by test')); }, signal: ac.signal }, { config: tiny.config, weights: tiny.weights, ratios, criterion: 'magnitude' });
  await t.throwsAsync(cancelled, { message: 'cancelled by test' });
  // The stage (magnitude: no calibration) records the same realised sparsity.
  const ctx = await ctxWith(t, 'prune', PruneSettings.parse({ criterion: 'magnitude' }), { model }, { 'allocate_sparsity:sparsity.json': JSON.stringify({ ratios }) });
  const out = await prune(ctx);
  t.deepEqual(json(out.files['pruning.json']).realised, pruneModel({ config: tiny.config, weights: tiny.weights, ratios, criterion: 'magnitude' }).realised);
  t.true(ctx.beats.map(progressOf).some((p) => p?.unit === 'block' && p.done === 4));
});
