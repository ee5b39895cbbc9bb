/**
 * OOM-adaptive retries (issue 12): out-of-memory failures are recognised wherever they come from and
 * typed; the stage activity reports one as OUT_OF_MEMORY (with whether a smaller micro-batch can
 * help), runs a retry at the micro-batch scale the cell workflow passes back, and records that scale
 * in the ledger and for MLflow; the micro-batch arithmetic; and the claim that makes halving safe —
 * fine-tuning gives the same adapter at micro-batch 4, 2 and 1 (same optimizer batch of 4) to float
 * tolerance (stated below).
 */
import test from 'ava';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { OutOfMemoryError, DataError } from '../../src/errors.ts';
import { asOutOfMemory, checkMemoryBudget, formatScale, isOutOfMemory, memoryBudgetBytes, scaleMicroBatch, stageMicroBatch } from '../../src/runtime/oom.ts';
import { createSession } from '../../src/runtime/session.ts';
import { GraphBuilder, add } from '../../src/onnx/index.ts';
import { createStageActivities, type LedgerLine, type OomDetails, type StageOutcome } from '../../activities/stage.ts';
import { trainClassifier } from '../../activities/finetune.ts';
import type { ClassifierRecord } from '../../activities/shared.ts';
import { TrackingOutbox } from '../../src/tracking/outbox.ts';
import { paths } from '../../src/config/env.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import type { StagePlan } from '../../src/config/plan.ts';
import type { StageContext, StageImpl } from '../../src/store/stage-context.ts';

test('out-of-memory failures are recognised from ONNX Runtime, CUDA, V8, the OS and the budget; others are not', (t) => {
  for (const msg of [
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running MatMul node. Name:'m' Status Message: Failed to allocate memory for requested buffer of size 8589934592",
    'std::bad_alloc',
    'CUDA failure 2: out of memory ; GPU=0',
    'CUBLAS_STATUS_ALLOC_FAILED',
    'Array buffer allocation failed',
    'device cpu:0: memory budget 1 MiB exceeded (resident 90 MiB)',
  ]) t.true(isOutOfMemory(new Error(msg)), msg);
  t.true(isOutOfMemory(Object.assign(new Error('spawn failed'), { code: 'ENOMEM' })));
  t.true(isOutOfMemory(new OutOfMemoryError('x')));
  t.true(isOutOfMemory(new DataError('run failed', { cause: new Error('Failed to allocate memory') })), 'found in the cause chain');
  t.true(isOutOfMemory(ApplicationFailure.create({ type: 'OUT_OF_MEMORY', message: 'stage failed' })), 'a typed failure from another process');
  for (const msg of ['shape mismatch', 'NaN in loss', 'memory layout', 'allocation of experts']) t.false(isOutOfMemory(new Error(msg)), msg);
  t.false(isOutOfMemory(undefined));
  const e = asOutOfMemory(new Error('bad_alloc'), 'run on cpu:0');
  t.true(e instanceof OutOfMemoryError);
  t.is(e.code, 'OUT_OF_MEMORY');
  t.true(e.retryable);
  t.regex(e.message, /^run on cpu:0: out of memory: bad_alloc$/);
  t.is(asOutOfMemory(e, 'again'), e);
});

test('micro-batch arithmetic: scaled down, at least 1, a divisor of the optimizer batch when asked', (t) => {
  t.is(scaleMicroBatch(8, 1), 8);
  t.is(scaleMicroBatch(8, 0.5), 4);
  t.is(scaleMicroBatch(8, 1 / 64), 1);
  t.is(scaleMicroBatch(6, 0.5), 3);
  t.is(scaleMicroBatch(12, 0.5, { divides: 32 }), 4, '6 does not divide 32: the next smaller divisor');
  t.is(scaleMicroBatch(5, 0.5, { divides: 10 }), 2);
  t.is(scaleMicroBatch(3, 0.5, { divides: 9 }), 1);
  t.throws(() => scaleMicroBatch(0, 1), { instanceOf: RangeError });
  t.throws(() => scaleMicroBatch(4, 0), { instanceOf: RangeError });
  t.throws(() => scaleMicroBatch(4, 2), { instanceOf: RangeError });
  t.is(stageMicroBatch({}, 8), 8, 'a context without the field: scale 1');
  t.is(stageMicroBatch({ microBatchScale: 0.25 }, 8), 2);
  t.deepEqual([1, 0.5, 0.125].map(formatScale), ['1', '1/2', '1/8']);
});

test('a device memory budget: parsed per device or for all; going over it is an OutOfMemoryError, also from a session run', async (t) => {
  t.is(memoryBudgetBytes('cpu:0', {}), undefined);
  t.is(memoryBudgetBytes('cpu:0', { LAYERFLOW_DEVICE_MEMORY_MB: '2' }), 2 * 1024 * 1024);
  t.is(memoryBudgetBytes('cuda:0', { LAYERFLOW_DEVICE_MEMORY_MB: 'cpu:0=100,cuda:0=20000' }), 20000 * 1024 * 1024);
  t.is(memoryBudgetBytes('cpu:1', { LAYERFLOW_DEVICE_MEMORY_MB: 'cpu:0=100' }), undefined);
  t.notThrows(() => checkMemoryBudget('cpu:0', () => 1e9, {}));
  t.notThrows(() => checkMemoryBudget('cpu:0', () => 1024, { LAYERFLOW_DEVICE_MEMORY_MB: '1' }));
  const e = t.throws(() => checkMemoryBudget('cpu:0', () => 5 * 1024 * 1024, { LAYERFLOW_DEVICE_MEMORY_MB: '1' }), { instanceOf: OutOfMemoryError });
  t.regex(e!.message, /device cpu:0: memory budget 1 MiB exceeded \(resident 5 MiB/);

  const g = new GraphBuilder();
  g.output(add(g.input('x', 'float64', ['n']), 1), 'y');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  const before = process.env.LAYERFLOW_DEVICE_MEMORY_MB;
  try {
    process.env.LAYERFLOW_DEVICE_MEMORY_MB = '1'; // far below any Node process
    await t.throwsAsync(s.run({ x: { data: Float64Array.from([1, 2]), dims: [2] } }), { instanceOf: OutOfMemoryError });
    delete process.env.LAYERFLOW_DEVICE_MEMORY_MB;
    t.deepEqual(Array.from((await s.run({ x: { data: Float64Array.from([1, 2]), dims: [2] } })).y.data as Float64Array), [2, 3]);
  } finally {
    if (before === undefined) delete process.env.LAYERFLOW_DEVICE_MEMORY_MB;
    else process.env.LAYERFLOW_DEVICE_MEMORY_MB = before;
    await s.release();
  }
});

test('the stage activity: an OOM is reported as OUT_OF_MEMORY (can shrink or not), and a retry runs and is recorded at the scale passed back', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-oom-'));
  try {
    const seen: Array<{ scale?: number; micro: number; threads?: number }> = [];
    // Runs out of memory above micro-batch 2 (of 8 configured).
    const hungry: StageImpl = async (ctx) => {
      const micro = stageMicroBatch(ctx, 8, { divides: 8 });
      seen.push({ scale: ctx.microBatchScale, micro, threads: ctx.threads });
      if (micro > 2) throw new OutOfMemoryError(`run on ${ctx.device}: Failed to allocate memory for a batch of ${micro}`);
      return { files: { 'out.txt': 'same result whatever the micro-batch' }, metrics: { n: 1 } };
    };
    // Runs out of memory without any micro-batch to shrink.
    const fixed: StageImpl = async () => {
      throw new Error('std::bad_alloc');
    };
    const def: PipelineDef = { name: 'p', description: '', model: z.object({}), task: z.object({}), stages: [] };
    const outbox = new TrackingOutbox(paths.outbox(home));
    const { runStage } = createStageActivities({ home, outbox, pipelines: async () => ({ p: { def, stages: { hungry, fixed } } }) });
    const plan = (name: string): StagePlan => ({
      name, kind: 'x', key: `k-${name}`, parts: { stage: name, version: 1, slice: { settings: {} }, upstream: {} }, needs: [], device: true,
      retry: { maximumAttempts: 3, initialIntervalMs: 1, backoffCoefficient: 1, maximumIntervalMs: 1 }, timeoutMs: 60_000, heartbeatMs: 60_000,
    });
    const input = (name: string, scale?: number) => ({ sweep: 's', pipeline: 'p', cellId: 'c', cellKey: 'ck', cellParams: {}, stage: plan(name), inputs: {}, device: 'cpu:3', ...(scale ? { hints: { microBatchScale: scale, after: 'OOM' } } : {}) });
    const oom = async (p: Promise<unknown>) => {
      const e = await t.throwsAsync(p, { instanceOf: ApplicationFailure });
      t.is((e as ApplicationFailure).type, 'OUT_OF_MEMORY');
      t.false((e as ApplicationFailure).nonRetryable, 'retryable for sweeps without leases (Temporal retries it as before)');
      return (e as ApplicationFailure).details?.[0] as OomDetails;
    };
    const env = new MockActivityEnvironment();
    t.deepEqual(await oom(env.run(runStage, input('hungry'))), { device: 'cpu:3', microBatchScale: 1, canShrink: true });
    t.deepEqual(await oom(env.run(runStage, input('hungry', 0.5))), { device: 'cpu:3', microBatchScale: 0.5, canShrink: true });
    const ok = (await env.run(runStage, input('hungry', 0.25))) as StageOutcome;
    t.is(ok.status, 'computed');
    t.deepEqual(seen.map((x) => [x.scale, x.micro]), [[1, 8], [0.5, 4], [0.25, 2]]);
    t.deepEqual(await oom(new MockActivityEnvironment().run(runStage, input('fixed'))), { device: 'cpu:3', microBatchScale: 1, canShrink: false });

    const ledger = (await readFile(paths.events(home, 's'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as LedgerLine);
    t.deepEqual(ledger.map((l) => [l.stage, l.outcome, l.microBatchScale, l.oom, l.device]), [
      ['hungry', 'started', undefined, undefined, 'cpu:3'],
      ['hungry', 'failed', undefined, true, 'cpu:3'],
      ['hungry', 'started', 0.5, undefined, 'cpu:3'],
      ['hungry', 'failed', 0.5, true, 'cpu:3'],
      ['hungry', 'started', 0.25, undefined, 'cpu:3'],
      ['hungry', 'computed', 0.25, undefined, 'cpu:3'],
      ['fixed', 'started', undefined, undefined, 'cpu:3'],
      ['fixed', 'failed', undefined, true, 'cpu:3'],
    ]);
    // MLflow gets the scale as a metric of the stage's run (the artifact's own metrics do not: it must not depend on it).
    const events = await Promise.all((await readdir(join(paths.outbox(home), 'pending'))).sort().map(async (f) => JSON.parse(await readFile(join(paths.outbox(home), 'pending', f), 'utf8')) as { stage: string; status: string; metrics: Record<string, number>; error?: string }));
    const hungryEvents = events.filter((e) => e.stage === 'hungry');
    t.deepEqual(hungryEvents.map((e) => [e.status, e.metrics.micro_batch_scale]), [['FAILED', 1], ['FAILED', 0.5], ['FINISHED', 0.25]]);
    t.regex(hungryEvents[1].error!, /out of memory on cpu:3 at micro-batch scale 1\/2/);
    t.deepEqual(ok.metrics, { n: 1 });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));

/*
 * Tolerance, stated: float32 sums in another order change the gradients by ~1e-7 relative; AdamW's
 * first steps divide by √v, which amplifies that where a gradient is near zero (LoRA B starts at 0),
 * so parameters agree to 2e-4 relative (L2 per tensor) and 1e-4 absolute (1% of one lr = 1e-2 step);
 * the training losses and the best validation loss agree to 1e-6 relative.
 */
test('fine-tuning does not depend on the micro-batch: micro-batch 4, 2 and 1 (optimizer batch 4) give the same adapter and losses to float tolerance', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-micro-'));
  try {
    const texts = ['the cat sat on the mat', 'buy cheap pills now', 'meeting at noon tomorrow', 'win money fast click here', 'lunch with the team', 'free prize claim today', 'notes from the review', 'limited offer act now'];
    const train = texts.map((text, i) => ({ text, label: i % 2 }));
    const rec: ClassifierRecord = {
      objective: 'classifier', spec: { lora: { r: 2, alpha: 2, targets: ['q_proj', 'v_proj'] }, numLabels: 2 }, maxLength: 12, padId: 0, labelNames: ['ham', 'spam'],
      train: { epochs: 1, lr: 1e-2, batchSize: 4, microBatchSize: 4, warmupRatio: 0, weightDecay: 0 },
    };
    const ctxAt = (scale: number) => ({
      sweep: 's', cellId: 'c', stage: 'finetune', key: `k-${scale}`, settings: {}, slice: { model: { id: 'tiny', path: TINY }, seed: 3 }, inputs: {},
      store: undefined as never, home, device: 'cpu:0', attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, microBatchScale: scale,
    }) satisfies StageContext<unknown>;
    const runs = [];
    for (const scale of [1, 0.5, 0.25]) runs.push(await trainClassifier(ctxAt(scale), rec, train, { influence: train.slice(0, 4), evaluation: [] }, 'loss'));
    const [ref, ...others] = runs;
    t.is(ref.steps, 2);
    for (const r of others) {
      t.is(r.steps, ref.steps);
      let rel = 0, abs = 0;
      for (const [k, v] of ref.params) {
        const w = r.params.get(k)!;
        let d = 0, n = 0;
        for (let i = 0; i < v.length; i++) {
          d += (v[i] - w[i]) ** 2;
          n += v[i] ** 2;
          abs = Math.max(abs, Math.abs(v[i] - w[i]));
        }
        rel = Math.max(rel, Math.sqrt(d / n));
      }
      t.true(rel < 2e-4, `parameters: max relative L2 difference per tensor ${rel}`);
      t.true(abs < 1e-4, `parameters: max absolute difference ${abs}`);
      const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.abs(a);
      ref.stepLosses.forEach((l, i) => t.true(close(l, r.stepLosses[i]), `step ${i + 1} loss ${l} vs ${r.stepLosses[i]}`));
      t.true(close(ref.bestValLoss, r.bestValLoss), `best validation loss ${ref.bestValLoss} vs ${r.bestValLoss}`);
    }
    // The scratch checkpoints of every micro-batch are gone.
    t.deepEqual(await readdir(join(home, 'scratch')).catch(() => []), []);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});
