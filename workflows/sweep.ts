/**
 * A sweep: one child workflow per cell, at most `concurrency` at a time. A failed cell does
 * not stop the others; the result lists every cell's outcome. Deterministic, no I/O.
 */
import { executeChild, defineQuery, setHandler, workflowInfo, isCancellation, CancellationScope } from '@temporalio/workflow';
import type { CellPlan } from '../src/config/plan.ts';
import { experimentWorkflow, rootMessage, type StageState } from './experiment.ts';
import { assignDevices } from './devices.ts';

export interface SweepInput {
  sweep: string;
  cells: CellPlan[];
  concurrency: number;
  devices: string[];
  controlQueue: string;
  /** Device task queue name for each device. */
  deviceQueues: Record<string, string>;
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

export function cellWorkflowId(sweepWorkflowId: string, cellId: string): string {
  return `${sweepWorkflowId}/${cellId}`;
}

export async function sweepWorkflow(input: SweepInput): Promise<SweepResult> {
  const self = workflowInfo().workflowId;
  const devices = assignDevices(input.cells.map((c) => c.cellId), input.devices);
  const cells: Record<string, CellSummary> = Object.fromEntries(
    input.cells.map((c) => [c.cellId, { status: 'pending' as CellStatus, workflowId: cellWorkflowId(self, c.cellId), device: devices[c.cellId] }]),
  );
  setHandler(sweepStateQuery, () => cells);

  const queue = [...input.cells];
  const runOne = async (plan: CellPlan): Promise<void> => {
    const summary = cells[plan.cellId];
    summary.status = 'running';
    try {
      const r = await executeChild(experimentWorkflow, {
        workflowId: summary.workflowId,
        args: [{ plan, device: summary.device!, controlQueue: input.controlQueue, deviceQueue: input.deviceQueues[summary.device!] }],
      });
      summary.status = 'succeeded';
      summary.stages = r.stages;
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
