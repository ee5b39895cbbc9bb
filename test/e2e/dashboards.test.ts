/**
 * Comparing experiments end to end (issue 11) on real Temporal and MLflow servers: a small LayerIF
 * sweep (committed tiny Llama × two real BIG-bench tasks × two seeds × two allocation rows), then
 *   - MLflow: the experiment is tagged as a model-training experiment; one parent run per cell with
 *     its axis tags, config.yaml, headline metrics, per-layer series (step = layer index, also on
 *     the stage runs) and the cell's plots (plots/*.svg: one mark per layer); the stage's files as
 *     artifacts;
 *   - `compare`: its means and stds equal those recomputed here from the stored manifests, and the
 *     accuracy recomputed from the stored per-option log-likelihoods;
 *   - `report`: opened in headless Chromium with no console errors, one heatmap cell per layer ×
 *     task; logged to MLflow;
 *   - the MLflow UI itself in Chromium: the runs table lists the cells and shows a headline metric
 *     column with the parent runs' values; the plain experiment URL (`#/experiments/<id>`, where
 *     MLflow's own experiment list links) reaches the same runs table in a fresh browser profile
 *     (see the comment there on how MLflow 3.17 picks the view). Screenshots go to test-artifacts/.
 */
import anyTest, { type TestFn } from 'ava';
import { writeFile, mkdir, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { parse } from 'yaml';
import { useStack, drainTracking, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep } from '../../src/cli/sweeps.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import { TAG, publishReport } from '../../src/tracking/publish.ts';
import { experimentRunsUrl } from '../../src/tracking/mlflow.ts';
import { compareCommand } from '../../src/cli/compare.ts';
import { writeReport } from '../../src/report/report.ts';
import type { SweepResult } from '../../workflows/sweep.ts';
import { svgMarkCounts } from '../report/marks.ts';

const test = anyTest as TestFn<{ stack: Stack }>;
const TINY = fileURLToPath(new URL('../../configs/models/tiny-llama', import.meta.url));
const CHROMIUM = process.env.LAYERFLOW_CHROMIUM ?? '/usr/bin/chromium';
const LAYERS = 4;

useStack(test);

const SWEEP = `sweep: dash
pipeline: layerif
concurrency: 2
models: [{ id: tiny, path: ${TINY} }]
tasks:
  - { id: proverbs, source: bigbench, name: english_proverbs }
  - { id: sports, source: bigbench, name: sports_understanding }
methods: [{ id: datainf, influence: datainf }]
stages:
  data: { trainSize: 12, influenceSize: 6, evaluationSize: 12 }
  finetune: { epochs: 1, batchSize: 4, microBatchSize: 4, maxLength: 96 }
  gradients: { shardSize: 8, batchSize: 4 }
  allocate_experts: { total: 10 }
  moe_finetune: { epochs: 1, batchSize: 4, microBatchSize: 4, rank: 2, alpha: 4, maxLength: 96 }
  benchmark_moe: { batchSize: 8, maxLength: 128 }
  prune: { criterion: magnitude }
  benchmark_pruned: { batchSize: 8, maxLength: 128, perplexityWindows: 2, perplexityLength: 32 }
axes:
  stages.allocate_experts.allocator: [layerif, uniform]
  stages.allocate_sparsity.allocator: [layerif, uniform]
  seed: [1, 2]
zip: [[stages.allocate_experts.allocator, stages.allocate_sparsity.allocator]]
`;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));

test.serial('e2e dashboards: MLflow layout, compare against the artifacts, the report and the MLflow UI in Chromium', async (t) => {
  const { stack } = t.context;
  if (!existsSync(CHROMIUM)) t.fail(`no Chromium at ${CHROMIUM}: run \`bash infra/install-browser.sh\` or set LAYERFLOW_CHROMIUM`);
  const d = join(stack.dir, 'dash');
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'sweep.yaml'), SWEEP);
  const plan = await planFile(join(d, 'sweep.yaml'));
  t.is(plan.cells.length, 8);
  const result = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  t.is(result.succeeded, 8, JSON.stringify(result.cells));
  t.is(await drainTracking(stack), 0);
  t.deepEqual(await readdir(join(paths.outbox(stack.env.home), 'dead')).catch(() => []), [], 'no tracking event was rejected');

  // ---- MLflow: experiment kind, parent runs with axis tags, config and headline metrics.
  const exp = (await stack.mlflow.getExperimentByName('dash'))!;
  t.is(exp.tags?.find((x) => x.key === TAG.experimentKind)?.value, 'custom_model_development');
  const runs = await stack.mlflow.searchRuns({ experimentIds: [exp.experiment_id] });
  const tag = (r: (typeof runs)[number], k: string) => r.data.tags?.find((x) => x.key === k)?.value;
  const parents = runs.filter((r) => !tag(r, TAG.parent) && tag(r, TAG.cell));
  t.is(parents.length, 8);
  const store = new ArtifactStore(paths.store(stack.env.home));
  const manifestOf = async (cellId: string, stage: string) => {
    const hit = await store.lookup(plan.cells.find((c) => c.cellId === cellId)!.stages.find((s) => s.name === stage)!.key);
    if (hit.status !== 'hit') throw new Error(`${cellId} ${stage}: ${hit.status}`);
    return hit.manifest;
  };
  for (const p of parents) {
    const cell = tag(p, TAG.cell)!;
    const c = plan.cells.find((x) => x.cellId === cell)!;
    t.is(tag(p, `${TAG.axis}allocate_experts.allocator`), String(c.axes['stages.allocate_experts.allocator']));
    t.is(tag(p, `${TAG.axis}seed`), String(c.axes.seed));
    const metrics = Object.fromEntries((p.data.metrics ?? []).map((m) => [m.key, m.value]));
    t.is(metrics['benchmark_moe.acc'], (await manifestOf(cell, 'benchmark_moe')).metrics.acc);
    t.is(metrics['benchmark_pruned.perplexity'], (await manifestOf(cell, 'benchmark_pruned')).metrics.perplexity);
    t.is(metrics['allocate_sparsity.realised'], (await manifestOf(cell, 'allocate_sparsity')).metrics.realised);
    const config = parse(Buffer.from(await stack.mlflow.downloadArtifact(p.info, 'config.yaml')).toString('utf8')) as { seed: number; task: { id: string }; stages: { allocate_experts: { allocator: string } } };
    t.is(config.seed, Number(c.axes.seed));
    t.is(config.task.id, String(c.axes.task));
    t.is(config.stages.allocate_experts.allocator, String(c.axes["stages.allocate_experts.allocator"]));
  }
  // Per-layer series (step = layer index) and the stage's files on the nested runs.
  const child = (cell: string, stage: string) => runs.find((r) => tag(r, TAG.cell) === cell && tag(r, TAG.stage) === stage)!;
  const lifCell = plan.cells.find((c) => c.axes['stages.allocate_experts.allocator'] === 'layerif')!.cellId;
  const ls = child(lifCell, 'layer_scores');
  const history = await stack.mlflow.getMetricHistory(ls.info.run_id, 'layer_score');
  t.deepEqual(history.map((m) => m.step), [0, 1, 2, 3]);
  const scores = await store.readJson<{ layers: Array<{ score: number }> }>(await manifestOf(lifCell, 'layer_scores'), 'layer-scores.json');
  history.forEach((m, i) => t.true(Math.abs(m.value - scores.layers[i].score) <= 1e-6 * Math.max(1, Math.abs(scores.layers[i].score))));
  t.deepEqual((await stack.mlflow.getMetricHistory(child(lifCell, 'allocate_experts').info.run_id, 'experts')).map((m) => m.step), [0, 1, 2, 3]);
  t.true((await stack.mlflow.listArtifacts(child(lifCell, 'allocate_experts').info.run_id)).some((f) => f.path === 'experts.json'));
  t.true((await stack.mlflow.listArtifacts(child(lifCell, 'influence').info.run_id)).some((f) => f.path === 'scores.safetensors'));

  // The per-layer series copied up to every parent run (`<stage>.<series>`, step = layer index),
  // equal to the stage runs' own; and the cell's plots on the parent run, one mark per layer.
  const PLOTS: Record<string, string> = { layer_scores: 'plots/layer-scores.svg', allocate_experts: 'plots/experts.svg', allocate_sparsity: 'plots/sparsity.svg' };
  const SERIES: Record<string, string> = { layer_scores: 'layer_score', allocate_experts: 'experts', allocate_sparsity: 'ratio', prune: 'realised' };
  for (const p of parents) {
    const cell = tag(p, TAG.cell)!;
    const stages = plan.cells.find((x) => x.cellId === cell)!.stages.map((s) => s.name);
    for (const [stage, name] of Object.entries(SERIES).filter(([st]) => stages.includes(st))) {
      const up = await stack.mlflow.getMetricHistory(p.info.run_id, `${stage}.${name}`);
      const own = await stack.mlflow.getMetricHistory(child(cell, stage).info.run_id, name);
      t.deepEqual(up.map((m) => m.step), [0, 1, 2, 3], `${cell} ${stage}.${name} on the parent run`);
      t.deepEqual(up.map((m) => [m.step, m.value]), own.map((m) => [m.step, m.value]));
    }
    const plots = (await stack.mlflow.listArtifacts(p.info.run_id, 'plots')).map((f) => f.path).sort();
    t.deepEqual(plots, Object.entries(PLOTS).filter(([st]) => stages.includes(st)).map(([, f]) => f).sort(), `${cell}: its plots`);
  }
  const lifParent = parents.find((p) => tag(p, TAG.cell) === lifCell)!;
  const plotSvg = async (f: string) => Buffer.from(await stack.mlflow.downloadArtifact(lifParent.info, f)).toString('utf8');
  t.is(svgMarkCounts(await plotSvg('plots/experts.svg')).rect, LAYERS, 'one bar per layer');
  t.is(svgMarkCounts(await plotSvg('plots/layer-scores.svg')).rect, LAYERS, 'one heatmap cell per layer');
  t.is(svgMarkCounts(await plotSvg('plots/sparsity.svg')).symbol, LAYERS, 'one point per layer');

  // ---- compare: JSON numbers equal those recomputed from the manifests (mean ± std over seeds),
  // and from the stored per-option log-likelihoods (acc: the argmax option is a gold option).
  const cmp = JSON.parse(await compareCommand(stack.env, 'dash', { format: 'json', by: 'task', metric: ['benchmark_moe.acc'] })) as {
    groups: Array<{ axes: Record<string, string>; metrics: Record<string, { mean: number; std: number | null; n: number }> }>;
  };
  for (const alloc of ['layerif', 'uniform']) {
    for (const task of ['proverbs', 'sports']) {
      const cells = plan.cells.filter((c) => c.axes['stages.allocate_experts.allocator'] === alloc && c.axes.task === task);
      const accs = await Promise.all(cells.map(async (c) => (await manifestOf(c.cellId, 'benchmark_moe')).metrics.acc));
      const recomputed = await Promise.all(cells.map(async (c) => {
        const docs = (await store.readJson<{ docs: Array<{ gold: number[]; loglikelihoods: number[] }> }>(await manifestOf(c.cellId, 'benchmark_moe'), 'benchmark.json')).docs;
        t.true(docs.length > 0 && docs.every((d) => d.loglikelihoods.length > 1 && d.loglikelihoods.every(Number.isFinite)));
        return docs.filter((d) => d.gold.includes(d.loglikelihoods.indexOf(Math.max(...d.loglikelihoods)))).length / docs.length;
      }));
      const g = cmp.groups.find((x) => x.axes['allocate_experts.allocator'] === alloc && x.axes.task === task) ??
        cmp.groups.find((x) => x.axes['stages.allocate_experts.allocator'] === alloc && x.axes.task === task);
      t.truthy(g, `group ${alloc} × ${task} in ${JSON.stringify(cmp.groups.map((x) => x.axes))}`);
      const m = g!.metrics['benchmark_moe.acc'];
      t.is(m.n, 2);
      t.true(Math.abs(m.mean - mean(accs)) < 1e-12);
      t.true(Math.abs((m.std ?? 0) - std(accs)) < 1e-12);
      t.true(Math.abs(m.mean - mean(recomputed)) < 1e-12, `${alloc} × ${task}: compare's mean ${m.mean}, recomputed from the log-likelihoods ${mean(recomputed)}`);
      t.true(Math.abs((m.std ?? 0) - std(recomputed)) < 1e-12);
    }
  }
  await t.throwsAsync(compareCommand(stack.env, 'dash', { by: 'nope', format: 'table' }), { message: /unknown axis "nope".*expected one of/s });
  await t.throwsAsync(compareCommand(stack.env, 'dash', { metric: ['benchmark_moe.nope'], format: 'table' }), { message: /unknown metric/ });
  await t.throwsAsync(compareCommand(stack.env, 'no-such-sweep', { format: 'table' }), { message: /no sweep named no-such-sweep/ });

  // ---- report: self-contained, in Chromium without errors, one heatmap cell per layer × task.
  const report = await writeReport(stack.env, 'dash');
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())));
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(pathToFileURL(report.path).href, { waitUntil: 'load' });
  t.deepEqual(problems, []);
  t.is(await page.locator('figure[data-plot="layer-scores"] svg g.mark-rect.role-mark > path').count(), LAYERS * 2);
  t.is(await page.locator('figure[data-plot="experts"] svg g.mark-rect.role-mark > path').count(), LAYERS * 2 * 2, 'layer × allocation × task');
  await mkdir('test-artifacts', { recursive: true });
  await page.screenshot({ path: 'test-artifacts/dashboards-report.png', fullPage: true });
  const reportRun = await publishReport(stack.mlflow, 'dash', 'layerif', report.html, Object.fromEntries(Object.entries(report.svgs).map(([f, svg]) => [`plots/${f}`, svg])));
  t.deepEqual((await stack.mlflow.listArtifacts(reportRun)).map((f) => f.path), ['plots', 'report.html']);
  t.deepEqual((await stack.mlflow.listArtifacts(reportRun, 'plots')).map((f) => f.path).sort(), report.plots.map((p) => `plots/${p}.svg`).sort());
  // The report run is not a cell: compare still sees 8 cells.
  t.regex(await compareCommand(stack.env, 'dash', { format: 'table' }), /8 of 8 cells have results/);

  // ---- the MLflow UI: runs table in the model-training view, a headline metric column with values.
  const ui = await browser.newPage({ viewport: { width: 1800, height: 1000 } });
  await ui.goto(experimentRunsUrl(stack.env.mlflowUri, exp.experiment_id), { waitUntil: 'load' });
  for (const c of plan.cells.slice(0, 3)) await ui.getByText(c.cellId, { exact: true }).first().waitFor({ timeout: 60_000 });
  // Metric columns are picked in the Columns menu (MLflow lists the parent runs' metrics there).
  const column = ui.locator('[role="gridcell"][col-id="metrics.`benchmark_moe.acc`"]');
  for (let attempt = 0; attempt < 3 && (await column.count()) === 0; attempt++) {
    await ui.getByRole('button', { name: 'Columns' }).click();
    await ui.getByText('benchmark_moe.acc', { exact: true }).first().click();
    await ui.keyboard.press('Escape');
    await column.first().waitFor({ timeout: 15_000 }).catch(() => undefined);
  }
  const shown = (await column.allInnerTexts()).map((x) => x.trim()).filter((x) => x !== '' && x !== '-').map(Number);
  const accs = await Promise.all(plan.cells.map(async (c) => (await manifestOf(c.cellId, 'benchmark_moe')).metrics.acc));
  t.is(shown.length, 8, `one value per parent run, shown: ${JSON.stringify(shown)}`);
  t.deepEqual([...shown].sort(), [...accs].sort(), 'the column holds the cells\' benchmark_moe.acc');
  await ui.screenshot({ path: 'test-artifacts/dashboards-mlflow-runs.png' });

  // ---- the plain experiment URL, in a fresh browser profile. MLflow 3.17.2's UI picks the view
  // from `workflowType`: the URL's parameter, else the sidebar's GenAI / Model training switch as
  // this browser last left it (localStorage `mlflow.workflowType_v1`), else GenAI; it does not read
  // the experiment's `mlflow.experimentKind` tag (asserted above) to choose. So a first visit may
  // land on the GenAI overview; one click on "Model training" must then show the runs table, and
  // the plain URL keeps showing it. An MLflow that honours the tag shows the runs table at once.
  const fresh = await browser.newContext({ viewport: { width: 1800, height: 1000 } });
  t.teardown(() => fresh.close());
  const plain = await fresh.newPage();
  const plainUrl = `${stack.env.mlflowUri}/#/experiments/${exp.experiment_id}`;
  const runsView = /#\/experiments\/\d+\/runs\b/;
  const runsTable = async () => {
    await plain.waitForURL(runsView, { timeout: 30_000 });
    for (const c of plan.cells.slice(0, 3)) await plain.getByText(c.cellId, { exact: true }).first().waitFor({ timeout: 60_000 });
    t.true((await plain.locator('[role="gridcell"]').count()) > 0, 'the runs table (training view)');
  };
  await plain.goto(plainUrl, { waitUntil: 'load' });
  await plain.waitForURL(/#\/experiments\/\d+\/(runs|overview|traces)\b/, { timeout: 60_000 });
  const landed = plain.url();
  t.log(`${plainUrl} opened ${landed}`);
  if (!runsView.test(landed)) {
    t.regex(landed, /workflowType=genai/, 'anything but the runs table is MLflow\'s GenAI view');
    await plain.screenshot({ path: 'test-artifacts/dashboards-mlflow-plain-first-visit.png' });
    const gotIt = plain.getByRole('button', { name: 'Got it' }); // a first-visit hint over the page
    if (await gotIt.count()) await gotIt.first().click();
    await plain.getByRole('button', { name: 'Model training', exact: true }).first().click();
    await runsTable();
    await plain.goto('about:blank');
    await plain.goto(plainUrl, { waitUntil: 'load' });
  }
  await runsTable();
  await plain.screenshot({ path: 'test-artifacts/dashboards-mlflow-plain.png' });

  // A cell's plot as MLflow shows the parent run's artifact.
  await plain.goto(`${stack.env.mlflowUri}/#/experiments/${exp.experiment_id}/runs/${lifParent.info.run_id}/artifacts/plots/experts.svg`, { waitUntil: 'load' });
  await plain.getByText('plots/experts.svg').first().waitFor({ timeout: 60_000 });
  await plain.waitForTimeout(2000);
  await plain.screenshot({ path: 'test-artifacts/dashboards-mlflow-cell-plot.png' });
});

const NDR_SWEEP = `sweep: dash-ndr
pipeline: ndr
models: [{ id: tiny, path: ${TINY} }]
tasks:
  - { id: spam, source: spam-assassin, groups: [easy-ham-1, spam-1] }
methods: [{ id: tracin, influence: tracin }]
stages:
  data: { noise: 0.2, trainSize: 24, influenceSize: 6, evaluationSize: 8 }
  finetune: { epochs: 1, batchSize: 8, microBatchSize: 8, maxLength: 24 }
  gradients: { shardSize: 8, batchSize: 8 }
  retrain: { epochs: 1 }
`;

test.serial('e2e dashboards, NDR: the cell\'s NDR plots and NDR@30 per layer on its parent run', async (t) => {
  const { stack } = t.context;
  const d = join(stack.dir, 'dash-ndr');
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'sweep.yaml'), NDR_SWEEP);
  const plan = await planFile(join(d, 'sweep.yaml'));
  t.is(plan.cells.length, 1);
  const result = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  t.is(result.succeeded, 1, JSON.stringify(result.cells));
  t.is(await drainTracking(stack), 0);
  const exp = (await stack.mlflow.getExperimentByName('dash-ndr'))!;
  const runs = await stack.mlflow.searchRuns({ experimentIds: [exp.experiment_id] });
  const tag = (r: (typeof runs)[number], k: string) => r.data.tags?.find((x) => x.key === k)?.value;
  const parent = runs.find((r) => !tag(r, TAG.parent) && tag(r, TAG.cell))!;
  const ndrRun = runs.find((r) => tag(r, TAG.stage) === 'ndr')!;
  for (const a of ['mean', 'rank', 'vote']) {
    const up = await stack.mlflow.getMetricHistory(parent.info.run_id, `ndr.ndr30_by_layer.${a}`);
    t.deepEqual(up.map((m) => m.step), [0, 1, 2, 3]);
    t.deepEqual(up.map((m) => m.value), (await stack.mlflow.getMetricHistory(ndrRun.info.run_id, `ndr30_by_layer.${a}`)).map((m) => m.value));
  }
  t.deepEqual((await stack.mlflow.listArtifacts(parent.info.run_id, 'plots')).map((f) => f.path).sort(), ['plots/ndr-curves.svg', 'plots/ndr30-by-layer.svg', 'plots/ndr30.svg']);
  const store = new ArtifactStore(paths.store(stack.env.home));
  const hit = await store.lookup(plan.cells[0].stages.find((s) => s.name === 'ndr')!.key);
  if (hit.status !== 'hit') return t.fail(`ndr: ${hit.status}`);
  const ndr = await store.readJson<{ Ls: number[]; groups: Array<{ byAggregation: Record<string, unknown> }> }>(hit.manifest, 'ndr.json');
  const pairs = ndr.groups.reduce((a, g) => a + Object.keys(g.byAggregation).length, 0);
  const svg = async (f: string) => Buffer.from(await stack.mlflow.downloadArtifact(parent.info, f)).toString('utf8');
  t.is(svgMarkCounts(await svg('plots/ndr30.svg')).rect, pairs, 'a bar per layer group × aggregation');
  t.is(svgMarkCounts(await svg('plots/ndr-curves.svg')).symbol, pairs * ndr.Ls.length, 'a point per group × aggregation × L');
  t.is(svgMarkCounts(await svg('plots/ndr30-by-layer.svg')).symbol, 3 * LAYERS, 'a point per layer × aggregation');
});
