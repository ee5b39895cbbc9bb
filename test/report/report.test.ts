/**
 * `layerflow report` on temporary LayerFlow homes (test/report/fixture.ts: a real plan, artifacts
 * with known numbers committed under its stage keys): the file lands in the home, atomically, and
 * is self-contained (no script, no link, no URL); each plot has one mark per (panel ×) series × x;
 * plot rows and table cells are the fixture's numbers averaged over seeds; sections appear only
 * for the data a sweep has; an unknown sweep is a ConfigError.
 */
import test from 'ava';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeReport, buildReport, reportPath } from '../../src/report/report.ts';
import { expertRows, layerScoreRows, sparsityRows } from '../../src/report/data.ts';
import { collectResults } from '../../src/results/collect.ts';
import { ConfigError } from '../../src/errors.ts';
import { figureSvg, svgMarkCounts } from './marks.ts';
import {
  layerifFixture, ndrFixture, layerScore, layerifExperts, layerifRatios, moeAcc, ndrAt,
  LAYERS, TASKS, SEEDS, UNIFORM_EXPERTS, OWL_RATIOS, NDR_GROUPS, NDR_AGGS, NDR_LS,
} from './fixture.ts';

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
const pm = (xs: number[]) => `${mean(xs).toFixed(3)}±${std(xs).toFixed(3)}`;
const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

function assertSelfContained(t: import('ava').ExecutionContext, html: string) {
  t.true(html.startsWith('<!DOCTYPE html>'));
  t.false(/<script\b/i.test(html), 'no script at all');
  t.false(/<link\b/i.test(html), 'no linked stylesheet');
  t.false(/https?:\/\//i.test(html), 'no URL of any kind');
  t.false(/\b(src|href)="(?!#)/i.test(html), 'only in-page anchors');
  t.regex(html, /<style>[^<]+<\/style>/);
}

test('LayerIF sweep: heatmap, experts and sparsity plots and the downstream tables; written atomically into the home', async (t) => {
  const fx = await layerifFixture();
  t.teardown(fx.cleanup);
  const r = await writeReport(fx.env, fx.plan.sweep);
  t.is(r.path, join(fx.env.home, 'sweeps', 'report-layerif', 'report.html'));
  t.is(r.path, reportPath(fx.env.home, 'report-layerif'));
  const html = await readFile(r.path, 'utf8');
  t.is(html, r.html);
  t.deepEqual((await readdir(dirname(r.path))).sort(), ['plan.json', 'report.html'], 'no temp file left beside it');
  assertSelfContained(t, html);
  t.deepEqual(r.sections, ['layer-scores', 'experts', 'sparsity', 'downstream']);
  t.deepEqual(r.plots, ['layer-scores', 'experts', 'sparsity']);
  t.false(html.includes('data-plot="ndr'), 'no NDR plot in a LayerIF sweep');

  // Marks: 2 variants × 2 tasks × 4 layers rects; 2 task panels × 3 allocations × 4 layers bars and points.
  t.deepEqual(svgMarkCounts(figureSvg(html, 'layer-scores')!), { rect: 2 * TASKS.length * LAYERS });
  t.deepEqual(svgMarkCounts(figureSvg(html, 'experts')!), { rect: TASKS.length * 3 * LAYERS });
  t.deepEqual(svgMarkCounts(figureSvg(html, 'sparsity')!), { line: TASKS.length * 3, symbol: TASKS.length * 3 * LAYERS });

  // Tables: LayerIF Table 1 shape, mean ± std over seeds per allocation × task, then the mean.
  for (const label of ['layerif +VE', 'layerif TOP25', 'uniform']) {
    const cells = TASKS.map((task) => pm(SEEDS.map((s) => moeAcc(label, task, s))));
    t.true(html.includes(`<td class="label">${label}</td><td>${cells.join('</td><td>')}</td>`), label);
  }
  for (const name of ['LoRA-MoE zero-shot accuracy (acc)', 'LoRA-MoE zero-shot accuracy (acc_norm)', 'Pruned-model zero-shot accuracy (acc)', 'Pruned-model perplexity']) t.true(html.includes(`data-table="${name}`), name);
  t.true(html.indexOf('LoRA-MoE zero-shot accuracy (acc_norm)') < html.indexOf('Pruned-model zero-shot accuracy (acc)'), 'MoE tables first');
  t.regex(html, /<th class="label">allocation<\/th><th>a<\/th><th>b<\/th><th>mean<\/th>/, 'the text layout’s empty spacer column is dropped');
});

test('LayerIF plot rows are the fixture’s numbers averaged over seeds', async (t) => {
  const fx = await layerifFixture();
  t.teardown(fx.cleanup);
  const res = await collectResults(fx.env, fx.plan);
  const scores = await layerScoreRows(res);
  t.is(scores.length, 2 * TASKS.length * LAYERS);
  for (const variant of ['+VE', 'TOP25']) {
    for (const task of TASKS) {
      const expected = Array.from({ length: LAYERS }, (_, l) => mean(SEEDS.map((s) => layerScore(task, s, variant, l))));
      const got = scores.filter((r) => r.panel === `variant ${variant}` && r.task === task).sort((a, b) => a.layer - b.layer);
      t.deepEqual(got.map((r) => r.layer), [0, 1, 2, 3]);
      t.true(got.every((r, l) => close(r.score, expected[l]) && close(r.relative, expected[l] / Math.max(...expected))), `${variant} ${task}`);
    }
  }
  const experts = await expertRows(res);
  for (const task of TASKS) {
    const of = (a: string) => experts.filter((r) => r.panel === `task ${task}` && r.allocator === a).map((r) => r.experts);
    t.deepEqual(of('uniform'), UNIFORM_EXPERTS, 'shared allocation: the one artifact');
    for (const variant of ['+VE', 'TOP25']) t.deepEqual(of(`layerif ${variant}`), [0, 1, 2, 3].map((l) => mean(SEEDS.map((s) => layerifExperts(task, s, variant)[l]))));
  }
  const sparsity = await sparsityRows(res);
  for (const task of TASKS) {
    const of = (a: string) => sparsity.filter((r) => r.panel === `task ${task}` && r.allocator === a).map((r) => r.ratio);
    t.deepEqual(of('owl'), OWL_RATIOS);
    of('layerif +VE').forEach((v, l) => t.true(close(v, mean(SEEDS.map((s) => layerifRatios(task, s, '+VE')[l])))));
  }
});

test('NDR sweep: NDR@L curves, NDR@30 bars and the NDR tables; no LayerIF section', async (t) => {
  const fx = await ndrFixture();
  t.teardown(fx.cleanup);
  const r = await writeReport(fx.env, fx.plan.sweep);
  const html = await readFile(r.path, 'utf8');
  assertSelfContained(t, html);
  t.deepEqual(r.sections, ['ndr']);
  t.deepEqual(r.plots, ['ndr-curves', 'ndr30']);
  for (const absent of ['layer-scores', 'experts', 'sparsity']) t.false(html.includes(`data-plot="${absent}"`), absent);
  const panels = 2 * NDR_GROUPS.length; // method × layer group
  t.deepEqual(svgMarkCounts(figureSvg(html, 'ndr-curves')!), { line: panels * NDR_AGGS.length, symbol: panels * NDR_AGGS.length * NDR_LS.length });
  t.deepEqual(svgMarkCounts(figureSvg(html, 'ndr30')!), { rect: 2 * NDR_GROUPS.length * NDR_AGGS.length });
  // The NDR@30 table: per method × aggregation, per group mean ± std over the seeds' influence results.
  for (const m of ['tracin', 'datainf']) {
    for (const a of NDR_AGGS) {
      const cells = NDR_GROUPS.map((g) => pm(SEEDS.map((s) => ndrAt(m, s, g, a, 30))));
      t.true(html.includes(`<td class="label">${m}</td><td class="label">${a}</td><td>${cells.join('</td><td>')}</td>`), `${m} ${a}`);
    }
  }
  for (const name of ['NDR@30', 'AUC-NDR', 'Cancellation effect per layer group', 'Retraining']) t.true(html.includes(`data-table="${name}"`), name);
});

test('sections follow the data: no sparsity or pruning without them; an empty sweep still gets a page', async (t) => {
  const part = await layerifFixture(['allocate_sparsity', 'benchmark_pruned']);
  t.teardown(part.cleanup);
  const r = await buildReport(await collectResults(part.env, part.plan));
  t.deepEqual(r.sections, ['layer-scores', 'experts', 'downstream']);
  t.false(r.html.includes('Pruned-model'));

  const none = await layerifFixture(['layer_scores', 'allocate_experts', 'allocate_sparsity', 'benchmark_moe', 'benchmark_pruned']);

  t.teardown(none.cleanup);
  const e = await writeReport(none.env, none.plan.sweep);
  t.deepEqual(e.sections, []);
  t.regex(e.html, /No cell has finished a stage this report plots yet/);
  assertSelfContained(t, e.html);
});

test('an unknown sweep is a ConfigError naming it', async (t) => {
  const fx = await ndrFixture();
  t.teardown(fx.cleanup);
  const err = await t.throwsAsync(writeReport(fx.env, 'no-such-sweep'), { instanceOf: ConfigError });
  t.regex(err!.message, /no-such-sweep/);
});
