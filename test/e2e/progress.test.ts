/**
 * End to end (issue 11): while a sweep runs on a real Temporal dev server, `sweepStatus` reads the
 * running stage's last heartbeat from Temporal (describe → pendingActivities → heartbeatDetails),
 * decodes its progress, and the status table and the progress log render it.
 *
 * Needs the demo transform (test/pipeline/files-pipeline.ts) to heartbeat the progress convention:
 *   ctx.heartbeat(withProgress(ctx, i + 1, shuffled.length, 'line', { line: i }));
 */
import anyTest, { type TestFn } from 'ava';
import { useStack, writeSweep, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep, sweepStatus, type SweepStatus } from '../../src/cli/sweeps.ts';
import { statusTable } from '../../src/cli/render.ts';
import { ProgressLog, ProgressTracker } from '../../src/cli/progress.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack }>;
useStack(test);

test('e2e: a running stage\'s heartbeat progress reaches sweepStatus, the status table and the progress log', async (t) => {
  const { stack } = t.context;
  // Enough sha256 work per line that each transform runs for seconds, heartbeating per line.
  const file = await writeSweep(stack, 'progress', { work: 40_000 });
  const handle = await submitSweep(stack.client, stack.env, await planFile(file));
  const tracker = new ProgressTracker();
  const log = new ProgressLog(0, tracker);
  const seen: SweepStatus[] = [];
  const logLines: string[] = [];
  for (let i = 0; i < 600 && seen.length < 3; i++) {
    const s = await sweepStatus(stack.client, 'progress').catch(() => undefined);
    if (s?.state !== 'running') {
      if (s) break;
    } else {
      logLines.push(...log.lines(s, Date.now()));
      const withProgress = Object.values(s.live ?? {}).some((stages) => stages.transform?.progress);
      const last = seen.at(-1);
      const p = (x: SweepStatus) => Object.values(x.live ?? {}).map((st) => st.transform?.progress?.done ?? -1).join();
      if (withProgress && (!last || p(last) !== p(s))) seen.push(s);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  t.true(seen.length >= 2, `saw ${seen.length} snapshots with transform progress`);
  const s = seen.at(-1)!;
  const [cell, stages] = Object.entries(s.live!).find(([, st]) => st.transform?.progress)!;
  const live = stages.transform;
  t.is(live.state, 'started');
  t.is(live.attempt, 1);
  t.is(live.progress!.unit, 'line');
  t.true(live.progress!.done >= 1 && live.progress!.done <= live.progress!.total);
  t.true(live.heartbeatAt! >= live.startedAt!);
  t.like(live.details as object, { stage: 'transform' });
  // Live entries only for running stages of running cells.
  for (const [id, st] of Object.entries(s.live!)) for (const n of Object.keys(st)) t.is(s.cells[id].stages?.[n]?.status, 'running', `${id} ${n}`);
  const table = statusTable(s, tracker);
  t.regex(table, new RegExp(`${cell.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*\\n.*└ transform +[█░]{20} +\\d+%  \\d+/\\d+ lines`));
  t.true(logLines.some((l) => /^\S+ transform: \d+\/\d+ lines \(\d+%\)/.test(l)), logLines.join('\n'));

  const r = (await handle.result()) as SweepResult;
  t.is(r.succeeded, 4);
  const done = await sweepStatus(stack.client, 'progress');
  t.is(done.state, 'completed');
  t.is(done.live, undefined);
  t.notRegex(statusTable(done), /└/);
});
