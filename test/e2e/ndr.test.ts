/**
 * The NDR pipeline end to end on a real Temporal dev server and a real MLflow server, with the
 * committed tiny pretrained Llama (configs/models/tiny-llama) on real SpamAssassin messages:
 * 2 methods × 2 aggregations; NDR@30 and AUC-NDR recomputed here from the stored score tensors and
 * the stored noisy ids; the gradient stage computed once for both methods (counted from the ledger).
 */
import anyTest, { type TestFn } from 'ava';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { useStack, ledger, drainTracking, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep } from '../../src/cli/sweeps.ts';
import { ndrResults } from '../../src/cli/results.ts';
import { ArtifactStore, type Manifest } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../../src/weights/safetensors.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack }>;
const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

useStack(test);

export function tinyNdrSweep(name: string, extra = ''): string {
  return `sweep: ${name}
pipeline: ndr
concurrency: 2
models:
  - { id: tiny, path: ${TINY} }
tasks:
  - { id: spam, source: spam-assassin, groups: [easy-ham-1, spam-1] }
methods:
  - { id: tracin, influence: tracin }
  - { id: datainf, influence: datainf }
stages:
  data: { noise: 0.2, trainSize: 40, influenceSize: 8, evaluationSize: 12 }
  finetune: { epochs: 2, batchSize: 8, microBatchSize: 8, maxLength: 24, lr: 0.003 }
  gradients: { shardSize: 16, batchSize: 8 }
  retrain: { epochs: 1 }
${extra}`;
}

async function writeSweepFile(stack: Stack, name: string, text: string): Promise<string> {
  const d = join(stack.dir, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'sweep.yaml'), text);
  return join(d, 'sweep.yaml');
}

/** NDR@30 and AUC-NDR from scores, in this test's own few lines (SCIENCE.md §4). */
function ndrOf(scores: number[], noisy: Set<number>) {
  const order = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  let found = 0;
  const curve = order.map((k) => (found += noisy.has(k) ? 1 : 0) / noisy.size);
  const n = scores.length;
  return { ndr30: curve[Math.min(n - 1, Math.round((30 * n) / 100))], auc: curve.reduce((a, b) => a + b, 0) / (noisy.size / 2 + (n - noisy.size)) };
}

test.serial('e2e NDR: 2 methods × 2 aggregations on tiny-llama + SpamAssassin; NDR recomputed from the stored artifacts; one gradient store', async (t) => {
  const { stack } = t.context;
  const file = await writeSweepFile(stack, 'ndr-tiny', tinyNdrSweep('ndr-tiny', 'axes:\n  stages.ndr.aggregation: [mean, vote]\n'));
  const plan = await planFile(file);
  t.is(plan.cells.length, 4);
  const handle = await submitSweep(stack.client, stack.env, plan);
  const r = (await handle.result()) as SweepResult;
  t.deepEqual(Object.values(r.cells).map((c) => c.error ?? c.status), ['succeeded', 'succeeded', 'succeeded', 'succeeded']);

  const lines = (await ledger(stack.env, 'ndr-tiny')).filter((l) => l.outcome === 'computed');
  const count = (s: string) => lines.filter((l) => l.stage === s).length;
  t.is(count('data'), 1);
  t.is(count('finetune'), 1);
  t.is(count('gradients'), 1, 'one gradient store serves both methods');
  t.is(count('influence'), 2, 'one influence per method, shared by both aggregations');
  t.is(count('ndr'), 4);

  const store = new ArtifactStore(paths.store(stack.env.home));
  for (const cell of plan.cells) {
    const key = (s: string) => cell.stages.find((x) => x.name === s)!.key;
    const manifest = async (s: string) => ((await store.lookup(key(s))) as { manifest: Manifest }).manifest;
    const ds = await store.readJson<{ train: unknown[]; noisyIds: number[] }>(await manifest('data'), 'dataset.json');
    t.is(ds.noisyIds.length, 8, '20% of 40');
    const inf = await manifest('influence');
    const meta = await store.readJson<{ n: number; m: number; convention: string; units: Array<{ unit: string; kind: string; tensor: string }> }>(inf, 'scores.json');
    t.is(meta.convention, 'positive=helpful');
    t.is(meta.n, 40);
    t.is(meta.m, 8);
    t.true(meta.units.some((u) => u.kind === 'embedding'), 'WE unit present');
    t.true(meta.units.some((u) => u.kind === 'classifier'), 'CL unit present');
    const { tensors } = parseSafetensorsBytes(await store.read(inf, 'scores.safetensors'));
    const mats = meta.units.map((u) => rawToFloat32(tensors.get(u.tensor)!));
    const { n, m } = meta;
    // Aggregate over every (unit, j) column: mean, or vote with k_v = round(0.2 n).
    const agg = cell.axes['stages.ndr.aggregation'];
    const scores = new Array(n).fill(0);
    for (const M of mats) {
      for (let j = 0; j < m; j++) {
        const col = Array.from(M.subarray(j * n, (j + 1) * n));
        if (agg === 'mean') col.forEach((v, k) => (scores[k] += v / (mats.length * m)));
        else {
          const rank = new Array(n);
          col.map((_, k) => k).sort((a, b) => col[a] - col[b] || a - b).forEach((k, r) => (rank[k] = r));
          const kv = Math.round(0.2 * n);
          for (let k = 0; k < n; k++) scores[k] -= Math.max(kv - rank[k], 0);
        }
      }
    }
    const mine = ndrOf(scores, new Set(ds.noisyIds));
    const nd = await manifest('ndr');
    t.true(Math.abs(nd.metrics.ndr30 - mine.ndr30) < 1e-9, `${cell.cellId}: NDR@30 ${nd.metrics.ndr30} vs ${mine.ndr30}`);
    t.true(Math.abs(nd.metrics.auc_ndr - mine.auc) < 1e-9, `${cell.cellId}: AUC ${nd.metrics.auc_ndr} vs ${mine.auc}`);
    t.is(nd.metrics[`ndr30.all.${agg}`], nd.metrics.ndr30);
    for (const g of ['WE', 'CL', 'all']) t.true(Number.isFinite(nd.metrics[`auc_ndr.${g}.mean`]), g);
    t.true(nd.metrics['cancellation.all'] >= 1);
    const bench = await manifest('benchmark');
    for (const k of ['accuracy_noisy', 'accuracy_retrained']) t.true(bench.metrics[k] >= 0 && bench.metrics[k] <= 1, k);
    const re = await manifest('retrain');
    t.is(re.metrics.dropped, 12, '30% of 40');
  }

  // The tables `layerflow run` ends with: every method × aggregation row, and the retraining table.
  const text = await ndrResults(stack.env, plan);
  for (const m of ['tracin', 'datainf']) for (const a of ['mean', 'vote', 'rank-c']) t.regex(text, new RegExp(`${m}\\s+${a}\\s+\\d\\.\\d{3}`));
  t.regex(text, /retrained acc/);

  // MLflow: every cell's runs, the NDR metrics and the per-layer series.
  t.is(await drainTracking(stack), 0);
  const exp = await stack.mlflow.getExperimentByName('ndr-tiny');
  const runs = await stack.mlflow.searchRuns({ experimentIds: [exp!.experiment_id] });
  const ndrRun = runs.find((x) => x.data.tags?.some((g) => g.key === 'layerflow.stage' && g.value === 'ndr'));
  t.truthy(ndrRun);
  t.true((ndrRun!.data.metrics ?? []).some((x) => x.key === 'ndr30'));
  // Series: NDR@30 per layer (step = layer index, 4 blocks), training loss per step.
  const perLayer = await stack.mlflow.getMetricHistory(ndrRun!.info.run_id, 'ndr30_by_layer.vote');
  t.deepEqual(perLayer.map((m) => m.step), [0, 1, 2, 3]);
  const tagOf = (x: (typeof runs)[number], k: string) => x.data.tags?.find((g) => g.key === k)?.value;
  const ft = runs.find((x) => tagOf(x, 'layerflow.stage') === 'finetune' && tagOf(x, 'layerflow.cache_hit') === 'false')!;
  const steps = await stack.mlflow.getMetricHistory(ft.info.run_id, 'train_loss');
  t.is(steps.length, 2 * 5, '2 epochs × 5 steps of 8 samples');
});

test.serial('e2e NDR: changing the aggregation re-runs only ndr, retrain and benchmark', async (t) => {
  const { stack } = t.context;
  const file = await writeSweepFile(stack, 'ndr-tiny-rank', tinyNdrSweep('ndr-tiny-rank', 'axes:\n  method: [tracin]\n  stages.ndr.aggregation: [rank]\n'));
  const plan = await planFile(file);
  const r = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  t.is(r.succeeded, 1);
  const lines = await ledger(stack.env, 'ndr-tiny-rank');
  const computed = lines.filter((l) => l.outcome === 'computed').map((l) => l.stage).sort();
  const cached = lines.filter((l) => l.outcome === 'cached').map((l) => l.stage).sort();
  t.deepEqual(computed, ['benchmark', 'ndr', 'retrain']);
  t.deepEqual(cached, ['data', 'finetune', 'gradients', 'influence']);
});

test.serial('e2e NDR: a calibrated compressed gradient store inside the pipeline — only gradients and what follows re-run; TracIn equal to the full store\'s', async (t) => {
  const { stack } = t.context;
  // The same sweep as the first test (its stages cached), the gradient store projected to ⌈d/4⌉ values
  // per unit with the influence set's span kept exactly (projection.calibration: influence).
  const projected = tinyNdrSweep('ndr-tiny-proj', 'axes:\n  method: [tracin]\n  stages.ndr.aggregation: [mean]\n')
    .replace('gradients: { shardSize: 16, batchSize: 8 }', 'gradients: { shardSize: 16, batchSize: 8, projection: { factor: 4, seed: 1, calibration: influence } }');
  const plan = await planFile(await writeSweepFile(stack, 'ndr-tiny-proj', projected));
  const r = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  t.is(r.succeeded, 1);
  const lines = await ledger(stack.env, 'ndr-tiny-proj');
  t.deepEqual(lines.filter((l) => l.outcome === 'computed').map((l) => l.stage).sort(), ['benchmark', 'gradients', 'influence', 'ndr', 'retrain']);
  t.deepEqual(lines.filter((l) => l.outcome === 'cached').map((l) => l.stage).sort(), ['data', 'finetune']);

  const store = new ArtifactStore(paths.store(stack.env.home));
  const manifestOf = async (p: typeof plan, method: string, stage: string) => {
    const cell = p.cells.find((c) => c.axes.method === method && (c.axes['stages.ndr.aggregation'] ?? 'mean') === 'mean')!;
    return ((await store.lookup(cell.stages.find((x) => x.name === stage)!.key)) as { manifest: Manifest }).manifest;
  };
  const grads = await manifestOf(plan, 'tracin', 'gradients');
  const index = await store.readJson<{ format: string; basis?: { set: string; samples: number }; units: Array<{ projection?: { kind: string } }> }>(grads, 'index.json');
  t.is(index.format, 'layerflow.gradients/2');
  t.deepEqual({ set: index.basis?.set, samples: index.basis?.samples }, { set: 'influence', samples: 8 });
  t.true(index.units.every((u) => u.projection?.kind === 'calibrated'));
  t.true(grads.metrics.basis_bytes > 0);

  // TracIn of every dense unit equals the full store's (the first test's, same data and checkpoint).
  const fullPlan = await planFile(join(stack.dir, 'ndr-tiny', 'sweep.yaml'));
  const tensorsOf = async (m: Manifest) => {
    const meta = await store.readJson<{ units: Array<{ unit: string; kind: string; tensor: string }> }>(m, 'scores.json');
    const { tensors } = parseSafetensorsBytes(await store.read(m, 'scores.safetensors'));
    return new Map(meta.units.filter((u) => u.kind !== 'embedding').map((u) => [u.unit, rawToFloat32(tensors.get(u.tensor)!)]));
  };
  const [full, calibrated] = [await tensorsOf(await manifestOf(fullPlan, 'tracin', 'influence')), await tensorsOf(await manifestOf(plan, 'tracin', 'influence'))];
  t.true(full.size > 8);
  for (const [unit, x] of full) {
    const y = calibrated.get(unit)!;
    const scale = Math.max(...x.map(Math.abs));
    t.true(x.every((v, q) => Math.abs(y[q] - v) <= 1e-5 * scale), `${unit}: TracIn on the calibrated store differs from the full store's`);
  }
});
