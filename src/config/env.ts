import { resolve, join } from 'node:path';
import { parseDevice } from '../runtime/device.ts';
import { threadBudget } from '../runtime/devices.ts';
import { ConfigError } from '../errors.ts';

/**
 * Where LayerFlow's services and data are. The embedded default is one machine:
 * Temporal dev server on 127.0.0.1:7233, MLflow on 127.0.0.1:5000, data under .layerflow/.
 * At scale the same code points elsewhere through these variables — no code change.
 */
export interface LayerflowEnv {
  home: string;
  temporalAddress: string;
  namespace: string;
  mlflowUri: string;
  /** Task queue of workflows and non-device activities. */
  taskQueue: string;
  /** Devices served by this host's workers, e.g. ['cpu:0'] or ['cuda:0', 'cuda:1']. */
  devices: string[];
  /** Intra-op threads of each device's sessions: cores / devices, or LAYERFLOW_THREADS_PER_DEVICE. */
  threadsPerDevice: number;
  /** Device-bound activities one device worker runs at once (LAYERFLOW_DEVICE_SLOTS, default 1). */
  deviceSlots: number;
  /**
   * The device lease (LAYERFLOW_LEASE_SECONDS, default 300): how long a device-bound stage waits in
   * its device's queue for a worker before the cell asks where else it can run.
   */
  leaseSeconds: number;
}

export const DEFAULT_LEASE_SECONDS = 300;

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${name}=${raw}: expected a positive integer`);
  return n;
}

export function resolveEnv(overrides: Partial<LayerflowEnv> = {}, env: NodeJS.ProcessEnv = process.env): LayerflowEnv {
  const devices = (overrides.devices ?? (env.LAYERFLOW_DEVICES ?? 'cpu:0').split(',')).map((d) => d.trim()).filter(Boolean);
  for (const d of devices) parseDevice(d);
  return {
    home: resolve(overrides.home ?? env.LAYERFLOW_HOME ?? '.layerflow'),
    temporalAddress: overrides.temporalAddress ?? env.LAYERFLOW_TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    namespace: overrides.namespace ?? env.LAYERFLOW_NAMESPACE ?? 'default',
    mlflowUri: overrides.mlflowUri ?? env.LAYERFLOW_MLFLOW_URI ?? 'http://127.0.0.1:5000',
    taskQueue: overrides.taskQueue ?? env.LAYERFLOW_TASK_QUEUE ?? 'layerflow',
    devices,
    threadsPerDevice: overrides.threadsPerDevice ?? threadBudget({ devices: devices.length, override: env.LAYERFLOW_THREADS_PER_DEVICE }),
    deviceSlots: overrides.deviceSlots ?? positiveInt('LAYERFLOW_DEVICE_SLOTS', env.LAYERFLOW_DEVICE_SLOTS, 1),
    leaseSeconds: overrides.leaseSeconds ?? positiveInt('LAYERFLOW_LEASE_SECONDS', env.LAYERFLOW_LEASE_SECONDS, DEFAULT_LEASE_SECONDS),
  };
}

/** Each device has its own task queue; its worker runs one device-bound activity at a time. */
export function deviceQueue(env: Pick<LayerflowEnv, 'taskQueue'>, device: string): string {
  return `${env.taskQueue}@${device}`;
}

export const paths = {
  store: (home: string) => join(home, 'store'),
  outbox: (home: string) => join(home, 'tracking'),
  sweep: (home: string, sweep: string) => join(home, 'sweeps', sweep),
  events: (home: string, sweep: string) => join(home, 'sweeps', sweep, 'events.jsonl'),
  /** Beat files of the device workers (src/runtime/devices.ts). */
  devices: (home: string) => join(home, 'run', 'devices'),
  /** ORT's optimised models of large graphs, by model hash, ORT version and CPU (src/runtime/session-cache.ts). */
  ortCache: (home: string) => join(home, 'cache', 'ort'),
  cellStage: (home: string, sweep: string, cell: string, stage: string) =>
    join(home, 'sweeps', sweep, 'cells', encodeURIComponent(cell), `${stage}.json`),
};
