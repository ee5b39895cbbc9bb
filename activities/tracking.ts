/** Cell-level tracking events (parent runs); stage events are enqueued by runStage. */
import type { TrackingOutbox } from '../src/tracking/outbox.ts';
import type { CellEvent } from '../src/tracking/events.ts';

export interface RecordCellInput {
  sweep: string;
  cellId: string;
  cellKey: string;
  cellParams: Record<string, string>;
  cellAxes?: Record<string, string | number | boolean>;
  pipeline?: string;
  status: CellEvent['status'];
}

export function createTrackingActivities(deps: { outbox: TrackingOutbox; gitCommit?: string }) {
  async function recordCell(input: RecordCellInput): Promise<void> {
    await deps.outbox
      .enqueue({ type: 'cell', ...input, gitCommit: deps.gitCommit, time: Date.now() })
      .catch(() => undefined); // tracking never fails the science
  }
  return { recordCell };
}
