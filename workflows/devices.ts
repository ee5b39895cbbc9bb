/**
 * Device choice for cells (DESIGN.md contract 5): pure functions the workflows call with what the
 * `devicePresence` activity saw. No I/O, no Node APIs: this file is bundled into workflow code.
 *
 * A cell keeps its device (affinity) while that device's worker lives. A device-bound stage waits
 * on its device's queue at most the lease (schedule-to-start timeout); when the lease expires the
 * cell asks which devices are alive and idle and either moves (`chooseDevice`) or waits one more
 * lease on the same device (it is alive, only busy).
 */

/** One device as the presence activity sees it (activities/devices.ts). */
export interface DevicePresence {
  device: string;
  queue: string;
  /** A worker of this device is alive (its beat file is fresh, or — without beat files — it polled recently). */
  alive: boolean;
  /** Alive, with a free slot and nothing waiting in its queue: a stage sent there starts now. */
  idle: boolean;
  /** Activity tasks waiting in the device's queue (0 when unknown). */
  backlog: number;
  /** Live worker processes serving the device. */
  workers: number;
  /** Stages running on the device now (from the workers' beats). */
  running: number;
  /** Slots of the live workers (activities they run at once). */
  slots: number;
}

/** Device affinity: each cell is pinned to one device for all its device-bound stages (round-robin). */
export function assignDevices(cellIds: string[], devices: string[]): Record<string, string> {
  if (devices.length === 0) throw new Error('no devices: expected at least one (e.g. cpu:0)');
  return Object.fromEntries(cellIds.map((id, i) => [id, devices[i % devices.length]]));
}

/** `devices` starting after `from` (wrapping), without `from`: the order in which others are tried. */
function rotation(devices: string[], from: string): string[] {
  const i = devices.indexOf(from);
  return i < 0 ? devices.filter((d) => d !== from) : [...devices.slice(i + 1), ...devices.slice(0, i)];
}

/**
 * The device a new cell starts on. `preferred` is its round-robin device; it is kept when it is
 * alive (or when nothing is known), else the first alive device after it — an idle one first.
 */
export function pickInitialDevice(preferred: string, devices: string[], presence: DevicePresence[] = []): string {
  const by = new Map(presence.map((p) => [p.device, p]));
  if (by.size === 0 || by.get(preferred)?.alive) return preferred;
  const others = rotation(devices, preferred);
  return others.find((d) => by.get(d)?.idle) ?? others.find((d) => by.get(d)?.alive) ?? preferred;
}

export interface DeviceChoice {
  device: string;
  /** Why: shown in the cell's state and the workflow's log. */
  reason: string;
}

/**
 * Where a stage goes after its lease on `current` expired (`why`: 'lease' — no worker took it in
 * time; 'lost' — the worker running it stopped heartbeating and its retries are spent; 'oom' — out
 * of memory at the smallest micro-batch):
 *  0. after a lease, `current` is idle itself (its worker just came back) → stay;
 *  1. another device that is idle now → move there (the stage starts at once);
 *  2. `current` is alive (busy, or it came back) and the reason is a lease → stay, wait one more lease;
 *  3. another alive device → move to the one with the shortest queue;
 *  4. nothing alive → stay (a worker may start; the lease is checked again when it expires).
 */
export function chooseDevice(current: string, devices: string[], presence: DevicePresence[], why: 'lease' | 'lost' | 'oom' = 'lease'): DeviceChoice {
  const by = new Map(presence.map((p) => [p.device, p]));
  const here = by.get(current);
  // Its own device became free just as the lease expired (a worker (re)started): keep the affinity.
  if (why === 'lease' && here?.idle) return { device: current, reason: `${current} is idle again` };
  const others = rotation(devices, current);
  const idle = others.find((d) => by.get(d)?.idle);
  if (idle) return { device: idle, reason: `${idle} is idle` };
  if (why === 'lease' && here?.alive) return { device: current, reason: `${current} is alive but busy (${here.running} running, ${here.backlog} waiting)` };
  const alive = others.filter((d) => by.get(d)?.alive).sort((a, b) => by.get(a)!.backlog - by.get(b)!.backlog);
  if (alive.length) return { device: alive[0], reason: `${current} ${here?.alive ? 'cannot take it' : 'has no live worker'}; ${alive[0]} is alive` };
  return { device: current, reason: `no live worker on any device (${[current, ...others].join(', ')}); waiting` };
}

/** Micro-batch scale after an out-of-memory failure: halved, down to `MIN_MICRO_BATCH_SCALE`. */
export const MIN_MICRO_BATCH_SCALE = 1 / 64;
export function halveMicroBatchScale(scale: number): number | undefined {
  const next = scale / 2;
  return next >= MIN_MICRO_BATCH_SCALE ? next : undefined;
}
