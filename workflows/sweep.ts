/**
 * A sweep: one child workflow per cell, at most `concurrency` at a time. A failed cell does
 * not stop the others; the result lists every cell's outcome. Deterministic, no I/O.
 */
import { executeChild, defineQuery, setHandler, workflowInfo, isCancellation, CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { CellPlan } from '../src/config/plan.ts';
import type { ArtifactFile } from '../src/store/artifacts.ts';
import type { Activities } from '../activities/index.ts';
import { experimentWorkflow, rootMessage, DEVICE_LEASE_PATCH, type StageState, type CellInput } from './experiment.ts';
import { assignDevices, pickInitialDevice } from './devices.ts';

/** A cell as the sweep workflow sees it when the plans are in a blob: its id and whether it has device-bound stages. */
export interface CellEntry {
  cellId: string;
  device: boolean;
}

export interface SweepInput {
  sweep: string;
  /**
   * Every cell's plan inline: sweeps submitted before plan blobs (their histories replay as before).
   * Today's CLI sends `plan` + `cellIndex`: a plan is a few kB per cell, and Temporal refuses an input
   * over 2 MB (a 400-cell sweep), so the plans travel as one blob of the artifact store instead.
   */
  cells?: CellPlan[];
  /** The cells' plans (`CellPlan[]` as JSON) in the artifact store; activities read it. */
  plan?: ArtifactFile;
  /** With `plan`: the cells in plan order. */
  cellIndex?: CellEntry[];
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
  const index: CellEntry[] = input.cellIndex ?? (input.cells ?? []).map((c) => ({ cellId: c.cellId, device: c.stages.some((s) => s.device) }));
  const inline = new Map((input.cells ?? []).map((c) => [c.cellId, c]));
  const devices = assignDevices(index.map((c) => c.cellId), input.devices);
  const cells: Record<string, CellSummary> = Object.fromEntries(
    index.map((c) => [c.cellId, { status: 'pending' as CellStatus, workflowId: cellWorkflowId(self, c.cellId), device: devices[c.cellId] }]),
  );
  setHandler(sweepStateQuery, () => cells);

  // Cells whose every stage is a cache hit are resolved in batches by one activity each, without a
  // child workflow and an activity per stage: a cached re-run of a large sweep costs a few round trips.
  if (index.length && patched(CACHED_CELLS_PATCH)) {
    const resolver = proxyActivities<Activities>({
      taskQueue: input.controlQueue, startToCloseTimeout: '10 minutes', heartbeatTimeout: '1 minute', retry: { maximumAttempts: 10, initialInterval: '1s' },
    });
    for (let i = 0; i < index.length; i += CACHED_BATCH) {
      const batch = index.slice(i, i + CACHED_BATCH);
      const resolved = await resolver.resolveCachedCells({
        sweep: input.sweep,
        ...(input.plan
          ? { plan: input.plan, cellIds: batch.map((c) => c.cellId) }
          : { cells: batch.map((c) => inline.get(c.cellId)!) }),
      });
      for (const [id, outcomes] of Object.entries(resolved)) {
        const stages = Object.fromEntries(Object.keys(outcomes).map((n) => [n, { status: 'cached', seconds: 0 } satisfies StageState]));
        cells[id] = { status: 'succeeded', workflowId: cells[id].workflowId, stages };
      }
    }
  }
  const queue = index.filter((c) => cells[c.cellId].status === 'pending');
  const runOne = async (entry: CellEntry): Promise<void> => {
    const summary = cells[entry.cellId];
    summary.status = 'running';
    try {
      // The child gets its plan inline (old inputs) or reads it from the plan blob.
      const plan = inline.get(entry.cellId);
      let cell: CellInput = {
        ...(plan ? { plan } : { planBlob: input.plan!, cellId: entry.cellId }),
        device: summary.device!, controlQueue: input.controlQueue, deviceQueue: input.deviceQueues[summary.device!],
      };
      if (leases && entry.device) {
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
