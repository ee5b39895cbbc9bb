/**
 * `devicePresence`: which devices can take a stage now. A light control-queue activity the cell and
 * sweep workflows call when they pick a device (at a cell's start, and when a device-bound stage's
 * lease expired). It reads the device workers' beat files in the shared home (alive, slots, what
 * runs) and asks Temporal for each device queue's pollers and backlog (DescribeTaskQueue).
 */
import { BEAT_STALE_MS, presenceOf, readDeviceBeats, type DeviceBeat, type QueueView } from '../src/runtime/devices.ts';
import type { DevicePresence } from '../workflows/devices.ts';

/** The slice of Temporal's WorkflowService used here (a NativeConnection's or a Client's). */
export interface TaskQueueService {
  describeTaskQueue(req: {
    namespace: string;
    taskQueue: { name: string; kind?: number };
    taskQueueType?: number;
    reportStats?: boolean;
  }): Promise<{
    pollers?: Array<{ identity?: string | null; lastAccessTime?: { seconds?: unknown; nanos?: number | null } | null }> | null;
    stats?: { approximateBacklogCount?: unknown } | null;
  }>;
}

// Protocol enum values (temporal.api.enums.v1): TaskQueueKind NORMAL = 1, TaskQueueType WORKFLOW = 1, ACTIVITY = 2.
const KIND_NORMAL = 1;
const TYPE_WORKFLOW = 1;
const TYPE_ACTIVITY = 2;

const num = (v: unknown): number | undefined => {
  if (v === null || v === undefined) return undefined;
  const n = typeof v === 'object' && 'toNumber' in (v as object) ? (v as { toNumber(): number }).toNumber() : Number(v);
  return Number.isFinite(n) ? n : undefined;
};

/** Pollers and backlog of a task queue (activity tasks, or workflow tasks); undefined when Temporal cannot say. */
export async function describeQueue(service: TaskQueueService, namespace: string, queue: string, type: 'activity' | 'workflow' = 'activity'): Promise<QueueView | undefined> {
  try {
    const r = await service.describeTaskQueue({ namespace, taskQueue: { name: queue, kind: KIND_NORMAL }, taskQueueType: type === 'activity' ? TYPE_ACTIVITY : TYPE_WORKFLOW, reportStats: true });
    return {
      pollers: (r.pollers ?? []).map((p) => {
        const s = num(p.lastAccessTime?.seconds);
        return { identity: p.identity ?? '', lastAccessMs: s === undefined ? undefined : s * 1000 + Math.floor((p.lastAccessTime?.nanos ?? 0) / 1e6) };
      }),
      backlog: num(r.stats?.approximateBacklogCount),
    };
  } catch {
    return undefined;
  }
}

export interface DevicePresenceInput {
  /** The sweep's devices and their queues. */
  devices: string[];
  queues: Record<string, string>;
  /** Control queue of the sweep: devices found alive on `<controlQueue>@<device>` are reported too. */
  controlQueue?: string;
}

export function createDeviceActivities(deps: { home: string; namespace?: string; service?: TaskQueueService }) {
  async function devicePresence(input: DevicePresenceInput): Promise<DevicePresence[]> {
    const beats: DeviceBeat[] = await readDeviceBeats(deps.home);
    const now = Date.now();
    const queues = { ...input.queues };
    const devices = [...input.devices];
    // A worker that joined later (another host, `layerflow worker --device …`) serves the sweep too.
    if (input.controlQueue) {
      for (const b of beats) {
        if (!devices.includes(b.device) && b.queue === `${input.controlQueue}@${b.device}` && now - b.at <= BEAT_STALE_MS) {
          devices.push(b.device);
          queues[b.device] = b.queue;
        }
      }
    }
    return Promise.all(
      devices.map(async (d) => {
        const view = deps.service ? await describeQueue(deps.service, deps.namespace ?? 'default', queues[d]) : undefined;
        const p = presenceOf(d, queues[d], beats, view, now);
        return { device: d, queue: queues[d], alive: p.alive, idle: p.idle, backlog: p.backlog, workers: p.workers, running: p.running, slots: p.slots };
      }),
    );
  }
  return { devicePresence };
}
