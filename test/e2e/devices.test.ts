/**
 * Devices under faults on a real Temporal dev server and MLflow (issue 12), with the demo pipeline:
 *
 *  1. Two CPU devices, each with its own worker: cpu:0 in this process (with the control worker),
 *     cpu:1 a separate process (`layerflow worker --device cpu:1`). cpu:1's process is SIGKILLed
 *     while it runs a cell's device stage and never restarted; with a 5 s lease that stage and
 *     every other cell placed on cpu:1 finish on cpu:0, and the sweep completes.
 *  2. With every worker gone mid-sweep, `layerflow status` says plainly that no worker is polling
 *     and how to start one, and still shows the cells and stages from the plan and the ledger — no
 *     stack trace. A worker started afterwards finishes the sweep.
 *  3. Replay: histories made by the workflow code from before leases (a sweep running when the
 *     worker is upgraded) and the histories of test 1's moves replay on today's workflow code.
 */
import anyTest, { type TestFn } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startStack, writeSweep, ledger, setFaults, type Stack } from '../helpers/stack.ts';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { startWorkerPool, workflowBundle, type WorkerPool } from '../../infra/worker.ts';
import { createActivities } from '../../activities/index.ts';
import { loadPipelines } from '../../pipelines/index.ts';
import { TrackingOutbox } from '../../src/tracking/outbox.ts';
import { paths } from '../../src/config/env.ts';
import { planFile, submitSweep, sweepStatus } from '../../src/cli/sweeps.ts';
import { deviceViews } from '../../src/cli/workers.ts';
import { readDeviceBeats } from '../../src/runtime/devices.ts';
import type { LayerflowEnv } from '../../src/config/env.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack; env: LayerflowEnv; pools: WorkerPool[]; children: ChildProcess[]; moved: string[] }>;
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const OLD_WORKFLOWS = fileURLToPath(new URL('../fixtures/workflows-before-leases/index.ts', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.before(async (t) => {
  t.context.stack = await startStack({ worker: false });
  // Two CPU "devices" with a thread each (a 2-core machine runs both).
  t.context.env = { ...t.context.stack.env, devices: ['cpu:0', 'cpu:1'], threadsPerDevice: 1 };
  t.context.pools = [];
  t.context.children = [];
  t.context.moved = [];
});
test.after.always(async (t) => {
  for (const c of t.context.children ?? []) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const p of t.context.pools ?? []) await p.shutdown().catch(() => undefined);
  await t.context.stack?.stop();
});

function cli(env: LayerflowEnv, args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', MAIN, '--home', env.home, '--temporal', env.temporalAddress, '--mlflow', env.mlflowUri, ...args], {
    env: { ...process.env, LAYERFLOW_TASK_QUEUE: env.taskQueue, LAYERFLOW_DEVICES: env.devices.join(','), LAYERFLOW_THREADS_PER_DEVICE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

test.serial('e2e lease: the worker of cpu:1 is killed mid-stage and never restarted; after the 5 s lease its cells finish on cpu:0', async (t) => {
  const { stack, env } = t.context;
  const t0 = Date.now();
  const pool = await startWorkerPool(env, { devices: ['cpu:0'], deliveryIntervalMs: 250 });
  t.context.pools.push(pool);
  try {
    const child = cli(env, ['worker', '--device', 'cpu:1']);
    t.context.children.push(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    await until('the cpu:1 worker\'s beat', async () => ((await readDeviceBeats(env.home)).some((b) => b.device === 'cpu:1') ? true : undefined), 60_000);
    t.regex(out, /no control worker; device cpu:1 \(queue layerflow-e2e@cpu:1; 1 thread\(s\), 1 slot\(s\) each\)/);

    // A transform on cpu:1 hangs (heartbeating) until its worker dies: the kill always lands mid-stage.
    await setFaults(env, [{ stage: 'transform', cell: '*', kind: 'hang', device: 'cpu:1' }]);
    const file = await writeSweep(stack, 'lease', { extra: 'heartbeatSeconds: 3\n' });
    const plan = await planFile(file);
    const handle = await submitSweep(stack.client, env, plan, plan.cells, { leaseSeconds: 5 });

    // Kill cpu:1's worker once it runs a cell's transform.
    const running = await until('a stage running on cpu:1', async () => {
      const b = (await readDeviceBeats(env.home)).find((x) => x.device === 'cpu:1' && x.running.some((r) => r.stage === 'transform'));
      return b?.running.find((r) => r.stage === 'transform');
    }, 90_000).catch(async (e: Error) => {
      throw new Error(`${e.message}; cpu:1 worker said: ${out}; beats: ${JSON.stringify(await readDeviceBeats(env.home))}; ledger: ${JSON.stringify(await ledger(env, 'lease'))}`);
    });
    const views = await deviceViews(stack.client, env);
    t.like(views.find((v) => v.device === 'cpu:1'), { alive: true, idle: false, source: 'beat' });
    t.is(views.find((v) => v.device === 'cpu:1')!.live[0].running[0].cell, running.cell, '`services` sees what cpu:1 runs');
    child.kill('SIGKILL');
    const killedAt = Date.now();
    const done = (await ledger(env, 'lease')).filter((l) => l.stage === 'transform' && l.outcome === 'computed').map((l) => l.cell);
    t.false(done.includes(running.cell), `killed while its transform ran: ${JSON.stringify(running)} at ${new Date(killedAt).toISOString()}; ledger ${JSON.stringify(await ledger(env, 'lease'), null, 1)}`);

    const r = (await handle.result()) as SweepResult;
    const tookS = (Date.now() - killedAt) / 1000;
    t.is(r.succeeded, 4, JSON.stringify(r.cells, null, 1));
    const lines = await ledger(env, 'lease');
    const transforms = lines.filter((l) => l.stage === 'transform' && l.outcome === 'computed');
    t.is(transforms.length, 4);
    // The killed cell's transform computed on cpu:0 after moving; every cell ends on a live device.
    const killed = r.cells[running.cell];
    t.is(killed.device, 'cpu:0');
    t.is(killed.stages!.transform.device, 'cpu:0');
    t.true((killed.stages!.transform.moves ?? 0) >= 1);
    t.regex(killed.stages!.transform.note ?? '', /moved from cpu:1/);
    t.is(transforms.find((l) => l.cell === running.cell)!.device, 'cpu:0');
    for (const [id, c] of Object.entries(r.cells)) t.is(c.device, transforms.find((l) => l.cell === id)!.device, id);
    // Lost-then-moved takes the heartbeat timeout (3 s) plus at least one lease (5 s).
    t.true(tookS >= 8, `finished ${tookS.toFixed(1)} s after the kill`);
    t.log(`transform seconds: ${Object.values(r.cells).map((c) => c.stages?.transform.seconds?.toFixed(1)).join(', ')}`);
    t.log(`sweep done ${((Date.now() - t0) / 1000).toFixed(1)} s after start, ${tookS.toFixed(1)} s after the kill; devices: ${Object.entries(r.cells).map(([id, c]) => `${id} → ${c.device}${c.stages?.transform.moves ? ` (moved ${c.stages.transform.moves}×)` : ''}`).join('; ')}`);
    t.context.moved.push('layerflow/lease', ...Object.values(r.cells).map((c) => c.workflowId));
    // The dead worker's beat goes stale: cpu:1 has no live worker, and status tells how to start one.
    await until('cpu:1 to look dead', async () => ((await deviceViews(stack.client, env)).find((v) => v.device === 'cpu:1')?.alive === false ? true : undefined), 30_000);
  } finally {
    await setFaults(env, []);
    // The next test needs no worker.
    for (const c of t.context.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await pool.shutdown();
  }
});

test.serial('e2e status without a worker: says so plainly, shows the plan and the ledger, no stack trace; a worker started later finishes the sweep', async (t) => {
  const { stack, env } = t.context;
  // A whole worker pool (control + cpu:0 + cpu:1) in its own process, SIGKILLed mid-sweep.
  const worker = cli(env, ['worker']);
  t.context.children.push(worker);
  const file = await writeSweep(stack, 'orphan', { work: 30_000, extra: 'heartbeatSeconds: 3\n' });
  const plan = await planFile(file);
  const handle = await submitSweep(stack.client, env, plan, plan.cells, { leaseSeconds: 5 });
  await until('a computed transform', async () => ((await ledger(env, 'orphan')).some((l) => l.stage === 'transform' && l.outcome === 'computed') ? true : undefined), 120_000);
  worker.kill('SIGKILL');
  await new Promise((r) => worker.once('exit', r));
  t.is((await stack.client.workflow.getHandle('layerflow/orphan').describe()).status.name, 'RUNNING', 'killed mid-sweep');
  // Its device workers' beats go stale within 15 s.
  await until('the killed device workers to look dead', async () => ((await deviceViews(stack.client, env)).every((v) => !v.alive) ? true : undefined), 30_000);

  const t0 = Date.now();
  const status = cli(env, ['status', 'orphan']);
  let stdout = '', stderr = '';
  status.stdout!.on('data', (d) => (stdout += d));
  status.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => status.once('exit', r));
  const tookS = (Date.now() - t0) / 1000;
  t.log(stdout);
  t.is(code, 0, stderr);
  t.is(stderr.trim(), '');
  t.notRegex(stdout, /\n\s+at /, 'no stack trace');
  t.regex(stdout, /sweep orphan: running — NO WORKER IS POLLING/);
  t.regex(stdout, /no worker (is polling task queue layerflow-e2e|answered the sweep's status query in time)/);
  t.regex(stdout, /layerflow worker/);
  t.regex(stdout, /layerflow up/);
  // What is known: every cell of the plan, the stages the ledger saw finish, and the device workers.
  for (const c of plan.cells) t.true(stdout.includes(c.cellId), c.cellId);
  t.regex(stdout, /✓ computed/);
  t.regex(stdout, /4 cells: /);
  t.regex(stdout, /devices \(lease 5 s/);
  t.regex(stdout, /cpu:0 +NO LIVE WORKER/);
  t.regex(stdout, /start one: layerflow worker --device cpu:0/);
  t.log(`status without a worker took ${tookS.toFixed(1)} s`);

  // A worker again: the sweep finishes where it stopped.
  t.context.pools.push(await startWorkerPool(env, { deliveryIntervalMs: 250 }));
  const r = (await handle.result()) as SweepResult;
  t.is(r.succeeded, 4);
});

test.serial('e2e replay: histories from the workflow code before leases, and those of the lease moves, replay on today\'s code', async (t) => {
  const { stack, env } = t.context;
  const connection = await NativeConnection.connect({ address: env.temporalAddress });
  const queue = 'before-leases';
  const activities = createActivities({ home: env.home, outbox: new TrackingOutbox(paths.outbox(env.home)), pipelines: () => loadPipelines() });
  const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} } as never;
  const old = await Worker.create({ connection, taskQueue: queue, workflowBundle: await bundleWorkflowCode({ workflowsPath: OLD_WORKFLOWS, logger: quiet }), activities });
  const device = await Worker.create({ connection, taskQueue: `${queue}@cpu:0`, activities });
  const plan = await planFile(await writeSweep(stack, 'oldcode', { work: 500 }));
  const cells = plan.cells.slice(0, 2);
  // The sweep input as the CLI sent it before leases: no leaseMs.
  const input = { sweep: plan.sweep, cells, concurrency: 2, devices: ['cpu:0'], controlQueue: queue, deviceQueues: { 'cpu:0': `${queue}@cpu:0` } };
  try {
    const r = await old.runUntil(device.runUntil(stack.client.workflow.execute('sweepWorkflow', { taskQueue: queue, workflowId: 'layerflow/oldcode', args: [input] }))) as SweepResult;
    t.is(r.succeeded, 2);
  } finally {
    await connection.close();
  }
  const ids = ['layerflow/oldcode', ...cells.map((c) => `layerflow/oldcode/${c.cellId}`), ...t.context.moved];
  t.true(t.context.moved.length === 5, 'test 1 ran and left its histories');
  const histories = await Promise.all(ids.map(async (workflowId) => ({ workflowId, history: await stack.client.workflow.getHandle(workflowId).fetchHistory() })));
  const results = [];
  for await (const res of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) results.push(res);
  t.is(results.length, ids.length);
  for (const res of results) t.is(res.error, undefined, `${res.workflowId}: ${res.error?.message}`);
  // The old histories have no lease marker; the new ones do.
  const marker = (h: (typeof histories)[number]) => (h.history.events ?? []).some((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch');
  t.false(histories.slice(0, 3).some(marker));
  t.true(histories.slice(3).every(marker));
});
