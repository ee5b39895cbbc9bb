/**
 * Progress of the NDR pipeline's `ndr` and `benchmark` stages (issue 11, src/runtime/progress.ts),
 * on the tiny model without services: every heartbeat follows the progress convention; `ndr` goes
 * through its phases (cancellation over the gradient shards, NDR per layer group × aggregation,
 * NDR@30 per layer), each counting up to its total; `benchmark` counts the evaluation items of both
 * models (classifier: per batch; multiple choice: per few documents) up to 2 × items. Reporting
 * progress changes no number: the classifier logits equal one predictor call over every sample.
 */
import test from 'ava';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArtifactStore, refOf, type ArtifactRef } from '../../src/store/artifacts.ts';
import type { StageContext, StageImpl } from '../../src/store/stage-context.ts';
import { progressOf, type Progress } from '../../src/runtime/progress.ts';
import { data, DataSettings } from '../../activities/data.ts';
import { finetune, FinetuneSettings } from '../../activities/finetune.ts';
import { gradients, GradientSettings } from '../../activities/gradients.ts';
import { influence, InfluenceSettings } from '../../activities/influence.ts';
import { ndr, NdrSettings } from '../../activities/ndr.ts';
import { benchmark, BenchmarkSettings } from '../../activities/benchmark.ts';
import { encodeExample, modelOf, readAdapter, type ClassifierRecord, type TaskDataset } from '../../activities/shared.ts';
import { ClassifierPredictor } from '../../src/train/classifier.ts';
import type { GradientIndex } from '../../src/influence/gradient-store.ts';

const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));
const ASSETS = process.env.LAYERFLOW_HOME ?? fileURLToPath(new URL('../../.layerflow', import.meta.url));

interface Beat { details: Record<string, unknown>; progress?: Progress }

let keys = 0;
function ctxOf<S>(store: ArtifactStore, home: string, stage: string, settings: S, slice: Record<string, unknown>, inputs: Record<string, ArtifactRef>, beats: Beat[] = []): StageContext<S> {
  return {
    sweep: 's', cellId: 'c', stage, key: `k-${stage}-${++keys}`, inputs, store, home, device: 'cpu:0', threads: 1, attempt: 1, settings, slice,
    heartbeat: (d) => void beats.push({ details: (d ?? {}) as Record<string, unknown>, progress: progressOf(d) }),
    signal: new AbortController().signal,
  };
}

async function run<S>(impl: StageImpl<S>, ctx: StageContext<S>): Promise<ArtifactRef> {
  const r = await impl(ctx);
  return refOf(await ctx.store.commit({ key: ctx.key, parts: { stage: ctx.stage, version: 1, slice: {}, upstream: {} }, kind: ctx.stage, files: r.files, metrics: r.metrics, series: r.series }));
}

/** The beats of one phase (by `phase` or unit): each follows the convention, counts up, ends at its total. */
function countsUp(t: import('ava').ExecutionContext, stage: string, beats: Beat[], unit: string, total: number) {
  const mine = beats.filter((b) => b.progress?.unit === unit);
  t.true(mine.length >= 2, `${stage}: ${unit} progress reported (${mine.length} beats)`);
  for (const b of mine) {
    t.is(b.details.stage, stage);
    t.is(b.progress!.total, total, `${stage}: ${unit} total`);
  }
  t.true(mine.every((b, i) => i === 0 || b.progress!.done >= mine[i - 1].progress!.done), `${stage}: ${unit} done never goes back`);
  t.is(mine.at(-1)!.progress!.done, total, `${stage}: ${unit} ends at its total`);
}

test('ndr and benchmark (classification): progress per phase, shard, aggregation, layer and batch; numbers unchanged', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-ndr-progress-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const task = join(home, 'task.jsonl');
  const words = ['free money', 'meeting at noon', 'win a prize now', 'lunch tomorrow', 'cheap pills', 'project notes', 'claim your reward', 'see you soon'];
  await writeFile(task, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: `${words[i % 8]} ${i}`, label: i % 2 ? 'ham' : 'spam' })).join('\n'));
  const slice = { task: { id: 't', source: 'jsonl', path: task }, seed: 0, model: { id: 'tiny', path: TINY }, method: { id: 'tracin', influence: 'tracin', dampingScale: 0.1 } };
  const ds = await run(data, ctxOf(store, home, 'data', DataSettings.parse({ noise: 0.2, trainSize: 10, influenceSize: 4, evaluationSize: 10 }), slice, {}));
  const ft = await run(finetune, ctxOf(store, home, 'finetune', FinetuneSettings.parse({ epochs: 1, batchSize: 5, microBatchSize: 5, maxLength: 12 }), slice, { data: ds }));
  const grads = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 4 }), slice, { data: ds, finetune: ft }));
  const inf = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), slice, { gradients: grads }));

  const ndrBeats: Beat[] = [];
  const ndrCtx = ctxOf(store, home, 'ndr', NdrSettings.parse({}), slice, { data: ds, finetune: ft, gradients: grads, influence: inf }, ndrBeats);
  const out = await ndr(ndrCtx);
  const index = await store.readJson<GradientIndex>(grads, 'index.json');
  const groups = (JSON.parse(out.files['ndr.json'] as string) as { groups: Array<{ byAggregation: object }> }).groups;
  const layers = out.series!['ndr30_by_layer.vote'].length;
  t.true(index.sets.train.shards.length >= 2 && layers >= 2);
  countsUp(t, 'ndr', ndrBeats, 'shard', index.sets.train.shards.length);
  countsUp(t, 'ndr', ndrBeats, 'aggregation', groups.reduce((a, g) => a + Object.keys(g.byAggregation).length, 0));
  countsUp(t, 'ndr', ndrBeats, 'layer', layers);
  t.deepEqual([...new Set(ndrBeats.map((b) => b.details.phase))], ['cancellation', 'ndr', 'layers'], 'the phases in order');
  t.true(ndrBeats.every((b) => b.progress), 'every ndr heartbeat carries progress');
  t.deepEqual(Object.keys(out.series!), ['ndr30_by_layer.mean', 'ndr30_by_layer.rank', 'ndr30_by_layer.vote']);

  const bmBeats: Beat[] = [];
  const bmCtx = ctxOf(store, home, 'benchmark', BenchmarkSettings.parse({ batchSize: 3 }), slice, { data: ds, finetune: ft, retrain: ft }, bmBeats);
  const bm = await benchmark(bmCtx);
  const n = bm.metrics!.evaluation;
  t.is(n, 10);
  countsUp(t, 'benchmark', bmBeats, 'sample', 2 * n);
  t.true(bmBeats.filter((b) => b.progress).length >= 2 * Math.ceil(n / 3), 'a beat per batch of each model');
  // The same logits as one predictor call over every sample (the batches are the same).
  const file = JSON.parse(bm.files['benchmark.json'] as string) as { finetune: { logits: number[] }; retrain: { logits: number[] } };
  const dset = await store.readJson<TaskDataset>(ds, 'dataset.json');
  const rec = await store.readJson<ClassifierRecord>(ft, 'classifier.json');
  const model = await modelOf(bmCtx);
  const predictor = await ClassifierPredictor.create({ config: model.config, spec: rec.spec, device: 'cpu:0' });
  try {
    const { params, shapes } = await readAdapter(store, ft);
    const samples = dset.evaluation.map((e) => encodeExample(model.tokenizer, e as { text: string; label: number }, rec.maxLength));
    const once = await predictor.logits({ base: model.weights, params, shapes, samples, batchSize: 3, padId: rec.padId });
    t.deepEqual(file.finetune.logits, Array.from(once));
    t.deepEqual(file.retrain.logits, Array.from(once));
  } finally {
    await predictor.release();
  }
});

test('benchmark (multiple choice, BIG-bench): progress per few documents of each model up to 2 × documents', async (t) => {
  if (!existsSync(join(ASSETS, 'data', 'bigbench', 'english_proverbs'))) return t.fail(`no BIG-bench data under ${ASSETS}: run infra/install.sh`);
  const home = await mkdtemp(join(tmpdir(), 'lf-bm-progress-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  await mkdir(home, { recursive: true });
  await symlink(join(ASSETS, 'data'), join(home, 'data'));
  const store = new ArtifactStore(join(home, 'store'));
  const slice = { task: { id: 'proverbs', source: 'bigbench', name: 'english_proverbs' }, seed: 1, model: { id: 'tiny', path: TINY } };
  const ds = await run(data, ctxOf(store, home, 'data', DataSettings.parse({ trainSize: 8, influenceSize: 4, evaluationSize: 12 }), slice, {}));
  const ft = await run(finetune, ctxOf(store, home, 'finetune', FinetuneSettings.parse({ epochs: 1, batchSize: 4, microBatchSize: 4, maxLength: 96 }), slice, { data: ds }));
  const beats: Beat[] = [];
  const bm = await benchmark(ctxOf(store, home, 'benchmark', BenchmarkSettings.parse({}), slice, { data: ds, finetune: ft, retrain: ft }, beats));
  const n = bm.metrics!.evaluation;
  t.is(n, 12);
  countsUp(t, 'benchmark', beats, 'doc', 2 * n);
  t.true(beats.filter((b) => b.progress).length >= 4, 'beats between documents, not only per model');
  t.is(bm.metrics!.accuracy_noisy, bm.metrics!.accuracy_retrained, 'the same adapter on both sides');
});
