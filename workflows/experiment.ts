/**
 * One cell: walk its pipeline DAG, one activity per stage; a stage starts as soon as every
 * stage it needs is done, so independent branches run in parallel. Deterministic, no I/O.
 */
import { proxyActivities, defineQuery, setHandler, ApplicationFailure, isCancellation, ActivityCancellationType } from '@temporalio/workflow';
import type { Activities, StageOutcome } from '../activities/index.ts';
import type { CellPlan, StagePlan } from '../src/config/plan.ts';

export type StageStatus = 'pending' | 'running' | 'cached' | 'computed' | 'failed' | 'skipped';

export interface StageState {
  status: StageStatus;
  error?: string;
  seconds?: number;
}

export interface CellInput {
  plan: CellPlan;
  /** Device this cell is pinned to (affinity: every device-bound stage runs on its queue). */
  device: string;
  controlQueue: string;
  deviceQueue: string;
}

export interface CellResult {
  cellId: string;
  stages: Record<string, StageState>;
  outcomes: Record<string, StageOutcome>;
}

export const cellStateQuery = defineQuery<Record<string, StageState>>('cellState');

const control = (q: string) =>
  proxyActivities<Activities>({ taskQueue: q, startToCloseTimeout: '1 minute', retry: { maximumAttempts: 10, initialInterval: '1s' } });

function stageActivity(s: StagePlan, queue: string) {
  return proxyActivities<Activities>({
    taskQueue: queue,
    startToCloseTimeout: s.timeoutMs,
    heartbeatTimeout: s.heartbeatMs,
    // A device stage holds its device until it has stopped: the cell reports cancelled only after
    // the activity acknowledged the cancel (it sees it on its next heartbeat).
    cancellationType: s.device ? ActivityCancellationType.WAIT_CANCELLATION_COMPLETED : ActivityCancellationType.TRY_CANCEL,
    retry: {
      maximumAttempts: s.retry.maximumAttempts,
      initialInterval: s.retry.initialIntervalMs,
      backoffCoefficient: s.retry.backoffCoefficient,
      maximumInterval: s.retry.maximumIntervalMs,
      nonRetryableErrorTypes: ['BAD_CONFIG', 'BAD_DATA', 'MISSING_ARTIFACT'],
    },
  }).runStage;
}

export async function experimentWorkflow(input: CellInput): Promise<CellResult> {
  const { plan } = input;
  const state: Record<string, StageState> = Object.fromEntries(plan.stages.map((s) => [s.name, { status: 'pending' as StageStatus }]));
  const outcomes: Record<string, StageOutcome> = {};
  setHandler(cellStateQuery, () => state);
  const tracking = control(input.controlQueue);
  const cellInfo = { sweep: plan.sweep, cellId: plan.cellId, cellKey: plan.cellKey, cellParams: plan.params, cellAxes: plan.axes };
  await tracking.recordCell({ ...cellInfo, pipeline: plan.pipeline, status: 'RUNNING' });

  const running = new Map<string, Promise<void>>();
  let failure: { stage: string; error: unknown } | undefined;
  for (;;) {
    if (!failure) {
      for (const s of plan.stages) {
        if (state[s.name].status !== 'pending' || !s.needs.every((n) => outcomes[n])) continue;
        state[s.name] = { status: 'running' };
        const run = stageActivity(s, s.device ? input.deviceQueue : input.controlQueue);
        const p = run({
          pipeline: plan.pipeline,
          ...cellInfo,
          stage: s,
          inputs: Object.fromEntries(s.needs.map((n) => [n, outcomes[n].ref])),
          device: s.device ? input.device : undefined,
        }).then(
          (o) => {
            outcomes[s.name] = o;
            state[s.name] = { status: o.status, seconds: o.seconds };
          },
          (err) => {
            state[s.name] = { status: 'failed', error: rootMessage(err) };
            failure ??= { stage: s.name, error: err };
          },
        ).finally(() => running.delete(s.name));
        running.set(s.name, p);
      }
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }

  if (failure) {
    for (const s of plan.stages) if (state[s.name].status === 'pending') state[s.name] = { status: 'skipped' };
    const cancelled = isCancellation(failure.error);
    await tracking.recordCell({ ...cellInfo, status: cancelled ? 'KILLED' : 'FAILED' });
    if (cancelled) throw failure.error;
    throw ApplicationFailure.nonRetryable(
      `cell ${plan.cellId}: stage ${failure.stage} failed: ${rootMessage(failure.error)}`,
      'CellFailed',
      { stages: state },
    );
  }
  await tracking.recordCell({ ...cellInfo, status: 'FINISHED' });
  return { cellId: plan.cellId, stages: state, outcomes };
}

/** The innermost failure message (ActivityFailure → ApplicationFailure → ...). */
export function rootMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e?.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
