/**
 * The LayerIF pipeline end to end on real Temporal and MLflow servers with the committed tiny
 * pretrained Llama on a real BIG-bench task (english_proverbs, fetched from PyPI bigbench): both
 * branches complete; the test recomputes the layer scores from the stored influence tensors and
 * the expert counts from them with its own lines, recomputes the MoE model's accuracy from the
 * stored per-option log-likelihoods, reloads the pruned model and measures its sparsity per block,
 * checks the base model's reference benchmark (benchmark_base) and the results text (acc, perplexity);
 * changing β or S re-runs only the allocation it belongs to and what follows (counted).
 */
import anyTest, { type TestFn } from 'ava';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { useStack, ledger, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep } from '../../src/cli/sweeps.ts';
import { layerifResults } from '../../src/cli/results.ts';
import { ArtifactStore, refOf, type Manifest } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../../src/weights/safetensors.ts';
import { loadModel } from '../../src/models/load.ts';
import { blockModules } from '../../src/models/lora.ts';
import type { SweepResult } from '../../workflows/sweep.ts';
import type { SweepPlan } from '../../src/config/plan.ts';

const test = anyTest as TestFn<{ stack: Stack }>;
const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

useStack(test);

const sweep = (name: string, over: { beta?: number; S?: number } = {}) => `sweep: ${name}
pipeline: layerif
concurrency: 1
models: [{ id: tiny, path: ${TINY} }]
tasks: [{ id: proverbs, source: bigbench, name: english_proverbs }]
methods: [{ id: datainf, influence: datainf }]
stages:
  data: { trainSize: 12, influenceSize: 6, evaluationSize: 16 }
  finetune: { epochs: 1, batchSize: 4, microBatchSize: 4, maxLength: 96 }
  gradients: { shardSize: 8, batchSize: 4 }
  influence: { validation: mean }
  allocate_experts: { allocator: layerif, total: 10, beta: ${over.beta ?? 3} }
  moe_finetune: { epochs: 1, batchSize: 4, microBatchSize: 4, rank: 2, alpha: 4, maxLength: 96 }
  benchmark_moe: { batchSize: 8, maxLength: 128 }
  allocate_sparsity: { allocator: layerif, sparsity: ${over.S ?? 0.5} }
  prune: { criterion: wanda, calibration: 8, calibrationLength: 32 }
  benchmark_pruned: { batchSize: 8, maxLength: 128, perplexityWindows: 4, perplexityLength: 32 }
  benchmark_base: { batchSize: 8, maxLength: 128, perplexityWindows: 4, perplexityLength: 32 }
`;

async function run(stack: Stack, name: string, text: string): Promise<{ plan: SweepPlan; result: SweepResult }> {
  const d = join(stack.dir, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'sweep.yaml'), text);
  const plan = await planFile(join(d, 'sweep.yaml'));
  const result = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  return { plan, result };
}

test.serial('e2e LayerIF: both branches on tiny-llama + BIG-bench english_proverbs; layer scores, experts, accuracy and sparsity recomputed from the artifacts', async (t) => {
  const { stack } = t.context;
  const { plan, result } = await run(stack, 'layerif', sweep('layerif'));
  t.is(result.succeeded, 1, JSON.stringify(result.cells));
  const store = new ArtifactStore(paths.store(stack.env.home));
  const man = async (s: string): Promise<Manifest> => {
    const r = await store.lookup(plan.cells[0].stages.find((x) => x.name === s)!.key);
    if (r.status !== 'hit') throw new Error(`no ${s}`);
    return r.manifest;
  };

  // Layer scores: per block, mean over its units of the influence on the mean validation gradient; +VE sum.
  // The sweep asks the influence stage for that mean directly (validation: mean): one row per unit.
  const inf = await man('influence');
  const meta = await store.readJson<{ n: number; m: number; validation?: string; units: Array<{ layer: number; kind: string; tensor: string }> }>(inf, 'scores.json');
  t.is(meta.validation, 'mean');
  const { tensors } = parseSafetensorsBytes(await store.read(inf, 'scores.safetensors'));
  t.deepEqual([...tensors.values()][0].shape, [1, meta.n]);
  const { n } = meta, m = 1;
  const blocks = [...new Set(meta.units.filter((u) => u.kind === 'block').map((u) => u.layer))].sort();
  const mine = blocks.map((l) => {
    const us = meta.units.filter((u) => u.kind === 'block' && u.layer === l).map((u) => rawToFloat32(tensors.get(u.tensor)!));
    let S = 0;
    for (let k = 0; k < n; k++) {
      let s = 0;
      for (const M of us) for (let j = 0; j < m; j++) s += M[j * n + k] / (m * us.length);
      if (s > 0) S += s;
    }
    return S;
  });
  const ls = await store.readJson<{ layers: Array<{ layer: number; score: number }> }>(await man('layer_scores'), 'layer-scores.json');
  t.is(ls.layers.length, 4);
  ls.layers.forEach((x, i) => t.true(Math.abs(x.score - mine[i]) <= 1e-6 * Math.max(1, Math.abs(mine[i])), `block ${i}: ${x.score} vs ${mine[i]}`));

  // Experts: w = S^β, f = w/Σw·(T − L), floor + 1, the rest by largest remainder (SCIENCE.md §3a).
  const T = 10, L = 4, w = mine.map((s) => s ** 3), sw = w.reduce((a, b) => a + b, 0);
  const f = w.map((x) => (x / sw) * (T - L));
  const counts = f.map((x) => Math.floor(x) + 1);
  const order = f.map((x, i) => i).sort((a, b) => (f[b] - Math.floor(f[b])) - (f[a] - Math.floor(f[a])) || a - b);
  for (let left = T - counts.reduce((a, b) => a + b, 0), i = 0; left > 0; left--, i++) counts[order[i]]++;
  const ex = await store.readJson<{ experts: number[] }>(await man('allocate_experts'), 'experts.json');
  t.deepEqual(ex.experts, counts);

  // MoE benchmark: accuracy recomputed from the stored per-option log-likelihoods.
  const bm = await man('benchmark_moe');
  const docs = (await store.readJson<{ docs: Array<{ gold: number[]; loglikelihoods: number[] }> }>(bm, 'benchmark.json')).docs;
  t.is(docs.length, 16);
  const acc = docs.filter((d) => d.gold.includes(d.loglikelihoods.indexOf(Math.max(...d.loglikelihoods)))).length / docs.length;
  t.is(bm.metrics.acc, acc);

  // The pruned model reloads as a normal model; its measured sparsity per block equals the allocation.
  const pr = await man('prune');
  const dir = join(stack.dir, 'pruned');
  await mkdir(dir, { recursive: true });
  for (const name of Object.keys(pr.files)) await writeFile(join(dir, name), await store.read(refOf(pr), name));
  const pruned = await loadModel({ id: 'tiny-pruned', path: dir });
  const { ratios } = await store.readJson<{ ratios: number[] }>(await man('allocate_sparsity'), 'sparsity.json');
  for (let l = 0; l < L; l++) {
    let zero = 0, size = 0;
    for (const mod of blockModules(pruned.config, l)) {
      const W = pruned.weights.get(`${mod.name}.weight`)!.data;
      for (const x of W) if (x === 0) zero++;
      size += W.length;
    }
    const tol = 1 / Math.min(...blockModules(pruned.config, l).map((x) => x.inF));
    t.true(Math.abs(zero / size - ratios[l]) <= tol, `block ${l}: measured ${zero / size}, allocated ${ratios[l]}`);
  }
  const bp = await man('benchmark_pruned');
  t.true(bp.metrics.perplexity > 1 && Number.isFinite(bp.metrics.perplexity));

  // The base model (benchmark_base: same implementation, same documents, no adapters, no pruning):
  // accuracy recomputed from its stored log-likelihoods, perplexity on the same windows as the pruned model's.
  const bb = await man('benchmark_base');
  const base = await store.readJson<{ model: string; docs: Array<{ id: string; gold: number[]; loglikelihoods: number[] }> }>(bb, 'benchmark.json');
  t.is(base.model, 'base');
  t.deepEqual(base.docs.map((d) => d.id), (await store.readJson<{ docs: Array<{ id: string }> }>(bm, 'benchmark.json')).docs.map((d) => d.id), 'the same held-out documents as the MoE benchmark');
  t.is(bb.metrics.acc, base.docs.filter((d) => d.gold.includes(d.loglikelihoods.indexOf(Math.max(...d.loglikelihoods)))).length / base.docs.length);
  t.true(bb.metrics.perplexity > 1 && bb.metrics.perplexity < bp.metrics.perplexity, `dense ${bb.metrics.perplexity} vs pruned at S = 0.5 ${bp.metrics.perplexity}`);

  const text = await layerifResults(stack.env, plan);
  t.regex(text, /layerif \+VE\s+\d\.\d{3}/);
  t.regex(text, /layerif \+VE \/ wanda \/ S=0\.5/);
  t.regex(text, /\n {2}base model \(no fine-tuning\) +\d\.\d{3}/);
  t.regex(text, /Pruned-model perplexity[^\n]*\n[^]*\n {2}dense base model \(S=0\) +\d+\.\d{3}/);
});

test.serial('e2e LayerIF: changing β re-runs only the expert branch; changing S only the pruning branch', async (t) => {
  const { stack } = t.context;
  const beta = await run(stack, 'layerif-beta', sweep('layerif-beta', { beta: 2 }));
  t.is(beta.result.succeeded, 1);
  const computed = async (s: string) => (await ledger(stack.env, s)).filter((l) => l.outcome === 'computed').map((l) => l.stage).sort();
  t.deepEqual(await computed('layerif-beta'), ['allocate_experts', 'benchmark_moe', 'moe_finetune']);
  const S = await run(stack, 'layerif-s', sweep('layerif-s', { S: 0.6 }));
  t.is(S.result.succeeded, 1);
  t.deepEqual(await computed('layerif-s'), ['allocate_sparsity', 'benchmark_pruned', 'prune']);
});

test.serial('e2e: an NDR sweep on a multiple-choice task, then a LayerIF sweep on the same model and task, reuse data, fine-tuning, gradients and influence', async (t) => {
  const { stack } = t.context;
  const shared = sweep('unused').split('\n').filter((l) => /^ {2}(finetune|gradients):/.test(l)).join('\n');
  const data = '  data: { noise: 0.25, trainSize: 12, influenceSize: 6, evaluationSize: 16 }';
  const head = (name: string, pipeline: string) => `sweep: ${name}\npipeline: ${pipeline}\nconcurrency: 1\nmodels: [{ id: tiny, path: ${TINY} }]\ntasks: [{ id: proverbs, source: bigbench, name: english_proverbs }]\nmethods: [{ id: datainf, influence: datainf }]\nstages:\n${data}\n${shared}\n`;
  const ndr = await run(stack, 'mc-ndr', head('mc-ndr', 'ndr') + '  retrain: { epochs: 1 }\n');
  t.is(ndr.result.succeeded, 1, JSON.stringify(ndr.result.cells));
  const store = new ArtifactStore(paths.store(stack.env.home));
  const key = (s: string) => ndr.plan.cells[0].stages.find((x) => x.name === s)!.key;
  const ds = await store.readJson<{ train: Array<{ gold: number[]; cleanGold?: number[] }>; noisyIds: number[] }>(refOf(((await store.lookup(key('data'))) as { manifest: Manifest }).manifest), 'dataset.json');
  t.is(ds.noisyIds.length, 3, '25% of 12 answers flipped');
  for (const i of ds.noisyIds) t.false(ds.train[i].cleanGold!.includes(ds.train[i].gold[0]));
  const nd = ((await store.lookup(key('ndr'))) as { manifest: Manifest }).manifest;
  t.true(nd.metrics.ndr30 >= 0 && nd.metrics.ndr30 <= 1);

  const lif = await run(stack, 'mc-layerif', head('mc-layerif', 'layerif') + sweep('x').split('\n').filter((l) => /^ {2}(allocate_experts|moe_finetune|benchmark_moe|allocate_sparsity|prune|benchmark_pruned):/.test(l)).join('\n') + '\n');
  t.is(lif.result.succeeded, 1, JSON.stringify(lif.result.cells));
  const lines = await ledger(stack.env, 'mc-layerif');
  const outcome = (s: string) => lines.filter((l) => l.stage === s).map((l) => l.outcome);
  for (const s of ['data', 'finetune', 'gradients', 'influence']) t.deepEqual(outcome(s), ['cached'], `${s} reused from the NDR sweep`);
  t.deepEqual(outcome('layer_scores'), ['started', 'computed']);
});
