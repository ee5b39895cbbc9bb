/**
 * One cell: walk its pipeline DAG, one activity per stage; a stage starts as soon as every
 * stage it needs is done, so independent branches run in parallel. Deterministic, no I/O.
 *
 * Device-bound stages run on the cell's device (affinity) under a lease (DESIGN.md contract 5):
 * each waits at most `leaseMs` in its device's queue (Temporal's schedule-to-start timeout; a
 * worker that dies mid-stage stops heartbeating, Temporal retries it on the same queue, and that
 * retry is bound by the lease too). When the lease expires the cell asks which devices are alive
 * (`devicePresence`) and moves to another one or waits one more lease (`chooseDevice`); the stage
 * continues there from its committed shards. An out-of-memory failure retries the stage at half
 * the micro-batch (`hints.microBatchScale`), then on another device, before the cell fails.
 * Sweeps submitted before leases (no `leaseMs`) replay exactly as before (`patched`).
 */
import {
  proxyActivities, defineQuery, setHandler, ApplicationFailure, isCancellation, ActivityCancellationType, patched, log,
  TimeoutFailure,
} from '@temporalio/workflow';
import type { Activities, StageOutcome, RunStageInput, OomDetails } from '../activities/index.ts';
import type { CellPlan, StagePlan } from '../src/config/plan.ts';
import type { ArtifactFile } from '../src/store/artifacts.ts';
import { chooseDevice, halveMicroBatchScale } from './devices.ts';

export type StageStatus = 'pending' | 'running' | 'cached' | 'computed' | 'failed' | 'skipped';

export interface StageState {
  status: StageStatus;
  error?: string;
  seconds?: number;
  /** Device-bound stages: the device it runs (ran) on. */
  device?: string;
  /** Below 1 after out-of-memory retries: the micro-batch scale it runs (ran) with. */
  microBatchScale?: number;
  /** Times the stage moved to another device. */
  moves?: number;
  /** The last lease decision (moved, or waiting one more lease), for `status`. */
  note?: string;
}

export interface CellInput {
  /** The cell's plan inline (sweeps submitted before plan blobs), or … */
  plan?: CellPlan;
  /** … the sweep's plan blob and this cell's id in it (read by the `loadCellPlan` activity). */
  planBlob?: ArtifactFile;
  cellId?: string;
  /** Device this cell is pinned to (affinity: every device-bound stage runs on its queue). */
  device: string;
  controlQueue: string;
  deviceQueue: string;
  /**
   * Lease of device-bound stages (ms): the longest a stage waits in its device's queue before the cell
   * looks for another device. Absent (sweeps submitted before leases): it waits forever.
   */
  leaseMs?: number;
  /** The sweep's devices and their queues: where a cell may move. */
  devices?: string[];
  deviceQueues?: Record<string, string>;
}

export interface CellResult {
  cellId: string;
  stages: Record<string, StageState>;
  outcomes: Record<string, StageOutcome>;
  /** The device the cell ended on (it moves when its device's worker is lost). */
  device?: string;
}

/** Marks workflow code with device leases, OOM-adaptive retries and device moves. */
export const DEVICE_LEASE_PATCH = 'layerflow-device-leases-1';

/** Failure type of an out-of-memory stage (activities/stage.ts OOM_TYPE; OutOfMemoryError's code). */
const OOM = 'OUT_OF_MEMORY';

export const cellStateQuery = defineQuery<Record<string, StageState>>('cellState');

const control = (q: string) =>
  proxyActivities<Activities>({ taskQueue: q, startToCloseTimeout: '1 minute', retry: { maximumAttempts: 10, initialInterval: '1s' } });

function stageActivity(s: StagePlan, queue: string, leaseMs?: number) {
  return proxyActivities<Activities>({
    taskQueue: queue,
    startToCloseTimeout: s.timeoutMs,
    heartbeatTimeout: s.heartbeatMs,
    // The lease: how long the stage may wait for its device's worker (each retry too).
    ...(leaseMs !== undefined ? { scheduleToStartTimeout: leaseMs } : {}),
    // A device stage holds its device until it has stopped: the cell reports cancelled only after
    // the activity acknowledged the cancel (it sees it on its next heartbeat).
    cancellationType: s.device ? ActivityCancellationType.WAIT_CANCELLATION_COMPLETED : ActivityCancellationType.TRY_CANCEL,
    retry: {
      maximumAttempts: s.retry.maximumAttempts,
      initialInterval: s.retry.initialIntervalMs,
      backoffCoefficient: s.retry.backoffCoefficient,
      maximumInterval: s.retry.maximumIntervalMs,
      // With leases an out-of-memory failure comes back to the cell, which halves the micro-batch.
      nonRetryableErrorTypes: ['BAD_CONFIG', 'BAD_DATA', 'MISSING_ARTIFACT', ...(leaseMs !== undefined ? [OOM] : [])],
    },
  }).runStage;
}

/** Why a device-bound stage's activity failed, when the cell can do something about it. */
export function leaseFailure(err: unknown): 'lease' | 'lost' | 'oom' | undefined {
  for (let e = err as { cause?: unknown; type?: unknown } | undefined, depth = 0; e && depth < 8; e = e.cause as typeof e, depth++) {
    if (e instanceof TimeoutFailure) return e.timeoutType === 'SCHEDULE_TO_START' ? 'lease' : e.timeoutType === 'HEARTBEAT' ? 'lost' : undefined;
    if (e instanceof ApplicationFailure) return e.type === OOM ? 'oom' : undefined;
  }
  return undefined;
}

function oomDetails(err: unknown): OomDetails | undefined {
  for (let e = err as { cause?: unknown } | undefined, depth = 0; e && depth < 8; e = e.cause as typeof e, depth++) {
    if (e instanceof ApplicationFailure && e.type === OOM) return e.details?.[0] as OomDetails | undefined;
  }
  return undefined;
}

const fraction = (scale: number) => (scale >= 1 ? '1' : `1/${Math.round(1 / scale)}`);

export async function experimentWorkflow(input: CellInput): Promise<CellResult> {
  const tracking = control(input.controlQueue);
  let state: Record<string, StageState> = {};
  setHandler(cellStateQuery, () => state);
  const plan = input.plan ?? (await tracking.loadCellPlan({ plan: input.planBlob!, cellId: input.cellId! }));
  state = Object.fromEntries(plan.stages.map((s) => [s.name, { status: 'pending' as StageStatus }]));
  const outcomes: Record<string, StageOutcome> = {};
  const cellInfo = { sweep: plan.sweep, cellId: plan.cellId, cellKey: plan.cellKey, cellParams: plan.params, cellAxes: plan.axes };
  const leaseMs = input.leaseMs;
  const leases = leaseMs !== undefined && patched(DEVICE_LEASE_PATCH);
  await tracking.recordCell({ ...cellInfo, pipeline: plan.pipeline, status: 'RUNNING' });

  // The cell's device (affinity) and where else it may go.
  let device = input.device;
  let devices = input.devices?.length ? [...input.devices] : [input.device];
  const queues: Record<string, string> = { ...(input.deviceQueues ?? {}), [input.device]: input.deviceQueue };

  /**
   * A device-bound stage under a lease: on its device; moved when the lease expires and another device
   * can take it, or when its worker was lost for good; at half the micro-batch after running out of memory.
   */
  async function runOnDevice(s: StagePlan, args: Omit<RunStageInput, 'device' | 'hints'>): Promise<StageOutcome> {
    let scale = 1;
    let after: string | undefined;
    let moves = 0, lostMoves = 0;
    let oomMoved = false;
    let note: string | undefined;
    for (;;) {
      const here = device;
      state[s.name] = { status: 'running', device: here, ...(scale < 1 ? { microBatchScale: scale } : {}), ...(moves ? { moves } : {}), ...(note ? { note } : {}) };
      try {
        const o = await stageActivity(s, queues[here], leaseMs)({ ...args, device: here, ...(scale < 1 ? { hints: { microBatchScale: scale, after } } : {}) });
        state[s.name] = { ...state[s.name], status: o.status, seconds: o.seconds };
        return o;
      } catch (err) {
        const why = isCancellation(err) ? undefined : leaseFailure(err);
        if (!why) throw err;
        if (why === 'oom') {
          after = rootMessage(err);
          const next = oomDetails(err)?.canShrink ? halveMicroBatchScale(scale) : undefined;
          if (next !== undefined) {
            scale = next;
            note = `out of memory on ${here}: retrying at micro-batch scale ${fraction(scale)}`;
            log.warn(`cell ${plan.cellId}: stage ${s.name}: ${note}`);
            continue;
          }
          if (oomMoved) throw oomFailure(here, scale, after);
          oomMoved = true;
        } else if (why === 'lost') {
          // Every retry on the device timed out its heartbeat: its worker keeps dying. Try the others once each.
          if (lostMoves >= devices.length) throw err;
          lostMoves++;
        }
        const presence = await tracking.devicePresence({ devices, queues, controlQueue: input.controlQueue });
        for (const p of presence) {
          if (!devices.includes(p.device)) devices = [...devices, p.device];
          queues[p.device] ??= p.queue;
        }
        const choice = chooseDevice(here, devices, presence, why);
        if (why === 'oom' && choice.device === here) throw oomFailure(here, scale, after!);
        const cause = why === 'lease' ? `lease of ${Math.round(leaseMs! / 1000)} s expired` : why === 'lost' ? 'its worker was lost' : 'out of memory';
        if (choice.device !== here) {
          moves++;
          device = choice.device; // affinity follows: the cell's later device stages run there too
          note = `moved from ${here} (${cause}): ${choice.reason}`;
          log.warn(`cell ${plan.cellId}: stage ${s.name} ${note}`);
        } else {
          note = `waiting on ${here} (${cause}): ${choice.reason}`;
        }
      }
    }
  }

  const running = new Map<string, Promise<void>>();
  let failure: { stage: string; error: unknown } | undefined;
  for (;;) {
    if (!failure) {
      for (const s of plan.stages) {
        if (state[s.name].status !== 'pending' || !s.needs.every((n) => outcomes[n])) continue;
        state[s.name] = { status: 'running' };
        const args = { pipeline: plan.pipeline, ...cellInfo, stage: s, inputs: Object.fromEntries(s.needs.map((n) => [n, outcomes[n].ref])) };
        const p = (leases && s.device
          ? runOnDevice(s, args)
          : stageActivity(s, s.device ? input.deviceQueue : input.controlQueue)({ ...args, device: s.device ? input.device : undefined })
        ).then(
          (o) => {
            outcomes[s.name] = o;
            state[s.name] = leases && s.device ? { ...state[s.name], status: o.status, seconds: o.seconds } : { status: o.status, seconds: o.seconds };
          },
          (err) => {
            state[s.name] = leases && s.device ? { ...state[s.name], status: 'failed', error: rootMessage(err) } : { status: 'failed', error: rootMessage(err) };
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
  return { cellId: plan.cellId, stages: state, outcomes, ...(leases ? { device } : {}) };
}

function oomFailure(device: string, scale: number, message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `out of memory on ${device} at micro-batch scale ${fraction(scale)} and no other device could take it: ${message}`,
    OOM,
  );
}

/** The innermost failure message (ActivityFailure → ApplicationFailure → ...). */
export function rootMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e?.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
