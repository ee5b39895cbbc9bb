/**
 * The plot specs alone (no sweep): each builder's Vega-Lite spec, compiled and rendered by vega,
 * draws one mark per input row — bars per layer × allocator, rects per layer × task, points per
 * L × aggregation — in facet panels when the rows name several, and each drawn mark carries the
 * input row's values. Counted twice: in vega's scenegraph and in the SVG text the report inlines.
 */
import test from 'ava';
import { expertsPerLayer, layerScoreHeatmap, ndr30Bars, ndrCurves, sparsityPerLayer, type ExpertRow, type LayerScoreRow } from '../../src/report/specs.ts';
import { renderSvg, sceneMarks } from '../../src/report/render.ts';
import { svgMarkCounts } from './marks.ts';

/** Relative luminance-ish brightness of a CSS colour vega draws (#rrggbb or rgb(r, g, b)). */
function luminance(c: string | undefined): number {
  const hex = c?.match(/^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i);
  const rgb = hex ? hex.slice(1).map((x) => parseInt(x, 16)) : c?.match(/rgb\((\d+), ?(\d+), ?(\d+)\)/)?.slice(1).map(Number);
  if (!rgb) throw new Error(`unexpected colour ${c}`);
  return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
}

const ALLOCATORS = ['layerif +VE', 'alphalora', 'uniform'];
const expertRows = (panels: string[]): ExpertRow[] =>
  panels.flatMap((panel, p) => ALLOCATORS.flatMap((allocator, a) => [0, 1, 2, 3, 4].map((layer) => ({ panel, allocator, layer, experts: 1 + layer + a * 10 + p * 100 }))));

test('experts per layer: one bar per layer × allocator, carrying its row', async (t) => {
  const rows = expertRows(['']);
  const spec = expertsPerLayer(rows);
  t.falsy((spec as { facet?: unknown }).facet, 'one panel: no facet');
  const marks = await sceneMarks(spec);
  t.deepEqual(marks.map((m) => m.marktype), ['rect']);
  t.is(marks[0].data.length, 5 * 3);
  for (const r of rows) t.is(marks[0].data.filter((d) => d.allocator === r.allocator && d.layer === r.layer && d.experts === r.experts).length, 1, `${r.allocator} layer ${r.layer}`);
  const svg = await renderSvg(spec);
  t.deepEqual(svgMarkCounts(svg), { rect: 15 });
  t.false(svg.includes('http'), 'no namespace or other URL left in the inline SVG');
});

test('experts per layer over several panels: a facet panel each, bars = panels × layers × allocators', async (t) => {
  const rows = expertRows(['task a', 'task b']);
  const spec = expertsPerLayer(rows);
  t.truthy((spec as { facet?: unknown }).facet);
  const marks = await sceneMarks(spec);
  t.deepEqual(marks.map((m) => [m.marktype, m.data.length]), [['rect', 15], ['rect', 15]]);
  t.deepEqual(marks.map((m) => [...new Set(m.data.map((d) => d.panel))]), [['task a'], ['task b']], 'panels in the rows’ order');
  t.deepEqual(svgMarkCounts(await renderSvg(spec)), { rect: 30 });
});

test('layer-score heatmap: one rect per layer × task, colour from the relative score', async (t) => {
  const tasks = ['winowhy', 'strategyqa', 'sports'];
  const rows: LayerScoreRow[] = ['variant +VE', 'variant TOP25'].flatMap((panel) => tasks.flatMap((task, i) => Array.from({ length: 6 }, (_, layer) => ({ panel, task, layer, score: (layer + 1) * (i + 1), relative: (layer + 1) / 6 }))));
  const marks = await sceneMarks(layerScoreHeatmap(rows));
  t.deepEqual(marks.map((m) => [m.marktype, m.data.length]), [['rect', 18], ['rect', 18]]);
  for (const m of marks) {
    for (const d of m.data) {
      const r = rows.find((x) => x.panel === d.panel && x.task === d.task && x.layer === d.layer)!;
      t.is(d.score, r.score);
      t.is(d.relative, r.relative);
    }
  }
  t.deepEqual(svgMarkCounts(await renderSvg(layerScoreHeatmap(rows))), { rect: 36 });
  // A larger relative score is drawn darker (sequential scheme, light → dark).
  const one = (await sceneMarks(layerScoreHeatmap(rows.filter((r) => r.panel === 'variant +VE' && r.task === 'winowhy'))))[0];
  const light = one.fills.map(luminance);
  const byScore = one.data.map((d, i) => [d.relative as number, light[i]]).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < byScore.length; i++) t.true(byScore[i][1] < byScore[i - 1][1], `relative ${byScore[i][0]} darker than ${byScore[i - 1][0]}`);
});

test('layer-score heatmap of two architectures (30 and 18 layers): each panel spans its own layers only', async (t) => {
  const rows: LayerScoreRow[] = [['model smollm2', 30], ['model gemma3', 18]].flatMap(([panel, n]) =>
    ['winowhy', 'strategyqa'].flatMap((task) => Array.from({ length: n as number }, (_, layer) => ({ panel: panel as string, task, layer, score: layer + 1, relative: (layer + 1) / (n as number) }))));
  const spec = layerScoreHeatmap(rows) as { resolve?: { scale?: { x?: string } } };
  t.is(spec.resolve?.scale?.x, 'independent');
  const marks = await sceneMarks(layerScoreHeatmap(rows));
  t.deepEqual(marks.map((m) => m.data.length).sort((a, b) => a - b), [36, 60]);
  // The SVG's x-axis labels: 0–29 once and 0–17 once (a shared axis would label 0–29 twice).
  const svg = await renderSvg(layerScoreHeatmap(rows));
  const label = (n: number) => (svg.match(new RegExp(`>${n}</text>`, 'g')) ?? []).length;
  t.is(label(29), 1);
  t.is(label(17), 2);
});

test('NDR curves: a line per panel × aggregation and a point per L; NDR@30 bars per group × aggregation', async (t) => {
  const groups = ['WE', 'blocks 0-7', 'CL', 'all'], aggs = ['mean', 'rank', 'vote'], Ls = [10, 20, 30, 40, 50];
  const curves = groups.flatMap((panel) => aggs.flatMap((aggregation, a) => Ls.map((L) => ({ panel, aggregation, L, ndr: (L / 100) * (1 + a / 10) }))));
  const cm = await sceneMarks(ndrCurves(curves));
  const count = (ms: typeof cm, type: string) => ms.filter((m) => m.marktype === type).reduce((n, m) => n + m.data.length, 0);
  t.is(count(cm, 'symbol'), groups.length * aggs.length * Ls.length);
  t.is(cm.filter((m) => m.marktype === 'line').length, groups.length * aggs.length, 'one line per panel × aggregation');
  const pts = cm.filter((m) => m.marktype === 'symbol').flatMap((m) => m.data);
  for (const r of curves) t.truthy(pts.find((d) => d.panel === r.panel && d.aggregation === r.aggregation && d.L === r.L && d.ndr === r.ndr));
  const svgCounts = svgMarkCounts(await renderSvg(ndrCurves(curves)));
  t.is(svgCounts.symbol, 60);
  t.is(svgCounts.line, 12);

  const bars = ['tracin', 'datainf'].flatMap((panel) => groups.flatMap((group) => aggs.map((aggregation) => ({ panel, group, aggregation, ndr30: 0.3 + groups.indexOf(group) / 10 }))));
  const bm = await sceneMarks(ndr30Bars(bars));
  t.deepEqual(bm.map((m) => [m.marktype, m.data.length]), [['rect', 12], ['rect', 12]]);
  t.deepEqual(svgMarkCounts(await renderSvg(ndr30Bars(bars))), { rect: 24 });
});

test('sparsity per layer: a point per layer × allocator, the ratio of its row', async (t) => {
  const rows = ['S 0.5', 'S 0.6'].flatMap((panel, p) => ['layerif', 'owl'].flatMap((allocator, a) => [0, 1, 2].map((layer) => ({ panel, allocator, layer, ratio: 0.5 + p / 10 + (layer - 1) * (a ? 0.02 : 0.05) }))));
  const marks = await sceneMarks(sparsityPerLayer(rows));
  const pts = marks.filter((m) => m.marktype === 'symbol').flatMap((m) => m.data);
  t.is(pts.length, 12);
  for (const r of rows) t.is(pts.filter((d) => d.panel === r.panel && d.allocator === r.allocator && d.layer === r.layer && d.ratio === r.ratio).length, 1);
  t.deepEqual(svgMarkCounts(await renderSvg(sparsityPerLayer(rows))), { line: 4, symbol: 12 });
});
