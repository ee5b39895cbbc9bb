/**
 * Real services for a benchmark, in a temporary home: a Temporal dev server and MLflow on free ports,
 * an in-process worker pool (as `layerflow up` runs them) and a client. The fetched models and
 * BIG-bench files are linked in read-only; `stop()` tears everything down and removes the home.
 */
import { mkdtemp, rm, symlink, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { startTemporal, startMlflow, stopService, freePort } from '../infra/services.ts';
import { startWorkerPool } from '../infra/worker.ts';
import { resolveEnv, type LayerflowEnv } from '../src/config/env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface BenchStack { dir: string; home: string; env: LayerflowEnv; client: Client; stop(): Promise<void> }

export async function startBenchStack(prefix: string): Promise<BenchStack> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const home = join(dir, 'home');
  await mkdir(home, { recursive: true });
  const assets = process.env.LAYERFLOW_HOME ?? join(ROOT, '.layerflow');
  for (const sub of ['models', 'data']) if (existsSync(join(assets, sub))) await symlink(join(assets, sub), join(home, sub));
  const [tPort, uiPort, mPort] = [await freePort(), await freePort(), await freePort()];
  await Promise.all([startTemporal({ home, port: tPort, uiPort }), startMlflow({ home, port: mPort })]);
  const env = resolveEnv({ home, temporalAddress: `127.0.0.1:${tPort}`, mlflowUri: `http://127.0.0.1:${mPort}`, devices: ['cpu:0'], taskQueue: 'bench' });
  const pool = await startWorkerPool(env);
  const connection = await Connection.connect({ address: env.temporalAddress });
  return {
    dir, home, env, client: new Client({ connection }),
    async stop() {
      await pool.shutdown().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await Promise.all([stopService(home, 'temporal'), stopService(home, 'mlflow')]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
