/**
 * The progress convention of stage heartbeats (issue 11). A stage's heartbeat details are free-form
 * (and may be its resume cursor, so fields are only ever added); to be shown as a progress bar they
 * carry, besides their own fields:
 *
 *   stage:    the stage's name (ctx.stage) — tells the CLI which running stage of a cell this is
 *             when several run at once (independent DAG branches);
 *   progress: { done, total, unit } — `done` of `total` units ('step', 'sample', 'shard', 'doc').
 *
 * `layerflow run` / `status` read the last heartbeat of each running stage from Temporal
 * (src/cli/sweeps.ts) and turn successive ones into a bar, a rate and an ETA (src/cli/progress.ts).
 */

export interface Progress {
  done: number;
  total: number;
  /** Singular noun for one unit of work: 'step', 'sample', 'shard', 'doc'. */
  unit: string;
}

/** What the progress convention adds to heartbeat details. */
export interface ProgressFields {
  stage: string;
  progress: Progress;
}

/**
 * Heartbeat details with progress: `extra` (the stage's own fields, kept as they are) plus `stage`
 * and `progress`. E.g. `ctx.heartbeat(withProgress(ctx, i, n, 'doc', { docs: i }))`.
 */
export function withProgress<T extends object = Record<never, never>>(ctx: { stage: string }, done: number, total: number, unit: string, extra?: T): T & ProgressFields {
  return { ...(extra ?? ({} as T)), stage: ctx.stage, progress: { done, total, unit } };
}

/** The progress in heartbeat details, if they follow the convention (anything else: undefined). */
export function progressOf(details: unknown): Progress | undefined {
  const p = (details as { progress?: unknown } | null | undefined)?.progress as Partial<Progress> | undefined;
  if (!p || typeof p !== 'object') return undefined;
  const { done, total, unit } = p;
  if (typeof done !== 'number' || typeof total !== 'number' || typeof unit !== 'string') return undefined;
  if (!Number.isFinite(done) || !Number.isFinite(total) || total <= 0 || done < 0) return undefined;
  return { done: Math.min(done, total), total, unit };
}
