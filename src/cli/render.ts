/** Terminal rendering of sweep status: a live table on a TTY, one line per change otherwise. */
import type { SweepStatus } from './sweeps.ts';
import type { StageState } from '../../workflows/experiment.ts';
import type { DeviceView } from './workers.ts';
import { ProgressTracker, liveStageText, runningStages, formatDuration } from './progress.ts';

const ICON: Record<string, string> = {
  pending: '·', running: '▶', cached: '≡', computed: '✓', failed: '✗', skipped: '-',
  succeeded: '✓', cancelled: '⊘',
};

/**
 * The sweep as a table, and under each running cell one line per running stage: its progress bar
 * with rate and ETA (from `tracker`, which the caller feeds every snapshot; without one, this
 * snapshot alone), or what it is doing and for how long.
 */
export function statusTable(s: SweepStatus, tracker?: ProgressTracker, now = Date.now()): string {
  if (!tracker) {
    tracker = new ProgressTracker();
    tracker.observe(s);
  }
  const cells = Object.entries(s.cells);
  const stageNames = [...new Set(cells.flatMap(([, c]) => Object.keys(c.stages ?? {})))];
  const width = Math.max(4, ...cells.map(([id]) => id.length));
  const lines = [`sweep ${s.sweep}: ${s.state}${s.worker ? ' — NO WORKER IS POLLING' : ''}`];
  if (s.worker) lines.push(...wrap(s.worker.message, 100).map((l) => `  ${l}`));
  lines.push(`  ${'cell'.padEnd(width)}  ${'status'.padEnd(9)}  ${stageNames.map((n) => n.padEnd(10)).join(' ')}`);
  for (const [id, c] of cells) {
    const stages = stageNames.map((n) => {
      const st = c.stages?.[n]?.status ?? 'pending';
      return `${ICON[st] ?? '?'} ${st}`.padEnd(10);
    });
    lines.push(`  ${id.padEnd(width)}  ${c.status.padEnd(9)}  ${stages.join(' ')}`);
    const running = c.status === 'running' ? runningStages(s, id) : [];
    const stageWidth = Math.max(0, ...running.map((n) => n.length));
    for (const n of running) {
      const live = s.live?.[id]?.[n];
      lines.push(`  ${' '.repeat(width)}  └ ${n.padEnd(stageWidth)}  ${liveStageText(tracker.view(id, n, live), live, now)}${placement(c.stages?.[n])}`);
    }
    // Stages that moved device or shrank their micro-batch, once finished (running ones say it above).
    for (const [n, st] of Object.entries(c.stages ?? {})) {
      if (st.status !== 'running' && (st.moves || st.microBatchScale)) lines.push(`  ${' '.repeat(width)}  └ ${n}${placement(st)}`);
    }
    if (c.error) lines.push(`  ${' '.repeat(width)}  └ ${c.error}`);
  }
  const count = (st: string) => cells.filter(([, c]) => c.status === st).length;
  lines.push(`  ${cells.length} cells: ${count('succeeded')} succeeded, ${count('failed')} failed, ${count('running')} running, ${count('pending')} pending`);
  if (s.devices?.length) lines.push(...deviceLines(s.devices, now, s.leaseSeconds));
  return lines.join('\n');
}

/** Where a device stage runs and what the lease logic did to it: `  on cpu:1, micro-batch ×1/2, moved from cpu:0 (…)`. */
function placement(st: StageState | undefined): string {
  if (!st?.device) return '';
  const parts = [`on ${st.device}`];
  if (st.microBatchScale && st.microBatchScale < 1) parts.push(`micro-batch ×1/${Math.round(1 / st.microBatchScale)}`);
  if (st.note) parts.push(st.note);
  return `  [${parts.join('; ')}]`;
}

/** `words` broken into lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out;
}

/**
 * The device workers: per device whether a worker is alive (its beat), where (host, pid), its slots and
 * threads, what it runs and for how long, its queue's backlog and pollers; and the lease stages wait.
 */
export function deviceLines(devices: DeviceView[], now = Date.now(), leaseSeconds?: number): string[] {
  const lines = [`devices${leaseSeconds ? ` (lease ${leaseSeconds} s: a device stage waits at most this long for its device's worker, then moves to a live device)` : ''}:`];
  const age = (ms: number) => `${formatDuration(Math.max(0, now - ms) / 1000)} ago`;
  for (const d of devices) {
    const state = d.alive ? (d.idle ? 'idle' : d.running > 0 ? 'busy' : 'alive') : 'NO LIVE WORKER';
    lines.push(`  ${d.device.padEnd(8)} ${state.padEnd(14)} queue ${d.queue}, ${d.backlog} waiting`);
    for (const b of d.live) {
      lines.push(`    worker ${b.identity}: ${b.running.length}/${b.slots} slot(s) busy, ${b.threads} thread(s), beat ${age(b.at)}`);
      for (const r of b.running) lines.push(`      runs ${r.stage} of ${r.cell} (sweep ${r.sweep}) for ${formatDuration((now - r.since) / 1000)}${r.attempt > 1 ? `, attempt ${r.attempt}` : ''}${r.microBatchScale ? `, micro-batch ×1/${Math.round(1 / r.microBatchScale)}` : ''}`);
    }
    const dead = d.beats.filter((b) => !d.live.includes(b));
    for (const b of dead) lines.push(`    worker ${b.identity}: last beat ${age(b.at)} (lost)`);
    if (!d.live.length && d.pollers.length) {
      for (const p of d.pollers) lines.push(`    poller ${p.identity}${p.lastAccessMs ? `: last poll ${age(p.lastAccessMs)}` : ''}`);
    }
    if (!d.alive) lines.push(`    start one: layerflow worker --device ${d.device}`);
  }
  return lines;
}

/** Lines describing what changed between two statuses (for logs and non-TTY output). */
export function statusChanges(prev: SweepStatus | undefined, next: SweepStatus): string[] {
  const out: string[] = [];
  for (const [id, c] of Object.entries(next.cells)) {
    const p = prev?.cells[id];
    for (const [stage, st] of Object.entries(c.stages ?? {})) {
      const before = p?.stages?.[stage]?.status;
      if (st.status !== before && st.status !== 'pending')
        out.push(`${id} ${stage}: ${st.status}${st.seconds ? ` (${st.seconds.toFixed(1)}s)` : ''}${st.error ? ` — ${st.error}` : ''}`);
    }
    if (c.status !== p?.status && c.status !== 'pending' && c.status !== 'running') out.push(`${id}: ${c.status}${c.error ? ` — ${c.error}` : ''}`);
  }
  return out;
}
