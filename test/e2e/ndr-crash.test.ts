/**
 * Crash resume of the gradient store (DESIGN.md contract 4) on real services: the worker process
 * is killed with SIGKILL while `gradients` is midway; a new worker finishes the stage from the
 * shards already committed (counted), and the final gradients are bit-identical to an undisturbed
 * run of the same stage.
 */
import anyTest, { type TestFn } from 'ava';
import { writeFile, mkdir, readdir, rm } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack, ledger, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep } from '../../src/cli/sweeps.ts';
import { ArtifactStore, type Manifest } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import type { GradientIndex } from '../../src/influence/gradient-store.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack; workers: ChildProcess[] }>;
const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

test.before(async (t) => {
  t.context.stack = await startStack({ worker: false });
  t.context.workers = [];
});
test.after.always(async (t) => {
  for (const w of t.context.workers ?? []) if (w.exitCode === null) w.kill('SIGKILL');
  await t.context.stack?.stop();
});

function startWorker(t: { context: { stack: Stack; workers: ChildProcess[] } }): ChildProcess {
  const { env } = t.context.stack;
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--home', env.home, '--temporal', env.temporalAddress, '--mlflow', env.mlflowUri, 'worker'], {
    env: { ...process.env, LAYERFLOW_TASK_QUEUE: env.taskQueue, LAYERFLOW_DEVICES: env.devices.join(',') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  t.context.workers.push(child);
  return child;
}

const SWEEP = (name: string) => `sweep: ${name}
pipeline: ndr
heartbeatSeconds: 10
models: [{ id: tiny, path: ${TINY} }]
tasks: [{ id: spam, source: spam-assassin, groups: [easy-ham-1, spam-1] }]
methods: [{ id: tracin, influence: tracin }]
stages:
  data: { trainSize: 72, influenceSize: 8, evaluationSize: 8 }
  finetune: { epochs: 1, batchSize: 8, microBatchSize: 8, maxLength: 96 }
  gradients: { shardSize: 8, batchSize: 4 }
  retrain: { epochs: 1 }
`;

test.serial('e2e crash: SIGKILL during gradients; the restarted worker reuses the committed shards; gradients bit-identical to an undisturbed run', async (t) => {
  const { stack } = t.context;
  const dir = join(stack.dir, 'crash');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'sweep.yaml'), SWEEP('crash'));
  const plan = await planFile(join(dir, 'sweep.yaml'));
  const gradKey = plan.cells[0].stages.find((s) => s.name === 'gradients')!.key;
  const store = new ArtifactStore(paths.store(stack.env.home));
  const shardDir = join(paths.store(stack.env.home), 'stages', `${gradKey}.shards`);
  const committed = async () => (await readdir(shardDir).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).length;

  let worker = startWorker(t);
  const handle = await submitSweep(stack.client, stack.env, plan);
  // 72 + 8 samples in shards of 8 = 10 shards; kill once 3 are committed.
  const deadline = Date.now() + 240_000;
  while ((await committed()) < 3) {
    if (Date.now() > deadline) return t.fail('gradients did not commit 3 shards within 4 minutes');
    await new Promise((r) => setTimeout(r, 100));
  }
  worker.kill('SIGKILL');
  await new Promise((r) => worker.once('exit', r));
  const before = await committed();
  t.true(before >= 3 && before < 10, `${before} shards committed at the kill`);
  worker = startWorker(t);
  const r = (await handle.result()) as SweepResult;
  t.is(r.succeeded, 1, JSON.stringify(r.cells));

  const hit = await store.lookup(gradKey);
  if (hit.status !== 'hit') return t.fail('no gradients manifest');
  const m: Manifest = hit.manifest;
  t.is(m.metrics.shards, 10);
  t.true(m.metrics.shards_reused >= before, `reused ${m.metrics.shards_reused} of the ${before} committed before the kill`);
  t.is(m.metrics.shards_reused + m.metrics.shards_computed, 10);
  const lines = (await ledger(stack.env, 'crash')).filter((l) => l.stage === 'gradients');
  t.true(lines.some((l) => l.outcome === 'computed'));
  const crashed = (await store.readJson<GradientIndex>(m, 'index.json'));

  // Undisturbed run of the same stage: forget its manifest and shards, run the sweep again.
  await rm(store.manifestPath(gradKey));
  await rm(shardDir, { recursive: true });
  const again = (await (await submitSweep(stack.client, stack.env, await planFile(join(dir, 'sweep.yaml')))).result()) as SweepResult;
  t.is(again.succeeded, 1);
  const clean = await store.lookup(gradKey);
  if (clean.status !== 'hit') return t.fail('no gradients manifest after the clean run');
  t.is(clean.manifest.metrics.shards_computed, 10, 'the clean run computed every shard');
  const fresh = await store.readJson<GradientIndex>(clean.manifest, 'index.json');
  const hashes = (ix: GradientIndex) => [...ix.sets.train.shards, ...ix.sets.influence.shards].map((s) => s.sha256);
  t.deepEqual(hashes(fresh), hashes(crashed), 'every shard bit-identical');
});
