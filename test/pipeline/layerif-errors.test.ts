/**
 * Bad input to the LayerIF pipeline: an unknown BIG-bench task, a task with neither multiple-choice
 * nor generative targets, T smaller than the number of layers, S outside (0, 1) — each a clear error
 * naming the field or the task; and a generative task, accepted by data and finetune. Stages run
 * alone on a fake context (no services); plan-time checks on the sweep.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, writeFile, mkdir, rm, symlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSweep } from '../../src/config/sweep.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { ConfigError, MissingArtifactError } from '../../src/errors.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { StageContext } from '../../src/store/stage-context.ts';
import { layerifDef } from '../../pipelines/layerif.ts';
import { data, DataSettings } from '../../activities/data.ts';
import { finetune, FinetuneSettings } from '../../activities/finetune.ts';
import type { ChoiceDataset } from '../../activities/shared.ts';
import { allocate_experts, ExpertSettings } from '../../activities/experts.ts';
import { ASSETS_HOME } from '../helpers/stack.ts';

const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

async function ctxWith<S>(t: ExecutionContext, settings: S, slice: Record<string, unknown>, files: Record<string, string> = {}): Promise<StageContext<S>> {
  const home = await mkdtemp(join(tmpdir(), 'lf-layerif-bad-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  if (existsSync(join(ASSETS_HOME, 'data'))) await symlink(join(ASSETS_HOME, 'data'), join(home, 'data'));
  const store = new ArtifactStore(join(home, 'store'));
  const inputs: StageContext<S>['inputs'] = {};
  for (const [stage, text] of Object.entries(files)) {
    const [name, file] = stage.split(':');
    const m = await store.commit({ key: `k-${name}`, parts: { stage: name, version: 1, slice: {}, upstream: {} }, kind: 'x', files: { [file]: text } });
    inputs[name] = { key: m.key, stage: name, kind: 'x', files: m.files };
  }
  return { sweep: 's', cellId: 'c', stage: 'x', key: 'k', inputs, store, home, device: 'cpu:0', attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, settings, slice };
}

test('an unknown BIG-bench task: MissingArtifactError naming the task and listing the fetched ones', async (t) => {
  const ctx = await ctxWith(t, DataSettings.parse({}), { task: { id: 'x', source: 'bigbench', name: 'no_such_task' }, seed: 0 });
  const err = await t.throwsAsync(data(ctx), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /no_such_task/);
  t.regex(err!.message, /winowhy/);
});

/** A LayerFlow home holding one BIG-bench-shaped task of our own. */
async function homeWithTask(t: ExecutionContext, name: string, task: unknown): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'lf-layerif-gen-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  await mkdir(join(home, 'data', 'bigbench', name), { recursive: true });
  await writeFile(join(home, 'data', 'bigbench', name, 'task.json'), JSON.stringify(task));
  return home;
}

test('a generative BIG-bench task (target strings only) is accepted: data splits it, finetune trains on the first target', async (t) => {
  // BIG-bench's shape with only generative targets (a string or a list).
  const examples = Array.from({ length: 8 }, (_, i) => ({ input: `${i}+1=`, target: i % 2 ? String(i + 1) : [String(i + 1), `n${i + 1}`] }));
  const home = await homeWithTask(t, 'generative_only', { name: 'generative_only', description: 'd', keywords: [], metrics: ['exact_str_match'], examples });
  const slice = { task: { id: 'gen', source: 'bigbench', name: 'generative_only' }, seed: 0, model: { id: 'tiny', path: TINY } };
  const ctx = await ctxWith(t, DataSettings.parse({ trainSize: 4, influenceSize: 2, evaluationSize: 2 }), slice);
  const out = await data({ ...ctx, home });
  const ds = JSON.parse(out.files!['dataset.json'] as string) as ChoiceDataset;
  t.is(ds.kind, 'choice');
  t.true(ds.generative);
  t.deepEqual([ds.train.length, ds.influence.length, ds.evaluation.length], [4, 2, 2]);
  for (const d of [...ds.train, ...ds.influence, ...ds.evaluation]) {
    const i = Number(d.id.split('/')[1]);
    t.deepEqual([d.context, d.options, d.gold, d.generative, d.targets], [`\nQ: ${i}+1=\nA: `, [String(i + 1)], [0], true, i % 2 ? [String(i + 1)] : [String(i + 1), `n${i + 1}`]]);
  }
  // Label noise has no wrong option to swap in: a clear error naming the field.
  const noisy = await ctxWith(t, DataSettings.parse({ trainSize: 4, influenceSize: 2, noise: 0.25 }), slice);
  const err = await t.throwsAsync(data({ ...noisy, home }), { instanceOf: ConfigError });
  t.regex(err!.message, /stages\.data\.noise 0\.25: task gen is generative/);
  // finetune takes the dataset unchanged (answer-token LM on the first target); its influence-set
  // predictions are exact matches of greedy answers (0 = matches a target, −1 = not).
  const ft = await ctxWith(t, FinetuneSettings.parse({ epochs: 1, batchSize: 4, microBatchSize: 2, maxLength: 32 }), slice, { 'data:dataset.json': JSON.stringify(ds) });
  const r = await finetune(ft);
  const pred = JSON.parse(r.files!['influence-predictions.json'] as string) as { predictions: number[]; correct: boolean[] };
  t.is(pred.predictions.length, 2);
  t.true(pred.predictions.every((p) => p === 0 || p === -1));
  t.deepEqual(pred.correct, pred.predictions.map((p) => p === 0));
  t.is(r.metrics!.steps, 1);
});

test('a BIG-bench task with neither target_scores nor target is a ConfigError naming the task and both fields', async (t) => {
  const home = await homeWithTask(t, 'no_targets', { name: 'no_targets', description: 'd', keywords: [], metrics: ['exact_str_match'], examples: [{ input: '1+1=', answer: '2' }] });
  const ctx = await ctxWith(t, DataSettings.parse({}), { task: { id: 'x', source: 'bigbench', name: 'no_targets' }, seed: 0 });
  const err = await t.throwsAsync(data({ ...ctx, home }), { instanceOf: ConfigError });
  t.regex(err!.message, /task no_targets has neither/);
  t.regex(err!.message, /"target_scores"/);
  t.regex(err!.message, /"target"/);
});

test('T smaller than the number of layers: ConfigError naming stages.allocate_experts.total', async (t) => {
  const layers = JSON.stringify({ layers: [0, 1, 2, 3].map((l) => ({ layer: l, score: l + 1, units: [] })) });
  const ctx = await ctxWith(t, ExpertSettings.parse({ total: 3 }), { model: { id: 'tiny', path: TINY } }, { 'layer_scores:layer-scores.json': layers });
  const err = await t.throwsAsync(allocate_experts(ctx), { instanceOf: ConfigError });
  t.regex(err!.message, /stages\.allocate_experts\.total/);
  t.regex(err!.message, /T = 3/);
});

test('S outside (0, 1) is a plan-time error naming stages.allocate_sparsity.sparsity', async (t) => {
  for (const S of ['0', '1', '1.2', '-0.5']) {
    const d = await mkdtemp(join(tmpdir(), 'lf-layerif-s-'));
    t.teardown(() => rm(d, { recursive: true, force: true }));
    await writeFile(join(d, 'sweep.yaml'), `sweep: s\npipeline: layerif\nmodels: [{ id: tiny, path: ${TINY} }]\ntasks: [{ id: p, source: bigbench, name: english_proverbs }]\nmethods: [{ id: datainf, influence: datainf }]\nstages:\n  allocate_sparsity: { sparsity: ${S} }\n`);
    const err = await loadSweep(join(d, 'sweep.yaml'), { layerif: layerifDef }).then(() => undefined, (e: unknown) => e);
    t.true(err instanceof SweepConfigError, S);
    t.is((err as SweepConfigError).issues[0].field, 'stages.allocate_sparsity.sparsity', S);
  }
});
