/**
 * Bad input to the NDR pipeline gets a clear, typed error naming the file, line or field — at plan
 * time where the sweep file can tell (unknown method or aggregation, noise outside [0, 1), a missing
 * model path), at the stage otherwise (too few samples per class, a task file with a bad line, a
 * packaged model that was never fetched). Stages run here alone, on a fake context: no services.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSweep } from '../../src/config/sweep.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { ConfigError, DataError, MissingArtifactError } from '../../src/errors.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { StageContext } from '../../src/store/stage-context.ts';
import { ndrDef } from '../../pipelines/ndr.ts';
import { data, DataSettings } from '../../activities/data.ts';
import { modelOf } from '../../activities/shared.ts';

const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

const sweep = (over: { methods?: string; stages?: string; model?: string } = {}) => `sweep: bad
pipeline: ndr
models:
  - ${over.model ?? `{ id: tiny, path: ${TINY} }`}
tasks:
  - { id: spam, source: spam-assassin }
methods:
  ${over.methods ?? '- { id: tracin, influence: tracin }'}
stages:
  ${over.stages ?? 'data: { noise: 0.2 }'}
`;

async function planError(t: ExecutionContext, yaml: string): Promise<SweepConfigError> {
  const d = await mkdtemp(join(tmpdir(), 'lf-ndr-bad-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  await writeFile(join(d, 'sweep.yaml'), yaml);
  const err = await loadSweep(join(d, 'sweep.yaml'), { ndr: ndrDef }).then(() => undefined, (e: unknown) => e);
  if (!(err instanceof SweepConfigError)) throw new Error(`expected a SweepConfigError, got ${String(err)}`);
  return err;
}

test('plan: an unknown influence method names the methods entry, its line and the choices', async (t) => {
  const e = await planError(t, sweep({ methods: '- { id: magic, influence: magic }' }));
  t.is(e.issues[0].field, 'methods[0].influence');
  t.is(e.issues[0].line, 8);
  t.regex(e.message, /tracin.*cosine.*datainf/);
});

test('plan: an unknown aggregation names stages.ndr.aggregation and the choices', async (t) => {
  const e = await planError(t, sweep({ stages: 'ndr: { aggregation: median }' }));
  t.is(e.issues[0].field, 'stages.ndr.aggregation');
  t.regex(e.message, /vote/);
});

test('plan: noise outside [0, 1) names stages.data.noise', async (t) => {
  for (const noise of ['1', '-0.1', '1.5']) {
    const e = await planError(t, sweep({ stages: `data: { noise: ${noise} }` }));
    t.is(e.issues[0].field, 'stages.data.noise', noise);
  }
});

test('plan: a model path that does not exist names models[0].path', async (t) => {
  const e = await planError(t, sweep({ model: '{ id: gone, path: nowhere/model.gguf }' }));
  t.is(e.issues[0].field, 'models[0].path');
  t.regex(e.message, /nowhere\/model\.gguf does not exist/);
});

test('plan: an unknown packaged model names models[0].source', async (t) => {
  const e = await planError(t, sweep({ model: '{ id: big, source: llama-70b }' }));
  t.is(e.issues[0].field, 'models[0].source');
});

async function fakeContext<S>(t: ExecutionContext, over: Partial<StageContext<S>> & { settings: S; slice: Record<string, unknown> }): Promise<StageContext<S>> {
  const home = await mkdtemp(join(tmpdir(), 'lf-ndr-ctx-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  return {
    sweep: 's', cellId: 'c', stage: 'data', key: 'k', inputs: {}, store: new ArtifactStore(join(home, 'store')), home, device: 'cpu:0',
    attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, ...over,
  };
}

test('stage data: a task file with a bad line fails with file:line and the field', async (t) => {
  const d = await mkdtemp(join(tmpdir(), 'lf-ndr-jsonl-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  const file = join(d, 'task.jsonl');
  await writeFile(file, ['{"text": "a", "label": 0}', '{"text": "b", "label": 1}', '{"text": "c", "label": -3}'].join('\n'));
  const ctx = await fakeContext(t, { settings: DataSettings.parse({}), slice: { task: { id: 't', source: 'jsonl', path: { path: file, sha256: 'x' } }, seed: 0 } });
  const err = await t.throwsAsync(data(ctx), { instanceOf: DataError });
  t.regex(err!.message, /task\.jsonl:3:.*label/);
});

test('stage data: too few samples per class is a ConfigError naming the class and the split', async (t) => {
  const d = await mkdtemp(join(tmpdir(), 'lf-ndr-jsonl-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  const file = join(d, 'task.jsonl');
  const rows = [...Array.from({ length: 20 }, (_, i) => ({ text: `ham ${i}`, label: 0 })), { text: 'spam 0', label: 1 }, { text: 'spam 1', label: 1 }];
  await writeFile(file, rows.map((r) => JSON.stringify(r)).join('\n'));
  const ctx = await fakeContext(t, { settings: DataSettings.parse({}), slice: { task: { id: 't', source: 'jsonl', path: file }, seed: 0 } });
  const err = await t.throwsAsync(data(ctx), { instanceOf: ConfigError });
  t.regex(err!.message, /too few samples per class/);
  t.regex(err!.message, /class 1/);
});

test('stage data: with enough data, the splits, the noisy ids and the duplicates removed are in the artifact', async (t) => {
  const ctx = await fakeContext(t, { settings: DataSettings.parse({ trainSize: 50, influenceSize: 10, evaluationSize: 10 }), slice: { task: { id: 'spam', source: 'spam-assassin' }, seed: 3 } });
  const r = await data(ctx);
  const ds = JSON.parse(r.files['dataset.json'] as string) as { train: Array<{ label: number; cleanLabel: number }>; noisyIds: number[]; duplicatesRemoved: number };
  t.is(ds.train.length, 50);
  t.is(ds.noisyIds.length, 10);
  t.is(ds.duplicatesRemoved, 171);
  ds.train.forEach((e, i) => t.is(e.label !== e.cleanLabel, ds.noisyIds.includes(i)));
});

test('a packaged model that was never fetched: MissingArtifactError naming the model id and the path', async (t) => {
  const ctx = await fakeContext(t, { settings: {}, slice: { model: { id: 'smol', source: 'smollm2-135m-instruct' } } });
  const err = await t.throwsAsync(modelOf(ctx), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /smol/);
  t.true(err!.message.includes(join(ctx.home, 'models')), err!.message);
});
