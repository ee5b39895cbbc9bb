/**
 * Live progress of running stages (issue 11): what Temporal knows about a cell's running stage
 * activities (their last heartbeat, attempt, start time), decoded into `LiveStage`s; the rate and
 * ETA from successive heartbeats (`ProgressTracker`); the bar and text for the TTY table
 * (src/cli/render.ts) and the throttled progress lines for logs and non-TTY output (`ProgressLog`).
 * Everything here is pure apart from `liveStages`' payload decoding; the clock is a parameter.
 */
import { defaultPayloadConverter, type PayloadConverter } from '@temporalio/common';
import { progressOf, type Progress } from '../runtime/progress.ts';
import type { SweepStatus } from './sweeps.ts';

/** A running (or retrying) stage activity as Temporal describes it. */
export interface LiveStage {
  /** started: a worker runs it; scheduled: waiting for a worker, or for its next retry when attempt > 1. */
  state: 'scheduled' | 'started' | 'cancel-requested' | 'paused' | 'unknown';
  attempt: number;
  /** When the current attempt started (ms since the epoch). */
  startedAt?: number;
  /** When the last heartbeat was recorded (ms since the epoch): the time of `progress`. */
  heartbeatAt?: number;
  /** The last heartbeat's details, decoded. */
  details?: unknown;
  progress?: Progress;
  /** `phase` of the details, when the stage reports one (influence: dense, embedding). */
  phase?: string;
  /** The stage waits for another cell computing the same stage key (activities/stage.ts). */
  waitingFor?: string;
  /** Why the previous attempt failed (a stage being retried). */
  lastFailure?: string;
}

/** The parts of Temporal's PendingActivityInfo read here (raw.pendingActivities[] of a workflow's describe()). */
export interface PendingActivityLike {
  activityId?: string | null;
  activityType?: { name?: string | null } | null;
  state?: number | string | null;
  heartbeatDetails?: { payloads?: unknown[] | null } | null;
  lastHeartbeatTime?: TimestampLike | null;
  lastStartedTime?: TimestampLike | null;
  attempt?: number | null;
  lastFailure?: { message?: string | null } | null;
}

interface TimestampLike {
  seconds?: number | string | { toNumber(): number } | null;
  nanos?: number | null;
}

const STATE: Record<string, LiveStage['state']> = {
  1: 'scheduled', 2: 'started', 3: 'cancel-requested', 4: 'paused', 5: 'paused',
  PENDING_ACTIVITY_STATE_SCHEDULED: 'scheduled', PENDING_ACTIVITY_STATE_STARTED: 'started',
  PENDING_ACTIVITY_STATE_CANCEL_REQUESTED: 'cancel-requested', PENDING_ACTIVITY_STATE_PAUSED: 'paused', PENDING_ACTIVITY_STATE_PAUSE_REQUESTED: 'paused',
};

function tsToMs(ts: TimestampLike | null | undefined): number | undefined {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  const s = typeof ts.seconds === 'object' ? ts.seconds.toNumber() : Number(ts.seconds);
  const ms = s * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

function decodeDetails(a: PendingActivityLike, converter: PayloadConverter): unknown {
  const first = a.heartbeatDetails?.payloads?.[0];
  if (!first) return undefined;
  try {
    return converter.fromPayload(first as Parameters<PayloadConverter['fromPayload']>[0]);
  } catch {
    return undefined; // details we cannot read never break the status view
  }
}

/**
 * The running stages of one cell from its workflow's pending activities. An activity is matched to
 * a stage by the `stage` its heartbeat names (src/runtime/progress.ts), else — when exactly one
 * running stage and one stage activity are left unmatched — by elimination.
 */
export function liveStages(pending: PendingActivityLike[], running: string[], converter: PayloadConverter = defaultPayloadConverter): Record<string, LiveStage> {
  const out: Record<string, LiveStage> = {};
  const unmatched: LiveStage[] = [];
  for (const a of pending) {
    if (a.activityType?.name !== 'runStage') continue; // tracking activities (recordCell) are no stage
    const details = decodeDetails(a, converter);
    const d = (details && typeof details === 'object' ? details : {}) as Record<string, unknown>;
    const live: LiveStage = {
      state: STATE[String(a.state ?? '')] ?? 'unknown',
      attempt: a.attempt || 1,
      startedAt: tsToMs(a.lastStartedTime),
      heartbeatAt: tsToMs(a.lastHeartbeatTime),
      details,
      progress: progressOf(details),
      phase: typeof d.phase === 'string' ? d.phase : undefined,
      waitingFor: typeof d.waitingFor === 'string' ? d.waitingFor : undefined,
      lastFailure: a.lastFailure?.message || undefined,
    };
    for (const k of Object.keys(live) as (keyof LiveStage)[]) if (live[k] === undefined) delete live[k];
    const stage = typeof d.stage === 'string' ? d.stage : undefined;
    if (stage && running.includes(stage) && !out[stage]) out[stage] = live;
    else unmatched.push(live);
  }
  const left = running.filter((s) => !out[s]);
  if (left.length === 1 && unmatched.length === 1) out[left[0]] = unmatched[0];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rate and ETA

export interface ProgressView {
  progress: Progress;
  /** Units per second over the recent window; undefined until two heartbeats with progress apart. */
  rate?: number;
  /** Seconds left at `rate`, from the last heartbeat. */
  eta?: number;
}

interface Track {
  attempt: number;
  unit: string;
  total: number;
  points: Array<{ t: number; done: number }>;
}

const trackKey = (cell: string, stage: string) => `${cell}\u0000${stage}`;

/**
 * Rate and ETA per running stage from successive snapshots: the units done between the oldest
 * heartbeat kept (within `windowMs` of the newest, plus one anchor before it) and the newest. A new
 * attempt, another unit or total, or progress going backwards starts afresh. A first attempt is
 * seeded with (its start, 0), so one snapshot (`layerflow status`) already has a mean rate.
 */
export class ProgressTracker {
  private tracks = new Map<string, Track>();
  constructor(readonly windowMs = 60_000) {}

  observe(s: SweepStatus): void {
    const seen = new Set<string>();
    for (const [cell, stages] of Object.entries(s.live ?? {})) {
      for (const [stage, l] of Object.entries(stages)) {
        const p = l.progress;
        if (!p || l.heartbeatAt === undefined) continue;
        const k = trackKey(cell, stage);
        seen.add(k);
        let tr = this.tracks.get(k);
        const last = tr?.points.at(-1);
        if (!tr || tr.attempt !== l.attempt || tr.unit !== p.unit || tr.total !== p.total || (last && p.done < last.done)) {
          tr = { attempt: l.attempt, unit: p.unit, total: p.total, points: [] };
          if (l.attempt === 1 && l.startedAt !== undefined && l.startedAt < l.heartbeatAt) tr.points.push({ t: l.startedAt, done: 0 });
          this.tracks.set(k, tr);
        }
        const newest = tr.points.at(-1);
        if (!newest || l.heartbeatAt > newest.t) tr.points.push({ t: l.heartbeatAt, done: p.done });
        while (tr.points.length > 2 && tr.points[1].t <= l.heartbeatAt - this.windowMs) tr.points.shift();
      }
    }
    for (const k of [...this.tracks.keys()]) if (!seen.has(k)) this.tracks.delete(k);
  }

  view(cell: string, stage: string, live: LiveStage | undefined): ProgressView | undefined {
    const p = live?.progress;
    if (!p) return undefined;
    const pts = this.tracks.get(trackKey(cell, stage))?.points ?? [];
    const [first, last] = [pts[0], pts.at(-1)];
    if (!first || !last || last.t <= first.t || last.done <= first.done) return { progress: p };
    const rate = (last.done - first.done) / ((last.t - first.t) / 1000);
    return { progress: p, rate, eta: (p.total - p.done) / rate };
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** `width` cells, the done fraction filled: bar(1, 4, 8) = '██░░░░░░'. */
export function bar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const filled = Math.floor(f * width);
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

/** 42s, 3m04s, 2h05m, 3d04h. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
}

/** 12 step/s, 3.2 step/s, 4.5 step/min, 2.0 shard/h. */
export function formatRate(perSecond: number, unit: string): string {
  if (perSecond >= 9.95) return `${Math.round(perSecond)} ${unit}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)} ${unit}/s`;
  if (perSecond * 60 >= 1) return `${(perSecond * 60).toFixed(1)} ${unit}/min`;
  return `${(perSecond * 3600).toFixed(1)} ${unit}/h`;
}

const pct = (p: Progress) => `${Math.floor((100 * p.done) / p.total)}%`;
const count = (p: Progress) => `${p.done}/${p.total} ${p.unit}s`;

/** The TTY form: `████████░░░░░░░░░░░░  41%  412/1000 steps  3.2 step/s  ETA 3m04s`. */
export function progressBar(v: ProgressView, width = 20): string {
  const p = v.progress;
  const parts = [bar(p.done, p.total, width), pct(p).padStart(4), count(p)];
  if (v.rate !== undefined) parts.push(formatRate(v.rate, p.unit));
  if (v.eta !== undefined && p.done < p.total) parts.push(`ETA ${formatDuration(v.eta)}`);
  return parts.join('  ');
}

/** The log form: `412/1000 steps (41%), 3.2 step/s, ETA 3m04s`. */
export function progressText(v: ProgressView): string {
  const p = v.progress;
  const parts = [`${count(p)} (${pct(p)})`];
  if (v.rate !== undefined) parts.push(formatRate(v.rate, p.unit));
  if (v.eta !== undefined && p.done < p.total) parts.push(`ETA ${formatDuration(v.eta)}`);
  return parts.join(', ');
}

/** What a running stage is doing, for the TTY table: a progress bar, or its state and time so far. */
export function liveStageText(view: ProgressView | undefined, live: LiveStage | undefined, now: number): string {
  const retry = live && live.attempt > 1 ? `attempt ${live.attempt}` : '';
  if (view) return [progressBar(view), retry && `(${retry})`].filter(Boolean).join('  ');
  const elapsed = live?.startedAt !== undefined && live.state === 'started' ? formatDuration((now - live.startedAt) / 1000) : '';
  if (live?.state === 'scheduled')
    return live.attempt > 1 ? `retrying (${retry})${live.lastFailure ? ` after: ${live.lastFailure}` : ''}` : 'waiting for a worker';
  if (live?.state === 'cancel-requested') return 'cancelling';
  if (live?.waitingFor) return `waiting for another cell computing the same stage${elapsed && `  ${elapsed}`}`;
  return ['running', live?.phase, elapsed, retry && `(${retry})`].filter(Boolean).join('  ');
}

/** The running stages of a cell, in plan order. */
export function runningStages(s: SweepStatus, cell: string): string[] {
  return Object.entries(s.cells[cell]?.stages ?? {}).filter(([, st]) => st.status === 'running').map(([n]) => n);
}

/**
 * Progress lines for logs and non-TTY output: at most one batch every `everyMs` (the first one
 * `everyMs` after the first snapshot), and in it one line per running stage whose progress changed
 * since it was last printed. Stage transitions are statusChanges' (src/cli/render.ts).
 */
export class ProgressLog {
  private printed = new Map<string, number>();
  private lastAt: number | undefined;
  readonly tracker: ProgressTracker;
  constructor(readonly everyMs = 30_000, tracker?: ProgressTracker) {
    this.tracker = tracker ?? new ProgressTracker();
  }

  lines(s: SweepStatus, now: number): string[] {
    this.tracker.observe(s);
    this.lastAt ??= now;
    if (now - this.lastAt < this.everyMs) return [];
    const out: string[] = [];
    for (const cell of Object.keys(s.cells)) {
      for (const stage of runningStages(s, cell)) {
        const v = this.tracker.view(cell, stage, s.live?.[cell]?.[stage]);
        if (!v) continue;
        const k = trackKey(cell, stage);
        if (this.printed.get(k) === v.progress.done) continue;
        this.printed.set(k, v.progress.done);
        out.push(`${cell} ${stage}: ${progressText(v)}`);
      }
    }
    if (out.length) this.lastAt = now;
    return out;
  }
}
