/**
 * The worker pool of one host: a control worker (workflows + light activities) and one worker
 * per device, each on its own task queue running one device-bound activity at a time
 * (DESIGN.md contract 5). Also runs the tracking delivery loop.
 */
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { NativeConnection, Worker, Runtime, DefaultLogger, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities/index.ts';
import { loadPipelines } from '../pipelines/index.ts';
import { deviceQueue, paths, type LayerflowEnv } from '../src/config/env.ts';
import { TrackingOutbox, startDeliveryLoop } from '../src/tracking/outbox.ts';
import { MlflowClient } from '../src/tracking/mlflow.ts';
import { ArtifactStore } from '../src/store/artifacts.ts';

export interface WorkerPool {
  /** Resolves when every worker has stopped. */
  done: Promise<void>;
  shutdown(): Promise<void>;
  /** Send pending tracking events now. */
  flushTracking(): Promise<void>;
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundle workflow code once per process (webpack; a few seconds). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({
    workflowsPath: fileURLToPath(new URL('../workflows/index.ts', import.meta.url)),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m), log() {} } as never,
  });
  return bundle;
}

export function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return undefined;
  }
}

let runtimeInstalled = false;

export async function startWorkerPool(env: LayerflowEnv, opts: { deliveryIntervalMs?: number } = {}): Promise<WorkerPool> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    try {
      const level = (process.env.LAYERFLOW_LOG_LEVEL as 'WARN' | undefined) ?? 'WARN';
      Runtime.install({
        logger: new DefaultLogger(level),
        // Native (core) logs go through the same logger; core's WARNs about slow workflow tasks
        // on a busy 2-core machine are noise, its errors are not.
        telemetryOptions: { logging: { filter: { core: (process.env.LAYERFLOW_CORE_LOG_LEVEL ?? 'ERROR') as 'ERROR', other: 'ERROR' }, forward: {} } },
      });
    } catch { /* already installed by the host process */ }
  }
  const connection = await NativeConnection.connect({ address: env.temporalAddress });
  const outbox = new TrackingOutbox(paths.outbox(env.home), new ArtifactStore(paths.store(env.home)));
  const activities = createActivities({ home: env.home, outbox, pipelines: () => loadPipelines(), gitCommit: gitCommit() });
  const workflowBundleCode = await workflowBundle();

  const control = await Worker.create({
    connection,
    namespace: env.namespace,
    taskQueue: env.taskQueue,
    workflowBundle: workflowBundleCode,
    activities,
    maxConcurrentActivityTaskExecutions: 8,
  });
  const deviceWorkers = await Promise.all(
    env.devices.map((d) =>
      Worker.create({
        connection,
        namespace: env.namespace,
        taskQueue: deviceQueue(env, d),
        activities,
        maxConcurrentActivityTaskExecutions: 1,
        // A cancel reaches an activity on its next recorded heartbeat: at most 2 s, so a cancelled
        // device stage stops (and frees its device) promptly instead of after 0.8 × its timeout.
        maxHeartbeatThrottleInterval: '2s',
      }),
    ),
  );
  const delivery = startDeliveryLoop(outbox, new MlflowClient(env.mlflowUri), opts.deliveryIntervalMs ?? 1000, (m) => console.warn(m));
  const workers = [control, ...deviceWorkers];
  const done = Promise.all(workers.map((w) => w.run())).then(async () => {
    await delivery.stop();
    await connection.close();
  });
  return {
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
    flushTracking: () => delivery.flush(),
  };
}
