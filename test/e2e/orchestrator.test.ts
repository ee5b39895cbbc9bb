/**
 * End to end on a real Temporal dev server and a real MLflow server (issue 2's required tests).
 * One stack for the file; tests run serially and each uses its own sweep.
 */
import anyTest, { type TestFn } from 'ava';
import { readdir, writeFile, readFile } from 'node:fs/promises';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { startStack, writeSweep, ledger, setFaults, drainTracking, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep, resumeSweep, sweepStatus, explainStage, cacheStatus, cancelSweep } from '../../src/cli/sweeps.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import { TrackingOutbox } from '../../src/tracking/outbox.ts';
import { TAG } from '../../src/tracking/publish.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack }>;

test.before(async (t) => {
  t.context.stack = await startStack();
});
test.after.always(async (t) => {
  await t.context.stack?.stop();
});

async function runSweep(stack: Stack, file: string): Promise<SweepResult> {
  const plan = await planFile(file);
  const handle = await submitSweep(stack.client, stack.env, plan);
  return (await handle.result()) as SweepResult;
}

const computed = (lines: Awaited<ReturnType<typeof ledger>>) => lines.filter((l) => l.outcome === 'computed');

test.serial('e2e: a 2×2 sweep completes and MLflow holds the experiment, 4 parent runs and their nested stage runs', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'grid');
  const r = await runSweep(stack, file);
  t.is(r.succeeded, 4);
  t.is(r.failed, 0);
  // load and profile are shared by cells with the same task: content-addressed, so each computes at most twice
  const lines = await ledger(stack.env, 'grid');
  t.is(computed(lines).filter((l) => l.stage === 'transform').length, 4);
  t.is(computed(lines).filter((l) => l.stage === 'report').length, 4);

  t.is(await drainTracking(stack), 0);
  const exp = await stack.mlflow.getExperimentByName('grid');
  t.truthy(exp);
  // MLflow 3 opens it as a training-runs experiment, with a description.
  const expTag = (k: string) => exp!.tags?.find((x) => x.key === k)?.value;
  t.is(expTag(TAG.experimentKind), 'custom_model_development');
  t.regex(expTag(TAG.note) ?? '', /sweep `grid`/);
  const runs = await stack.mlflow.searchRuns({ experimentIds: [exp!.experiment_id] });
  const tag = (run: (typeof runs)[number], k: string) => run.data.tags?.find((x) => x.key === k)?.value;
  const parents = runs.filter((x) => !tag(x, TAG.parent));
  t.is(parents.length, 4);
  t.deepEqual(parents.map((p) => tag(p, TAG.cell)).sort(), r && Object.keys(r.cells).sort());
  for (const p of parents) {
    t.is(p.info.status, 'FINISHED');
    const params = Object.fromEntries((p.data.params ?? []).map((x) => [x.key, x.value]));
    t.is(params['model.id'], tag(p, TAG.cell)!.match(/model=([^,]+)/)![1]);
    t.truthy(params['task.data.sha256']);
    // Axis values as tags; the resolved config as config.yaml.
    t.is(tag(p, `${TAG.axis}model`), params['model.id']);
    t.is(tag(p, TAG.pipeline), 'demo');
    t.deepEqual((await stack.mlflow.listArtifacts(p.info.run_id)).map((f) => f.path), ['config.yaml']);
    const children = runs.filter((x) => tag(x, TAG.parent) === p.info.run_id);
    t.deepEqual(children.map((c) => tag(c, TAG.stage)).sort(), ['load', 'profile', 'report', 'transform']);
    for (const c of children) {
      t.is(c.info.status, 'FINISHED');
      t.regex(tag(c, TAG.cacheKey) ?? '', /^[0-9a-f]{64}$/);
    }
    const transform = children.find((c) => tag(c, TAG.stage) === 'transform')!;
    const metrics = Object.fromEntries((transform.data.metrics ?? []).map((m) => [m.key, m.value]));
    t.is(metrics.lines > 0, true);
    t.is(metrics.work, 500);
    const files = await stack.mlflow.listArtifacts(transform.info.run_id);
    // The stage's artifact files travel with its run (size-capped), beside the manifest.
    t.deepEqual(files.map((f) => f.path), ['digests.json', 'manifest.json', 'transformed.txt']);
  }
});

test.serial('e2e: running the same sweep again reuses every stage and recomputes nothing', async (t) => {
  const { stack } = t.context;
  const file = join(stack.dir, 'grid', 'sweep.yaml');
  const before = (await ledger(stack.env, 'grid')).length;
  const plan = await planFile(file);
  const cache = await cacheStatus(stack.env, plan);
  t.true(Object.values(cache).every((c) => Object.values(c).every((s) => s === 'hit')));
  const r = await runSweep(stack, file);
  t.is(r.succeeded, 4);
  const again = (await ledger(stack.env, 'grid')).slice(before);
  t.is(again.length, 16);
  t.is(computed(again).length, 0);
  t.true(again.every((l) => l.outcome === 'cached'));
  t.true(Object.values(r.cells).every((c) => Object.values(c.stages!).every((s) => s.status === 'cached')));
  // Fully cached cells are resolved in one batch activity: no child workflow, no activity per stage.
  const history = await stack.client.workflow.getHandle('layerflow/grid').fetchHistory();
  const events = history.events ?? [];
  t.is(events.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length, 0);
  const scheduled = events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
  t.deepEqual(scheduled, ['resolveCachedCells']);
  // MLflow still hears of the re-run: every cell's parent run and its stages' nested runs, delivered from batched outbox files.
  t.is(await drainTracking(stack), 0);
  t.deepEqual(await readdir(join(paths.outbox(stack.env.home), 'dead')).catch(() => []), []);
  const exp = await stack.mlflow.getExperimentByName('grid');
  const runs = await stack.mlflow.searchRuns({ experimentIds: [exp!.experiment_id] });
  const tag = (run: (typeof runs)[number], k: string) => run.data.tags?.find((x) => x.key === k)?.value;
  t.is(runs.filter((x) => !tag(x, TAG.parent)).length, 4);
  t.is(runs.filter((x) => tag(x, TAG.parent)).length, 16);
  t.true(runs.every((x) => x.info.status === 'FINISHED'));
});

test.serial('e2e: a sweep with one new cell resolves the cached cells in a batch and runs only the new one', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'grow', { work: 300 });
  t.is((await runSweep(stack, file)).succeeded, 4);
  await writeFile(file, (await readFile(file, 'utf8')).replace('  task: [raven, ozy]', '  task: [raven, ozy]\n  stages.transform.shuffle: [true, false]'));
  const before = (await ledger(stack.env, 'grow')).length;
  const r = await runSweep(stack, file);
  t.is(r.succeeded, 8);
  const again = (await ledger(stack.env, 'grow')).slice(before);
  // The four old cells: every stage cached; the four new ones compute transform and report only.
  t.is(computed(again).length, 8);
  t.deepEqual([...new Set(computed(again).map((l) => l.stage))].sort(), ['report', 'transform']);
  const history = await stack.client.workflow.getHandle('layerflow/grow').fetchHistory();
  t.is((history.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length, 4);
  const cachedCells = Object.values(r.cells).filter((c) => Object.values(c.stages!).every((s) => s.status === 'cached'));
  t.is(cachedCells.length, 4);
});

test.serial('e2e: a non-retryable failure fails its cell; after the fix, resume runs only what failed or was missing', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'resume');
  const bad = 'model=rot13,task=ozy,seed=6';
  await setFaults(stack.env, [{ stage: 'transform', cell: bad, kind: 'fatal' }]);
  const r = await runSweep(stack, file);
  t.is(r.succeeded, 3);
  t.is(r.cells[bad].status, 'failed');
  t.regex(r.cells[bad].error!, /injected fatal fault/);
  t.is(r.cells[bad].stages!.transform.status, 'failed');
  t.is(r.cells[bad].stages!.report.status, 'skipped');
  const first = await ledger(stack.env, 'resume');
  t.is(first.filter((l) => l.cell === bad && l.stage === 'transform' && l.outcome === 'failed').length, 1, 'non-retryable: one attempt only');

  await setFaults(stack.env, []); // the cause is fixed
  const { handle, cells } = await resumeSweep(stack.client, stack.env, 'resume');
  t.deepEqual(cells, [bad]);
  const r2 = (await handle!.result()) as SweepResult;
  t.deepEqual(Object.keys(r2.cells), [bad]);
  t.is(r2.succeeded, 1);
  const second = (await ledger(stack.env, 'resume')).slice(first.length);
  t.true(second.every((l) => l.cell === bad), 'no other cell ran');
  const outcome = Object.fromEntries(second.map((l) => [l.stage, l.outcome]));
  t.deepEqual(outcome, { load: 'cached', profile: 'cached', transform: 'computed', report: 'computed' });
  const status = await sweepStatus(stack.client, 'resume');
  t.is(status.state, 'completed');
});

test.serial('e2e: a retryable failure succeeds on retry without user action', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'retry');
  const cell = 'model=upper,task=raven,seed=5';
  await setFaults(stack.env, [{ stage: 'transform', cell, kind: 'transient', attempts: 2 }]);
  try {
    const r = await runSweep(stack, file);
    t.is(r.succeeded, 4);
  } finally {
    await setFaults(stack.env, []);
  }
  const lines = (await ledger(stack.env, 'retry')).filter((l) => l.cell === cell && l.stage === 'transform');
  t.deepEqual(lines.map((l) => `${l.attempt}:${l.outcome}`), ['1:started', '1:failed', '2:started', '2:failed', '3:started', '3:computed']);
});

test.serial('e2e: an artifact corrupted on disk is detected and its stage recomputed; the bad bytes are never used', async (t) => {
  const { stack } = t.context;
  const file = join(stack.dir, 'grid', 'sweep.yaml');
  const plan = await planFile(file);
  const cell = plan.cells[0];
  const stage = cell.stages.find((s) => s.name === 'transform')!;
  const store = new ArtifactStore(paths.store(stack.env.home));
  const found = await store.lookup(stage.key);
  if (found.status !== 'hit') return t.fail('expected the grid sweep to have cached transform');
  const blob = store.blobPath(found.manifest.files['transformed.txt'].sha256);
  const good = await readFile(blob);
  await writeFile(blob, Buffer.concat([good.subarray(0, 10), Buffer.from('CORRUPTED'), good.subarray(19)]));
  t.is((await store.lookup(stage.key)).status, 'corrupt');
  t.regex((await explainStage(stack.env, 'grid', cell.cellId, 'transform')).join('\n'), /corrupt/);

  const before = (await ledger(stack.env, 'grid')).length;
  const r = await runSweep(stack, file);
  t.is(r.succeeded, 4);
  const lines = (await ledger(stack.env, 'grid')).slice(before).filter((l) => l.cell === cell.cellId);
  t.deepEqual(lines.filter((l) => l.stage === 'transform').map((l) => l.outcome), ['corrupt', 'started', 'computed']);
  t.deepEqual(await readFile(blob), good, 'recomputed bytes are the original, verified content');
  // The report stage's own artifact was intact and its inputs' keys unchanged: a cache hit.
  t.is(lines.find((l) => l.stage === 'report')!.outcome, 'cached');
});

test.serial('e2e: explain names the config field that changed a cache key', async (t) => {
  const { stack } = t.context;
  const file = join(stack.dir, 'grid', 'sweep.yaml');
  await writeFile(file, (await readFile(file, 'utf8')).replace('id: rot13, transform: rot13, work: 500', 'id: rot13, transform: rot13, work: 501'));
  const out = (await explainStage(stack.env, 'grid', 'model=rot13,task=raven,seed=4', 'report')).join('\n');
  t.regex(out, /report: cache MISS/);
  t.regex(out, /upstream stage transform changed key/);
  t.regex(out, /config model\.work: 500 → 501/);
  t.regex((await explainStage(stack.env, 'grid', 'model=rot13,task=raven,seed=4', 'profile')).join('\n'), /profile: cache HIT/);
});

test.serial('e2e: with MLflow stopped mid-sweep the sweep completes, and the tracking events arrive once MLflow is back', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'outage', { work: 30000 });
  const plan = await planFile(file);
  const handle = await submitSweep(stack.client, stack.env, plan);
  // Stop MLflow as soon as the first stage has finished.
  for (let i = 0; i < 400 && computed(await ledger(stack.env, 'outage')).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  await stack.stopMlflow();
  const r = (await handle.result()) as SweepResult;
  t.is(r.succeeded, 4);
  const outbox = new TrackingOutbox(paths.outbox(stack.env.home), new ArtifactStore(paths.store(stack.env.home)));
  t.true((await outbox.pending()).length > 0, 'events wait on disk while MLflow is down');

  await stack.startMlflow();
  t.is(await drainTracking(stack), 0);
  const exp = await stack.mlflow.getExperimentByName('outage');
  const runs = await stack.mlflow.searchRuns({ experimentIds: [exp!.experiment_id] });
  const parents = runs.filter((x) => !x.data.tags?.some((tg) => tg.key === TAG.parent));
  t.is(parents.length, 4);
  t.is(runs.length - parents.length, 16);
  t.true(runs.every((x) => x.info.status === 'FINISHED'));
  t.deepEqual(await readdir(join(paths.outbox(stack.env.home), 'dead')).catch(() => []), []);
});

test.serial('e2e: the CLI runs a sweep with live progress, then plan and status report it', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'cli');
  const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', main, '--home', stack.env.home, '--temporal', stack.env.temporalAddress, '--mlflow', stack.env.mlflowUri, ...args], {
      encoding: 'utf8',
      env: { ...process.env, LAYERFLOW_TASK_QUEUE: stack.env.taskQueue },
    });
  // spawnSync would block this process's in-process worker, so run the CLI asynchronously.
  const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', main, '--home', stack.env.home, '--temporal', stack.env.temporalAddress, '--mlflow', stack.env.mlflowUri, 'run', '--no-up', file], {
      env: { ...process.env, LAYERFLOW_TASK_QUEUE: stack.env.taskQueue },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
  t.is(run.code, 0, run.out);
  t.regex(run.out, /model=upper,task=raven,seed=3 transform: computed/);
  t.regex(run.out, /4 cells: 4 succeeded, 0 failed/);
  const plan = cli('plan', file);
  t.is(plan.status, 0, plan.stderr);
  t.regex(plan.stdout, /16\/16 stages cached, 0 to run/);
  const status = cli('status', 'cli');
  t.is(status.status, 0, status.stderr);
  t.regex(status.stdout, /sweep cli: completed/);
});

test.serial('e2e: cancel stops a running sweep; resume then finishes it', async (t) => {
  const { stack } = t.context;
  const file = await writeSweep(stack, 'cancel', { work: 200000 });
  const handle = await submitSweep(stack.client, stack.env, await planFile(file));
  // Cancel while a transform is truly midway: its activity is pending and has heartbeated (a line
  // done) — not merely reported running by a query that may lag on a busy machine.
  for (let i = 0; i < 1200; i++) {
    const s = await sweepStatus(stack.client, 'cancel').catch(() => undefined);
    const running = Object.values(s?.cells ?? {}).filter((c) => c.stages?.transform?.status === 'running');
    const midway = await Promise.all(running.map(async (c) => {
      const d = await stack.client.workflow.getHandle(c.workflowId).describe().catch(() => undefined);
      return (d?.raw.pendingActivities ?? []).some((a) => a.activityType?.name === 'runStage' && a.lastHeartbeatTime);
    }));
    if (midway.some(Boolean)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await cancelSweep(stack.client, 'cancel');
  await t.throwsAsync(handle.result());
  const st = await sweepStatus(stack.client, 'cancel');
  t.is(st.state, 'cancelled');
  // A cancelled stage is never recorded as a failure, and no cell reads failed. (Whether the
  // running transform sees the cancel before it finishes depends on timing on a loaded machine;
  // the mapping of a cancel to CancelledFailure + a `cancelled` ledger line is tested
  // deterministically in test/pipeline/stage-cancel.test.ts.)
  const lines = await ledger(stack.env, 'cancel');
  t.true(lines.filter((l) => l.stage === 'transform').every((l) => ['started', 'cancelled', 'computed'].includes(l.outcome)), JSON.stringify(lines));
  t.false(lines.some((l) => l.outcome === 'failed'));
  t.false(Object.values(st.cells).some((c) => c.status === 'failed'));

  const done = (await ledger(stack.env, 'cancel')).filter((l) => l.outcome === 'computed');
  const before = (await ledger(stack.env, 'cancel')).length;
  const { handle: h2, cells } = await resumeSweep(stack.client, stack.env, 'cancel');
  t.is(cells.length, 4);
  const r = (await h2!.result()) as SweepResult;
  t.is(r.succeeded, 4);
  const after = (await ledger(stack.env, 'cancel')).slice(before);
  t.true(done.length > 0);
  for (const d of done) {
    const again = after.find((l) => l.cell === d.cell && l.stage === d.stage);
    t.is(again?.outcome, 'cached', `${d.cell} ${d.stage} finished before the cancel and is reused`);
  }
});
