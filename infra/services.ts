/**
 * Start / stop the real services of the embedded default on 127.0.0.1, with persistence
 * under the LayerFlow home: the Temporal CLI dev server (SQLite file) and an MLflow tracking
 * server (SQLite backend store + served artifacts). Idempotent: `up` twice is one server.
 */
import { spawn, execFile } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../src/store/atomic.ts';
import { TransientError, ConfigError } from '../src/errors.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const TOOLS_BIN = join(process.env.LAYERFLOW_TOOLS ?? join(ROOT, '.layerflow', 'tools'), 'bin');

export interface ServiceOptions {
  home: string;
  host?: string;
  port: number;
  /** Temporal only: port of the web UI (default port + 1000). */
  uiPort?: number;
  timeoutMs?: number;
}

export interface ServiceStatus {
  name: 'temporal' | 'mlflow';
  running: boolean;
  pid?: number;
  address: string;
  /** Who can reach it, for the CLI to print, e.g. "bound to 127.0.0.1 (this machine only)". */
  bind: string;
  log: string;
}

type Name = ServiceStatus['name'];
const pidFile = (home: string, name: Name) => join(home, 'run', `${name}.pid`);
const logFile = (home: string, name: Name) => join(home, 'logs', `${name}.log`);

export function toolPath(name: 'temporal' | 'mlflow'): string {
  const p = join(TOOLS_BIN, name);
  if (!existsSync(p)) throw new ConfigError(`${name} is not installed at ${p}; run: bash infra/install.sh`);
  return p;
}

export async function startTemporal(o: ServiceOptions): Promise<ServiceStatus> {
  const host = o.host ?? '127.0.0.1';
  const db = join(o.home, 'temporal', 'temporal.db');
  await mkdir(join(o.home, 'temporal'), { recursive: true });
  const args = ['server', 'start-dev', '--ip', host, '--port', String(o.port), '--ui-port', String(o.uiPort ?? o.port + 1000),
    '--db-filename', db, '--log-level', 'warn', '--namespace', 'default'];
  return startService('temporal', o, host, toolPath('temporal'), args, () => temporalHealthy(`${host}:${o.port}`));
}

export async function startMlflow(o: ServiceOptions): Promise<ServiceStatus> {
  const host = o.host ?? '127.0.0.1';
  const dir = join(o.home, 'mlflow');
  await mkdir(join(dir, 'artifacts'), { recursive: true });
  const args = ['server', '--backend-store-uri', `sqlite:///${join(dir, 'mlflow.db')}`, '--artifacts-destination', join(dir, 'artifacts'),
    '--serve-artifacts', '--host', host, '--port', String(o.port), '--workers', '1'];
  // MLflow 3's job runner (GenAI evaluation jobs: ten huey consumer processes) is not used by
  // LayerFlow; left on it costs every server start seconds of CPU and ~2 GB of memory.
  return startService('mlflow', o, host, toolPath('mlflow'), args, () => httpHealthy(`http://${host}:${o.port}/health`), { MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false' });
}

/** The port a service was to listen on is held by another process (a config error: choose another port). */
export class PortTakenError extends ConfigError {
  constructor(message: string, readonly port: number) {
    super(message);
  }
}

async function startService(name: Name, o: ServiceOptions, host: string, bin: string, args: string[], healthy: () => Promise<boolean>, extraEnv: Record<string, string> = {}): Promise<ServiceStatus> {
  const address = `${host}:${o.port}`;
  const log = logFile(o.home, name);
  const current = await readPid(o.home, name);
  const bind = bindNote(address);
  if (current && isAlive(current) && (await healthy())) return { name, running: true, pid: current, address, bind, log };
  if (!(await portFree(host, o.port)))
    throw new PortTakenError(`${name}: port ${o.port} on ${host} is taken by another process; stop it or choose another port (see README: Configuration)`, o.port);
  await mkdir(join(o.home, 'logs'), { recursive: true });
  await mkdir(join(o.home, 'run'), { recursive: true });
  const fd = openSync(log, 'a');
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, MLFLOW_HOME: undefined, ...extraEnv } });
  closeSync(fd);
  child.unref();
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? -1));
  await writeFileAtomic(pidFile(o.home, name), String(child.pid));
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  while (Date.now() < deadline) {
    if (exited !== null) {
      const lines = await tail(log);
      // Another process took the port between the check above and the server's bind.
      if (/address already in use|Errno 98|bind: address/i.test(lines))
        throw new PortTakenError(`${name}: port ${o.port} on ${host} was taken by another process while ${name} started; last log lines:\n${lines}`, o.port);
      throw new TransientError(`${name} exited with code ${exited} while starting; last log lines:\n${lines}`);
    }
    if (await healthy()) return { name, running: true, pid: child.pid, address, bind, log };
    await sleep(300);
  }
  await stopService(o.home, name);
  throw new TransientError(`${name} did not become healthy within ${(o.timeoutMs ?? 120_000) / 1000}s; last log lines:\n${await tail(log)}`);
}

/**
 * Who can reach a service at `address` (`host:port` or a URL): the embedded default binds
 * 127.0.0.1, so only this machine; any other host is said to be reachable from the network.
 */
export function bindNote(address: string): string {
  let host: string;
  try {
    host = new URL(address.includes('://') ? address : `tcp://${address}`).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return `bound to ${address}`;
  }
  const local = host === 'localhost' || host === '::1' || /^127\./.test(host);
  return local
    ? `bound to ${host} (this machine only)`
    : `bound to ${host || address} (reachable from the network: protect it, e.g. with a firewall or an authenticating proxy)`;
}

/** Stop a service started by startService: SIGTERM its process group, SIGKILL after a grace period. */
export async function stopService(home: string, name: Name, graceMs = 10_000): Promise<boolean> {
  const pid = await readPid(home, name);
  if (!pid) return false;
  const wasAlive = isAlive(pid);
  signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) signalGroup(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(50);
  await rm(pidFile(home, name), { force: true });
  return wasAlive;
}

export async function serviceStatus(home: string, name: Name, address: string): Promise<ServiceStatus> {
  const pid = await readPid(home, name);
  return { name, running: !!pid && isAlive(pid), pid, address, bind: bindNote(address), log: logFile(home, name) };
}

async function readPid(home: string, name: Name): Promise<number | undefined> {
  const t = await readFile(pidFile(home, name), 'utf8').catch(() => undefined);
  const n = Number(t);
  return t && Number.isInteger(n) && n > 0 ? n : undefined;
}

/** Whether process `pid` exists (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch { /* gone */ }
  }
}

export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** A free TCP port on 127.0.0.1 (for tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function temporalHealthy(address: string): Promise<boolean> {
  try {
    const { stdout } = await promisify(execFile)(toolPath('temporal'), ['operator', 'cluster', 'health', '--address', address], { timeout: 5000 });
    return /SERVING/.test(stdout);
  } catch {
    return false;
  }
}

async function httpHealthy(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;
  } catch {
    return false;
  }
}

async function tail(file: string, n = 20): Promise<string> {
  const t = await readFile(file, 'utf8').catch(() => '');
  return t.trimEnd().split('\n').slice(-n).join('\n');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
