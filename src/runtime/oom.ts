/**
 * Out-of-memory failures (DESIGN.md contract 6): recognised wherever they come from — ONNX Runtime's
 * allocator ("Failed to allocate memory", `std::bad_alloc`), CUDA ("out of memory",
 * CUBLAS/CUDNN allocation failures), V8 ("Array buffer allocation failed"), the OS (ENOMEM) or the
 * device's memory budget — and turned into one typed error, `OutOfMemoryError`, whose retry halves
 * the stage's micro-batch (the cell workflow passes the scale back in as `ctx.microBatchScale`).
 */
import { OutOfMemoryError } from '../errors.ts';

const OOM_PATTERN =
  /Failed to allocate memory|bad_alloc|out of memory|Array buffer allocation failed|Cannot allocate memory|\bENOMEM\b|(?:CUBLAS|CUDNN)_STATUS_ALLOC_FAILED|memory budget .*exceeded/i;

/** True when `err` (or any error in its `cause` chain) is an out-of-memory failure. */
export function isOutOfMemory(err: unknown): boolean {
  for (let e = err as { message?: unknown; cause?: unknown; code?: unknown; type?: unknown } | undefined, depth = 0; e && depth < 16; e = e.cause as typeof e, depth++) {
    if (e instanceof OutOfMemoryError) return true;
    if (e.code === 'ENOMEM' || e.code === 'OUT_OF_MEMORY' || e.type === 'OUT_OF_MEMORY') return true;
    if (typeof e.message === 'string' && OOM_PATTERN.test(e.message)) return true;
    if (typeof e === 'string' && OOM_PATTERN.test(e)) return true;
  }
  return false;
}

/** `err` as an OutOfMemoryError (itself when it already is one), `where` prefixed to its message. */
export function asOutOfMemory(err: unknown, where: string): OutOfMemoryError {
  if (err instanceof OutOfMemoryError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new OutOfMemoryError(`${where}: out of memory: ${msg}`, { cause: err });
}

/**
 * The micro-batch a stage runs with at `scale` (1, ½, ¼, …): `size · scale` rounded down, at least 1.
 * With `divides`, the largest divisor of `divides` not above that (a training batch must be a whole
 * number of micro-batches), so gradient accumulation keeps the optimizer step's batch unchanged.
 */
export function scaleMicroBatch(size: number, scale: number, opts: { divides?: number } = {}): number {
  if (!(Number.isInteger(size) && size >= 1)) throw new RangeError(`scaleMicroBatch: size must be a positive integer, got ${size}`);
  if (!(scale > 0 && scale <= 1)) throw new RangeError(`scaleMicroBatch: scale must be in (0, 1], got ${scale}`);
  let n = Math.max(1, Math.floor(size * scale + 1e-9));
  if (opts.divides !== undefined) while (n > 1 && opts.divides % n !== 0) n--;
  return n;
}

/** The micro-batch a stage runs with for its configured `size` (StageContext.microBatch, or the scale alone). */
export function stageMicroBatch(ctx: { microBatchScale?: number; microBatch?(size: number, opts?: { divides?: number }): number }, size: number, opts: { divides?: number } = {}): number {
  return ctx.microBatch ? ctx.microBatch(size, opts) : scaleMicroBatch(size, ctx.microBatchScale ?? 1, opts);
}

/** The scale as a fraction for messages: 1, 1/2, 1/4, … */
export function formatScale(scale: number): string {
  if (scale >= 1) return '1';
  const inv = 1 / scale;
  return Number.isInteger(Math.round(inv * 1e6) / 1e6) ? `1/${Math.round(inv)}` : scale.toPrecision(3);
}

/**
 * The memory budget of a device in bytes, from LAYERFLOW_DEVICE_MEMORY_MB: one number for every
 * device (`4096`), or per device (`cpu:0=4096,cuda:0=20000`). Undefined: no budget.
 */
export function memoryBudgetBytes(device: string, env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.LAYERFLOW_DEVICE_MEMORY_MB?.trim();
  if (!raw) return undefined;
  let mb: number | undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) mb = Number(raw);
  else for (const part of raw.split(',')) {
    const [d, v] = part.split('=').map((x) => x.trim());
    if (d === device && v !== undefined && /^\d+(\.\d+)?$/.test(v)) mb = Number(v);
  }
  return mb === undefined ? undefined : mb * 1024 * 1024;
}

/**
 * Throws OutOfMemoryError when the worker process's resident memory exceeds the device's budget
 * (the budget is of this process: one worker process per device makes it the device's).
 */
export function checkMemoryBudget(device: string, rss: () => number = () => process.memoryUsage.rss(), env: NodeJS.ProcessEnv = process.env): void {
  const budget = memoryBudgetBytes(device, env);
  if (budget === undefined) return;
  const used = rss();
  if (used > budget) {
    const mib = (b: number) => `${Math.round(b / (1024 * 1024))} MiB`;
    throw new OutOfMemoryError(`device ${device}: memory budget ${mib(budget)} exceeded (resident ${mib(used)}; LAYERFLOW_DEVICE_MEMORY_MB)`);
  }
}
