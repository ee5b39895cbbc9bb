/**
 * Device workers on this host (DESIGN.md contract 5): the thread budget of each device, what each
 * device runs now, and its beat file — `<home>/run/devices/<device>/<host>-<pid>.json`, rewritten
 * every few seconds by the worker serving the device, removed when it stops. The home is shared by
 * every host of a cluster (it holds the artifact store), so any control worker can tell which
 * device workers are alive, what they run and how many slots they have free, without asking them.
 */
import { availableParallelism, hostname } from 'node:os';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/atomic.ts';
import { ConfigError } from '../errors.ts';
import type { DevicePresence } from '../../workflows/devices.ts';

/**
 * Intra-op threads of each stage session on a device: `override` (LAYERFLOW_THREADS_PER_DEVICE),
 * else the host's cores shared evenly by its devices (at least 1), so two CPU "devices" on a 2-core
 * machine get one thread each and do not fight over cores.
 */
export function threadBudget(a: { devices: number; cores?: number; override?: string | number }): number {
  if (a.override !== undefined && a.override !== '') {
    const n = Number(a.override);
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`LAYERFLOW_THREADS_PER_DEVICE=${a.override}: expected a positive integer`);
    return n;
  }
  return Math.max(1, Math.floor((a.cores ?? availableParallelism()) / Math.max(1, a.devices)));
}

const threads = new Map<string, number>();

/** Set the thread budget of `device` in this process: every session created for it uses it (src/runtime/session.ts). */
export function setDeviceThreads(device: string, n: number | undefined): void {
  if (n === undefined) threads.delete(device);
  else threads.set(device, n);
}

/** The thread budget of `device` in this process, if one was set. */
export function deviceThreads(device: string): number | undefined {
  return threads.get(device);
}

/** A stage running on a device, as its worker's beat reports it. */
export interface RunningStage {
  sweep: string;
  cell: string;
  stage: string;
  /** ms since the epoch. */
  since: number;
  attempt: number;
  microBatchScale?: number;
}

const running = new Map<string, Set<RunningStage>>();
const listeners = new Set<(device: string) => void>();

/** Record that `stage` runs on `device` until the returned function is called (the device's beat is rewritten at once). */
export function beginRunning(device: string, stage: RunningStage): () => void {
  let set = running.get(device);
  if (!set) running.set(device, (set = new Set()));
  set.add(stage);
  for (const l of listeners) l(device);
  return () => {
    if (set!.delete(stage)) for (const l of listeners) l(device);
  };
}

export function runningOn(device: string): RunningStage[] {
  return [...(running.get(device) ?? [])];
}

/** What a device worker writes into its beat file. */
export interface DeviceBeat {
  device: string;
  queue: string;
  host: string;
  pid: number;
  identity: string;
  /** Activities the worker runs at once. */
  slots: number;
  threads: number;
  running: RunningStage[];
  startedAt: number;
  /** When this beat was written (ms since the epoch, the writer's clock). */
  at: number;
}

/** A beat older than this is a dead worker (or one whose event loop has been blocked that long). */
export const BEAT_INTERVAL_MS = 2000;
export const BEAT_STALE_MS = 15_000;

export const devicesDir = (home: string) => join(home, 'run', 'devices');
const beatFile = (home: string, device: string, host: string, pid: number) => join(devicesDir(home), encodeURIComponent(device), `${encodeURIComponent(host)}-${pid}.json`);

/** Write `device`'s beat now and every `intervalMs` until stopped; `stop()` removes the file. */
export function startDeviceBeats(a: { home: string; device: string; queue: string; identity: string; slots: number; threads: number; intervalMs?: number }): { stop(): Promise<void> } {
  const host = hostname();
  const file = beatFile(a.home, a.device, host, process.pid);
  const startedAt = Date.now();
  let writing: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const write = (): void => {
    if (stopped) return;
    if (writing) {
      again = true; // a change while writing: write once more after
      return;
    }
    const beat: DeviceBeat = { device: a.device, queue: a.queue, host, pid: process.pid, identity: a.identity, slots: a.slots, threads: a.threads, running: runningOn(a.device), startedAt, at: Date.now() };
    writing = writeFileAtomic(file, JSON.stringify(beat))
      .catch(() => undefined) // a beat that cannot be written only makes the device look dead
      .finally(() => {
        writing = undefined;
        if (again) {
          again = false;
          write();
        }
      });
  };
  // Rewritten at once when a stage starts or ends on the device, so presence sees a free slot promptly.
  const onChange = (device: string) => device === a.device && write();
  listeners.add(onChange);
  write();
  const timer = setInterval(write, a.intervalMs ?? BEAT_INTERVAL_MS);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      listeners.delete(onChange);
      clearInterval(timer);
      while (writing) await writing;
      await rm(file, { force: true });
    },
  };
}

/** Every beat file under the home (stale ones included; `at` tells their age). */
export async function readDeviceBeats(home: string): Promise<DeviceBeat[]> {
  const dir = devicesDir(home);
  await mkdir(dir, { recursive: true }).catch(() => undefined);
  const out: DeviceBeat[] = [];
  for (const d of await readdir(dir).catch(() => [] as string[])) {
    for (const f of await readdir(join(dir, d)).catch(() => [] as string[])) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      const text = await readFile(join(dir, d, f), 'utf8').catch(() => undefined);
      if (!text) continue;
      try {
        const b = JSON.parse(text) as DeviceBeat;
        if (typeof b.device === 'string' && typeof b.at === 'number') out.push(b);
      } catch { /* a beat being replaced; the next read sees the new one */ }
    }
  }
  return out;
}

/** A task queue's pollers and backlog as Temporal's DescribeTaskQueue reports them. */
export interface QueueView {
  pollers: Array<{ identity: string; lastAccessMs?: number }>;
  /** Activity tasks waiting (approximate; undefined when the server does not report it). */
  backlog?: number;
}

/** A poller seen this recently is alive (an idle worker re-polls at least every minute, Temporal's long-poll interval). */
export const POLL_LIVE_MS = 75_000;

/** A device's presence (the workflows' DevicePresence) with the evidence behind it. */
export interface PresenceView extends DevicePresence {
  /** Where `alive` came from: fresh beat files, Temporal's pollers (no beat files), or nothing. */
  source: 'beat' | 'pollers' | 'none';
  beats: DeviceBeat[];
  pollers: QueueView['pollers'];
}

/**
 * One device's presence from its beats (preferred: precise within seconds) and its queue's pollers
 * (fallback where no worker of the device writes beats, e.g. a home that is not shared).
 */
export function presenceOf(device: string, queue: string, beats: DeviceBeat[], view: QueueView | undefined, now: number): PresenceView {
  const mine = beats.filter((b) => b.device === device && b.queue === queue);
  const fresh = mine.filter((b) => now - b.at <= BEAT_STALE_MS);
  const pollers = view?.pollers ?? [];
  const backlog = view?.backlog ?? 0;
  const base = { device, queue, backlog, beats: mine, pollers };
  if (mine.length > 0) {
    const slots = fresh.reduce((a, b) => a + b.slots, 0);
    const run = fresh.reduce((a, b) => a + b.running.length, 0);
    const alive = fresh.length > 0;
    return { ...base, alive, idle: alive && run < slots && backlog === 0, workers: fresh.length, running: run, slots, source: 'beat' };
  }
  const recent = pollers.filter((p) => p.lastAccessMs !== undefined && now - p.lastAccessMs <= POLL_LIVE_MS);
  if (recent.length > 0) return { ...base, alive: true, idle: backlog === 0, workers: recent.length, running: 0, slots: recent.length, source: 'pollers' };
  return { ...base, alive: false, idle: false, workers: 0, running: 0, slots: 0, source: 'none' };
}

/** This host's worker identity for a device: shown by Temporal (pollers, pending activities) and `layerflow services`. */
export const workerIdentity = (device?: string) => `${process.pid}@${hostname()}${device ? ` ${device}` : ''}`;
