/**
 * The plots of one cell (src/report/cell.ts), for its parent run in MLflow: each plotted stage's
 * event gives the report's own Vega-Lite plots of that cell, one mark per layer (or per L ×
 * aggregation, per group × aggregation), carrying the event's values; NDR curves come from the
 * stored ndr.json; failed events and stages without per-layer data give none.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cellPlotFiles, cellPlotSpecs } from '../../src/report/cell.ts';
import { sceneMarks } from '../../src/report/render.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { StageEvent } from '../../src/tracking/events.ts';
import { svgMarkCounts } from './marks.ts';

const PARAMS = {
  'model.id': 'tiny', 'task.id': 'proverbs', 'method.id': 'datainf', seed: '1',
  'stages.layer_scores.variant': '+VE', 'stages.allocate_experts.allocator': 'layerif',
  'stages.allocate_sparsity.allocator': 'uniform', 'stages.allocate_sparsity.sparsity': '0.5',
};

const event = (stage: string, over: Partial<StageEvent> = {}): StageEvent => ({
  type: 'stage', sweep: 's', cellId: 'c1', cellKey: 'ck', cellParams: PARAMS, time: 1, stage, key: `key-${stage}`,
  cached: false, status: 'FINISHED', startTime: 0, params: {}, metrics: {}, ...over,
});

const data = (marks: Awaited<ReturnType<typeof sceneMarks>>) => marks.flatMap((m) => m.data);

test('layer_scores: one heatmap rect per layer of the cell\'s task, relative to the largest |S_l|', async (t) => {
  const plots = await cellPlotSpecs(event('layer_scores', { series: { layer_score: [1, -4, 2, 3] } }));
  t.deepEqual(plots.map((p) => p.id), ['layer-scores']);
  const marks = await sceneMarks(plots[0].spec);
  t.deepEqual(marks.map((m) => [m.marktype, m.data.length]), [['rect', 4]]);
  t.deepEqual(data(marks).map((d) => [d.task, d.layer, d.score, d.relative]), [['proverbs', 0, 1, 0.25], ['proverbs', 1, -4, -1], ['proverbs', 2, 2, 0.5], ['proverbs', 3, 3, 0.75]]);
});

test('allocate_experts / allocate_sparsity: one bar / point per layer, labelled with the cell\'s allocation', async (t) => {
  const [experts] = await cellPlotSpecs(event('allocate_experts', { series: { experts: [1, 2, 3, 4, 5] } }));
  t.is(experts.id, 'experts');
  const em = await sceneMarks(experts.spec);
  t.deepEqual(em.map((m) => [m.marktype, m.data.length]), [['rect', 5]]);
  t.deepEqual(data(em).map((d) => [d.layer, d.experts, d.allocator]), [1, 2, 3, 4, 5].map((e, l) => [l, e, 'layerif +VE']));

  // A gap in a series (NaN → null through JSON) is left out, not drawn as 0.
  const [sparsity] = await cellPlotSpecs(event('allocate_sparsity', { series: { ratio: [0.4, null as unknown as number, 0.6] } }));
  t.is(sparsity.id, 'sparsity');
  const sm = await sceneMarks(sparsity.spec);
  const points = sm.filter((m) => m.marktype === 'symbol');
  t.deepEqual(data(points).map((d) => [d.layer, d.ratio, d.allocator]), [[0, 0.4, 'uniform'], [2, 0.6, 'uniform']]);
});

test('ndr: curves from the stored ndr.json, NDR@30 bars per group × aggregation, NDR@30 per layer from the series', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-cell-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(dir);
  const groups = ['WE', 'blocks 0-1', 'all'].map((group, g) => ({
    group, units: 2, cancellation: null,
    byAggregation: Object.fromEntries(['mean', 'vote'].map((a, i) => [a, { at: { 10: 0.1 * g, 20: 0.2, 30: 0.3 + 0.1 * i }, auc: 0.5, curve: [] }])),
  }));
  await store.commit({ key: 'key-ndr', parts: { stage: 'ndr', version: 1, slice: {}, upstream: {} }, kind: 'ndr', files: { 'ndr.json': JSON.stringify({ groups }) } });
  const e = event('ndr', { series: { 'ndr30_by_layer.mean': [0.1, 0.2], 'ndr30_by_layer.vote': [0.3, 0.4] }, metrics: { 'ndr30.WE.mean': 0, 'ndr30.all.vote': 0.4 } });
  const plots = await cellPlotSpecs(e, store);
  t.deepEqual(plots.map((p) => p.id), ['ndr-curves', 'ndr30', 'ndr30-by-layer']);
  const curves = await sceneMarks(plots[0].spec);
  t.is(data(curves.filter((m) => m.marktype === 'symbol')).length, 3 * 2 * 3, 'a point per group × aggregation × L');
  const bars = await sceneMarks(plots[1].spec);
  t.deepEqual(bars.map((m) => [m.marktype, m.data.length]), [['rect', 3 * 2]]);
  t.is(data(bars).find((d) => d.group === 'blocks 0-1' && d.aggregation === 'vote')!.ndr30, 0.4);
  const perLayer = await sceneMarks(plots[2].spec);
  t.deepEqual(data(perLayer.filter((m) => m.marktype === 'symbol')).map((d) => [d.aggregation, d.layer, d.ndr30]), [['mean', 0, 0.1], ['mean', 1, 0.2], ['vote', 0, 0.3], ['vote', 1, 0.4]]);

  // Without the store: the bars from the stage's metrics, no curves.
  t.deepEqual((await cellPlotSpecs(e)).map((p) => p.id), ['ndr30', 'ndr30-by-layer']);

  // The files: standalone SVG (namespace on the root), the marks in the SVG text.
  const files = await cellPlotFiles(e, store);
  t.deepEqual(Object.keys(files), ['plots/ndr-curves.svg', 'plots/ndr30.svg', 'plots/ndr30-by-layer.svg']);
  for (const svg of Object.values(files)) t.regex(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.is(svgMarkCounts(files['plots/ndr30.svg']).rect, 6);
});

test('no plots for a failed stage, a stage without per-layer data, or an empty series', async (t) => {
  t.deepEqual(await cellPlotSpecs(event('layer_scores', { status: 'FAILED', series: { layer_score: [1, 2] } })), []);
  t.deepEqual(await cellPlotSpecs(event('benchmark_moe', { metrics: { acc: 0.5 } })), []);
  t.deepEqual(await cellPlotSpecs(event('allocate_experts', { series: {} })), []);
});
