/**
 * A pipeline whose stages do real, checkable work on files — used to prove the orchestrator
 * until the science pipelines land (issue 2, item 8), and run by the README's demo command.
 *
 *   load ──► transform (device) ──► report
 *     └────► profile ───────────────┘
 *
 * Faults on demand come from `<home>/faults.json` (outside every cache key, like a broken
 * environment would be): [{ "stage": "transform", "cell": "<cell id>", "kind": "fatal" | "transient", "attempts": 2 }].
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import type { StageContext, StageImpl } from '../../src/store/stage-context.ts';
import { DataError, TransientError } from '../../src/errors.ts';
import { createRng } from '../../src/data/random.ts';
import { withProgress } from '../../src/runtime/progress.ts';

export const filesPipeline: PipelineDef = {
  name: 'demo',
  description: 'Text transform demo: load → transform (device) / profile → report',
  model: z.object({
    transform: z.enum(['upper', 'reverse', 'rot13']),
    /** sha256 iterations per line: makes the device stage take measurable time. */
    work: z.number().int().min(0).max(1_000_000).default(2000),
  }),
  task: z.object({ data: z.string().min(1) }),
  inputFiles: ['task.data'],
  stages: [
    { name: 'load', version: 1, kind: 'lines', needs: [], reads: ['task'], device: false, settings: z.strictObject({ skipBlank: z.boolean().default(true) }) },
    {
      name: 'transform', version: 1, kind: 'text', needs: ['load'], reads: ['model', 'seed'], device: true,
      settings: z.strictObject({ shuffle: z.boolean().default(true) }),
      retry: { maximumAttempts: 4, initialIntervalMs: 200, maximumIntervalMs: 1000 },
      heartbeatMs: 20_000,
    },
    { name: 'profile', version: 1, kind: 'histogram', needs: ['load'], reads: [], device: false, settings: z.strictObject({ top: z.number().int().min(1).default(5) }) },
    { name: 'report', version: 1, kind: 'report', needs: ['transform', 'profile'], reads: [], device: false, settings: z.strictObject({}) },
  ],
};

/**
 * `cell` '*' matches every cell; `device` (optional) only that device. 'hang' keeps the stage
 * running (heartbeating) until it is cancelled or its worker dies: a deterministic "mid-stage".
 */
interface Fault { stage: string; cell: string; kind: 'fatal' | 'transient' | 'hang'; attempts?: number; device?: string }

async function injectFaults(ctx: StageContext): Promise<void> {
  const text = await readFile(join(ctx.home, 'faults.json'), 'utf8').catch(() => '[]');
  for (const f of JSON.parse(text) as Fault[]) {
    if (f.stage !== ctx.stage || (f.cell !== '*' && f.cell !== ctx.cellId) || (f.device !== undefined && f.device !== ctx.device)) continue;
    if (f.kind === 'hang') {
      for (;;) {
        ctx.signal.throwIfAborted();
        ctx.heartbeat({ hanging: true });
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    if (f.kind === 'fatal') throw new DataError(`injected fatal fault in ${ctx.stage} for cell ${ctx.cellId}`);
    if (ctx.attempt <= (f.attempts ?? 1)) throw new TransientError(`injected transient fault in ${ctx.stage} (attempt ${ctx.attempt})`);
  }
}

const load: StageImpl = async (ctx) => {
  await injectFaults(ctx);
  const data = (ctx.slice.task as { data: { path: string; sha256: string } }).data;
  const text = await readFile(data.path, 'utf8');
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  lines.forEach((l, i) => {
    if (l.includes('\0')) throw new DataError(`${data.path}:${i + 1}: NUL byte in line; expected text`);
  });
  const kept = ctx.settings.skipBlank ? lines.filter((l) => l.trim() !== '') : lines;
  if (kept.length === 0) throw new DataError(`${data.path}: no lines; expected at least one non-blank line`);
  return { files: { 'lines.json': JSON.stringify(kept) }, metrics: { lines: kept.length, bytes: Buffer.byteLength(text) } };
};

const rot13 = (s: string) => s.replace(/[a-z]/gi, (c) => {
  const b = c <= 'Z' ? 65 : 97;
  return String.fromCharCode(((c.charCodeAt(0) - b + 13) % 26) + b);
});

const transform: StageImpl = async (ctx) => {
  await injectFaults(ctx);
  const model = ctx.slice.model as { transform: 'upper' | 'reverse' | 'rot13'; work: number };
  const lines = await ctx.store.readJson<string[]>(ctx.inputs.load, 'lines.json');
  const fn = { upper: (s: string) => s.toUpperCase(), reverse: (s: string) => [...s].reverse().join(''), rot13 }[model.transform];
  const out = lines.map(fn);
  const shuffled = ctx.settings.shuffle ? createRng(Number(ctx.slice.seed)).shuffle(out) : out;
  const digests: string[] = [];
  for (let i = 0; i < shuffled.length; i++) {
    let h = Buffer.from(shuffled[i]);
    for (let k = 0; k < model.work; k++) h = createHash('sha256').update(h).digest();
    digests.push(h.toString('hex').slice(0, 16));
    ctx.signal.throwIfAborted();
    ctx.heartbeat(withProgress(ctx, i + 1, shuffled.length, 'line', { line: i }));
    await new Promise((r) => setImmediate(r)); // let the worker's event loop breathe between lines
  }
  return {
    files: { 'transformed.txt': shuffled.join('\n') + '\n', 'digests.json': JSON.stringify(digests) },
    metrics: { lines: shuffled.length, work: model.work },
  };
};

const profile: StageImpl = async (ctx) => {
  await injectFaults(ctx);
  const lines = await ctx.store.readJson<string[]>(ctx.inputs.load, 'lines.json');
  const counts = new Map<string, number>();
  for (const ch of lines.join('')) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, Number(ctx.settings.top));
  return { files: { 'histogram.json': JSON.stringify(Object.fromEntries(top)) }, metrics: { distinct_chars: counts.size } };
};

const report: StageImpl = async (ctx) => {
  await injectFaults(ctx);
  const text = await ctx.store.read(ctx.inputs.transform, 'transformed.txt');
  const hist = await ctx.store.readJson<Record<string, number>>(ctx.inputs.profile, 'histogram.json');
  const summary = { transformedSha256: createHash('sha256').update(text).digest('hex'), topChars: Object.keys(hist) };
  return { files: { 'report.json': JSON.stringify(summary, null, 2) }, metrics: { transformed_bytes: text.byteLength } };
};

export const filesStages: Record<string, StageImpl> = { load, transform, profile, report };

/** Registered through LAYERFLOW_PIPELINES by the tests (test/helpers/pipelines.ts). */
export const pipeline = { def: filesPipeline, stages: filesStages };
