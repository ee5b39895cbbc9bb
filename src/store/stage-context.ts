import type { ArtifactRef, ArtifactStore, FileContent } from './artifacts.ts';

/** What a stage implementation receives: references, settings, the store. No Temporal types. */
export interface StageContext {
  sweep: string;
  cellId: string;
  stage: string;
  key: string;
  /** This stage's resolved settings (`stages.<name>` with defaults). */
  settings: Record<string, unknown>;
  /** The config slice the stage reads (model / task / method / seed, as declared). */
  slice: Record<string, unknown>;
  /** Upstream stage name → its verified artifact reference. */
  inputs: Record<string, ArtifactRef>;
  store: ArtifactStore;
  /** LayerFlow home (default .layerflow/). */
  home: string;
  /** 1 on the first try; retries count up. */
  attempt: number;
  /** Report progress; the details come back as `resumeFrom` on a retry (DESIGN.md contract 4). */
  heartbeat(details?: unknown): void;
  resumeFrom?: unknown;
  /** Aborted when the stage is cancelled. */
  signal: AbortSignal;
}

export interface StageResult {
  /** File name → bytes (or text), optionally with tensor metadata. */
  files: Record<string, FileContent>;
  metrics?: Record<string, number>;
}

export type StageImpl = (ctx: StageContext) => Promise<StageResult>;
