/**
 * Live progress (issue 11): the heartbeat progress convention, decoding a running cell's pending
 * activities as Temporal's describe() returns them, rate/ETA from successive snapshots, the bar and
 * the throttled non-TTY progress lines.
 */
import test from 'ava';
import { defaultPayloadConverter } from '@temporalio/common';
import { msNumberToTs } from '@temporalio/common/lib/time.js';
// The proto package @temporalio/client itself decodes describe() responses with (same version).
import proto from '@temporalio/proto';
import { withProgress, progressOf } from '../../src/runtime/progress.ts';
import { liveStages, ProgressTracker, ProgressLog, bar, formatDuration, formatRate, progressBar, progressText, liveStageText, type LiveStage, type PendingActivityLike } from '../../src/cli/progress.ts';
import { statusTable, statusChanges } from '../../src/cli/render.ts';
import type { SweepStatus } from '../../src/cli/sweeps.ts';
import type { StageState } from '../../workflows/experiment.ts';

const { temporal } = proto;

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

test('the progress convention: withProgress keeps the stage\'s own fields and adds stage + progress; progressOf reads it back', (t) => {
  const d = withProgress({ stage: 'gradients' }, 96, 1200, 'sample', { key: 'abc', done: 2, rows: 32 });
  t.deepEqual(d, { key: 'abc', done: 2, rows: 32, stage: 'gradients', progress: { done: 96, total: 1200, unit: 'sample' } });
  t.deepEqual(progressOf(d), { done: 96, total: 1200, unit: 'sample' });
  t.deepEqual(withProgress({ stage: 'x' }, 1, 2, 'step'), { stage: 'x', progress: { done: 1, total: 2, unit: 'step' } });
  for (const bad of [undefined, null, 3, {}, { progress: 1 }, { progress: { done: 1, total: 0, unit: 'x' } }, { progress: { done: '1', total: 2, unit: 'x' } }, { progress: { done: 1, total: 2 } }, { progress: { done: NaN, total: 2, unit: 'x' } }])
    t.is(progressOf(bad), undefined, JSON.stringify(bad));
  t.deepEqual(progressOf({ progress: { done: 12, total: 10, unit: 'doc' } }), { done: 10, total: 10, unit: 'doc' }, 'clamped to total');
});

/** A pending activity as the Temporal server sends it: encoded to protobuf bytes and decoded again. */
function pendingActivities(list: Array<{ id: string; type?: string; state?: number; details?: unknown; rawPayload?: { metadata: Record<string, Uint8Array>; data: Uint8Array }; startedAt?: number; beatAt?: number; attempt?: number; failure?: string }>): PendingActivityLike[] {
  const msg = temporal.api.workflowservice.v1.DescribeWorkflowExecutionResponse.create({
    pendingActivities: list.map((a) => ({
      activityId: a.id,
      activityType: { name: a.type ?? 'runStage' },
      state: a.state ?? temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
      heartbeatDetails: a.rawPayload ? { payloads: [a.rawPayload] } : a.details !== undefined ? { payloads: [defaultPayloadConverter.toPayload(a.details)] } : undefined,
      lastStartedTime: a.startedAt !== undefined ? msNumberToTs(a.startedAt) : undefined,
      lastHeartbeatTime: a.beatAt !== undefined ? msNumberToTs(a.beatAt) : undefined,
      attempt: a.attempt ?? 1,
      lastFailure: a.failure ? { message: a.failure } : undefined,
    })),
  });
  const bytes = temporal.api.workflowservice.v1.DescribeWorkflowExecutionResponse.encode(msg).finish();
  return temporal.api.workflowservice.v1.DescribeWorkflowExecutionResponse.decode(bytes).pendingActivities as PendingActivityLike[];
}

test('decode: a running cell\'s pending activities become its live stages, matched by the stage their heartbeat names', (t) => {
  const pending = pendingActivities([
    { id: '1', type: 'recordCell', details: { stage: 'prune' } },
    { id: '7', details: withProgress({ stage: 'benchmark_pruned' }, 16, 200, 'doc', { docs: 16 }), startedAt: T0, beatAt: T0 + 8_000 },
    { id: '6', details: withProgress({ stage: 'moe_finetune' }, 40, 300, 'step', { step: 40, of: 300, loss: 1.25 }), startedAt: T0 - 60_000, beatAt: T0 + 9_500, attempt: 2, failure: 'worker lost' },
  ]);
  const live = liveStages(pending, ['moe_finetune', 'benchmark_pruned']);
  t.deepEqual(Object.keys(live).sort(), ['benchmark_pruned', 'moe_finetune']);
  t.deepEqual(live.benchmark_pruned, {
    state: 'started', attempt: 1, startedAt: T0, heartbeatAt: T0 + 8_000,
    details: { docs: 16, stage: 'benchmark_pruned', progress: { done: 16, total: 200, unit: 'doc' } },
    progress: { done: 16, total: 200, unit: 'doc' },
  });
  t.is(live.moe_finetune.attempt, 2);
  t.is(live.moe_finetune.lastFailure, 'worker lost');
  t.deepEqual(live.moe_finetune.progress, { done: 40, total: 300, unit: 'step' });
  t.is(live.moe_finetune.heartbeatAt, T0 + 9_500);
});

test('decode: details without a stage name are matched by elimination; unreadable details never throw', (t) => {
  // The gradients cursor as it was before issue 11 (no stage, no progress) and a shared-stage wait.
  const one = liveStages(pendingActivities([{ id: '3', details: { key: 'k', done: 2, rows: 8 }, startedAt: T0, beatAt: T0 + 1000 }]), ['gradients']);
  t.deepEqual(one.gradients.details, { key: 'k', done: 2, rows: 8 });
  t.is(one.gradients.progress, undefined);
  const wait = liveStages(pendingActivities([{ id: '3', details: { waitingFor: 'abc' }, startedAt: T0 }]), ['finetune']);
  t.is(wait.finetune.waitingFor, 'abc');
  // Two stages running, two anonymous heartbeats: which is which is unknown, so neither is claimed.
  t.deepEqual(liveStages(pendingActivities([{ id: '3', details: { line: 1 } }, { id: '4', details: { line: 2 } }]), ['a', 'b']), {});
  // A payload in an encoding the converter does not know, and no heartbeat yet (scheduled, retrying).
  const odd = liveStages(pendingActivities([{ id: '5', rawPayload: { metadata: { encoding: new TextEncoder().encode('binary/unknown') }, data: new Uint8Array([1, 2]) } }]), ['x']);
  t.is(odd.x.details, undefined);
  const sched = liveStages(pendingActivities([{ id: '5', state: temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED, attempt: 3, failure: 'CUDA out of memory' }]), ['finetune']);
  t.deepEqual(sched.finetune, { state: 'scheduled', attempt: 3, lastFailure: 'CUDA out of memory' });
  t.is(liveStageText(undefined, sched.finetune, T0), 'retrying (attempt 3) after: CUDA out of memory');
});

test('format: bar, durations, rates, the TTY bar line and the log line', (t) => {
  t.is(bar(0, 10, 10), '░░░░░░░░░░');
  t.is(bar(5, 10, 10), '█████░░░░░');
  t.is(bar(999, 1000, 10), '█████████░');
  t.is(bar(12, 10, 10), '██████████');
  t.is(bar(1, 4, 8), '██░░░░░░');
  t.deepEqual([0, 42.4, 60, 184, 3599.6, 7500, 90000, 300000].map(formatDuration), ['0s', '42s', '1m00s', '3m04s', '1h00m', '2h05m', '1d01h', '3d11h']);
  t.is(formatRate(250, 'sample'), '250 sample/s');
  t.is(formatRate(3.21, 'step'), '3.2 step/s');
  t.is(formatRate(10, 'step'), '10 step/s');
  t.is(formatRate(9.9, 'step'), '9.9 step/s');
  t.is(formatRate(0.075, 'step'), '4.5 step/min');
  t.is(formatRate(1 / 1800, 'shard'), '2.0 shard/h');
  const v = { progress: { done: 412, total: 1000, unit: 'step' }, rate: 3.2, eta: 588 / 3.2 };
  t.is(progressBar(v), '████████░░░░░░░░░░░░   41%  412/1000 steps  3.2 step/s  ETA 3m04s');
  t.is(progressText(v), '412/1000 steps (41%), 3.2 step/s, ETA 3m04s');
  t.is(progressText({ progress: { done: 3, total: 40, unit: 'shard' } }), '3/40 shards (7%)', 'no rate yet: no rate, no ETA');
  t.is(progressText({ progress: { done: 40, total: 40, unit: 'shard' }, rate: 1, eta: 0 }), '40/40 shards (100%), 1.0 shard/s');
});

// --- snapshots --------------------------------------------------------------------------------

const STAGES = ['data', 'finetune', 'gradients', 'influence'];
type CellSpec = { stages: Partial<Record<string, StageState['status']>>; live?: Record<string, LiveStage> };

function snapshot(cells: Record<string, CellSpec>): SweepStatus {
  const s: SweepStatus = { sweep: 'demo', state: 'running', cells: {}, live: {} };
  for (const [id, c] of Object.entries(cells)) {
    const stages = Object.fromEntries(STAGES.map((n) => [n, { status: c.stages[n] ?? 'pending' } as StageState]));
    const running = Object.values(stages).some((x) => x.status === 'running');
    const failed = Object.values(stages).some((x) => x.status === 'failed');
    const done = Object.values(stages).every((x) => x.status === 'computed' || x.status === 'cached');
    s.cells[id] = { status: failed ? 'failed' : done ? 'succeeded' : running ? 'running' : 'pending', workflowId: `layerflow/demo/${id}`, stages };
    if (c.live) s.live![id] = c.live;
  }
  return s;
}

const beat = (done: number, total: number, unit: string, at: number, startedAt = T0, attempt = 1): LiveStage =>
  ({ state: 'started', attempt, startedAt, heartbeatAt: at, progress: { done, total, unit } });

test('rate and ETA: from the heartbeats of successive snapshots over a sliding window; a retry starts afresh', (t) => {
  const tr = new ProgressTracker(60_000);
  const at = (done: number, sec: number, attempt = 1) => {
    const s = snapshot({ c: { stages: { data: 'computed', finetune: 'running' }, live: { finetune: beat(done, 1000, 'step', T0 + sec * 1000, T0, attempt) } } });
    tr.observe(s);
    return tr.view('c', 'finetune', s.live!.c.finetune)!;
  };
  // One snapshot: the mean rate since the attempt started (seeded with (start, 0)).
  t.deepEqual(at(20, 10), { progress: { done: 20, total: 1000, unit: 'step' }, rate: 2, eta: 490 });
  t.is(at(40, 15).rate, 40 / 15);
  // The window (60 s) forgets the slow start: rate from the last anchor ≤ 60 s behind onwards.
  for (let sec = 20; sec <= 100; sec += 5) at(40 + (sec - 15) * 4, sec);
  const v = at(40 + 85 * 4 + 4, 101); // 4 steps/s since t=15
  t.is(Math.round(v.rate! * 100) / 100, 4);
  t.is(Math.round(v.eta!), Math.round((1000 - 384) / v.rate!));
  // The same heartbeat seen twice does not count as a new sample.
  t.deepEqual(at(384, 101), v);
  // A new attempt (resumed from a checkpoint): no seed, no rate until a second heartbeat.
  t.deepEqual(at(300, 130, 2), { progress: { done: 300, total: 1000, unit: 'step' } });
  t.is(at(310, 135, 2).rate, 2);
  // Progress going backwards (a restart within the same attempt number) resets too.
  t.is(at(5, 140, 2).rate, undefined);
});

test('TTY: the status table shows each running cell\'s running stages with bar, rate and ETA, or what they are doing', (t) => {
  const tracker = new ProgressTracker();
  const s1 = snapshot({
    'model=a,seed=1': { stages: { data: 'computed', finetune: 'running' }, live: { finetune: beat(100, 1000, 'step', T0 + 50_000) } },
    'model=b,seed=1': { stages: { data: 'computed', finetune: 'computed', gradients: 'running' }, live: { gradients: { state: 'started', attempt: 1, startedAt: T0, heartbeatAt: T0 + 20_000 } } },
    'model=c,seed=1': { stages: { data: 'running' } },
    'model=d,seed=1': { stages: {} },
  });
  tracker.observe(s1);
  const s2 = snapshot({
    'model=a,seed=1': { stages: { data: 'computed', finetune: 'running' }, live: { finetune: beat(412, 1000, 'step', T0 + 150_000) } },
    'model=b,seed=1': { stages: { data: 'computed', finetune: 'computed', gradients: 'running' }, live: { gradients: { state: 'started', attempt: 1, startedAt: T0, heartbeatAt: T0 + 20_000 } } },
    'model=c,seed=1': { stages: { data: 'running' } },
    'model=d,seed=1': { stages: {} },
  });
  tracker.observe(s2);
  const table = statusTable(s2, tracker, T0 + 152_000);
  t.is(table, [
    'sweep demo: running',
    '  cell            status     data       finetune   gradients  influence ',
    '  model=a,seed=1  running    ✓ computed ▶ running  · pending  · pending ',
    '                  └ finetune  ████████░░░░░░░░░░░░   41%  412/1000 steps  3.1 step/s  ETA 3m08s',
    '  model=b,seed=1  running    ✓ computed ✓ computed ▶ running  · pending ',
    '                  └ gradients  running  2m32s',
    '  model=c,seed=1  running    ▶ running  · pending  · pending  · pending ',
    '                  └ data  running',
    '  model=d,seed=1  pending    · pending  · pending  · pending  · pending ',
    '  4 cells: 0 succeeded, 0 failed, 3 running, 1 pending',
  ].join('\n'));
  // `layerflow status`: one snapshot, no tracker; the rate is the mean since the stage started.
  t.regex(statusTable(s2, undefined, T0 + 152_000), /└ finetune {2}█+░+ {3}41% {2}412\/1000 steps {2}2\.7 step\/s {2}ETA 3m34s/);
});

test('non-TTY: one line per stage transition, progress lines at most every 30 s and only for stages whose progress changed — never a flood', (t) => {
  // A minute and a half of `layerflow run` polling once a second: two cells; A fine-tunes then
  // computes gradients, B's gradients stall after 40 s (no new heartbeat, same progress).
  const out: string[] = [];
  const log = new ProgressLog(30_000);
  let prev: SweepStatus | undefined;
  for (let sec = 0; sec <= 95; sec++) {
    const now = T0 + sec * 1000;
    const beatSec = sec - (sec % 2); // heartbeats recorded every 2 s (the throttle)
    const a: CellSpec = sec < 50
      ? { stages: { data: 'computed', finetune: 'running' }, live: { finetune: beat(beatSec * 10, 500, 'step', T0 + beatSec * 1000) } }
      : { stages: { data: 'computed', finetune: 'computed', gradients: 'running' }, live: { gradients: beat((beatSec - 50) * 8, 1200, 'sample', T0 + beatSec * 1000, T0 + 50_000) } };
    const bSec = Math.min(beatSec, 40);
    const b: CellSpec = { stages: { data: 'computed', finetune: 'computed', gradients: 'running' }, live: { gradients: beat(bSec * 10, 1200, 'sample', T0 + bSec * 1000) } };
    const s = snapshot({ A: a, B: b });
    out.push(...statusChanges(prev, s), ...log.lines(s, now).map((l) => `[${sec}s] ${l}`));
    prev = s;
  }
  t.deepEqual(out, [
    'A data: computed',
    'A finetune: running',
    'B data: computed',
    'B finetune: computed',
    'B gradients: running',
    '[30s] A finetune: 300/500 steps (60%), 10 step/s, ETA 20s',
    '[30s] B gradients: 300/1200 samples (25%), 10 sample/s, ETA 1m30s',
    'A finetune: computed',
    'A gradients: running',
    '[60s] A gradients: 80/1200 samples (6%), 8.0 sample/s, ETA 2m20s',
    '[60s] B gradients: 400/1200 samples (33%), 10 sample/s, ETA 1m20s',
    // B has not moved since 40 s (printed at 60 s): only A gets a line.
    '[90s] A gradients: 320/1200 samples (26%), 8.0 sample/s, ETA 1m50s',
  ]);
});
