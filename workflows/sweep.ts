/**
 * A sweep: one child workflow per cell, at most `concurrency` at a time. A failed cell does
 * not stop the others; the result lists every cell's outcome. Deterministic, no I/O.
 */
import { executeChild, defineQuery, setHandler, workflowInfo, isCancellation, CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { CellPlan } from '../src/config/plan.ts';
import type { Activities } from '../activities/index.ts';
import { experimentWorkflow, rootMessage, DEVICE_LEASE_PATCH, type StageState, type CellInput } from './experiment.ts';
import { assignDevices, pickInitialDevice } from './devices.ts';

export interface SweepInput {
  sweep: string;
  cells: CellPlan[];
  concurrency: number;
  devices: string[];
  controlQueue: string;
  /** Device task queue name for each device. */
  deviceQueues: Record<string, string>;
  /**
   * The device lease in ms (DESIGN.md contract 5): a device-bound stage waits at most this long for its
   * device's worker before the cell looks for another device. Absent: wait forever (as before leases).
   */
  leaseMs?: number;
}

export type CellStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface CellSummary {
  status: CellStatus;
  workflowId: string;
  device?: string;
  error?: string;
  stages?: Record<string, StageState>;
}

export interface SweepResult {
  sweep: string;
  cells: Record<string, CellSummary>;
  succeeded: number;
  failed: number;
}

export const sweepStateQuery = defineQuery<Record<string, CellSummary>>('sweepState');

/** Marks workflow code that resolves fully cached cells in batches (no child workflow for them). */
export const CACHED_CELLS_PATCH = 'layerflow-cached-cells-1';
/** Cells per `resolveCachedCells` activity: its input (the cells' plans) stays well under Temporal's payload limit. */
const CACHED_BATCH = 50;

export function cellWorkflowId(sweepWorkflowId: string, cellId: string): string {
  return `${sweepWorkflowId}/${cellId}`;
}

export async function sweepWorkflow(input: SweepInput): Promise<SweepResult> {
  const self = workflowInfo().workflowId;
  const leases = input.leaseMs !== undefined && patched(DEVICE_LEASE_PATCH);
  const control = proxyActivities<Activities>({ taskQueue: input.controlQueue, startToCloseTimeout: '1 minute', retry: { maximumAttempts: 10, initialInterval: '1s' } });
  const known = [...input.devices];
  const queues = { ...input.deviceQueues };
  let started = 0; // cells started on a device so far: round-robin over the devices known now
  const devices = assignDevices(input.cells.map((c) => c.cellId), input.devices);
  const cells: Record<string, CellSummary> = Object.fromEntries(
    input.cells.map((c) => [c.cellId, { status: 'pending' as CellStatus, workflowId: cellWorkflowId(self, c.cellId), device: devices[c.cellId] }]),
  );
  setHandler(sweepStateQuery, () => cells);

  // Cells whose every stage is a cache hit are resolved in batches by one activity each, without a
  // child workflow and an activity per stage: a cached re-run of a large sweep costs a few round trips.
  if (input.cells.length && patched(CACHED_CELLS_PATCH)) {
    const resolver = proxyActivities<Activities>({
      taskQueue: input.controlQueue, startToCloseTimeout: '10 minutes', heartbeatTimeout: '1 minute', retry: { maximumAttempts: 10, initialInterval: '1s' },
    });
    for (let i = 0; i < input.cells.length; i += CACHED_BATCH) {
      const batch = input.cells.slice(i, i + CACHED_BATCH);
      const resolved = await resolver.resolveCachedCells({
        sweep: input.sweep,
        pipeline: batch[0].pipeline,
        cells: batch.map(({ cellId, cellKey, params, axes, stages }) => ({ cellId, cellKey, params, axes, stages })),
      });
      for (const [id, outcomes] of Object.entries(resolved)) {
        const stages = Object.fromEntries(Object.keys(outcomes).map((n) => [n, { status: 'cached', seconds: 0 } satisfies StageState]));
        cells[id] = { status: 'succeeded', workflowId: cells[id].workflowId, stages };
      }
    }
  }
  const queue = input.cells.filter((c) => cells[c.cellId].status === 'pending');
  const runOne = async (plan: CellPlan): Promise<void> => {
    const summary = cells[plan.cellId];
    summary.status = 'running';
    try {
      let cell: CellInput = { plan, device: summary.device!, controlQueue: input.controlQueue, deviceQueue: input.deviceQueues[summary.device!] };
      if (leases && plan.stages.some((s) => s.device)) {
        // Start on a device whose worker is alive (the round-robin one when it is), round-robin over
        // every device known now: devices that joined since the sweep started (another host's workers) too.
        const presence = await control.devicePresence({ devices: known, queues, controlQueue: input.controlQueue });
        for (const p of presence) {
          if (!known.includes(p.device)) known.push(p.device);
          queues[p.device] ??= p.queue;
        }
        summary.device = pickInitialDevice(known[started++ % known.length], known, presence);
        cell = { ...cell, device: summary.device, deviceQueue: queues[summary.device], leaseMs: input.leaseMs, devices: [...known], deviceQueues: { ...queues } };
      } else if (leases) {
        cell = { ...cell, leaseMs: input.leaseMs, devices: [...known], deviceQueues: { ...queues } };
      }
      const r = await executeChild(experimentWorkflow, { workflowId: summary.workflowId, args: [cell] });
      summary.status = 'succeeded';
      summary.stages = r.stages;
      if (r.device) summary.device = r.device;
    } catch (err) {
      summary.status = isCancellation(err) ? 'cancelled' : 'failed';
      summary.error = rootMessage(err);
      const details = (findDetails(err) as { stages?: Record<string, StageState> } | undefined)?.stages;
      if (details) summary.stages = details;
      if (isCancellation(err) && CancellationScope.current().consideredCancelled) throw err;
    }
  };
  const lanes = Array.from({ length: Math.min(input.concurrency, queue.length) }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await runOne(next);
  });
  await Promise.all(lanes);
  const values = Object.values(cells);
  return {
    sweep: input.sweep,
    cells,
    succeeded: values.filter((c) => c.status === 'succeeded').length,
    failed: values.filter((c) => c.status !== 'succeeded').length,
  };
}

function findDetails(err: unknown): unknown {
  let e = err as { details?: unknown[]; cause?: unknown } | undefined;
  while (e) {
    if (Array.isArray(e.details) && e.details.length) return e.details[0];
    e = e.cause as typeof e;
  }
  return undefined;
}
