/**
 * Chaos on real services (issue 12): the tiny-llama NDR pipeline on two CPU devices, each served by
 * its own worker process (`layerflow worker --device cpu:N`), the control worker in this process.
 *
 *  1. An undisturbed run, then the same sweep in a fresh store while a random device worker is
 *     SIGKILLed at random points 20 times (and restarted each time): every cell completes, every
 *     artifact is bit-identical to the undisturbed run's, no corrupt artifact is ever met, and each
 *     kill loses at most one unit of work (the shard or the unsharded stage it was computing), counted
 *     from the ledger's started / shard / computed lines.
 *  2. The Temporal dev server is stopped mid-sweep and started again on its SQLite history: the
 *     sweep completes.
 */
import anyTest, { type TestFn } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack, ledger, writeSweep, type Stack } from '../helpers/stack.ts';
import { startWorkerPool, type WorkerPool } from '../../infra/worker.ts';
import { planFile, submitSweep } from '../../src/cli/sweeps.ts';
import { readDeviceBeats } from '../../src/runtime/devices.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import { paths, type LayerflowEnv } from '../../src/config/env.ts';
import { createRng } from '../../src/data/random.ts';
import type { LedgerLine } from '../../activities/index.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack; env: LayerflowEnv; pools: WorkerPool[]; children: Set<ChildProcess> }>;
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KILLS = 20;

test.before(async (t) => {
  t.context.stack = await startStack({ worker: false });
  t.context.env = { ...t.context.stack.env, devices: ['cpu:0', 'cpu:1'], threadsPerDevice: 1 };
  t.context.pools = [];
  t.context.children = new Set();
});
test.after.always(async (t) => {
  for (const c of t.context.children ?? []) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const p of t.context.pools ?? []) await p.shutdown().catch(() => undefined);
  await t.context.stack?.stop();
});

/** A device worker process: `layerflow worker --device <d>` (no control worker), one thread. */
function deviceWorker(t: { context: { env: LayerflowEnv; children: Set<ChildProcess> } }, device: string): ChildProcess {
  const { env } = t.context;
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--home', env.home, '--temporal', env.temporalAddress, '--mlflow', env.mlflowUri, 'worker', '--device', device], {
    env: { ...process.env, LAYERFLOW_TASK_QUEUE: env.taskQueue, LAYERFLOW_DEVICES: env.devices.join(','), LAYERFLOW_THREADS_PER_DEVICE: '1' },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  t.context.children.add(child);
  child.once('exit', () => t.context.children.delete(child));
  return child;
}

/** This process's beat-less view: a device worker is ready once its beat file names its pid. */
async function ready(env: LayerflowEnv, device: string, pid: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await readDeviceBeats(env.home)).some((b) => b.device === device && b.pid === pid)) {
    if (Date.now() > deadline) throw new Error(`worker ${pid} for ${device} did not start within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const SWEEP = (name: string) => `sweep: ${name}
pipeline: ndr
concurrency: 4
heartbeatSeconds: 3
leaseSeconds: 5
models: [{ id: tiny, path: ${TINY} }]
tasks: [{ id: spam, source: spam-assassin, groups: [easy-ham-1, spam-1] }]
methods: [{ id: tracin, influence: tracin }]
stages:
  data: { noise: 0.2, trainSize: 96, influenceSize: 8, evaluationSize: 16 }
  finetune: { epochs: 3, batchSize: 8, microBatchSize: 8, maxLength: 32, lr: 0.003 }
  gradients: { shardSize: 8, batchSize: 4 }
  retrain: { epochs: 1 }
axes:
  seed: [1, 2, 3, 4]
`;

/** Every committed stage of a plan: key → file name → sha256. */
async function artifacts(store: ArtifactStore, keys: string[]): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  for (const k of keys) {
    const hit = await store.lookup(k);
    if (hit.status !== 'hit') throw new Error(`stage key ${k.slice(0, 12)}: ${hit.status}`);
    out[k] = Object.fromEntries(Object.entries(hit.manifest.files).map(([n, f]) => [n, f.sha256]));
    for (const [n, f] of Object.entries(hit.manifest.shards ?? {})) out[k][`shard ${n}`] = f.sha256;
  }
  return out;
}

/**
 * Attempts of each stage key read from the ledger: an attempt opens with `started`, may commit
 * shards, and closes with computed / failed / cancelled — or never closes when its worker was killed.
 */
function attempts(lines: LedgerLine[]) {
  type Attempt = { key: string; stage: string; cell: string; device?: string; shards: number[]; end?: LedgerLine['outcome'] };
  const all: Attempt[] = [];
  const open = new Map<string, Attempt>(); // by cell + stage: a cell runs one attempt of a stage at a time
  for (const l of lines) {
    const id = `${l.cell}\u0000${l.stage}`;
    if (l.outcome === 'started') {
      const a: Attempt = { key: l.key, stage: l.stage, cell: l.cell, device: l.device, shards: [] };
      open.set(id, a);
      all.push(a);
    } else if (l.outcome === 'shard') open.get(id)?.shards.push(l.shard!);
    else if (l.outcome === 'computed' || l.outcome === 'failed' || l.outcome === 'cancelled') {
      const a = open.get(id);
      if (a) a.end = l.outcome;
      open.delete(id);
    }
  }
  return all;
}

test.serial(`e2e chaos: ${KILLS} SIGKILLs of random device workers at random points; every cell completes, artifacts bit-identical to an undisturbed run, at most one unit of work lost per kill`, async (t) => {
  const { stack, env } = t.context;
  t.timeout(12 * 60_000);
  t.context.pools.push(await startWorkerPool(env, { devices: [], deliveryIntervalMs: 1000 }));
  const workers: Record<string, ChildProcess> = {};
  for (const d of env.devices) workers[d] = deviceWorker(t, d);
  for (const d of env.devices) await ready(env, d, workers[d].pid!);

  // 1. Undisturbed.
  const dir = join(stack.dir, 'chaos');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'calm.yaml'), SWEEP('calm'));
  await writeFile(join(dir, 'chaos.yaml'), SWEEP('chaos'));
  const calmPlan = await planFile(join(dir, 'calm.yaml'));
  const t0 = Date.now();
  const calm = (await (await submitSweep(stack.client, env, calmPlan)).result()) as SweepResult;
  const calmS = (Date.now() - t0) / 1000;
  t.is(calm.succeeded, 4, JSON.stringify(calm.cells, null, 1));
  const keys = [...new Set(calmPlan.cells.flatMap((c) => c.stages.map((s) => s.key)))];
  const calmArtifacts = await artifacts(new ArtifactStore(paths.store(env.home)), keys);
  // The same sweep from nothing: the undisturbed run's store is set aside.
  await rename(paths.store(env.home), `${paths.store(env.home)}-calm`);

  // 2. Chaos: kill a random ready device worker every 0.3–2 s (seeded), restart it at once.
  const chaosPlan = await planFile(join(dir, 'chaos.yaml'));
  t.deepEqual([...new Set(chaosPlan.cells.flatMap((c) => c.stages.map((s) => s.key)))].sort(), [...keys].sort(), 'the same stages as the undisturbed run');
  const seed = Number(process.env.LAYERFLOW_CHAOS_SEED ?? Date.now() % 100_000);
  const rng = createRng(seed);
  const t1 = Date.now();
  const result = (async () => (await (await submitSweep(stack.client, env, chaosPlan)).result()) as SweepResult)();
  let finished = false;
  void result.then(() => (finished = true), () => (finished = true));
  const kills: { device: string; at: number; running: string[]; restartMs?: number }[] = [];
  // A worker is a target once it is up (its beat names its pid); restarts run in the background, so
  // the other device can be hit while one comes back.
  const up: Record<string, boolean> = Object.fromEntries(env.devices.map((d) => [d, true]));
  const restarts: Promise<void>[] = [];
  while (kills.length < KILLS && !finished) {
    await sleep(300 + rng.next() * 1700);
    const targets = env.devices.filter((d) => up[d]);
    if (finished || targets.length === 0) continue;
    const device = targets[rng.int(targets.length)];
    const victim = workers[device];
    const beat = (await readDeviceBeats(env.home)).find((b) => b.device === device && b.pid === victim.pid);
    victim.kill('SIGKILL');
    await new Promise((r) => (victim.exitCode !== null || victim.signalCode !== null ? r(null) : victim.once('exit', r)));
    const kill: (typeof kills)[number] = { device, at: Date.now() - t1, running: beat?.running.map((r) => `${r.stage}@${r.cell.replace(/.*seed=/, 'seed ')}`) ?? [] };
    kills.push(kill);
    up[device] = false;
    const restart = Date.now();
    workers[device] = deviceWorker(t, device);
    restarts.push(ready(env, device, workers[device].pid!).then(() => {
      up[device] = true;
      kill.restartMs = Date.now() - restart;
    }));
  }
  await Promise.all(restarts);
  const r = await result;
  const chaosS = (Date.now() - t1) / 1000;
  t.log(`seed ${seed}: undisturbed ${calmS.toFixed(1)} s; with ${kills.length} kills ${chaosS.toFixed(1)} s`);
  t.log(`kills: ${kills.map((k) => `${(k.at / 1000).toFixed(1)}s ${k.device}${k.running.length ? ` [${k.running.join(', ')}]` : ''} (back in ${((k.restartMs ?? 0) / 1000).toFixed(1)} s)`).join('; ')}`);
  t.is(kills.length, KILLS, `the sweep finished after ${kills.length} kills (seed ${seed}); make it longer`);
  t.is(r.succeeded, 4, JSON.stringify(r.cells, null, 1));

  // Bit-identical artifacts; nothing corrupt ever met.
  const store = new ArtifactStore(paths.store(env.home));
  const chaosArtifacts = await artifacts(store, keys);
  const stageOf = new Map(chaosPlan.cells.flatMap((c) => c.stages.map((s) => [s.key, `${s.name}@${c.cellId.replace(/.*seed=/, 'seed ')}`] as const)));
  const differ = keys.flatMap((k) => [...new Set([...Object.keys(calmArtifacts[k]), ...Object.keys(chaosArtifacts[k])])]
    .filter((f) => calmArtifacts[k][f] !== chaosArtifacts[k][f]).map((f) => `${stageOf.get(k)} ${f}`));
  t.deepEqual(differ, [], 'every file of every stage bit-identical to the undisturbed run');
  const lines = await ledger(env, 'chaos');
  t.deepEqual(lines.filter((l) => l.outcome === 'corrupt'), []);

  // Work lost per kill: an attempt a kill interrupted lost the unit it was computing (one shard, or
  // the whole of an unsharded stage); every shard it had committed was reused, never computed again.
  const all = attempts(lines);
  const interrupted = all.filter((a) => !a.end);
  let recomputed = 0;
  for (const a of interrupted) {
    const later = all.slice(all.indexOf(a) + 1).filter((b) => b.key === a.key);
    recomputed += later.reduce((n, b) => n + b.shards.filter((s) => a.shards.includes(s)).length, 0);
  }
  t.is(recomputed, 0, 'no committed shard was computed again');
  t.true(interrupted.length <= kills.length, `${interrupted.length} interrupted attempts for ${kills.length} kills`);
  const lostUnits = interrupted.length; // one unit each: the shard in progress, or the unsharded stage
  const reusedShards = interrupted.reduce((n, a) => n + a.shards.length, 0);
  const byStage = interrupted.reduce<Record<string, number>>((m, a) => ((m[a.stage] = (m[a.stage] ?? 0) + 1), m), {});
  const moved = Object.values(r.cells).reduce((n, c) => n + Object.values(c.stages ?? {}).reduce((k, s) => k + (s.moves ?? 0), 0), 0);
  t.log(`kills mid-stage: ${kills.filter((k) => k.running.length).length}, between stages: ${kills.filter((k) => !k.running.length).length}; `
    + `interrupted attempts: ${interrupted.length} (${Object.entries(byStage).map(([s, n]) => `${s} ${n}`).join(', ') || 'none'}); `
    + `units of work lost: ${lostUnits} (≤ 1 per kill); shards committed before a kill and reused: ${reusedShards}; stage moves between devices: ${moved}`);
});

test.serial('e2e: the Temporal dev server is restarted mid-sweep on its SQLite history; the sweep completes', async (t) => {
  const { stack, env } = t.context;
  const file = await writeSweep(stack, 'restart', { work: 20_000 });
  const plan = await planFile(file);
  await submitSweep(stack.client, env, plan);
  await (async () => {
    const deadline = Date.now() + 120_000;
    while (!(await ledger(env, 'restart')).some((l) => l.stage === 'transform' && l.outcome === 'computed')) {
      if (Date.now() > deadline) throw new Error('no transform computed within 2 minutes');
      await sleep(200);
    }
  })();
  await stack.stopTemporal();
  await sleep(2000);
  await stack.startTemporal();
  // The client reconnects on its own; the workers resume polling; the sweep finishes.
  const r = (await stack.client.workflow.getHandle('layerflow/restart').result()) as SweepResult;
  t.is(r.succeeded, 4, JSON.stringify(r.cells, null, 1));
  const computed = (await ledger(env, 'restart')).filter((l) => l.outcome === 'computed' && l.stage === 'transform');
  t.is(new Set(computed.map((l) => l.cell)).size, 4);
});
