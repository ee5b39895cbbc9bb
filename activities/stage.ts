/**
 * The one activity every stage runs through: cache check, run the stage's implementation,
 * commit the artifact, record the outcome. Thin: the work itself is in the pipeline's stage
 * implementation (src/ or test/pipeline), the cache in src/store, tracking in src/tracking.
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { ArtifactStore, refOf, type ArtifactFile, type ArtifactRef, type Lookup, type Manifest } from '../src/store/artifacts.ts';
import { writeFileAtomic } from '../src/store/atomic.ts';
import { paths } from '../src/config/env.ts';
import { flatten, type CellPlan, type StagePlan } from '../src/config/plan.ts';
import { LayerflowError, DataError } from '../src/errors.ts';
import { isOutOfMemory, scaleMicroBatch, formatScale } from '../src/runtime/oom.ts';
import { beginRunning, deviceThreads } from '../src/runtime/devices.ts';
import type { TrackingOutbox } from '../src/tracking/outbox.ts';
import type { StageEvent, TrackingEvent } from '../src/tracking/events.ts';
import type { PipelineModule } from '../pipelines/index.ts';

export interface RunStageInput {
  sweep: string;
  pipeline: string;
  cellId: string;
  cellKey: string;
  cellParams: Record<string, string>;
  cellAxes?: Record<string, string | number | boolean>;
  stage: StagePlan;
  inputs: Record<string, ArtifactRef>;
  device?: string;
  /** What the cell workflow learnt from this stage's earlier failures (OOM-adaptive retries). */
  hints?: StageHints;
}

export interface StageHints {
  /** Micro-batch scale after out-of-memory failures: ½, ¼, … (absent: 1). */
  microBatchScale?: number;
  /** The failure that led to these hints. */
  after?: string;
}

/** Details of an OUT_OF_MEMORY activity failure, read by the cell workflow. */
export interface OomDetails {
  device: string;
  microBatchScale: number;
  /** The stage asked for a micro-batch above 1 at this scale: halving it can lower its memory use. */
  canShrink: boolean;
}

/** A batch of a sweep's cells to resolve from the cache (`resolveCachedCells`): ids in the plan blob, or the plans inline. */
export interface ResolveCachedInput {
  sweep: string;
  plan?: ArtifactFile;
  cellIds?: string[];
  cells?: CellPlan[];
}

/** One cell's plan from a sweep's plan blob (`loadCellPlan`). */
export interface LoadCellPlanInput {
  plan: ArtifactFile;
  cellId: string;
}

/** Failure type of an out-of-memory stage failure (OutOfMemoryError's code). */
export const OOM_TYPE = 'OUT_OF_MEMORY';

export interface StageOutcome {
  stage: string;
  status: 'cached' | 'computed';
  ref: ArtifactRef;
  metrics: Record<string, number>;
  seconds: number;
}

/** One line per stage execution in `<home>/sweeps/<sweep>/events.jsonl`: what ran, what was reused. */
export interface LedgerLine {
  at: string;
  cell: string;
  stage: string;
  key: string;
  /**
   * `started`: an attempt begins computing (after a cache miss); `shard`: it committed shard `shard`
   * (gradient stores); then one of computed / failed / cancelled, or nothing when its worker died.
   */
  outcome: 'cached' | 'computed' | 'failed' | 'corrupt' | 'cancelled' | 'started' | 'shard';
  attempt: number;
  /** `shard` lines: the shard's number. */
  shard?: number;
  reason?: string;
  /** Device-bound stages: the device it ran on. */
  device?: string;
  /** Micro-batch scale of this execution when below 1 (after out-of-memory failures). */
  microBatchScale?: number;
  /** A failure that was an out-of-memory failure. */
  oom?: true;
}

export interface StageActivityDeps {
  home: string;
  outbox: TrackingOutbox;
  /** The registered pipelines (built-in + LAYERFLOW_PIPELINES plug-ins). */
  pipelines: () => Promise<Record<string, PipelineModule>>;
  gitCommit?: string;
}

export function createStageActivities(deps: StageActivityDeps) {
  const store = new ArtifactStore(paths.store(deps.home));

  async function ledger(sweep: string, line: LedgerLine): Promise<void> {
    const file = paths.events(deps.home, sweep);
    await mkdir(dirname(file), { recursive: true });
    await appendFile(file, JSON.stringify(line) + '\n');
  }

  /** Files of a stage's artifact worth a copy in MLflow: all but gradient shards and big tensors (size-capped at delivery). */
  const uploadable = (m: Manifest) => Object.keys(m.files).filter((f) => m.kind !== 'gradients' || f === 'index.json');

  type TrackInput = Pick<RunStageInput, 'sweep' | 'cellId' | 'cellKey' | 'cellParams' | 'cellAxes' | 'pipeline' | 'stage'>;
  type TrackOutcome = { cached: boolean; status: 'FINISHED' | 'FAILED'; start: number; metrics: Record<string, number>; series?: Record<string, number[]>; error?: string; manifest?: Manifest };

  function stageEvent(input: TrackInput, ev: TrackOutcome): StageEvent {
    return {
      type: 'stage',
      sweep: input.sweep,
      cellId: input.cellId,
      cellKey: input.cellKey,
      cellParams: input.cellParams,
      cellAxes: input.cellAxes,
      pipeline: input.pipeline,
      gitCommit: deps.gitCommit,
      time: Date.now(),
      stage: input.stage.name,
      key: input.stage.key,
      cached: ev.cached,
      status: ev.status,
      startTime: ev.start,
      params: flatten(input.stage.parts.slice),
      metrics: ev.metrics,
      series: ev.series,
      error: ev.error,
      artifacts: ev.manifest ? { 'manifest.json': JSON.stringify(ev.manifest, null, 1) } : undefined,
      storeFiles: ev.manifest ? uploadable(ev.manifest) : undefined,
    };
  }

  async function track(input: TrackInput, ev: TrackOutcome) {
    await deps.outbox.enqueue(stageEvent(input, ev)).catch(() => undefined); // tracking never fails a stage
  }

  /**
   * One execution per stage key at a time in this worker process: cells that share a stage (same
   * key) and reach it together run it once; the others wait and then find the cache hit.
   */
  const running = new Map<string, Promise<unknown>>();
  async function runStage(input: RunStageInput): Promise<StageOutcome> {
    const key = input.stage.key;
    if (running.has(key)) {
      const beat = setInterval(() => Context.current().heartbeat({ waitingFor: key, stage: input.stage.name }), 5000);
      try {
        for (let other = running.get(key); other; other = running.get(key)) await other.catch(() => undefined);
      } finally {
        clearInterval(beat);
      }
    }
    const p = runStageOnce(input);
    running.set(key, p);
    try {
      return await p;
    } finally {
      if (running.get(key) === p) running.delete(key);
    }
  }

  /** A device stage is listed in its device's beat (what the device runs) from its start to its end. */
  async function runStageOnce(input: RunStageInput): Promise<StageOutcome> {
    if (!input.device) return runStageBody(input);
    const scale = input.hints?.microBatchScale;
    const release = beginRunning(input.device, {
      sweep: input.sweep, cell: input.cellId, stage: input.stage.name, since: Date.now(), attempt: Context.current().info.attempt,
      ...(scale !== undefined && scale < 1 ? { microBatchScale: scale } : {}),
    });
    try {
      return await runStageBody(input);
    } finally {
      release();
    }
  }

  async function runStageBody(input: RunStageInput): Promise<StageOutcome> {
    const ctx = Context.current();
    const { stage, sweep, cellId } = input;
    const start = Date.now();
    const attempt = ctx.info.attempt;
    const device = input.device ?? 'cpu:0';
    const scale = input.hints?.microBatchScale ?? 1;
    if (!(scale > 0 && scale <= 1)) throw ApplicationFailure.nonRetryable(`stage ${stage.name}: micro-batch scale ${scale} is not in (0, 1]`, 'BAD_CONFIG');
    const base: Omit<LedgerLine, 'outcome'> = {
      at: new Date().toISOString(), cell: cellId, stage: stage.name, key: stage.key, attempt,
      ...(input.device ? { device } : {}), ...(scale < 1 ? { microBatchScale: scale } : {}),
    };
    const scaleMetric: Record<string, number> = scale < 1 ? { micro_batch_scale: scale } : {};

    const found = await store.lookup(stage.key);
    if (found.status === 'hit') {
      await ledger(sweep, { ...base, outcome: 'cached' });
      await track(input, { cached: true, status: 'FINISHED', start, metrics: found.manifest.metrics, series: found.manifest.series, manifest: found.manifest });
      await recordLastKey(input, 'cached');
      return { stage: stage.name, status: 'cached', ref: refOf(found.manifest), metrics: found.manifest.metrics, seconds: 0 };
    }
    if (found.status === 'corrupt') await ledger(sweep, { ...base, outcome: 'corrupt', reason: found.reason });

    const impl = (await deps.pipelines())[input.pipeline]?.stages[stage.name];
    if (!impl) throw ApplicationFailure.nonRetryable(`pipeline ${input.pipeline} has no implementation for stage ${stage.name}`, 'BAD_CONFIG');
    const abort = new AbortController();
    ctx.cancelled.catch(() => abort.abort());
    // What the stage did with its micro-batch: an OOM retry at half the scale helps only if it used one above 1.
    let canShrink = false;
    const microBatch = (size: number, opts?: { divides?: number }) => {
      const n = scaleMicroBatch(size, scale, opts);
      if (n > 1) canShrink = true;
      return n;
    };
    await ledger(sweep, { ...base, outcome: 'started' });
    // Every shard the attempt commits is a ledger line: what a crash can lose is what came after the last one.
    const stageStore: ArtifactStore = Object.create(store, {
      commitShard: {
        value: async (...a: Parameters<ArtifactStore['commitShard']>) => {
          const file = await store.commitShard(...a);
          await ledger(sweep, { ...base, at: new Date().toISOString(), outcome: 'shard', shard: a[1] });
          return file;
        },
      },
    });
    try {
      const result = await impl({
        sweep,
        cellId,
        stage: stage.name,
        key: stage.key,
        settings: (stage.parts.slice.settings ?? {}) as Record<string, unknown>,
        device,
        threads: deviceThreads(device),
        microBatchScale: scale,
        microBatch,
        slice: stage.parts.slice,
        inputs: input.inputs,
        store: stageStore,
        home: deps.home,
        attempt,
        // Every heartbeat names its stage, so `status` can tell parallel stages of a cell apart.
        heartbeat: (d) => ctx.heartbeat(d !== null && typeof d === 'object' && !Array.isArray(d) ? { ...d, stage: stage.name } : { stage: stage.name, ...(d === undefined ? {} : { details: d }) }),
        resumeFrom: ctx.info.heartbeatDetails,
        signal: abort.signal,
      });
      const metrics = result.metrics ?? {};
      for (const [k, v] of Object.entries(metrics))
        if (!Number.isFinite(v)) throw new DataError(`stage ${stage.name} produced metric ${k} = ${v}; expected a finite number`);
      const manifest = await store.commit({ key: stage.key, parts: stage.parts, kind: stage.kind, files: result.files, metrics, series: result.series });
      const seconds = (Date.now() - start) / 1000;
      await ledger(sweep, { ...base, outcome: 'computed' });
      await track(input, { cached: false, status: 'FINISHED', start, metrics: { ...metrics, seconds, ...scaleMetric }, series: result.series, manifest });
      await recordLastKey(input, 'computed');
      return { stage: stage.name, status: 'computed', ref: refOf(manifest), metrics, seconds };
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      if (abort.signal.aborted) {
        // Cancelled: whatever the implementation threw on the way out, Temporal must read it as
        // cancelled (a CancelledFailure), not as a failure to retry.
        await ledger(sweep, { ...base, outcome: 'cancelled', reason: message });
        throw err instanceof CancelledFailure ? err : new CancelledFailure(`stage ${stage.name} cancelled`);
      }
      if (isOutOfMemory(err)) {
        // Out of memory: the cell workflow decides (halve the micro-batch, move device, or give up).
        await ledger(sweep, { ...base, outcome: 'failed', reason: message, oom: true });
        await track(input, { cached: false, status: 'FAILED', start, metrics: { micro_batch_scale: scale }, error: `out of memory on ${device} at micro-batch scale ${formatScale(scale)}: ${message}` });
        const details: OomDetails = { device, microBatchScale: scale, canShrink };
        throw ApplicationFailure.create({ type: OOM_TYPE, message, nonRetryable: false, details: [details] });
      }
      await ledger(sweep, { ...base, outcome: 'failed', reason: message });
      const fatal = err instanceof LayerflowError && !err.retryable;
      const lastAttempt = attempt >= stage.retry.maximumAttempts;
      if (fatal || lastAttempt) await track(input, { cached: false, status: 'FAILED', start, metrics: {}, error: message });
      if (fatal) throw ApplicationFailure.nonRetryable(message, (err as LayerflowError).code);
      throw err;
    }
  }

  /** What this cell's stage last ran with: `layerflow explain` compares the current plan against it. */
  async function recordLastKey(input: Pick<RunStageInput, 'sweep' | 'cellId' | 'stage'>, outcome: string): Promise<void> {
    const file = paths.cellStage(deps.home, input.sweep, input.cellId, input.stage.name);
    await writeFileAtomic(file, JSON.stringify({ key: input.stage.key, parts: input.stage.parts, outcome, at: new Date().toISOString() }));
  }

  /**
   * The cells whose every stage is a cache hit, resolved in one activity (issue 13): a fully cached
   * cell then costs the sweep no child workflow and no activity per stage. For each such cell it does
   * what `runStage` does for a hit — a ledger line per stage, the cell's parent run and every stage's
   * nested run in MLflow (one outbox file per cell), `explain`'s record — and returns the outcomes.
   * Cells with any miss or corrupt artifact are left out: they run as before, stage by stage.
   * Each distinct key is verified once per call (the cells of a sweep share most of their stages).
   */
  /** The cell plans of a plan blob, by cell id; the last few blobs read stay parsed in memory. */
  const plans = new Map<string, Promise<Map<string, CellPlan>>>();
  function planCells(file: ArtifactFile): Promise<Map<string, CellPlan>> {
    let p = plans.get(file.sha256);
    if (!p) {
      p = store.readBlob(file, 'sweep plan').then((b) => new Map((JSON.parse(b.toString('utf8')) as CellPlan[]).map((c) => [c.cellId, c])));
      p.catch(() => plans.delete(file.sha256));
      plans.set(file.sha256, p);
      while (plans.size > 4) plans.delete(plans.keys().next().value!);
    }
    return p;
  }

  async function cellPlan(file: ArtifactFile, cellId: string): Promise<CellPlan> {
    const c = (await planCells(file)).get(cellId);
    if (!c) throw ApplicationFailure.nonRetryable(`the sweep plan (blob ${file.sha256.slice(0, 12)}) has no cell ${cellId}`, 'BAD_CONFIG');
    return c;
  }

  /** A cell's plan, for its workflow: sweeps send the plans as one blob (Temporal caps a workflow input at 2 MB). */
  async function loadCellPlan(input: LoadCellPlanInput): Promise<CellPlan> {
    return cellPlan(input.plan, input.cellId);
  }

  async function resolveCachedCells(input: ResolveCachedInput): Promise<Record<string, Record<string, StageOutcome>>> {
    const cells = input.cells ?? (await Promise.all((input.cellIds ?? []).map((id) => cellPlan(input.plan!, id))));
    const lookups = new Map<string, Promise<Lookup>>();
    const lookup = (key: string) => {
      let p = lookups.get(key);
      if (!p) lookups.set(key, (p = store.lookup(key)));
      return p;
    };
    const out: Record<string, Record<string, StageOutcome>> = {};
    const lines: LedgerLine[] = [];
    const at = new Date().toISOString();
    const ctx = Context.current();
    for (const [i, cell] of cells.entries()) {
      if (i % 16 === 0) ctx.heartbeat({ resolved: i });
      const found = await Promise.all(cell.stages.map((s) => lookup(s.key)));
      if (!found.every((f) => f.status === 'hit')) continue;
      const start = Date.now();
      const info = { sweep: input.sweep, cellId: cell.cellId, cellKey: cell.cellKey, cellParams: cell.params, cellAxes: cell.axes, pipeline: cell.pipeline };
      const events: TrackingEvent[] = [{ type: 'cell', ...info, status: 'RUNNING', gitCommit: deps.gitCommit, time: start }];
      out[cell.cellId] = {};
      for (const [j, s] of cell.stages.entries()) {
        const { manifest } = found[j] as Extract<Lookup, { status: 'hit' }>;
        lines.push({ at, cell: cell.cellId, stage: s.name, key: s.key, outcome: 'cached', attempt: 1 });
        events.push(stageEvent({ ...info, stage: s }, { cached: true, status: 'FINISHED', start, metrics: manifest.metrics, series: manifest.series, manifest }));
        out[cell.cellId][s.name] = { stage: s.name, status: 'cached', ref: refOf(manifest), metrics: manifest.metrics, seconds: 0 };
        await recordLastKeyIfChanged({ sweep: input.sweep, cellId: cell.cellId, stage: s });
      }
      events.push({ type: 'cell', ...info, status: 'FINISHED', gitCommit: deps.gitCommit, time: Date.now() });
      await deps.outbox.enqueueMany(events).catch(() => undefined); // tracking never fails the science
    }
    if (lines.length) {
      const file = paths.events(deps.home, input.sweep);
      await mkdir(dirname(file), { recursive: true });
      await appendFile(file, lines.map((l) => JSON.stringify(l) + '\n').join(''));
    }
    return out;
  }

  /** `explain`'s record, written only when the key differs from the one recorded (a cached re-run writes nothing). */
  async function recordLastKeyIfChanged(input: Pick<RunStageInput, 'sweep' | 'cellId' | 'stage'>): Promise<void> {
    const file = paths.cellStage(deps.home, input.sweep, input.cellId, input.stage.name);
    const last = await readFile(file, 'utf8').then((t) => (JSON.parse(t) as { key?: string }).key, () => undefined);
    if (last !== input.stage.key) await recordLastKey(input, 'cached');
  }

  return { runStage, resolveCachedCells, loadCellPlan };
}
