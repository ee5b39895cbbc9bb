import test from 'ava';
import { parse } from 'yaml';
import { configYaml, MAX_UPLOAD_BYTES, publishEvent, TAG, type PublishCache } from '../../src/tracking/publish.ts';
import type { Metric, MlflowClient, MlflowRunInfo } from '../../src/tracking/mlflow.ts';
import type { StageEvent } from '../../src/tracking/events.ts';
import type { ArtifactStore } from '../../src/store/artifacts.ts';
import { flatten } from '../../src/config/plan.ts';
import { headlineMetrics, layerSeries } from '../../src/results/headline.ts';
import { svgMarkCounts } from '../report/marks.ts';

test('config.yaml: the flattened cell config comes back as the nested, typed config', (t) => {
  const config = { model: { id: 'smollm2', path: '/m' }, seed: 3, stages: { data: { trainSize: 64, noise: 0.2, tags: ['a', 'b'] }, ndr: { grouped: true } } };
  t.deepEqual(parse(configYaml(flatten(config))), config);
});

test('headline metrics: NDR of all layers per aggregation, downstream accuracy, perplexity, realised sparsity', (t) => {
  t.deepEqual(headlineMetrics('ndr', { ndr30: 0.5, 'ndr30.all.vote': 0.6, 'ndr30.WE.vote': 0.1, 'auc_ndr.all.mean-c': 0.7, 'cancellation.all': 0.2 }),
    { 'ndr.ndr30.all.vote': 0.6, 'ndr.auc_ndr.all.mean-c': 0.7 });
  t.deepEqual(headlineMetrics('benchmark_pruned', { acc: 0.5, acc_norm: 0.4, perplexity: 30, documents: 100 }),
    { 'benchmark_pruned.acc': 0.5, 'benchmark_pruned.acc_norm': 0.4, 'benchmark_pruned.perplexity': 30 });
  t.deepEqual(headlineMetrics('allocate_sparsity', { realised: 0.5, target: 0.5 }), { 'allocate_sparsity.realised': 0.5 });
  t.deepEqual(headlineMetrics('gradients', { samples: 10 }), {});
});

test('per-layer series: layer scores, NDR@30 per layer, experts, sparsity ratios and realised sparsity, named <stage>.<series>; training curves are not', (t) => {
  t.deepEqual(layerSeries('layer_scores', { layer_score: [1, 2] }), { 'layer_scores.layer_score': [1, 2] });
  t.deepEqual(layerSeries('ndr', { 'ndr30_by_layer.vote': [0.1], 'ndr30_by_layer.mean': [0.2] }), { 'ndr.ndr30_by_layer.vote': [0.1], 'ndr.ndr30_by_layer.mean': [0.2] });
  t.deepEqual(layerSeries('allocate_experts', { experts: [1, 2] }), { 'allocate_experts.experts': [1, 2] });
  t.deepEqual(layerSeries('allocate_sparsity', { ratio: [0.5] }), { 'allocate_sparsity.ratio': [0.5] });
  t.deepEqual(layerSeries('prune', { realised: [0.5] }), { 'prune.realised': [0.5] });
  t.deepEqual(layerSeries('finetune', { train_loss: [1, 0.5] }), {});
  t.deepEqual(layerSeries('moe_finetune', { train_loss: [1] }), {});
  t.deepEqual(layerSeries('allocate_experts', { experts: [] }), {});
});

/** An in-memory MLflow: runs with their metrics, tags and uploaded artifacts. */
function fakeMlflow() {
  const runs = new Map<string, { info: MlflowRunInfo; tags: Record<string, string>; metrics: Metric[]; artifacts: Map<string, string> }>();
  const client = {
    ensureExperiment: async () => '1',
    searchRuns: async (a: { filter?: string }) => {
      const key = /= '(.*)'$/.exec(a.filter ?? '')?.[1];
      return [...runs.values()].filter((r) => r.tags[TAG.runKey] === key).map((r) => ({ info: r.info, data: {} }));
    },
    createRun: async (a: { runName?: string; tags?: Array<{ key: string; value: string }> }) => {
      const id = `r${runs.size}`;
      const info: MlflowRunInfo = { run_id: id, experiment_id: '1', run_name: a.runName, status: 'RUNNING', artifact_uri: `mlflow-artifacts:/1/${id}/artifacts`, lifecycle_stage: 'active' };
      runs.set(id, { info, tags: Object.fromEntries((a.tags ?? []).map((x) => [x.key, x.value])), metrics: [], artifacts: new Map() });
      return info;
    },
    logBatch: async (id: string, b: { metrics?: Metric[] }) => void runs.get(id)!.metrics.push(...(b.metrics ?? [])),
    setTag: async (id: string, key: string, value: string) => void (runs.get(id)!.tags[key] = value),
    uploadArtifact: async (info: MlflowRunInfo, path: string, data: string | Uint8Array) => void runs.get(info.run_id)!.artifacts.set(path, String(data)),
    updateRun: async () => undefined,
  };
  return { client: client as unknown as MlflowClient, runs };
}

const stageEvent = (stage: string, over: Partial<StageEvent> = {}): StageEvent => ({
  type: 'stage', sweep: 's', cellId: 'c1', cellKey: 'ck', cellParams: { 'task.id': 'proverbs', 'stages.allocate_experts.allocator': 'uniform' }, time: 7,
  stage, key: `k-${stage}`, cached: false, status: 'FINISHED', startTime: 0, params: {}, metrics: {}, ...over,
});

test('publishEvent: per-layer series (step = layer index) and the stage\'s plots go up to the cell\'s parent run; training curves stay on the stage run', async (t) => {
  const { client, runs } = fakeMlflow();
  const cache: PublishCache = new Map();
  await publishEvent(client, stageEvent('layer_scores', { series: { layer_score: [0.5, null as unknown as number, 2] }, metrics: { layers: 3 } }), cache);
  await publishEvent(client, stageEvent('allocate_experts', { series: { experts: [1, 2, 3] }, metrics: { total: 6 } }), cache);
  await publishEvent(client, stageEvent('finetune', { series: { train_loss: [3, 2, 1] } }), cache);
  await publishEvent(client, stageEvent('benchmark_moe', { metrics: { acc: 0.25, documents: 4 } }), cache);
  const all = [...runs.values()];
  const parent = all.find((r) => !r.tags[TAG.parent])!;
  const child = (stage: string) => [...runs.values()].find((r) => r.tags[TAG.stage] === stage)!;
  const points = (r: typeof parent, key: string) => r.metrics.filter((m) => m.key === key).map((m) => [m.step, m.value]);
  t.deepEqual(points(parent, 'layer_scores.layer_score'), [[0, 0.5], [2, 2]], 'gaps left out');
  t.deepEqual(points(parent, 'allocate_experts.experts'), [[0, 1], [1, 2], [2, 3]]);
  t.deepEqual(points(parent, 'benchmark_moe.acc'), [[undefined, 0.25]]);
  t.false(parent.metrics.some((m) => /train_loss|layers|total|documents/.test(m.key)), 'only headline metrics and per-layer series on the parent');
  t.deepEqual(points(child('finetune'), 'train_loss'), [[0, 3], [1, 2], [2, 1]]);
  t.deepEqual(points(child('layer_scores'), 'layer_score'), [[0, 0.5], [2, 2]]);
  t.deepEqual([...parent.artifacts.keys()].sort(), ['plots/experts.svg', 'plots/layer-scores.svg']);
  t.is(svgMarkCounts(parent.artifacts.get('plots/experts.svg')!).rect, 3);
  t.is(svgMarkCounts(parent.artifacts.get('plots/layer-scores.svg')!).rect, 2);
  for (const r of all.filter((x) => x !== parent)) t.is(r.artifacts.size, 0);

  // A plot that cannot be drawn never holds back the event: the reason is tagged on the stage run.
  await publishEvent(client, stageEvent('ndr', { key: 'k-ndr', metrics: { 'ndr30.all.vote': 0.5 }, series: { 'ndr30_by_layer.vote': [0.5] } }), cache, {
    lookup: async () => { throw new Error('store unreadable'); },
  } as unknown as ArtifactStore);
  t.is(child('ndr').tags['layerflow.plot_error'], 'store unreadable');
  t.deepEqual(points(parent, 'ndr.ndr30.all.vote'), [[undefined, 0.5]]);
  t.deepEqual(points(parent, 'ndr.ndr30_by_layer.vote'), [[0, 0.5]]);
});

test('publishEvent: store files up to MAX_UPLOAD_BYTES are uploaded to the stage run; larger ones are named in a tag, with the store key', async (t) => {
  const { client, runs } = fakeMlflow();
  const files = { 'scores.json': { size: 10, sha256: 'a' }, 'grads.safetensors': { size: MAX_UPLOAD_BYTES + 1, sha256: 'b' } };
  const store = {
    lookup: async () => ({ status: 'hit', manifest: { key: 'k-influence', stage: 'influence', kind: 'scores', files } }),
    read: async (_ref: unknown, f: string) => new TextEncoder().encode(`content of ${f}`),
  } as unknown as ArtifactStore;
  await publishEvent(client, stageEvent('influence', { storeFiles: ['scores.json', 'grads.safetensors'] }), new Map(), store);
  const run = [...runs.values()].find((r) => r.tags[TAG.stage] === 'influence')!;
  t.deepEqual([...run.artifacts.keys()], ['scores.json']);
  t.regex(run.tags['layerflow.not_uploaded'], /grads\.safetensors \(8\.0 MiB\)/);
  t.regex(run.tags['layerflow.not_uploaded'], /k-influence/);
});
