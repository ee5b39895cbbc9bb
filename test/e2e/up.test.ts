/**
 * `layerflow up` / `down` as the README's main job uses them, on a temp home and free ports, with the
 * real Temporal dev server and MLflow: by default a control process and one worker process per device
 * (host stages are not held up by a device stage's ONNX runs, which hold the JS thread); `up` again
 * leaves what runs alone; `--one-process` starts one process for all, and a later plain `up` does not
 * start a device worker beside it; `down` stops every process `up` started.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, isAlive } from '../../infra/services.ts';
import { ASSETS_HOME } from '../helpers/stack.ts';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

const portFree = (port: number) => new Promise<boolean>((resolve) => {
  const srv = createServer();
  srv.once('error', () => resolve(false));
  srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
});

/** A temp home and ports: Temporal's UI takes its port + 1000 (as `up` starts it). */
async function place(): Promise<{ dir: string; args: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'lf-up-'));
  const home = join(dir, 'home');
  await mkdir(home, { recursive: true });
  for (const sub of ['models', 'data']) if (existsSync(join(ASSETS_HOME, sub))) await symlink(join(ASSETS_HOME, sub), join(home, sub));
  let t = 0;
  for (let i = 0; i < 50 && !t; i++) {
    const p = await freePort();
    if (p + 1000 < 65536 && (await portFree(p + 1000))) t = p;
  }
  return { dir, args: ['--home', home, '--temporal', `127.0.0.1:${t}`, '--mlflow', `http://127.0.0.1:${await freePort()}`] };
}

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      env: { ...process.env, LAYERFLOW_DEVICES: 'cpu:0', LAYERFLOW_TASK_QUEUE: 'layerflow-e2e-up' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('exit', (code) => resolve({ code, out, err }));
  });
}

const pidIn = (out: string, re: RegExp): number => Number(out.match(re)?.[1] ?? 0);
async function gone(pids: number[], t: { true(v: boolean, m?: string): void }): Promise<void> {
  for (let i = 0; i < 100 && pids.some(isAlive); i++) await new Promise((r) => setTimeout(r, 100));
  for (const p of pids) t.true(!isAlive(p), `process ${p} stopped`);
}

test.serial('e2e layerflow up: a control process and one worker process per device; up again leaves them; down stops them', async (t) => {
  const { dir, args } = await place();
  const home = args[1];
  try {
    const up = await cli([...args, 'up']);
    t.log(up.out);
    t.is(up.code, 0, up.err);
    const control = pidIn(up.out, /^worker +started \(pid (\d+), control queue/m);
    const device = pidIn(up.out, /^worker@cpu:0 started \(pid (\d+), device cpu:0/m);
    t.true(control > 0 && isAlive(control), 'control process');
    t.true(device > 0 && isAlive(device), 'device process');
    t.deepEqual((await readdir(join(home, 'run'))).filter((f) => f.startsWith('worker')).sort(), ['worker.pid', 'worker@cpu:0.pid']);

    const again = await cli([...args, 'up']);
    t.is(again.code, 0, again.err);
    t.regex(again.out, new RegExp(`^worker +running \\(pid ${control}, control queue\\)`, 'm'));
    t.regex(again.out, new RegExp(`^worker@cpu:0 running \\(pid ${device}, device cpu:0\\)`, 'm'));

    const down = await cli([...args, 'down']);
    t.is(down.code, 0, down.err);
    t.regex(down.out, /^worker +stopped/m);
    t.regex(down.out, /^worker@cpu:0 stopped/m);
    await gone([control, device], t);
  } finally {
    await cli([...args, 'down']);
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('e2e layerflow up --one-process: one process for all; a later plain up starts no device worker beside it', async (t) => {
  const { dir, args } = await place();
  const home = args[1];
  try {
    const refused = await cli([...args, 'up', '--one-process', '--per-device']);
    t.is(refused.code, 2);
    t.regex(refused.err, /--per-device and --one-process exclude each other/);

    const up = await cli([...args, 'up', '--one-process']);
    t.is(up.code, 0, up.err);
    const pool = pidIn(up.out, /^worker +started \(pid (\d+), devices cpu:0, log /m);
    t.true(pool > 0 && isAlive(pool), up.out);

    const again = await cli([...args, 'up']);
    t.is(again.code, 0, again.err);
    t.regex(again.out, new RegExp(`^worker +running \\(pid ${pool}, devices cpu:0, one process\\)`, 'm'));
    t.notRegex(again.out, /worker@cpu:0/);
    t.deepEqual((await readdir(join(home, 'run'))).filter((f) => f.startsWith('worker')), ['worker.pid']);

    const down = await cli([...args, 'down']);
    t.is(down.code, 0, down.err);
    await gone([pool], t);
  } finally {
    await cli([...args, 'down']);
    await rm(dir, { recursive: true, force: true });
  }
});
