import { stageCacheKey, type CacheKeyParts } from '../store/cache-key.ts';
import { sha256 } from '../store/hash.ts';
import { DEFAULT_RETRY, topologicalStages, valueAt, type PipelineDef, type StageRetry } from './pipeline.ts';
import type { Cell, Sweep, AxisValue } from './sweep.ts';

/** One stage of one cell, fully resolved: this is what the cell workflow executes. Small JSON. */
export interface StagePlan {
  name: string;
  kind: string;
  key: string;
  parts: CacheKeyParts;
  needs: string[];
  device: boolean;
  retry: StageRetry;
  timeoutMs: number;
  heartbeatMs: number;
}

export interface CellPlan {
  sweep: string;
  pipeline: string;
  cellId: string;
  /** Identity of this cell's whole configuration: hash of its stage keys. */
  cellKey: string;
  axes: Record<string, AxisValue>;
  /** The resolved cell config flattened to `a.b.c = value` strings (MLflow params). */
  params: Record<string, string>;
  stages: StagePlan[];
}

export interface SweepPlan {
  sweep: string;
  pipeline: string;
  file: string;
  concurrency: number;
  /** The sweep file's device lease in seconds, if it sets one. */
  leaseSeconds?: number;
  cells: CellPlan[];
}

/** Resolve every cell's stages and cache keys; deterministic from the YAML (and input file hashes). */
export function planSweep(sweep: Sweep, pipeline: PipelineDef): SweepPlan {
  return {
    sweep: sweep.name,
    pipeline: pipeline.name,
    file: sweep.file,
    concurrency: sweep.concurrency,
    ...(sweep.leaseSeconds !== undefined ? { leaseSeconds: sweep.leaseSeconds } : {}),
    cells: sweep.cells.map((c) => planCell(sweep.name, c, pipeline, sweep.heartbeatSeconds, sweep.targets)),
  };
}

/**
 * A cell's stages with their keys. `targets` (the sweep's `targets:`) keeps only those stages and
 * what they need; a stage's `uses` narrows its needs to what its settings read.
 */
export function planCell(sweepName: string, cell: Cell, pipeline: PipelineDef, heartbeatSeconds?: number, targets?: string[]): CellPlan {
  const order = topologicalStages(pipeline);
  const needsOf = new Map(order.map((s) => {
    const used = s.uses ? s.uses(cell.config.stages[s.name] ?? {}) : s.needs;
    const bad = used.filter((n) => !s.needs.includes(n));
    if (bad.length) throw new Error(`pipeline ${pipeline.name}: stage ${s.name} uses ${bad.join(', ')}, which it does not declare in needs`);
    return [s.name, used] as const;
  }));
  let wanted: Set<string> | undefined;
  if (targets?.length) {
    wanted = new Set();
    const add = (n: string): void => {
      if (wanted!.has(n)) return;
      wanted!.add(n);
      for (const d of needsOf.get(n) ?? []) add(d);
    };
    targets.forEach(add);
  }
  const keys = new Map<string, string>();
  const stages: StagePlan[] = [];
  for (const s of order) {
    if (wanted && !wanted.has(s.name)) continue;
    const needs = needsOf.get(s.name)!;
    const slice: Record<string, unknown> = { settings: cell.config.stages[s.name] };
    for (const r of s.reads) slice[r] = valueAt(cell.config, r);
    const parts: CacheKeyParts = {
      stage: s.name,
      version: s.version,
      slice,
      upstream: Object.fromEntries(needs.map((n) => [n, keys.get(n)!])),
    };
    const key = stageCacheKey(parts);
    keys.set(s.name, key);
    stages.push({
      name: s.name,
      kind: s.kind,
      key,
      parts,
      needs,
      device: s.device,
      retry: { ...DEFAULT_RETRY, ...s.retry },
      timeoutMs: s.timeoutMs ?? 30 * 60_000,
      heartbeatMs: heartbeatSeconds !== undefined ? heartbeatSeconds * 1000 : (s.heartbeatMs ?? 60_000),
    });
  }
  const cellKey = sha256(stages.map((s) => s.key).join('\n')).slice(0, 16);
  return { sweep: sweepName, pipeline: pipeline.name, cellId: cell.id, cellKey, axes: cell.axes, params: flatten(cell.config), stages };
}

export function flatten(value: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (value !== undefined) {
    out[prefix] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}
