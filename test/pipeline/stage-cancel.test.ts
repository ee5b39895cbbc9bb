/**
 * The one stage activity (activities/stage.ts) under a cancel, deterministically, in Temporal's mock
 * activity environment: the stage implementation stops on its AbortSignal, the activity rejects
 * with a CancelledFailure (what Temporal reports as cancelled, not failed), the ledger records
 * `cancelled`, and nothing is committed for the stage's key.
 */
import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { MockActivityEnvironment } from '@temporalio/testing';
import { CancelledFailure } from '@temporalio/common';
import { createStageActivities } from '../../activities/stage.ts';
import { TrackingOutbox } from '../../src/tracking/outbox.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import type { StagePlan } from '../../src/config/plan.ts';
import type { StageImpl } from '../../src/store/stage-context.ts';

test('a cancelled stage rejects with CancelledFailure, is ledgered as cancelled and commits nothing', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lf-cancel-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  let started!: () => void;
  const running = new Promise<void>((r) => { started = r; });
  const slow: StageImpl = async (ctx) => {
    started();
    for (let i = 0; ; i++) {
      ctx.signal.throwIfAborted();
      ctx.heartbeat({ i });
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const def: PipelineDef = { name: 'p', description: '', model: z.object({}), task: z.object({}), stages: [] };
  const { runStage } = createStageActivities({ home, outbox: new TrackingOutbox(paths.outbox(home)), pipelines: async () => ({ p: { def, stages: { slow } } }) });
  const stage: StagePlan = {
    name: 'slow', kind: 'x', key: 'k-slow', parts: { stage: 'slow', version: 1, slice: { settings: {} }, upstream: {} }, needs: [], device: true,
    retry: { maximumAttempts: 1, initialIntervalMs: 1, backoffCoefficient: 1, maximumIntervalMs: 1 }, timeoutMs: 60_000, heartbeatMs: 60_000,
  };
  const env = new MockActivityEnvironment();
  const run = env.run(runStage, { sweep: 's', pipeline: 'p', cellId: 'c', cellKey: 'ck', cellParams: {}, stage, inputs: {}, device: 'cpu:0' });
  await running;
  env.cancel();
  await t.throwsAsync(run, { instanceOf: CancelledFailure });
  const ledger = (await readFile(paths.events(home, 's'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { outcome: string });
  t.deepEqual(ledger.map((l) => l.outcome), ['started', 'cancelled']);
  t.is((await new ArtifactStore(paths.store(home)).lookup('k-slow')).status, 'missing');
});
