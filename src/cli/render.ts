/** Terminal rendering of sweep status: a live table on a TTY, one line per change otherwise. */
import type { SweepStatus } from './sweeps.ts';
import { ProgressTracker, liveStageText, runningStages } from './progress.ts';

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
  const lines = [`sweep ${s.sweep}: ${s.state}`, `  ${'cell'.padEnd(width)}  ${'status'.padEnd(9)}  ${stageNames.map((n) => n.padEnd(10)).join(' ')}`];
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
      lines.push(`  ${' '.repeat(width)}  └ ${n.padEnd(stageWidth)}  ${liveStageText(tracker.view(id, n, live), live, now)}`);
    }
    if (c.error) lines.push(`  ${' '.repeat(width)}  └ ${c.error}`);
  }
  const count = (st: string) => cells.filter(([, c]) => c.status === st).length;
  lines.push(`  ${cells.length} cells: ${count('succeeded')} succeeded, ${count('failed')} failed, ${count('running')} running, ${count('pending')} pending`);
  return lines.join('\n');
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
