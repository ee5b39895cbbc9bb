#!/usr/bin/env node
/**
 * `layerflow` — the command line. Commands map one-to-one to DESIGN.md's CLI.
 * Errors LayerFlow knows about (bad config, bad data, services down) print one clear message
 * and exit 1 or 2; only real bugs print a stack trace.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import logUpdate from 'log-update';
import { Client, Connection } from '@temporalio/client';
import { resolveEnv, type LayerflowEnv } from '../config/env.ts';
import { ConfigError, LayerflowError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic.ts';
import { MlflowClient, experimentRunsUrl } from '../tracking/mlflow.ts';
import { planFile, cacheStatus, submitSweep, watchSweep, sweepStatus, resumeSweep, cancelSweep, explainStage, type SweepStatus } from './sweeps.ts';
import { statusTable, statusChanges, deviceLines } from './render.ts';
import { deviceViews, controlPollers, readSavedPlan } from './workers.ts';
import { parseDevice } from '../runtime/device.ts';
import { ProgressLog, ProgressTracker } from './progress.ts';
import { startTemporal, startMlflow, stopService, serviceStatus, isAlive } from '../../infra/services.ts';
import { startWorkerPool } from '../../infra/worker.ts';
import { ndrResults, layerifResults } from './results.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const program = new Command('layerflow')
  .description('Layer-wise influence experiments as Temporal workflows, tracked in MLflow')
  .option('--home <dir>', 'LayerFlow home: artifacts, service data, logs (env LAYERFLOW_HOME)')
  .option('--temporal <host:port>', 'Temporal frontend address (env LAYERFLOW_TEMPORAL_ADDRESS)')
  .option('--mlflow <url>', 'MLflow tracking URI (env LAYERFLOW_MLFLOW_URI)');

function env(): LayerflowEnv {
  const o = program.opts<{ home?: string; temporal?: string; mlflow?: string }>();
  return resolveEnv({ home: o.home, temporalAddress: o.temporal, mlflowUri: o.mlflow });
}

async function client(e: LayerflowEnv): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: e.temporalAddress, connectTimeout: '5s' }).catch((err: Error) => {
    throw new ServiceDown(`cannot reach Temporal at ${e.temporalAddress} (${err.message}); start the embedded default with \`layerflow up\``);
  });
  return { client: new Client({ connection, namespace: e.namespace }), close: () => connection.close() };
}

class ServiceDown extends Error {}

function portOf(address: string): number {
  return Number(new URL(address.includes('://') ? address : `tcp://${address}`).port);
}

/**
 * Start Temporal, MLflow and a detached worker pool on this machine (idempotent). `perDevice` (the
 * default): one worker process per device (`worker --device d`) beside a control process (`worker
 * --control-only`), so a device whose process dies takes only its own stages down (their leases move
 * them), and host stages and workflow tasks are not held up by a device stage: onnxruntime-node runs
 * a session synchronously on the JS thread, so in one process a host stage only progresses between
 * ONNX runs (the quickstart's `ndr` stage reported 43–48 s instead of 1.5–1.9 s; bench/README.md).
 * An all-in-one pool already running (`--one-process`, or started by an older version) is left as it
 * is: no device worker is started beside it.
 */
async function up(e: LayerflowEnv, quiet = false, perDevice = true): Promise<void> {
  const say = (m: string) => quiet || console.log(m);
  const tPort = portOf(e.temporalAddress);
  const [t, m] = await Promise.all([startTemporal({ home: e.home, port: tPort }), startMlflow({ home: e.home, port: portOf(e.mlflowUri) })]);
  say(`temporal  ${t.address}  (pid ${t.pid}, UI http://127.0.0.1:${tPort + 1000}, data ${join(e.home, 'temporal')}; ${t.bind})`);
  say(`mlflow    http://${m.address}  (pid ${m.pid}, data ${join(e.home, 'mlflow')}; ${m.bind})`);
  const procs: Array<{ name: string; args: string[]; what: string }> = perDevice
    ? [{ name: 'worker', args: ['--control-only'], what: 'control queue' }, ...e.devices.map((d) => ({ name: `worker@${d}`, args: ['--device', d], what: `device ${d}` }))]
    : [{ name: 'worker', args: [], what: `devices ${e.devices.join(', ')}` }];
  await mkdir(join(e.home, 'logs'), { recursive: true });
  const runDir = join(e.home, 'run');
  // A running `worker` with no per-device pid file beside it serves every device itself.
  const control = await readWorkerPid(join(runDir, 'worker.pid'));
  const allInOne = perDevice && control > 0 && isAlive(control) && (await workerPidFiles(runDir)).every((f) => f === 'worker.pid');
  for (const p of procs) {
    const pidFile = join(runDir, `${p.name}.pid`);
    const pid = await readWorkerPid(pidFile);
    if (pid && isAlive(pid)) {
      say(`${p.name.padEnd(9)} running (pid ${pid}, ${allInOne ? `devices ${e.devices.join(', ')}, one process` : p.what})`);
      continue;
    }
    if (allInOne) continue;
    const log = join(e.home, 'logs', `${p.name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), fileURLToPath(import.meta.url), 'worker', ...p.args], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, LAYERFLOW_HOME: e.home, LAYERFLOW_TEMPORAL_ADDRESS: e.temporalAddress, LAYERFLOW_MLFLOW_URI: e.mlflowUri, LAYERFLOW_DEVICES: e.devices.join(',') },
    });
    closeSync(fd);
    child.unref();
    await writeFileAtomic(pidFile, String(child.pid));
    say(`${p.name.padEnd(9)} started (pid ${child.pid}, ${p.what}, log ${log})`);
  }
}

/** The pid files of the worker processes `up` started in `<home>/run`: `worker.pid`, `worker@<device>.pid`. */
const workerPidFiles = async (run: string): Promise<string[]> => (await readdir(run).catch(() => [] as string[])).filter((f) => /^worker(@.+)?\.pid$/.test(f));

/** The pid in a worker pid file; 0 when there is none. */
const readWorkerPid = async (file: string): Promise<number> => Number(await readFile(file, 'utf8').catch(() => '0'));

program
  .command('up')
  .description('start the embedded default: Temporal dev server, MLflow server, worker pool')
  .option('--per-device', 'one worker process per device plus a control process (the default)')
  .option('--one-process', 'one worker process for the control queue and every device (host stages then wait between the device stages\' ONNX runs)')
  .action(async (o: { perDevice?: boolean; oneProcess?: boolean }) => {
    if (o.perDevice && o.oneProcess) throw new ConfigError('layerflow up: --per-device and --one-process exclude each other');
    await up(env(), false, !o.oneProcess);
  });

program.command('down').description('stop what `up` started').action(async () => {
  const e = env();
  const run = join(e.home, 'run');
  const names = await workerPidFiles(run);
  if (!names.includes('worker.pid')) names.unshift('worker.pid');
  for (const f of names) {
    const pidFile = join(run, f);
    const pid = await readWorkerPid(pidFile);
    if (pid && isAlive(pid)) {
      process.kill(-pid, 'SIGTERM');
      for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    }
    await rm(pidFile, { force: true });
    console.log(`${f.replace(/\.pid$/, '').padEnd(9)} ${pid ? 'stopped' : 'not running'}`);
  }
  for (const name of ['mlflow', 'temporal'] as const) console.log(`${name.padEnd(9)} ${(await stopService(e.home, name)) ? 'stopped' : 'not running'}`);
});

program
  .command('worker')
  .description('run workers in the foreground: by default the control worker and one worker per device of LAYERFLOW_DEVICES')
  .option('--device <devices>', 'serve only these devices (comma list, repeatable), in this process; no control worker unless --control', (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((d) => d.trim()).filter(Boolean)])
  .option('--control', 'with --device: also run the control worker (workflows, light activities, tracking delivery)')
  .option('--control-only', 'run only the control worker (device workers run in their own processes)')
  .action(async (o: { device?: string[]; control?: boolean; controlOnly?: boolean }) => {
    let e = env();
    for (const d of o.device ?? []) parseDevice(d);
    const devices = o.controlOnly ? [] : o.device ?? e.devices;
    const control = o.controlOnly || !o.device || Boolean(o.control);
    // The thread budget shares the host's cores among its devices: those of LAYERFLOW_DEVICES when it
    // is set (other processes serve the rest), else the ones named here.
    if (o.device) {
      const onHost = process.env.LAYERFLOW_DEVICES ? [...new Set([...e.devices, ...devices])] : devices;
      e = { ...e, threadsPerDevice: resolveEnv({ home: e.home, devices: onHost }).threadsPerDevice };
    }
    const pool = await startWorkerPool(e, { devices, control });
    console.log(`worker: ${control ? `control queue ${e.taskQueue}` : 'no control worker'}; ${devices.length ? `device${devices.length > 1 ? 's' : ''} ${devices.join(', ')} (queue ${devices.map((d) => `${e.taskQueue}@${d}`).join(', ')}; ${e.threadsPerDevice} thread(s), ${e.deviceSlots} slot(s) each)` : 'no device'}`);
    const stop = () => void pool.shutdown();
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    await pool.done;
  });

program
  .command('plan <file>')
  .description('print the cells, their stages and cache status; runs nothing')
  .action(async (file: string) => {
    const plan = await planFile(file);
    const cache = await cacheStatus(env(), plan);
    console.log(`sweep ${plan.sweep} (pipeline ${plan.pipeline}): ${plan.cells.length} cells, concurrency ${plan.concurrency}`);
    let hits = 0;
    let total = 0;
    for (const c of plan.cells) {
      console.log(`  ${c.cellId}`);
      for (const s of c.stages) {
        const st = cache[c.cellId][s.name];
        total++;
        if (st === 'hit') hits++;
        console.log(`    ${s.name.padEnd(14)} ${st === 'hit' ? 'cached' : st === 'corrupt' ? 'CORRUPT → recompute' : 'to run'}  ${s.device ? '[device]' : '        '}  key ${s.key.slice(0, 12)}`);
      }
    }
    console.log(`${hits}/${total} stages cached, ${total - hits} to run`);
  });

async function follow(c: Client, sweep: string, e?: LayerflowEnv): Promise<number> {
  let prev: SweepStatus | undefined;
  const tty = process.stdout.isTTY;
  // Stage transitions as they happen; progress (bars on a TTY, else a line per stage at most every 30 s).
  const tracker = new ProgressTracker();
  const progressLog = new ProgressLog(30_000, tracker);
  const result = await watchSweep(c, sweep, (s) => {
    if (tty) {
      tracker.observe(s);
      logUpdate(statusTable(s, tracker));
    } else for (const line of [...statusChanges(prev, s), ...progressLog.lines(s, Date.now())]) console.log(line);
    prev = s;
  }, 1000, e);
  const final = await sweepStatus(c, sweep, { env: e });
  if (tty) {
    logUpdate(statusTable(final));
    logUpdate.done();
  } else {
    for (const line of statusChanges(prev, final)) console.log(line);
    console.log(statusTable(final));
  }
  return result.failed ? 1 : 0;
}

program
  .command('run <file>')
  .description('submit a sweep and follow its progress until it ends')
  .option('--detach', 'submit and return at once')
  .option('--no-up', 'do not start the embedded default services first')
  .action(async (file: string, o: { detach?: boolean; up: boolean }) => {
    const e = env();
    const plan = await planFile(file);
    if (o.up) await up(e, true);
    const { client: c, close } = await client(e);
    try {
      await submitSweep(c, e, plan);
      console.log(`sweep ${plan.sweep}: ${plan.cells.length} cells submitted (workflow layerflow/${plan.sweep}); MLflow experiment "${plan.sweep}" at ${e.mlflowUri}`);
      if (!o.detach) {
        process.exitCode = await follow(c, plan.sweep, e);
        const results = (await ndrResults(e, plan)) || (await layerifResults(e, plan));
        if (results) console.log(`\n${results}`);
        const exp = await new MlflowClient(e.mlflowUri).getExperimentByName(plan.sweep).catch(() => undefined);
        console.log(`\nMLflow: ${exp ? experimentRunsUrl(e.mlflowUri, exp.experiment_id) : `${e.mlflowUri}/#/experiments`} (experiment "${plan.sweep}": one parent run per cell with its headline metrics, nested runs per stage)`);
        console.log(`Temporal: http://127.0.0.1:${portOf(e.temporalAddress) + 1000}/namespaces/${e.namespace}/workflows/layerflow%2F${plan.sweep}`); // the dev server's UI port (`up`)
      }
    } finally {
      await close();
    }
  });

program.command('results <file>').description('the results tables of a sweep file (NDR@30, AUC-NDR, retrained accuracy), from the artifact store').action(async (file: string) => {
  const plan = await planFile(file);
  console.log((await ndrResults(env(), plan)) || (await layerifResults(env(), plan)) || 'no results yet (no cell has finished a results stage)');
});

program.command('report <sweep>').description('write a self-contained HTML report of a sweep (plots and tables) into the LayerFlow home and log it to MLflow; prints where').action(async (sweep: string) => {
  const { writeReport } = await import('../report/report.ts');
  const { publishReport } = await import('../tracking/publish.ts');
  const e = env();
  const r = await writeReport(e, sweep);
  console.log(r.path);
  try {
    const client = new MlflowClient(e.mlflowUri);
    const runId = await publishReport(client, r.sweep, r.pipeline, r.html, Object.fromEntries(Object.entries(r.svgs).map(([f, svg]) => [`plots/${f}`, svg])));
    console.log(`MLflow: run "report" (${runId}) of experiment "${r.sweep}": report.html and plots/*.svg`);
  } catch (err) {
    console.log(`MLflow: not logged (${(err as Error).message}); the report is in the file above`);
  }
});

program
  .command('compare <sweep>')
  .description("cells × headline metrics of a sweep: mean±std over seeds, best per column marked, link to MLflow's run comparison")
  .option('--by <axis>', 'pivot: this axis\' values become column groups (e.g. task, method, allocate_experts.allocator)')
  .option('--metric <name>', 'a metric <stage>.<metric> to compare instead of the headline ones (repeatable, or a comma list)', (v: string, prev: string[] = []) => [...prev, v])
  .option('--format <format>', 'table | csv | json (csv and json: mean, std, n per group and metric)', 'table')
  .action(async (sweep: string, o: { by?: string; metric?: string[]; format: string }) => {
    const { compareCommand } = await import('./compare.ts');
    console.log(await compareCommand(env(), sweep, o));
  });

program.command('status <sweep>').description('per-cell, per-stage state, and the device workers (what they run, their lease)').action(async (sweep: string) => {
  const e = env();
  const { client: c, close } = await client(e);
  try {
    // Without a worker the workflow cannot be queried: the status then says so and comes from the plan and the ledger.
    const s = await sweepStatus(c, sweep, { env: e });
    if (s.state === 'running') {
      s.devices = await deviceViews(c, e);
      s.leaseSeconds ??= (await readSavedPlan(e, sweep))?.leaseSeconds;
    }
    console.log(statusTable(s));
  } finally {
    await close();
  }
});

program
  .command('resume <sweep>')
  .description('re-run only failed or missing cells; finished stages are reused')
  .option('--detach', 'submit and return at once')
  .action(async (sweep: string, o: { detach?: boolean }) => {
    const e = env();
    const { client: c, close } = await client(e);
    try {
      const r = await resumeSweep(c, e, sweep);
      if (!r.handle) return console.log(`sweep ${sweep}: every cell succeeded; nothing to resume`);
      console.log(`sweep ${sweep}: resuming ${r.cells.length} cell(s): ${r.cells.join(' | ')}`);
      if (!o.detach) process.exitCode = await follow(c, sweep, e);
    } finally {
      await close();
    }
  });

program.command('cancel <sweep>').description('cancel a running sweep').action(async (sweep: string) => {
  const { client: c, close } = await client(env());
  try {
    await cancelSweep(c, sweep);
    console.log(`sweep ${sweep}: cancellation requested`);
  } finally {
    await close();
  }
});

program.command('explain <sweep> <cell> <stage>').description('why a stage is (not) a cache hit').action(async (sweep: string, cell: string, stage: string) => {
  for (const line of await explainStage(env(), sweep, cell, stage)) console.log(line);
});

program.command('services').description('show whether the embedded services are running, and the workers: control queue pollers, each device worker, what it runs').action(async () => {
  const e = env();
  let temporalUp = false;
  for (const [name, addr] of [['temporal', e.temporalAddress], ['mlflow', e.mlflowUri]] as const) {
    const s = await serviceStatus(e.home, name, addr);
    if (name === 'temporal') temporalUp = s.running;
    console.log(`${name.padEnd(9)} ${s.running ? `running (pid ${s.pid})` : 'stopped'}  ${addr}  log ${s.log}`);
  }
  const run = join(e.home, 'run');
  for (const f of (await workerPidFiles(run)).sort()) {
    const pid = await readWorkerPid(join(run, f));
    console.log(`${f.replace(/\.pid$/, '').padEnd(9)} ${pid && isAlive(pid) ? `running (pid ${pid})` : 'stopped'}  started by \`layerflow up\``);
  }
  // Temporal may be remote (a cluster): ask it whatever serviceStatus says about a local one.
  const conn = await client(e).catch(() => undefined);
  if (!conn) {
    console.log(`workers   unknown: Temporal at ${e.temporalAddress} is not reachable${temporalUp ? '' : ' (start it with `layerflow up`)'}`);
    for (const line of deviceLines(await deviceViews(undefined, e))) console.log(line);
    return;
  }
  try {
    const now = Date.now();
    const pollers = await controlPollers(conn.client, e);
    const live = (pollers?.pollers ?? []).filter((p) => p.lastAccessMs !== undefined && now - p.lastAccessMs < 75_000);
    console.log(`control   queue ${e.taskQueue}: ${live.length ? live.map((p) => p.identity).join(', ') : 'NO WORKER POLLING (sweeps do not advance; start one: layerflow worker, or layerflow up)'}`);
    for (const line of deviceLines(await deviceViews(conn.client, e, now), now, e.leaseSeconds)) console.log(line);
  } finally {
    await conn.close();
  }
});

program.parseAsync().catch((err: unknown) => {
  if (err instanceof LayerflowError || err instanceof ServiceDown) {
    console.error(`layerflow: ${(err as Error).message}`);
    process.exit(err instanceof LayerflowError && err.code === 'BAD_CONFIG' ? 2 : 1);
  }
  console.error(err);
  process.exit(1);
});
