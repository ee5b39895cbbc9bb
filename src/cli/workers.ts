/**
 * What the CLI can tell about workers and sweeps without a worker: the device workers (their beat
 * files in the home, their queues' pollers and backlog in Temporal), the control queue's pollers,
 * and a sweep's per-cell, per-stage state rebuilt from its saved plan and its ledger
 * (`<home>/sweeps/<sweep>/events.jsonl`) when no worker can answer the workflow's query.
 */
import { readFile } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { deviceQueue, paths, type LayerflowEnv } from '../config/env.ts';
import { BEAT_STALE_MS, presenceOf, readDeviceBeats, type DeviceBeat, type PresenceView, type QueueView } from '../runtime/devices.ts';
import { describeQueue, type TaskQueueService } from '../../activities/devices.ts';
import type { LedgerLine } from '../../activities/index.ts';
import type { CellPlan, SweepPlan } from '../config/plan.ts';
import type { CellSummary, CellStatus } from '../../workflows/sweep.ts';
import type { StageState, StageStatus } from '../../workflows/experiment.ts';

/** One device worker queue as `services` and `status` show it. */
export interface DeviceView extends PresenceView {
  /** Live beats (one per worker process serving the device). */
  live: DeviceBeat[];
}

const service = (client: Client) => client.workflowService as unknown as TaskQueueService;

/** Every device of this host's configuration plus any device whose worker wrote a beat for this task queue. */
export async function deviceViews(client: Client | undefined, env: LayerflowEnv, now = Date.now()): Promise<DeviceView[]> {
  const beats = await readDeviceBeats(env.home);
  const devices = [...env.devices];
  for (const b of beats) if (!devices.includes(b.device) && b.queue === deviceQueue(env, b.device)) devices.push(b.device);
  return Promise.all(
    devices.map(async (d) => {
      const queue = deviceQueue(env, d);
      const view = client ? await describeQueue(service(client), env.namespace, queue) : undefined;
      const p = presenceOf(d, queue, beats, view, now);
      return { ...p, live: p.beats.filter((b) => now - b.at <= BEAT_STALE_MS) };
    }),
  );
}

/** Pollers of the control queue's workflow tasks: the workers that advance sweeps and answer their status queries. */
export async function controlPollers(client: Client, env: LayerflowEnv): Promise<QueueView | undefined> {
  return describeQueue(service(client), env.namespace, env.taskQueue, 'workflow');
}

/**
 * Why a workflow query got no answer, when it is for want of a worker: 'no-poller' (Temporal saw no
 * worker poll the workflow's task queue recently: FAILED_PRECONDITION), 'timeout' (no worker answered
 * in time: gone, or too busy). Undefined for any other error.
 */
export function queryUnanswered(err: unknown): 'no-poller' | 'timeout' | undefined {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  const cause = e?.cause as { code?: unknown; message?: unknown } | undefined;
  const text = [e?.message, cause?.message].filter((x) => typeof x === 'string').join(' ');
  if (/no poller seen|FAILED_PRECONDITION/i.test(text) || e?.code === 9 || cause?.code === 9) return 'no-poller';
  if (/DEADLINE_EXCEEDED|deadline exceeded/i.test(text) || e?.code === 4 || cause?.code === 4) return 'timeout';
  return undefined;
}

export function noWorkerMessage(env: Pick<LayerflowEnv, 'taskQueue' | 'temporalAddress'>, why: 'no-poller' | 'timeout' = 'no-poller'): string {
  const what = why === 'no-poller'
    ? `no worker is polling task queue ${env.taskQueue} on ${env.temporalAddress}, so the sweep is not advancing and cannot be asked for its live state.`
    : `no worker answered the sweep's status query in time (task queue ${env.taskQueue} on ${env.temporalAddress}): its worker is gone or too busy.`;
  return `${what} Start one with \`layerflow worker\` (foreground) or \`layerflow up\` (detached, with the services); the sweep continues where it stopped. What is known without a worker, from the saved plan and the ledger:`;
}

export async function readLedger(env: LayerflowEnv, sweep: string): Promise<LedgerLine[]> {
  const text = await readFile(paths.events(env.home, sweep), 'utf8').catch(() => '');
  const out: LedgerLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as LedgerLine);
    } catch { /* a line being written */ }
  }
  return out;
}

// A cancelled line is an attempt stopped by a cancel or a worker shutting down, a started or shard line
// an attempt under way (or one whose worker died): none says anything final.
const OUTCOME: Record<LedgerLine['outcome'], StageStatus | undefined> = {
  computed: 'computed', cached: 'cached', failed: 'failed', cancelled: undefined, corrupt: undefined, started: undefined, shard: undefined,
};

/**
 * Per-cell, per-stage state from the ledger lines since `since` (this run's start): a stage's last
 * outcome; in a running cell, a stage whose needs are all done and that has no outcome yet is running
 * (the cell workflow starts a stage as soon as its needs are done). A failed line is a failed attempt:
 * the stage may be retrying.
 */
export function ledgerCells(cells: CellPlan[], lines: LedgerLine[], opts: { since?: number; running?: Set<string>; workflowIdOf: (cell: string) => string }): Record<string, CellSummary> {
  const since = opts.since ?? 0;
  const last = new Map<string, LedgerLine>();
  for (const l of lines) if (Date.parse(l.at) >= since) last.set(`${l.cell}\u0000${l.stage}`, l);
  const out: Record<string, CellSummary> = {};
  for (const c of cells) {
    const stages: Record<string, StageState> = {};
    for (const s of c.stages) {
      const l = last.get(`${c.cellId}\u0000${s.name}`);
      const st = l ? OUTCOME[l.outcome] : undefined;
      stages[s.name] = st
        ? { status: st, ...(st === 'failed' && l?.reason ? { error: l.reason } : {}), ...(l?.device ? { device: l.device } : {}), ...(l?.microBatchScale ? { microBatchScale: l.microBatchScale } : {}) }
        : { status: 'pending' };
    }
    const running = opts.running?.has(c.cellId) ?? false;
    if (running) {
      const done = (n: string) => stages[n]?.status === 'cached' || stages[n]?.status === 'computed';
      for (const s of c.stages) if (stages[s.name].status === 'pending' && s.needs.every(done)) stages[s.name] = { status: 'running' };
    }
    const all = Object.values(stages);
    const status: CellStatus = running ? 'running'
      : all.every((s) => s.status === 'cached' || s.status === 'computed') ? 'succeeded'
        : all.some((s) => s.status === 'failed') ? 'failed' : 'pending';
    const failed = all.find((s) => s.status === 'failed');
    out[c.cellId] = { status, workflowId: opts.workflowIdOf(c.cellId), stages, ...(status === 'failed' && failed?.error ? { error: failed.error } : {}) };
  }
  return out;
}

/** The plan saved by the last submit (with the lease it ran with), if any. */
export async function readSavedPlan(env: LayerflowEnv, sweep: string): Promise<SweepPlan | undefined> {
  const text = await readFile(`${paths.sweep(env.home, sweep)}/plan.json`, 'utf8').catch(() => undefined);
  return text ? (JSON.parse(text) as SweepPlan) : undefined;
}
