/**
 * Pipeline stages run in process on fake contexts (no Temporal, no MLflow), and the tiny model's
 * `data` → `finetune` upstream on a small spam/ham JSONL task, shared by the gradient-store tests.
 */
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArtifactStore, refOf, type ArtifactRef } from '../../src/store/artifacts.ts';
import type { StageContext, StageImpl } from '../../src/store/stage-context.ts';
import { data, DataSettings } from '../../activities/data.ts';
import { finetune, FinetuneSettings } from '../../activities/finetune.ts';

export const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

let keyCount = 0;
/** A stage context on `store` (a fresh key unless given). */
export function ctxOf<S>(store: ArtifactStore, home: string, stage: string, s: S, slice: Record<string, unknown>, inputs: Record<string, ArtifactRef>, key = `k-${stage}-${++keyCount}`): StageContext<S> {
  return { sweep: 's', cellId: 'c', stage, key, inputs, store, home, device: 'cpu:0', threads: 1, attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, settings: s, slice };
}

/** Run a stage and commit its output under the context's key. */
export async function run<S>(impl: StageImpl<S>, ctx: StageContext<S>): Promise<ArtifactRef> {
  const r = await impl(ctx);
  return refOf(await ctx.store.commit({ key: ctx.key, parts: { stage: ctx.stage, version: 1, slice: {}, upstream: {} }, kind: ctx.stage, files: r.files }));
}

/** A temporary home (removed after the test) with the tiny model fine-tuned on 8 noisy spam/ham rows (+ 4 influence, 4 evaluation). */
export async function tinyUpstream(t: ExecutionContext, prefix: string): Promise<{ home: string; store: ArtifactStore; slice: Record<string, unknown>; ds: ArtifactRef; ft: ArtifactRef }> {
  const home = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const task = join(home, 'task.jsonl');
  const words = ['free money', 'meeting at noon', 'win a prize now', 'lunch tomorrow', 'cheap pills', 'project notes', 'claim your reward', 'see you soon'];
  await writeFile(task, Array.from({ length: 16 }, (_, i) => JSON.stringify({ text: `${words[i % 8]} ${i}`, label: i % 2 ? 'ham' : 'spam' })).join('\n'));
  const slice = { task: { id: 't', source: 'jsonl', path: task }, seed: 0, model: { id: 'tiny', path: TINY } };
  const ds = await run(data, ctxOf(store, home, 'data', DataSettings.parse({ noise: 0.2, trainSize: 8, influenceSize: 4, evaluationSize: 4 }), slice, {}));
  const ft = await run(finetune, ctxOf(store, home, 'finetune', FinetuneSettings.parse({ epochs: 1, batchSize: 8, maxLength: 12 }), slice, { data: ds }));
  return { home, store, slice, ds, ft };
}

/** A sweep of `pipeline` on the tiny model, SpamAssassin and DataInf, with the given stage settings (YAML flow values). */
export function tinySweepYaml(pipeline: string, stages: Record<string, string>): string {
  return `sweep: k
pipeline: ${pipeline}
models:
  - { id: tiny, path: ${TINY} }
tasks:
  - { id: spam, source: spam-assassin }
methods:
  - { id: datainf, influence: datainf }
stages:
${Object.entries(stages).map(([name, v]) => `  ${name}: ${v}`).join('\n')}
`;
}
