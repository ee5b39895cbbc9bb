/**
 * A real stack for end-to-end tests: a Temporal dev server and an MLflow server on free
 * loopback ports with their data in a temp home, plus an in-process worker pool. Everything
 * started here is torn down by `stop()` (ava hangs otherwise).
 */
import { mkdtemp, rm, readFile, writeFile, mkdir, copyFile, symlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestFn } from 'ava';
import { Client, Connection } from '@temporalio/client';
import { startTemporal, startMlflow, stopService, freePort, PortTakenError } from '../../infra/services.ts';
import './pipelines.ts';
import { startWorkerPool, type WorkerPool } from '../../infra/worker.ts';
import { resolveEnv, paths, type LayerflowEnv } from '../../src/config/env.ts';
import { TrackingOutbox } from '../../src/tracking/outbox.ts';
import { MlflowClient } from '../../src/tracking/mlflow.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { LedgerLine } from '../../activities/index.ts';

/** Where the install step put models and data (LAYERFLOW_HOME, else the repository's .layerflow/). */
export const ASSETS_HOME = process.env.LAYERFLOW_HOME ?? fileURLToPath(new URL('../../.layerflow', import.meta.url));

export interface Stack {
  env: LayerflowEnv;
  client: Client;
  /** The in-process worker pool (absent with `worker: false`: the test runs its own worker process). */
  pool: WorkerPool;
  mlflow: MlflowClient;
  mlflowPort: number;
  dir: string;
  stopMlflow(): Promise<void>;
  startMlflow(): Promise<void>;
  /** Stop / start the Temporal dev server on the same ports and SQLite file (its history is kept). */
  stopTemporal(): Promise<void>;
  startTemporal(): Promise<void>;
  stop(): Promise<void>;
}

export async function startStack(opts: { worker?: boolean } = {}): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), 'lf-e2e-'));
  const home = join(dir, 'home');
  let pool: WorkerPool | undefined;
  try {
    return await startIn(dir, home, opts, (p) => (pool = p));
  } catch (e) {
    // A failed start leaves nothing running (ava would hang on a live server) and no folder behind.
    await pool?.shutdown().catch(() => undefined);
    await Promise.all([stopService(home, 'temporal').catch(() => undefined), stopService(home, 'mlflow').catch(() => undefined)]);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function startIn(dir: string, home: string, opts: { worker?: boolean }, started: (pool: WorkerPool) => void): Promise<Stack> {
  // The fetched models and BIG-bench tasks (infra/install.sh) are shared, read-only, with the temp home.
  await mkdir(home, { recursive: true });
  for (const sub of ['models', 'data']) {
    const src = join(ASSETS_HOME, sub);
    if (existsSync(src)) await symlink(src, join(home, sub));
  }
  // A port found free can be taken by another test's server before ours binds it (CI saw
  // MLflow lose its port to a concurrently starting stack): start again on fresh ports.
  let tPort = 0, uiPort = 0, mPort = 0;
  for (let attempt = 1; ; attempt++) {
    const [t, ui, m] = [await freePort(), await freePort(), await freePort()];
    const started = await Promise.allSettled([startTemporal({ home, port: t, uiPort: ui }), startMlflow({ home, port: m })]);
    const failed = started.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
    if (failed.length === 0) {
      [tPort, uiPort, mPort] = [t, ui, m];
      break;
    }
    await Promise.all([stopService(home, 'temporal'), stopService(home, 'mlflow')]);
    if (attempt >= 3 || !failed.every((e) => e instanceof PortTakenError)) throw failed[0];
  }
  const env = resolveEnv({ home, temporalAddress: `127.0.0.1:${tPort}`, mlflowUri: `http://127.0.0.1:${mPort}`, devices: ['cpu:0'], taskQueue: 'layerflow-e2e' });
  const pool: WorkerPool = opts.worker === false
    ? { done: Promise.resolve(), shutdown: async () => undefined, flushTracking: async () => undefined }
    : await startWorkerPool(env, { deliveryIntervalMs: 250 });
  started(pool);
  const connection = await Connection.connect({ address: env.temporalAddress });
  const client = new Client({ connection });
  return {
    env,
    client,
    pool,
    mlflow: new MlflowClient(env.mlflowUri),
    mlflowPort: mPort,
    dir,
    stopMlflow: async () => void (await stopService(home, 'mlflow')),
    startMlflow: async () => void (await startMlflow({ home, port: mPort })),
    stopTemporal: async () => void (await stopService(home, 'temporal')),
    startTemporal: async () => void (await startTemporal({ home, port: tPort, uiPort })),
    async stop() {
      await pool.shutdown().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await Promise.all([stopService(home, 'temporal'), stopService(home, 'mlflow')]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const DATA = fileURLToPath(new URL('../fixtures/poems/', import.meta.url));

/** Write a demo-pipeline sweep (2 models × 2 tasks unless `extra` changes it) into its own folder. */
export async function writeSweep(stack: Stack, name: string, opts: { work?: number; extra?: string } = {}): Promise<string> {
  const d = join(stack.dir, name);
  await mkdir(d, { recursive: true });
  await copyFile(join(DATA, 'raven.txt'), join(d, 'raven.txt'));
  await copyFile(join(DATA, 'ozymandias.txt'), join(d, 'ozymandias.txt'));
  const file = join(d, 'sweep.yaml');
  await writeFile(file, `sweep: ${name}
pipeline: demo
concurrency: 4
models:
  - { id: upper, transform: upper, work: ${opts.work ?? 500} }
  - { id: rot13, transform: rot13, work: ${opts.work ?? 500} }
tasks:
  - { id: raven, data: raven.txt }
  - { id: ozy, data: ozymandias.txt }
axes:
  model: [upper, rot13]
  task: [raven, ozy]
  seed: [${name.length}]
${opts.extra ?? ''}`);
  return file;
}

export async function ledger(env: LayerflowEnv, sweep: string): Promise<LedgerLine[]> {
  const t = await readFile(paths.events(env.home, sweep), 'utf8').catch(() => '');
  return t.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LedgerLine);
}

export async function setFaults(env: LayerflowEnv, faults: unknown[]): Promise<void> {
  await writeFile(join(env.home, 'faults.json'), JSON.stringify(faults));
}

/** Wait until every tracking event has been delivered (or time out). */
export async function drainTracking(stack: Stack, timeoutMs = 60_000): Promise<number> {
  const outbox = new TrackingOutbox(paths.outbox(stack.env.home), new ArtifactStore(paths.store(stack.env.home)));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await stack.pool.flushTracking();
    const left = (await outbox.pending()).length;
    if (left === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** One stack for a test file: started before its tests, always stopped after (ava hangs otherwise). */
export function useStack(test: TestFn<{ stack: Stack }>, opts: { worker?: boolean } = {}): void {
  test.before(async (t) => {
    t.context.stack = await startStack(opts);
  });
  test.after.always(async (t) => {
    await t.context.stack?.stop();
  });
}
