/**
 * Bad input to the LayerIF pipeline: an unknown BIG-bench task, a task without multiple-choice
 * targets, T smaller than the number of layers, S outside (0, 1) — each a clear error naming the
 * field or the task. Stages run alone on a fake context (no services); plan-time checks on the sweep.
 */
import test from 'ava';
import { mkdtemp, writeFile, mkdir, symlink } from 'node:fs/promises';
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
import { allocate_experts, ExpertSettings } from '../../activities/experts.ts';
import { ASSETS_HOME } from '../helpers/stack.ts';

const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

async function ctxWith<S>(settings: S, slice: Record<string, unknown>, files: Record<string, string> = {}): Promise<StageContext<S>> {
  const home = await mkdtemp(join(tmpdir(), 'lf-layerif-bad-'));
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
  const ctx = await ctxWith(DataSettings.parse({}), { task: { id: 'x', source: 'bigbench', name: 'no_such_task' }, seed: 0 });
  const err = await t.throwsAsync(data(ctx), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /no_such_task/);
  t.regex(err!.message, /winowhy/);
});

test('a BIG-bench task without multiple-choice targets is a ConfigError naming it', async (t) => {
  const ctx = await ctxWith(DataSettings.parse({}), { task: { id: 'gen', source: 'bigbench', name: 'generative_only' }, seed: 0 });
  // A task of our own in the data folder: BIG-bench's shape with only generative targets.
  const home2 = await mkdtemp(join(tmpdir(), 'lf-layerif-gen-'));
  await mkdir(join(home2, 'data', 'bigbench', 'generative_only'), { recursive: true });
  await writeFile(join(home2, 'data', 'bigbench', 'generative_only', 'task.json'), JSON.stringify({ name: 'generative_only', description: 'd', keywords: [], metrics: ['exact_str_match'], examples: [{ input: '1+1=', target: '2' }] }));
  const err = await t.throwsAsync(data({ ...ctx, home: home2 }), { instanceOf: ConfigError });
  t.regex(err!.message, /generative_only/);
  t.regex(err!.message, /multiple-choice|target_scores/);
});

test('T smaller than the number of layers: ConfigError naming stages.allocate_experts.total', async (t) => {
  const layers = JSON.stringify({ layers: [0, 1, 2, 3].map((l) => ({ layer: l, score: l + 1, units: [] })) });
  const ctx = await ctxWith(ExpertSettings.parse({ total: 3 }), { model: { id: 'tiny', path: TINY } }, { 'layer_scores:layer-scores.json': layers });
  const err = await t.throwsAsync(allocate_experts(ctx), { instanceOf: ConfigError });
  t.regex(err!.message, /stages\.allocate_experts\.total/);
  t.regex(err!.message, /T = 3/);
});

test('S outside (0, 1) is a plan-time error naming stages.allocate_sparsity.sparsity', async (t) => {
  for (const S of ['0', '1', '1.2', '-0.5']) {
    const d = await mkdtemp(join(tmpdir(), 'lf-layerif-s-'));
    await writeFile(join(d, 'sweep.yaml'), `sweep: s\npipeline: layerif\nmodels: [{ id: tiny, path: ${TINY} }]\ntasks: [{ id: p, source: bigbench, name: english_proverbs }]\nmethods: [{ id: datainf, influence: datainf }]\nstages:\n  allocate_sparsity: { sparsity: ${S} }\n`);
    const err = await loadSweep(join(d, 'sweep.yaml'), { layerif: layerifDef }).then(() => undefined, (e: unknown) => e);
    t.true(err instanceof SweepConfigError, S);
    t.is((err as SweepConfigError).issues[0].field, 'stages.allocate_sparsity.sparsity', S);
  }
});
