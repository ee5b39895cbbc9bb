import type { TrackingEvent } from './events.ts';
import type { KeyValue, MlflowClient, MlflowRunInfo } from './mlflow.ts';

/** run key → run info, experiment name → id: saves look-ups across events. */
export type PublishCache = Map<string, MlflowRunInfo | string>;

export const TAG = {
  runKey: 'layerflow.run_key',
  sweep: 'layerflow.sweep',
  cell: 'layerflow.cell',
  stage: 'layerflow.stage',
  cacheKey: 'layerflow.cache_key',
  cached: 'layerflow.cache_hit',
  git: 'mlflow.source.git.commit',
  parent: 'mlflow.parentRunId',
  runName: 'mlflow.runName',
} as const;

const kv = (o: Record<string, string>): KeyValue[] => Object.entries(o).map(([key, value]) => ({ key, value: value.slice(0, 6000) }));

/**
 * Send one event to MLflow: one experiment per sweep, one parent run per cell, a nested run
 * per stage. Idempotent: runs are found again by their `layerflow.run_key` tag, so an event
 * re-sent after a partial failure updates the same runs instead of making new ones.
 */
export async function publishEvent(client: MlflowClient, e: TrackingEvent, cache: PublishCache): Promise<void> {
  const experimentId = await experiment(client, e.sweep, cache);
  const parentKey = `${e.sweep}/${e.cellId}/${e.cellKey}`;
  const parent = await ensureRun(client, cache, experimentId, parentKey, e.cellId, e.time, {
    [TAG.sweep]: e.sweep,
    [TAG.cell]: e.cellId,
    [TAG.cacheKey]: e.cellKey,
    ...(e.gitCommit ? { [TAG.git]: e.gitCommit } : {}),
  }, e.cellParams);

  if (e.type === 'cell') {
    if (e.status !== 'RUNNING') await client.updateRun({ runId: parent.run_id, status: e.status, endTime: e.time });
    return;
  }
  const runKey = `${parentKey}/${e.stage}/${e.key}`;
  const run = await ensureRun(client, cache, experimentId, runKey, `${e.cellId}/${e.stage}`, e.startTime, {
    [TAG.parent]: parent.run_id,
    [TAG.sweep]: e.sweep,
    [TAG.cell]: e.cellId,
    [TAG.stage]: e.stage,
    [TAG.cacheKey]: e.key,
    ...(e.gitCommit ? { [TAG.git]: e.gitCommit } : {}),
  }, e.params);
  await client.logBatch(run.run_id, {
    metrics: [
      ...Object.entries(e.metrics).map(([key, value]) => ({ key, value, timestamp: e.time })),
      ...Object.entries(e.series ?? {}).flatMap(([key, values]) => values.map((value, step) => ({ key, value, step, timestamp: e.time }))),
    ],
    tags: kv({ [TAG.cached]: String(e.cached), ...(e.error ? { 'layerflow.error': e.error } : {}) }),
  });
  for (const [path, content] of Object.entries(e.artifacts ?? {})) await client.uploadArtifact(run, path, content, 'application/json');
  await client.updateRun({ runId: run.run_id, status: e.status, endTime: e.time });
}

async function experiment(client: MlflowClient, name: string, cache: PublishCache): Promise<string> {
  const hit = cache.get(`exp:${name}`);
  if (typeof hit === 'string') return hit;
  const id = await client.ensureExperiment(name);
  cache.set(`exp:${name}`, id);
  return id;
}

async function ensureRun(
  client: MlflowClient,
  cache: PublishCache,
  experimentId: string,
  runKey: string,
  runName: string,
  startTime: number,
  tags: Record<string, string>,
  params: Record<string, string>,
): Promise<MlflowRunInfo> {
  const hit = cache.get(`run:${runKey}`);
  if (hit && typeof hit !== 'string') return hit;
  const found = await client.searchRuns({
    experimentIds: [experimentId],
    filter: `tags.\`${TAG.runKey}\` = '${runKey.replace(/'/g, "\\'")}'`,
    maxResults: 1,
  });
  let info = found[0]?.info;
  if (!info) info = await client.createRun({ experimentId, runName, startTime, tags: kv({ ...tags, [TAG.runKey]: runKey }) });
  // Re-logging an identical param is accepted by MLflow, so a create that was cut off before
  // its params arrived is completed here.
  await client.logBatch(info.run_id, { params: kv(params) });
  cache.set(`run:${runKey}`, info);
  return info;
}
