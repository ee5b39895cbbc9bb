/**
 * The worker pool of one host: a control worker (workflows + light activities) and one worker
 * per device, each on its own task queue running one device-bound activity at a time
 * (DESIGN.md contract 5; LAYERFLOW_DEVICE_SLOTS for more). Also runs the tracking delivery loop.
 *
 * `devices` / `control` pick a part of it, so each device can have a worker process of its own
 * (`layerflow worker --device cpu:1`), on this host or another one sharing the home (infra/CLUSTER.md).
 * Each device worker has a thread budget for its sessions (cores / devices on the host, or
 * LAYERFLOW_THREADS_PER_DEVICE) and writes a beat file that tells the control workers it is alive,
 * how many slots it has and what it runs (src/runtime/devices.ts).
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
import { setDeviceThreads, startDeviceBeats, workerIdentity } from '../src/runtime/devices.ts';
import { redactingLogger } from '../src/runtime/redact.ts';

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

export interface WorkerPoolOptions {
  deliveryIntervalMs?: number;
  /** Devices this process serves (default: every device of `env.devices`; [] for none). */
  devices?: string[];
  /** Run the control worker (workflows, light activities) and the tracking delivery loop (default true). */
  control?: boolean;
}

export async function startWorkerPool(env: LayerflowEnv, opts: WorkerPoolOptions = {}): Promise<WorkerPool> {
  const served = opts.devices ?? env.devices;
  const withControl = opts.control ?? true;
  if (!withControl && served.length === 0) throw new Error('startWorkerPool: nothing to run (no control worker and no device)');
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    try {
      const level = (process.env.LAYERFLOW_LOG_LEVEL as 'WARN' | undefined) ?? 'WARN';
      Runtime.install({
        // Messages and metadata pass through redaction: no secret environment value reaches a log.
        logger: redactingLogger(new DefaultLogger(level)),
        // Native (core) logs go through the same logger; core's WARNs about slow workflow tasks
        // on a busy 2-core machine are noise, its errors are not.
        telemetryOptions: { logging: { filter: { core: (process.env.LAYERFLOW_CORE_LOG_LEVEL ?? 'ERROR') as 'ERROR', other: 'ERROR' }, forward: {} } },
      });
    } catch { /* already installed by the host process */ }
  }
  const connection = await NativeConnection.connect({ address: env.temporalAddress });
  const outbox = new TrackingOutbox(paths.outbox(env.home), new ArtifactStore(paths.store(env.home)));
  const activities = createActivities({
    home: env.home, outbox, pipelines: () => loadPipelines(), gitCommit: gitCommit(),
    taskQueues: { service: connection.workflowService, namespace: env.namespace },
  });

  const control = withControl
    ? await Worker.create({
      connection,
      namespace: env.namespace,
      taskQueue: env.taskQueue,
      identity: workerIdentity(),
      workflowBundle: await workflowBundle(),
      activities,
      maxConcurrentActivityTaskExecutions: 8,
    })
    : undefined;
  for (const d of served) setDeviceThreads(d, env.threadsPerDevice);
  const deviceWorkers = await Promise.all(
    served.map((d) =>
      Worker.create({
        connection,
        namespace: env.namespace,
        taskQueue: deviceQueue(env, d),
        identity: workerIdentity(d),
        activities,
        maxConcurrentActivityTaskExecutions: env.deviceSlots,
        // A cancel reaches an activity on its next recorded heartbeat: at most 2 s, so a cancelled
        // device stage stops (and frees its device) promptly instead of after 0.8 × its timeout.
        maxHeartbeatThrottleInterval: '2s',
      }),
    ),
  );
  // Only where the control worker runs: two deliverers could create the same MLflow run twice.
  const delivery = withControl ? startDeliveryLoop(outbox, new MlflowClient(env.mlflowUri), opts.deliveryIntervalMs ?? 1000, (m) => console.warn(m)) : undefined;
  const workers = [...(control ? [control] : []), ...deviceWorkers];
  const runs = workers.map((w) => w.run());
  // Beats start once the workers poll: a device looks alive only when it can take work.
  const beats = served.map((d) =>
    startDeviceBeats({ home: env.home, device: d, queue: deviceQueue(env, d), identity: workerIdentity(d), slots: env.deviceSlots, threads: env.threadsPerDevice }));
  const done = Promise.all(runs).finally(async () => {
    await Promise.all(beats.map((b) => b.stop()));
    await delivery?.stop();
    await connection.close();
  }).then(() => undefined);
  return {
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
    flushTracking: async () => delivery?.flush(),
  };
}
