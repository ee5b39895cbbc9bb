import type { ArtifactRef, ArtifactStore, FileContent } from './artifacts.ts';

/** What a stage implementation receives: references, typed settings, the store, its device. No Temporal types. */
export interface StageContext<S = Record<string, unknown>> {
  sweep: string;
  cellId: string;
  stage: string;
  key: string;
  /** This stage's resolved settings (`stages.<name>` parsed by the stage's own schema, defaults filled). */
  settings: S;
  /** The config values the stage reads, by path (`model`, `task`, `method.influence`, `stages.ndr.aggregation`). */
  slice: Record<string, unknown>;
  /** Upstream stage name → its verified artifact reference. */
  inputs: Record<string, ArtifactRef>;
  store: ArtifactStore;
  /** LayerFlow home (default .layerflow/). */
  home: string;
  /** The device this stage runs on: `cpu:N` or `cuda:N` (device-bound stages: the cell's pinned device). */
  device: string;
  /**
   * Intra-op threads of this device's sessions (the worker's per-device budget). Sessions created for
   * `device` use it by default; pass it on only to override something else.
   */
  threads?: number;
  /**
   * 1, or ½, ¼, … after out-of-memory failures of this stage (the cell workflow halves it on each
   * OOM retry). Stages with a micro-batch setting run with `microBatch(setting)`; results must not
   * depend on it (gradient accumulation / per-example work keeps them equal to float tolerance).
   */
  microBatchScale?: number;
  /**
   * The micro-batch to use for a configured `size` at `microBatchScale` (at least 1; with `divides`,
   * a divisor of it). Calling it tells the retry logic that this stage can shrink its memory use.
   * Stages call it through `stageMicroBatch(ctx, size)` (src/runtime/oom.ts), which also serves
   * contexts built without it (tests).
   */
  microBatch?(size: number, opts?: { divides?: number }): number;
  /** 1 on the first try; retries count up. */
  attempt: number;
  /** Report progress; the details come back as `resumeFrom` on a retry (DESIGN.md contract 4). */
  heartbeat(details?: unknown): void;
  resumeFrom?: unknown;
  /** Aborted when the stage is cancelled; throw `signal.reason` (an AbortError) to report it as cancelled. */
  signal: AbortSignal;
}

export interface StageResult {
  /** File name → bytes (or text), optionally with tensor metadata. */
  files: Record<string, FileContent>;
  metrics?: Record<string, number>;
  /** Metric series for MLflow (name → value per step); tracking only, not part of the artifact. */
  series?: Record<string, number[]>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StageImpl<S = any> = (ctx: StageContext<S>) => Promise<StageResult>;
