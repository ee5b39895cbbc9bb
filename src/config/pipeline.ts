import type { z } from 'zod';

/** Retry policy of a stage's activity (Temporal's names, milliseconds). */
export interface StageRetry {
  maximumAttempts: number;
  initialIntervalMs: number;
  backoffCoefficient: number;
  maximumIntervalMs: number;
}

/** One node of a pipeline DAG (DESIGN.md pipelines/). */
export interface StageDef {
  name: string;
  /** Implementation version: bump it when the stage's code changes its output. */
  version: number;
  /** Artifact kind this stage writes. */
  kind: string;
  /** Upstream stages whose artifacts this stage reads. */
  needs: string[];
  /**
   * Config paths this stage reads besides its own `stages.<name>` settings: a whole entry (`model`,
   * `task`, `method`, `seed`) or one field of it (`method.influence`, `stages.ndr.aggregation`).
   * Only these values enter the cache key, so a change elsewhere leaves the stage's key alone.
   */
  reads: string[];
  /**
   * The needs a cell's settings of this stage actually use (default: all of them), e.g. an
   * allocator that ignores the layer scores. Only these enter the cache key and gate the start,
   * so cells that differ only upstream of an unused need share the stage, and it starts at once.
   */
  uses?: (settings: Record<string, unknown>) => string[];
  /** Device-bound stages run on a device worker's own task queue, one at a time. */
  device: boolean;
  /** Schema of `stages.<name>` settings in the sweep file; defaults fill what is omitted. */
  settings: z.ZodType<Record<string, unknown>>;
  retry?: Partial<StageRetry>;
  /** Start-to-close timeout of one attempt. */
  timeoutMs?: number;
  /** Heartbeat timeout: a worker that stops heartbeating for this long is presumed lost. */
  heartbeatMs?: number;
}

/** A declarative pipeline: schemas for the sweep file's entries and the stage DAG. */
export interface PipelineDef {
  name: string;
  description: string;
  /** Schemas of models[] / tasks[] / methods[] entries (without `id`). */
  model: z.ZodObject;
  task: z.ZodObject;
  method?: z.ZodObject;
  /** Paths in the resolved cell config that name input files, e.g. 'task.data': hashed into cache keys. */
  inputFiles?: string[];
  stages: StageDef[];
}

export const DEFAULT_RETRY: StageRetry = {
  maximumAttempts: 5,
  initialIntervalMs: 1000,
  backoffCoefficient: 2,
  maximumIntervalMs: 30_000,
};

const READ_ROOTS = ['model', 'task', 'method', 'seed', 'stages'];

/** Throws unless `path` is a config path a stage may read (see StageDef.reads). */
export function checkReadPath(p: PipelineDef, stage: string, path: string): void {
  const parts = path.split('.');
  const ok = READ_ROOTS.includes(parts[0]) && parts.every((x) => /^[A-Za-z0-9_-]+$/.test(x)) &&
    (parts[0] !== 'seed' || parts.length === 1) && (parts[0] !== 'method' || p.method !== undefined) &&
    (parts[0] !== 'stages' || (parts.length === 3 && p.stages.some((s) => s.name === parts[1])));
  if (!ok) throw new Error(`pipeline ${p.name}: stage ${stage} reads "${path}"; expected model, task, ${p.method ? 'method, ' : ''}seed, one of their fields (e.g. model.path) or stages.<stage>.<setting>`);
}

/** The value at a dotted config path (undefined where absent). */
export function valueAt(config: unknown, path: string): unknown {
  let v = config;
  for (const k of path.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/** Stages in an order where every stage comes after its needs; throws on unknown needs, bad reads or cycles. */
export function topologicalStages(p: PipelineDef): StageDef[] {
  const byName = new Map(p.stages.map((s) => [s.name, s]));
  const order: StageDef[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (s: StageDef, trail: string[]): void => {
    if (state.get(s.name) === 'done') return;
    if (state.get(s.name) === 'visiting')
      throw new Error(`pipeline ${p.name}: stage cycle ${[...trail, s.name].join(' → ')}`);
    state.set(s.name, 'visiting');
    for (const r of s.reads) checkReadPath(p, s.name, r);
    for (const n of s.needs) {
      const dep = byName.get(n);
      if (!dep) throw new Error(`pipeline ${p.name}: stage ${s.name} needs unknown stage ${n}`);
      visit(dep, [...trail, s.name]);
    }
    state.set(s.name, 'done');
    order.push(s);
  };
  for (const s of p.stages) visit(s, []);
  return order;
}
