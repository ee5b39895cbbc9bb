/**
 * Devices without services (issue 12): which device a cell starts on and where a stage goes when its
 * lease expires (workflows/devices.ts), presence from beat files and Temporal's pollers, thread
 * budgets, the `devicePresence` activity with a fake Temporal, how a failed device activity is
 * classified by the cell workflow, and the per-cell state `status` rebuilds from the ledger.
 */
import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import { assignDevices, chooseDevice, halveMicroBatchScale, pickInitialDevice, MIN_MICRO_BATCH_SCALE, type DevicePresence } from '../../workflows/devices.ts';
import { leaseFailure } from '../../workflows/experiment.ts';
import {
  BEAT_STALE_MS, POLL_LIVE_MS, beginRunning, deviceThreads, presenceOf, readDeviceBeats, runningOn, setDeviceThreads, startDeviceBeats, threadBudget,
  type DeviceBeat,
} from '../../src/runtime/devices.ts';
import { createDeviceActivities, type TaskQueueService } from '../../activities/devices.ts';
import { ledgerCells, queryUnanswered } from '../../src/cli/workers.ts';
import { resolveEnv } from '../../src/config/env.ts';
import { ConfigError } from '../../src/errors.ts';
import type { CellPlan, StagePlan } from '../../src/config/plan.ts';
import type { LedgerLine } from '../../activities/index.ts';

const P = (device: string, o: Partial<DevicePresence> = {}): DevicePresence => ({
  device, queue: `q@${device}`, alive: true, idle: false, backlog: 0, workers: 1, running: 1, slots: 1, ...o,
});
const DEV = ['cpu:0', 'cpu:1', 'cpu:2'];

test('assignDevices: round-robin; no devices is an error', (t) => {
  t.deepEqual(assignDevices(['a', 'b', 'c'], ['cpu:0', 'cpu:1']), { a: 'cpu:0', b: 'cpu:1', c: 'cpu:0' });
  t.throws(() => assignDevices(['a'], []), { message: /no devices/ });
});

test('pickInitialDevice: keeps the round-robin device while it is alive, else an idle one, else an alive one', (t) => {
  t.is(pickInitialDevice('cpu:1', DEV, []), 'cpu:1', 'nothing known: round-robin');
  t.is(pickInitialDevice('cpu:1', DEV, [P('cpu:0', { idle: true }), P('cpu:1'), P('cpu:2')]), 'cpu:1', 'alive (busy) keeps affinity');
  t.is(pickInitialDevice('cpu:1', DEV, [P('cpu:0'), P('cpu:1', { alive: false }), P('cpu:2', { idle: true })]), 'cpu:2');
  t.is(pickInitialDevice('cpu:1', DEV, [P('cpu:0'), P('cpu:1', { alive: false }), P('cpu:2', { alive: false })]), 'cpu:0');
  t.is(pickInitialDevice('cpu:1', DEV, DEV.map((d) => P(d, { alive: false }))), 'cpu:1', 'nothing alive: round-robin');
});

test('chooseDevice after a lease: an idle other device wins; a busy live device keeps the stage; a dead one loses it', (t) => {
  // The device is dead and another is idle: move there (the first idle after it, wrapping).
  let c = chooseDevice('cpu:1', DEV, [P('cpu:0', { idle: true }), P('cpu:1', { alive: false }), P('cpu:2', { idle: true })]);
  t.is(c.device, 'cpu:2');
  t.regex(c.reason, /idle/);
  // Busy but alive, nobody idle: wait one more lease on it (affinity).
  c = chooseDevice('cpu:1', DEV, [P('cpu:0'), P('cpu:1', { backlog: 2 }), P('cpu:2')]);
  t.is(c.device, 'cpu:1');
  t.regex(c.reason, /alive but busy/);
  // Dead, others alive and busy: the shortest queue.
  c = chooseDevice('cpu:1', DEV, [P('cpu:0', { backlog: 3 }), P('cpu:1', { alive: false }), P('cpu:2', { backlog: 1 })]);
  t.is(c.device, 'cpu:2');
  t.regex(c.reason, /no live worker/);
  // Nothing alive anywhere: stay and wait (a worker may start).
  c = chooseDevice('cpu:1', DEV, DEV.map((d) => P(d, { alive: false })));
  t.is(c.device, 'cpu:1');
  t.regex(c.reason, /no live worker on any device/);
  // Its own worker just came back (idle) as the lease expired: affinity wins over another idle device.
  c = chooseDevice('cpu:1', DEV, [P('cpu:0', { idle: true }), P('cpu:1', { idle: true }), P('cpu:2')]);
  t.is(c.device, 'cpu:1');
  t.regex(c.reason, /idle again/);
  t.is(chooseDevice('cpu:1', DEV, [P('cpu:0', { idle: true }), P('cpu:1', { idle: true })], 'lost').device, 'cpu:0', 'a lost worker: move');
  // A device nobody reports on (unknown presence) is never chosen.
  t.is(chooseDevice('cpu:0', ['cpu:0', 'cuda:7'], [P('cpu:0', { alive: false })]).device, 'cpu:0');
});

test('chooseDevice after a lost worker or OOM: moves even when the device looks alive', (t) => {
  const presence = [P('cpu:0'), P('cpu:1'), P('cpu:2', { backlog: 4 })];
  t.is(chooseDevice('cpu:1', DEV, presence, 'lease').device, 'cpu:1');
  t.is(chooseDevice('cpu:1', DEV, presence, 'lost').device, 'cpu:0');
  t.is(chooseDevice('cpu:1', DEV, presence, 'oom').device, 'cpu:0');
  t.is(chooseDevice('cpu:0', ['cpu:0'], [P('cpu:0')], 'oom').device, 'cpu:0', 'a single device: nowhere to go');
});

test('micro-batch scale halves down to 1/64, then stops', (t) => {
  const seen: number[] = [];
  for (let s: number | undefined = 1; s !== undefined; s = halveMicroBatchScale(s)) seen.push(s);
  t.deepEqual(seen, [1, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64]);
  t.is(MIN_MICRO_BATCH_SCALE, 1 / 64);
});

test('the cell workflow tells a lease expiry, a lost worker and OOM apart from other failures', (t) => {
  const activity = (cause: Error) => new ActivityFailure('activity failed', 'runStage', '1', 'MAXIMUM_ATTEMPTS_REACHED' as never, 'w', cause);
  t.is(leaseFailure(activity(new TimeoutFailure('timed out', undefined, 'SCHEDULE_TO_START'))), 'lease');
  t.is(leaseFailure(activity(new TimeoutFailure('timed out', undefined, 'HEARTBEAT'))), 'lost');
  t.is(leaseFailure(activity(new TimeoutFailure('timed out', undefined, 'START_TO_CLOSE'))), undefined, 'too slow is not a device problem');
  t.is(leaseFailure(activity(ApplicationFailure.create({ type: 'OUT_OF_MEMORY', message: 'Failed to allocate memory' }))), 'oom');
  t.is(leaseFailure(activity(ApplicationFailure.nonRetryable('bad', 'BAD_DATA'))), undefined);
  t.is(leaseFailure(new Error('plain')), undefined);
});

test('threadBudget: cores shared by the host\'s devices, at least 1; the override wins; bad overrides are config errors', (t) => {
  t.is(threadBudget({ devices: 2, cores: 2 }), 1);
  t.is(threadBudget({ devices: 1, cores: 8 }), 8);
  t.is(threadBudget({ devices: 3, cores: 8 }), 2);
  t.is(threadBudget({ devices: 4, cores: 2 }), 1);
  t.is(threadBudget({ devices: 2, cores: 2, override: '3' }), 3);
  t.throws(() => threadBudget({ devices: 1, override: '0' }), { instanceOf: ConfigError });
  t.throws(() => threadBudget({ devices: 1, override: 'many' }), { instanceOf: ConfigError });
  const env = resolveEnv({ devices: ['cpu:0', 'cpu:1'] }, { LAYERFLOW_THREADS_PER_DEVICE: '2', LAYERFLOW_DEVICE_SLOTS: '3', LAYERFLOW_LEASE_SECONDS: '5' });
  t.like(env, { threadsPerDevice: 2, deviceSlots: 3, leaseSeconds: 5 });
  t.like(resolveEnv({}, {}), { deviceSlots: 1, leaseSeconds: 300 });
  t.throws(() => resolveEnv({}, { LAYERFLOW_LEASE_SECONDS: '-1' }), { instanceOf: ConfigError, message: /LAYERFLOW_LEASE_SECONDS/ });
  setDeviceThreads('cpu:9', 3);
  t.is(deviceThreads('cpu:9'), 3);
  setDeviceThreads('cpu:9', undefined);
  t.is(deviceThreads('cpu:9'), undefined);
});

const beat = (device: string, at: number, o: Partial<DeviceBeat> = {}): DeviceBeat => ({
  device, queue: `q@${device}`, host: 'h', pid: 1, identity: `1@h ${device}`, slots: 1, threads: 1, running: [], startedAt: 0, at, ...o,
});

test('presenceOf: beats decide when there are any (fresh = alive; a free slot and no backlog = idle); else recent pollers', (t) => {
  const now = 1_000_000;
  const running = [{ sweep: 's', cell: 'c', stage: 'x', since: now - 5000, attempt: 1 }];
  t.like(presenceOf('cpu:0', 'q@cpu:0', [beat('cpu:0', now - 1000)], { pollers: [], backlog: 0 }, now), { alive: true, idle: true, source: 'beat', workers: 1 });
  t.like(presenceOf('cpu:0', 'q@cpu:0', [beat('cpu:0', now - 1000, { running })], { pollers: [], backlog: 0 }, now), { alive: true, idle: false, running: 1 });
  t.like(presenceOf('cpu:0', 'q@cpu:0', [beat('cpu:0', now - 1000)], { pollers: [], backlog: 1 }, now), { alive: true, idle: false, backlog: 1 });
  // A stale beat is a dead worker even while Temporal still lists its last poll.
  t.like(presenceOf('cpu:0', 'q@cpu:0', [beat('cpu:0', now - BEAT_STALE_MS - 1)], { pollers: [{ identity: 'x', lastAccessMs: now - 1000 }] }, now), { alive: false, idle: false, source: 'beat' });
  // Two workers on one device (two hosts): slots add up.
  t.like(presenceOf('cpu:0', 'q@cpu:0', [beat('cpu:0', now, { running }), beat('cpu:0', now, { pid: 2 })], undefined, now), { alive: true, idle: true, workers: 2, slots: 2, running: 1 });
  // Beats of another task queue do not count; pollers then decide.
  t.like(presenceOf('cpu:0', 'other@cpu:0', [beat('cpu:0', now)], { pollers: [{ identity: 'x', lastAccessMs: now - 1000 }], backlog: 0 }, now), { alive: true, idle: true, source: 'pollers' });
  t.like(presenceOf('cpu:0', 'other@cpu:0', [], { pollers: [{ identity: 'x', lastAccessMs: now - POLL_LIVE_MS - 1 }] }, now), { alive: false, source: 'none' });
});

test('beat files: written while a device worker runs, say what it runs, removed when it stops', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-beats-'));
  try {
    const done = beginRunning('cpu:5', { sweep: 's', cell: 'c', stage: 'transform', since: 1, attempt: 2 });
    const b = startDeviceBeats({ home, device: 'cpu:5', queue: 'q@cpu:5', identity: 'me cpu:5', slots: 1, threads: 2, intervalMs: 20 });
    // The beat is rewritten every 20 ms; on a loaded machine give it up to 5 s to appear or change.
    const beatWhere = async (ok: (bs: Awaited<ReturnType<typeof readDeviceBeats>>) => boolean) => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const bs = await readDeviceBeats(home);
        if (ok(bs) || Date.now() > deadline) return bs;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    let beats = await beatWhere((bs) => bs.length === 1);
    t.is(beats.length, 1);
    t.like(beats[0], { device: 'cpu:5', queue: 'q@cpu:5', pid: process.pid, slots: 1, threads: 2 });
    t.deepEqual(beats[0].running.map((r) => r.stage), ['transform']);
    t.true(Date.now() - beats[0].at < 1000);
    done();
    t.deepEqual(runningOn('cpu:5'), []);
    beats = await beatWhere((bs) => bs[0]?.running.length === 0);
    t.deepEqual(beats[0].running, []);
    await b.stop();
    t.deepEqual(await readDeviceBeats(home), []);
    t.deepEqual(await readdir(join(home, 'run', 'devices', 'cpu%3A5')), []);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test('devicePresence activity: beats + DescribeTaskQueue; a device that joined on the sweep\'s control queue is reported too', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-presence-'));
  const asked: string[] = [];
  const service: TaskQueueService = {
    async describeTaskQueue(req) {
      asked.push(req.taskQueue.name);
      t.is(req.taskQueueType, 2, 'activity task queue');
      if (req.taskQueue.name === 'lf@cpu:1') throw new Error('unavailable');
      return { pollers: [{ identity: 'p', lastAccessTime: { seconds: Math.floor(Date.now() / 1000), nanos: 0 } }], stats: { approximateBacklogCount: { toNumber: () => 0 } } };
    },
  };
  const beats = [
    startDeviceBeats({ home, device: 'cpu:0', queue: 'lf@cpu:0', identity: 'a', slots: 1, threads: 1 }),
    startDeviceBeats({ home, device: 'cuda:0', queue: 'lf@cuda:0', identity: 'b', slots: 2, threads: 1 }),
    startDeviceBeats({ home, device: 'cpu:7', queue: 'other@cpu:7', identity: 'c', slots: 1, threads: 1 }),
  ];
  try {
    await new Promise((r) => setTimeout(r, 50));
    const { devicePresence } = createDeviceActivities({ home, namespace: 'default', service });
    const p = await devicePresence({ devices: ['cpu:0', 'cpu:1'], queues: { 'cpu:0': 'lf@cpu:0', 'cpu:1': 'lf@cpu:1' }, controlQueue: 'lf' });
    t.deepEqual(p.map((x) => x.device), ['cpu:0', 'cpu:1', 'cuda:0']);
    t.like(p[0], { alive: true, idle: true, backlog: 0, queue: 'lf@cpu:0' });
    t.like(p[1], { alive: false, idle: false }, 'no beat, Temporal could not say');
    t.like(p[2], { alive: true, idle: true, slots: 2, queue: 'lf@cuda:0' });
    t.deepEqual(asked.sort(), ['lf@cpu:0', 'lf@cpu:1', 'lf@cuda:0']);
  } finally {
    await Promise.all(beats.map((b) => b.stop()));
    await rm(home, { recursive: true, force: true });
  }
});

test('a status query without a worker is recognised; other errors are not', (t) => {
  t.is(queryUnanswered({ message: 'Failed to query Workflow', cause: { code: 9, message: '9 FAILED_PRECONDITION: no poller seen for task queue recently' } }), 'no-poller');
  t.is(queryUnanswered({ message: 'x', cause: { code: 4, message: '4 DEADLINE_EXCEEDED: context deadline exceeded' } }), 'timeout');
  t.is(queryUnanswered(new Error('workflow not found')), undefined);
});

test('status from the ledger: last outcome per stage; in a running cell the stages whose needs are done are running', (t) => {
  const st = (name: string, needs: string[] = []): StagePlan => ({
    name, kind: 'k', key: `k-${name}`, parts: { stage: name, version: 1, slice: {}, upstream: {} }, needs, device: name === 'transform',
    retry: { maximumAttempts: 1, initialIntervalMs: 1, backoffCoefficient: 1, maximumIntervalMs: 1 }, timeoutMs: 1, heartbeatMs: 1,
  });
  const cell = (id: string): CellPlan => ({
    sweep: 's', pipeline: 'demo', cellId: id, cellKey: id, axes: {}, params: {},
    stages: [st('load'), st('transform', ['load']), st('profile', ['load']), st('report', ['transform', 'profile'])],
  });
  const at = (s: number) => new Date(1_000_000 + s * 1000).toISOString();
  const line = (cell: string, stage: string, outcome: LedgerLine['outcome'], s: number, o: Partial<LedgerLine> = {}): LedgerLine => ({ at: at(s), cell, stage, key: `k-${stage}`, outcome, attempt: 1, ...o });
  const lines = [
    line('A', 'load', 'computed', 1), line('A', 'profile', 'computed', 2), line('A', 'transform', 'failed', 3, { reason: 'boom', device: 'cpu:1' }),
    line('B', 'load', 'cached', 1), line('B', 'profile', 'cached', 1), line('B', 'transform', 'computed', 2, { device: 'cpu:0', microBatchScale: 0.5 }), line('B', 'report', 'computed', 3),
    line('C', 'load', 'computed', 1), line('C', 'transform', 'failed', 2, { reason: 'bad data' }),
  ];
  const cells = ledgerCells([cell('A'), cell('B'), cell('C'), cell('D')], lines, { running: new Set(['A']), workflowIdOf: (c) => `w/${c}` });
  t.is(cells.A.status, 'running');
  t.like(cells.A.stages, { load: { status: 'computed' }, profile: { status: 'computed' }, transform: { status: 'failed', error: 'boom', device: 'cpu:1' }, report: { status: 'pending' } });
  t.is(cells.B.status, 'succeeded');
  t.like(cells.B.stages!.transform, { status: 'computed', device: 'cpu:0', microBatchScale: 0.5 });
  t.is(cells.C.status, 'failed');
  t.is(cells.C.error, 'bad data');
  t.is(cells.D.status, 'pending');
  t.is(cells.D.workflowId, 'w/D');
  // Lines before `since` (an earlier run) do not count for a running cell: what is ready runs.
  const fresh = ledgerCells([cell('A')], [...lines, line('A', 'load', 'cached', 10)], { since: Date.parse(at(10)), running: new Set(['A']), workflowIdOf: (c) => c });
  t.like(fresh.A.stages, { load: { status: 'cached' }, transform: { status: 'running' }, profile: { status: 'running' }, report: { status: 'pending' } });
});
