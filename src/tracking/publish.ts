import { stringify } from 'yaml';
import type { StageEvent, TrackingEvent } from './events.ts';
import type { KeyValue, Metric, MlflowClient, MlflowRunInfo } from './mlflow.ts';
import { headlineMetrics, layerSeries } from '../results/headline.ts';
import { refOf, type ArtifactStore } from '../store/artifacts.ts';

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
  pipeline: 'layerflow.pipeline',
  /** `layerflow.axis.<axis>`: the cell's value on each sweep axis. */
  axis: 'layerflow.axis.',
  /** MLflow 3: opens the experiment in the training-runs view, not the GenAI overview. */
  experimentKind: 'mlflow.experimentKind',
  note: 'mlflow.note.content',
} as const;

/** Store files up to this size are uploaded as run artifacts (scores, allocations, small tensors). */
export const MAX_UPLOAD_BYTES = 8 * 2 ** 20;

const kv = (o: Record<string, string>): KeyValue[] => Object.entries(o).map(([key, value]) => ({ key, value: value.slice(0, 6000) }));

/**
 * Send one event to MLflow: one experiment per sweep (tagged as a model-training experiment),
 * one parent run per cell (params: the resolved config; tags: sweep, cell, axis values, git
 * commit; metrics: the cell's headline metrics and per-layer series; artifacts: config.yaml and
 * the cell's plots under plots/), a nested run per stage (its metrics, series with step = layer
 * index or optimiser step, and its small artifact files).
 * Idempotent: runs are found again by their `layerflow.run_key` tag, so an event re-sent after a
 * partial failure updates the same runs instead of making new ones.
 */
export async function publishEvent(client: MlflowClient, e: TrackingEvent, cache: PublishCache, store?: ArtifactStore): Promise<void> {
  const experimentId = await experiment(client, e.sweep, e.pipeline, cache);
  const parentKey = `${e.sweep}/${e.cellId}/${e.cellKey}`;
  const created = !cache.has(`run:${parentKey}`);
  const parent = await ensureRun(client, cache, experimentId, parentKey, e.cellId, e.time, {
    [TAG.sweep]: e.sweep,
    [TAG.cell]: e.cellId,
    [TAG.cacheKey]: e.cellKey,
    ...(e.pipeline ? { [TAG.pipeline]: e.pipeline } : {}),
    ...Object.fromEntries(Object.entries(e.cellAxes ?? {}).map(([k, v]) => [`${TAG.axis}${k.replace(/^stages\./, '')}`, String(v)])),
    ...(e.gitCommit ? { [TAG.git]: e.gitCommit } : {}),
  }, e.cellParams);
  if (created && e.type === 'cell' && e.status === 'RUNNING')
    await client.uploadArtifact(parent, 'config.yaml', configYaml(e.cellParams), 'text/yaml');

  if (e.type === 'cell') {
    if (e.status !== 'RUNNING') await client.updateRun({ runId: parent.run_id, status: e.status, endTime: e.time });
    return;
  }
  // The cell's headline metrics and its per-layer series (step = layer index) on the parent run too,
  // so the runs table compares cells and MLflow's charts overlay them.
  const upToParent = [
    ...Object.entries(headlineMetrics(e.stage, e.metrics)).map(([key, value]) => ({ key, value, timestamp: e.time })),
    ...seriesPoints(layerSeries(e.stage, e.series ?? {}), e.time),
  ];
  if (upToParent.length) await client.logBatch(parent.run_id, { metrics: upToParent });
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
      ...seriesPoints(e.series ?? {}, e.time),
    ],
    tags: kv({ [TAG.cached]: String(e.cached), ...(e.error ? { 'layerflow.error': e.error } : {}) }),
  });
  for (const [path, content] of Object.entries(e.artifacts ?? {})) await client.uploadArtifact(run, path, content, 'application/json');
  if (store && e.storeFiles?.length) {
    const hit = await store.lookup(e.key);
    if (hit.status === 'hit') {
      const ref = refOf(hit.manifest);
      const kept: string[] = [];
      for (const f of e.storeFiles) {
        if (!ref.files[f]) continue;
        if (ref.files[f].size <= MAX_UPLOAD_BYTES) await client.uploadArtifact(run, f, await store.read(ref, f), contentType(f));
        else kept.push(`${f} (${(ref.files[f].size / 2 ** 20).toFixed(1)} MiB)`);
      }
      // Larger files stay in the artifact store only; the run says which and where, never silently.
      if (kept.length) await client.setTag(run.run_id, 'layerflow.not_uploaded', `over ${MAX_UPLOAD_BYTES / 2 ** 20} MiB, in the store under key ${e.key}: ${kept.join(', ')}`.slice(0, 5000));
    }
  }
  await publishCellPlots(client, parent, run, e, store);
  await client.updateRun({ runId: run.run_id, status: e.status, endTime: e.time });
}

/** Metric points of series, step = index. A series may hold gaps (NaN, or null once it went through JSON): those steps are left out. */
function seriesPoints(series: Record<string, Array<number | null>>, timestamp: number): Metric[] {
  return Object.entries(series).flatMap(([key, values]) => values.flatMap((value, step) => (typeof value === 'number' && Number.isFinite(value) ? [{ key, value, step, timestamp }] : [])));
}

/**
 * The plots a finished stage gives its cell (src/report/cell.ts: layer scores, NDR curves and bars,
 * experts / sparsity per layer), uploaded to the cell's parent run as `plots/<id>.svg`. A plot that
 * cannot be drawn never holds back the delivery: the reason goes to the stage run's tag
 * `layerflow.plot_error`. (The renderer is loaded on first use: vega is heavy, and most callers of
 * this module never draw.)
 */
async function publishCellPlots(client: MlflowClient, parent: MlflowRunInfo, run: MlflowRunInfo, e: StageEvent, store?: ArtifactStore): Promise<void> {
  if (e.status !== 'FINISHED' || !PLOTTED_STAGES.has(e.stage)) return;
  let files: Record<string, string>;
  try {
    const { cellPlotFiles } = await import('../report/cell.ts');
    files = await cellPlotFiles(e, store);
  } catch (err) {
    await client.setTag(run.run_id, 'layerflow.plot_error', String((err as Error)?.message ?? err).slice(0, 5000));
    return;
  }
  for (const [path, svg] of Object.entries(files)) await client.uploadArtifact(parent, path, svg, contentType(path));
}

/** Stages whose events give their cell plots (src/report/cell.ts). */
export const PLOTTED_STAGES = new Set(['layer_scores', 'ndr', 'allocate_experts', 'allocate_sparsity']);

const contentType = (f: string) =>
  f.endsWith('.json') ? 'application/json' : f.endsWith('.yaml') ? 'text/yaml' : f.endsWith('.html') ? 'text/html' : f.endsWith('.svg') ? 'image/svg+xml' : f.endsWith('.png') ? 'image/png' : 'application/octet-stream';

/** The resolved cell config as YAML, from its flattened params (values that were JSON come back typed). */
export function configYaml(params: Record<string, string>): string {
  const root: Record<string, unknown> = {};
  for (const [path, raw] of Object.entries(params)) {
    let value: unknown = raw;
    if (/^(-?\d|\[|\{|true$|false$|null$)/.test(raw)) try { value = JSON.parse(raw); } catch { /* a plain string */ }
    const keys = path.split('.');
    let o = root;
    for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
    o[keys[keys.length - 1]] = value;
  }
  return stringify(root);
}

async function experiment(client: MlflowClient, name: string, pipeline: string | undefined, cache: PublishCache): Promise<string> {
  const hit = cache.get(`exp:${name}`);
  if (typeof hit === 'string') return hit;
  const id = await client.ensureExperiment(name, kv({
    [TAG.experimentKind]: 'custom_model_development',
    [TAG.note]: `LayerFlow sweep \`${name}\`${pipeline ? ` (pipeline \`${pipeline}\`)` : ''}: one parent run per cell (params = its resolved config, tags layerflow.axis.* = its axis values, metrics = its headline metrics and per-layer series, plots under plots/), nested runs per stage. Per-layer quantities are metric series with step = layer index (on the parent run as \`<stage>.<series>\`).`,
  }));
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

/**
 * Log a sweep's HTML report to MLflow: an artifact `report.html` of the experiment's `report` run
 * (tag `layerflow.kind = report`, no cell tag, so it never counts as a cell). Returns that run's id.
 */
export async function publishReport(client: MlflowClient, sweep: string, pipeline: string, html: string, files: Record<string, string | Uint8Array> = {}): Promise<string> {
  const cache: PublishCache = new Map();
  const experimentId = await experiment(client, sweep, pipeline, cache);
  const run = await ensureRun(client, cache, experimentId, `${sweep}/report`, 'report', Date.now(), { [TAG.sweep]: sweep, 'layerflow.kind': 'report' }, {});
  await client.uploadArtifact(run, 'report.html', html, 'text/html');
  for (const [name, data] of Object.entries(files)) await client.uploadArtifact(run, name, data, contentType(name));
  await client.updateRun({ runId: run.run_id, status: 'FINISHED', endTime: Date.now() });
  return run.run_id;
}
