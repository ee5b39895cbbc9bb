/**
 * Sweep operations behind the CLI: plan, submit, watch, status, resume, cancel, explain.
 * Each takes a Temporal client and the environment, so tests call them directly too.
 */
import { readFile } from 'node:fs/promises';
import { Client, WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { loadSweep } from '../config/sweep.ts';
import { planSweep, type SweepPlan, type CellPlan } from '../config/plan.ts';
import { deviceQueue, paths, type LayerflowEnv } from '../config/env.ts';
import { ArtifactStore } from '../store/artifacts.ts';
import { writeFileAtomic } from '../store/atomic.ts';
import { diffCacheKeyParts, type CacheKeyParts } from '../store/cache-key.ts';
import { ConfigError } from '../errors.ts';
import { loadPipelineDefs } from '../../pipelines/index.ts';
import type { SweepInput, SweepResult, CellSummary } from '../../workflows/sweep.ts';
import type { StageState } from '../../workflows/experiment.ts';
import { liveStages, type LiveStage } from './progress.ts';
import { readDeviceBeats, BEAT_STALE_MS, POLL_LIVE_MS } from '../runtime/devices.ts';
import { queryUnanswered, noWorkerMessage, controlPollers, ledgerCells, readLedger, readSavedPlan, type DeviceView } from './workers.ts';

export const sweepWorkflowId = (sweep: string) => `layerflow/${sweep}`;

export async function planFile(file: string): Promise<SweepPlan> {
  const defs = await loadPipelineDefs();
  const sweep = await loadSweep(file, defs);
  return planSweep(sweep, defs[sweep.pipeline]);
}

export type CacheStatus = 'hit' | 'miss' | 'corrupt';

/** Cache status of every stage of every cell (verified, like a real run would). */
export async function cacheStatus(env: LayerflowEnv, plan: SweepPlan): Promise<Record<string, Record<string, CacheStatus>>> {
  const store = new ArtifactStore(paths.store(env.home));
  const out: Record<string, Record<string, CacheStatus>> = {};
  for (const c of plan.cells) {
    out[c.cellId] = {};
    for (const s of c.stages) {
      const r = await store.lookup(s.key);
      out[c.cellId][s.name] = r.status === 'hit' ? 'hit' : r.status === 'missing' ? 'miss' : 'corrupt';
    }
  }
  return out;
}

export interface SubmitOptions {
  /** The device lease in seconds (default: the sweep file's `leaseSeconds`, else LAYERFLOW_LEASE_SECONDS, else 300). */
  leaseSeconds?: number;
}

/**
 * Start the sweep workflow for `cells` (default: all). Saves the plan for status/resume/explain.
 * Its devices: this host's (LAYERFLOW_DEVICES) and every device whose worker is alive on this task
 * queue (another process or host sharing the home); more that join later are found by the sweep.
 */
export async function submitSweep(client: Client, env: LayerflowEnv, plan: SweepPlan, cells: CellPlan[] = plan.cells, opts: SubmitOptions = {}) {
  const leaseSeconds = opts.leaseSeconds ?? plan.leaseSeconds ?? env.leaseSeconds;
  if (!(Number.isFinite(leaseSeconds) && leaseSeconds >= 1)) throw new ConfigError(`lease of ${leaseSeconds} s: expected at least 1 second`);
  await writeFileAtomic(`${paths.sweep(env.home, plan.sweep)}/plan.json`, JSON.stringify({ ...plan, leaseSeconds }, null, 1));
  const devices = [...env.devices];
  const now = Date.now();
  for (const b of await readDeviceBeats(env.home)) if (!devices.includes(b.device) && b.queue === deviceQueue(env, b.device) && now - b.at <= BEAT_STALE_MS) devices.push(b.device);
  // The cells' plans travel as one blob of the store (Temporal refuses a workflow input over 2 MB).
  const planBlob = await new ArtifactStore(paths.store(env.home)).putBlob(JSON.stringify(cells), `sweep ${plan.sweep}: plan`, 'the sweep was not submitted');
  const input: SweepInput = {
    sweep: plan.sweep,
    plan: planBlob,
    cellIndex: cells.map((c) => ({ cellId: c.cellId, device: c.stages.some((s) => s.device) })),
    concurrency: plan.concurrency,
    devices,
    controlQueue: env.taskQueue,
    deviceQueues: Object.fromEntries(devices.map((d) => [d, deviceQueue(env, d)])),
    leaseMs: Math.round(leaseSeconds * 1000),
  };
  try {
    return await client.workflow.start('sweepWorkflow', {
      taskQueue: env.taskQueue,
      workflowId: sweepWorkflowId(plan.sweep),
      args: [input],
    });
  } catch (err) {
    if ((err as Error).name === 'WorkflowExecutionAlreadyStartedError')
      throw new ConfigError(`sweep ${plan.sweep} is already running; see \`layerflow status ${plan.sweep}\` or cancel it first`);
    throw err;
  }
}

export interface SweepStatus {
  sweep: string;
  state: 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed_out' | 'unknown';
  cells: Record<string, CellSummary>;
  /** Running cells → their running stages as Temporal describes them (last heartbeat, progress, attempt). */
  live?: Record<string, Record<string, LiveStage>>;
  /** Present when no worker polls the sweep's task queue: the state is then rebuilt from the plan and the ledger. */
  worker?: { polling: false; message: string };
  /** The device workers (filled by `layerflow status` and `services`). */
  devices?: DeviceView[];
  /** The device lease the sweep was submitted with (seconds). */
  leaseSeconds?: number;
}

/**
 * Per-cell, per-stage state: live from the running workflows, or from the finished result. With
 * `progress` (default), each running cell's workflow is also described once, for the last
 * heartbeat of its running stages (`live`); cells that are not running cost nothing.
 */
export async function sweepStatus(client: Client, sweep: string, opts: { progress?: boolean; env?: LayerflowEnv } = {}): Promise<SweepStatus> {
  const handle = client.workflow.getHandle(sweepWorkflowId(sweep));
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new ConfigError(`no sweep named ${sweep} has been run (workflow ${sweepWorkflowId(sweep)} not found)`);
    throw err;
  }
  const name = desc.status.name;
  if (name === 'RUNNING') {
    let cells: Record<string, CellSummary>;
    const deadline = Date.now() + 10_000;
    try {
      // No worker has polled the sweep's queue for over a minute: do not wait for a query to time out.
      if (opts.env && (await controlPollers(client, opts.env))?.pollers.every((p) => p.lastAccessMs === undefined || Date.now() - p.lastAccessMs > POLL_LIVE_MS)) {
        throw Object.assign(new Error('no poller seen for task queue recently'), { code: 9 });
      }
      // A worker answers in milliseconds; one that does not within 10 s is gone or stuck.
      cells = await client.connection.withDeadline(deadline, () => handle.query<Record<string, CellSummary>>('sweepState'));
    } catch (err) {
      // A query needs a worker; without one, say so and show what the plan and the ledger know.
      const why = queryUnanswered(err) ?? (Date.now() >= deadline - 100 ? 'timeout' : undefined);
      if (!why) throw err;
      return offlineStatus(client, sweep, desc, opts.env, why);
    }
    const live: Record<string, Record<string, LiveStage>> = {};
    const converter = client.workflow.options.loadedDataConverter?.payloadConverter;
    await Promise.all(
      Object.entries(cells)
        .filter(([, c]) => c.status === 'running')
        .map(async ([id, c]) => {
          const cell = client.workflow.getHandle(c.workflowId);
          const [stages, desc] = await Promise.all([
            cell.query<Record<string, StageState>>('cellState').catch(() => c.stages),
            opts.progress === false ? undefined : cell.describe().catch(() => undefined),
          ]);
          c.stages = stages;
          // The device the cell runs on now (it moves when its device's worker is lost).
          const on = Object.values(stages ?? {}).filter((st) => st.device).at(-1)?.device;
          if (on) c.device = on;
          const running = Object.entries(stages ?? {}).filter(([, st]) => st.status === 'running').map(([n]) => n);
          if (desc && running.length) live[id] = liveStages(desc.raw.pendingActivities ?? [], running, converter);
        }),
    );
    return { sweep, state: 'running', cells, live };
  }
  if (name === 'COMPLETED') {
    const r = (await handle.result()) as SweepResult;
    return { sweep, state: 'completed', cells: r.cells };
  }
  const state = ({ FAILED: 'failed', CANCELLED: 'cancelled', TERMINATED: 'terminated', TIMED_OUT: 'timed_out' } as const)[name as 'FAILED'] ?? 'unknown';
  return { sweep, state, cells: {} };
}

/**
 * A running sweep that no worker serves: cells and stages from the saved plan and the ledger (lines
 * since the sweep started for its running cells), running cells from the workflow's pending
 * children, their stage activities (scheduled = waiting for a worker) from Temporal's description.
 */
async function offlineStatus(client: Client, sweep: string, desc: Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['describe']>>, env: LayerflowEnv | undefined, why: 'no-poller' | 'timeout'): Promise<SweepStatus> {
  const message = env ? noWorkerMessage(env, why) : 'no worker is polling the sweep\'s task queue; start one with `layerflow worker` or `layerflow up`';
  const self = sweepWorkflowId(sweep);
  const running = new Set(
    (desc.raw.pendingChildren ?? []).map((c) => c.workflowId ?? '').filter((id) => id.startsWith(`${self}/`)).map((id) => id.slice(self.length + 1)),
  );
  if (!env) return { sweep, state: 'running', cells: {}, worker: { polling: false, message } };
  const plan = await readSavedPlan(env, sweep);
  const lines = await readLedger(env, sweep);
  const since = desc.startTime.getTime();
  const idOf = (cell: string) => `${self}/${cell}`;
  const planned = plan?.cells ?? [];
  const cells = {
    ...ledgerCells(planned.filter((c) => !running.has(c.cellId)), lines, { workflowIdOf: idOf }),
    ...ledgerCells(planned.filter((c) => running.has(c.cellId)), lines, { since, running, workflowIdOf: idOf }),
  };
  const ordered = Object.fromEntries(planned.map((c) => [c.cellId, cells[c.cellId]]));
  const live: Record<string, Record<string, LiveStage>> = {};
  const converter = client.workflow.options.loadedDataConverter?.payloadConverter;
  await Promise.all(
    [...running].map(async (id) => {
      const d = await client.workflow.getHandle(idOf(id)).describe().catch(() => undefined);
      const names = Object.entries(ordered[id]?.stages ?? {}).filter(([, st]) => st.status === 'running').map(([n]) => n);
      if (d && names.length) live[id] = liveStages(d.raw.pendingActivities ?? [], names, converter);
    }),
  );
  return { sweep, state: 'running', cells: ordered, live, worker: { polling: false, message }, leaseSeconds: plan?.leaseSeconds };
}

/** Wait for the sweep, calling `onUpdate` with its status about every `intervalMs`. */
export async function watchSweep(client: Client, sweep: string, onUpdate: (s: SweepStatus) => void, intervalMs = 1000, env?: LayerflowEnv): Promise<SweepResult> {
  const handle = client.workflow.getHandle(sweepWorkflowId(sweep));
  const result = handle.result() as Promise<SweepResult>;
  let done = false;
  result.then(() => (done = true), () => (done = true));
  while (!done) {
    const s = await sweepStatus(client, sweep, { env }).catch(() => undefined);
    if (s && !done) onUpdate(s);
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, intervalMs))]);
  }
  try {
    return await result;
  } catch (err) {
    if (err instanceof WorkflowFailedError) throw new Error(`sweep ${sweep} did not complete: ${err.cause?.message ?? err.message}`);
    throw err;
  }
}

export async function savedPlan(env: LayerflowEnv, sweep: string): Promise<SweepPlan> {
  const text = await readFile(`${paths.sweep(env.home, sweep)}/plan.json`, 'utf8').catch(() => {
    throw new ConfigError(`no sweep named ${sweep} under ${env.home}; run it first with \`layerflow run <file>\``);
  });
  return JSON.parse(text) as SweepPlan;
}

/**
 * Re-run only the cells that failed, were cancelled or never ran. The sweep file is read again
 * (the cause may have been fixed there); inside each cell every stage whose artifact exists and
 * verifies is a cache hit, so only failed or missing stages compute.
 */
export async function resumeSweep(client: Client, env: LayerflowEnv, sweep: string) {
  const old = await savedPlan(env, sweep);
  const plan = await planFile(old.file);
  if (plan.sweep !== sweep) throw new ConfigError(`${old.file} now declares sweep "${plan.sweep}", not "${sweep}"`);
  const status = await sweepStatus(client, sweep, { progress: false });
  if (status.state === 'running') throw new ConfigError(`sweep ${sweep} is still running; nothing to resume`);
  const todo = plan.cells.filter((c) => status.cells[c.cellId]?.status !== 'succeeded');
  if (todo.length === 0) return { handle: undefined, cells: [] as string[] };
  const handle = await submitSweep(client, env, plan, todo);
  return { handle, cells: todo.map((c) => c.cellId) };
}

export async function cancelSweep(client: Client, sweep: string): Promise<void> {
  await client.workflow.getHandle(sweepWorkflowId(sweep)).cancel();
}

/** Why a stage is (not) a cache hit: verified artifact, corrupt artifact, or which key parts changed. */
export async function explainStage(env: LayerflowEnv, sweep: string, cellId: string, stageName: string): Promise<string[]> {
  const old = await savedPlan(env, sweep);
  const plan = await planFile(old.file).catch(() => old);
  const cell = plan.cells.find((c) => c.cellId === cellId);
  if (!cell) throw new ConfigError(`sweep ${sweep} has no cell "${cellId}"; cells: ${plan.cells.map((c) => c.cellId).join(' | ')}`);
  const store = new ArtifactStore(paths.store(env.home));
  const lines: string[] = [];
  const explainOne = async (name: string, depth: number): Promise<void> => {
    const stage = cell.stages.find((s) => s.name === name);
    if (!stage) throw new ConfigError(`pipeline ${plan.pipeline} has no stage "${name}"; stages: ${cell.stages.map((s) => s.name).join(', ')}`);
    const pad = '  '.repeat(depth);
    const found = await store.lookup(stage.key);
    if (found.status === 'hit') {
      lines.push(`${pad}${name}: cache HIT — artifact ${stage.key.slice(0, 12)} exists and its checksums verify (written ${found.manifest.createdAt})`);
      return;
    }
    if (found.status === 'corrupt') {
      lines.push(`${pad}${name}: cache MISS — artifact ${stage.key.slice(0, 12)} is corrupt: ${found.reason}; it will be recomputed`);
      return;
    }
    const last = await readFile(paths.cellStage(env.home, sweep, cellId, name), 'utf8').then((t) => JSON.parse(t) as { key: string; parts: CacheKeyParts }, () => undefined);
    if (!last) {
      lines.push(`${pad}${name}: cache MISS — this stage has never completed for cell ${cellId} (key ${stage.key.slice(0, 12)})`);
      return;
    }
    if (last.key === stage.key) {
      lines.push(`${pad}${name}: cache MISS — key ${stage.key.slice(0, 12)} is unchanged but its artifact is gone from the store`);
      return;
    }
    const diffs = diffCacheKeyParts(last.parts, stage.parts);
    lines.push(`${pad}${name}: cache MISS — key changed ${last.key.slice(0, 12)} → ${stage.key.slice(0, 12)}:`);
    for (const d of diffs) {
      if (d.part === 'upstream') {
        lines.push(`${pad}  upstream stage ${d.path} changed key:`);
        await explainOne(d.path, depth + 2);
      } else {
        const where = d.part === 'slice' ? `config ${d.path}` : d.part;
        lines.push(`${pad}  ${where}: ${JSON.stringify(d.before)} → ${JSON.stringify(d.after)}`);
      }
    }
  };
  await explainOne(stageName, 0);
  return lines;
}
