/**
 * `layerflow report <sweep>`: one self-contained HTML file with a sweep's plots and tables, written
 * atomically to `<home>/sweeps/<sweep>/report.html`. Reads the saved plan and the artifact store
 * (src/results/collect.ts), never the services. Sections appear only when the sweep has their data:
 *   layer scores   heatmap layers × tasks (LayerIF task-specific layer importance)
 *   experts        experts per layer per allocation (allocate_experts)
 *   sparsity       sparsity per layer per allocation (allocate_sparsity)
 *   downstream     LayerIF Tables 1–2: acc, acc_norm (and perplexity) per allocation × task
 *   NDR            NDR@L curves, NDR@30 bars per layer group × aggregation, the NDR tables
 * Every plot is a Vega-Lite spec (specs.ts) rendered to SVG in Node (render.ts).
 */
import { join } from 'node:path';
import { paths, type LayerflowEnv } from '../config/env.ts';
import type { SweepPlan } from '../config/plan.ts';
import { writeFileAtomic } from '../store/atomic.ts';
import { collectResults, type SweepResults } from '../results/collect.ts';
import { savedPlan } from '../cli/sweeps.ts';
import { layerifTables, layerScoreTables, ndrTables, type ResultTable } from '../cli/results.ts';
import { expertRows, layerScoreRows, ndrPlotRows, sparsityRows } from './data.ts';
import { expertsPerLayer, layerScoreHeatmap, ndr30Bars, ndrCurves, sparsityPerLayer } from './specs.ts';
import { renderSvg, standaloneSvg } from './render.ts';
import { pageHtml, type Section } from './html.ts';

export interface Report {
  sweep: string;
  pipeline: string;
  html: string;
  /** Section ids in page order (layer-scores, experts, sparsity, downstream, ndr). */
  sections: string[];
  /** Plot ids in page order. */
  plots: string[];
  /** Each plot as a standalone SVG file (`<id>.svg`), e.g. for MLflow. */
  svgs: Record<string, string>;
}

/** Where `layerflow report` writes a sweep's report. */
export const reportPath = (home: string, sweep: string) => join(paths.sweep(home, sweep), 'report.html');

/** The report of collected results, as HTML (nothing written). */
export async function buildReport(results: SweepResults, now: Date = new Date()): Promise<Report> {
  const plan: SweepPlan = results.plan;
  const sections: Section[] = [];

  const scores = await layerScoreRows(results);
  if (scores.length) {
    sections.push({
      id: 'layer-scores',
      title: 'Layer scores',
      figures: [{
        id: 'layer-scores',
        title: 'Task-specific layer importance.',
        caption: 'Layer score S_l per task × layer (mean over seeds), shown relative to the task’s largest |S_l|; a higher S_l marks a worse-trained layer, which gets more experts and more pruning. One panel per model / method / variant when the sweep has several.',
        svg: await renderSvg(layerScoreHeatmap(scores)),
      }],
      tables: await layerScoreTables(results),
    });
  }

  const experts = await expertRows(results);
  if (experts.length) {
    sections.push({
      id: 'experts',
      title: 'Experts per layer',
      figures: [{ id: 'experts', title: 'LoRA-MoE experts per layer.', caption: 'One bar per layer × allocation (mean over seeds); one panel per task when the sweep has several.', svg: await renderSvg(expertsPerLayer(experts)) }],
      tables: [],
    });
  }

  const sparsity = await sparsityRows(results);
  if (sparsity.length) {
    sections.push({
      id: 'sparsity',
      title: 'Sparsity per layer',
      figures: [{ id: 'sparsity', title: 'Per-layer sparsity ratios.', caption: 'One point per layer × allocation (mean over seeds); one panel per task × criterion × target S when the sweep has several.', svg: await renderSvg(sparsityPerLayer(sparsity)) }],
      tables: [],
    });
  }

  // The LoRA-MoE tables, then the pruning ones (each: acc, acc_norm, perplexity when measured).
  const downstream: ResultTable[] = [];
  for (const metric of ['acc', 'acc_norm', 'perplexity'] as const) downstream.push(...(await layerifTables(results, metric)));
  downstream.sort((a, b) => Number(a.stage === 'benchmark_pruned') - Number(b.stage === 'benchmark_pruned'));
  if (downstream.length) sections.push({ id: 'downstream', title: 'Downstream results', intro: 'Rows: allocation; columns: tasks and their mean; each entry mean ± std over seeds (LayerIF Tables 1–2).', figures: [], tables: downstream });

  const ndr = await ndrPlotRows(results);
  const ndrT = await ndrTables(results);
  if (ndr.curves.length || ndrT.length) {
    const figures = [];
    if (ndr.curves.length) figures.push({ id: 'ndr-curves', title: 'NDR@L.', caption: 'Fraction of the noisy training samples among the L% ranked most harmful, per aggregation (mean over seeds); one panel per layer group.', svg: await renderSvg(ndrCurves(ndr.curves)) });
    if (ndr.bars.length) figures.push({ id: 'ndr30', title: 'NDR@30.', caption: 'Per layer group, one bar per aggregation (mean over seeds).', svg: await renderSvg(ndr30Bars(ndr.bars)) });
    sections.push({ id: 'ndr', title: 'Noise detection (NDR)', figures, tables: ndrT });
  }

  const finished = results.cells.filter((c) => Object.values(c.stages).every((s) => s.ref)).length;
  const html = pageHtml({
    title: `LayerFlow report: ${plan.sweep}`,
    meta: [
      `pipeline ${plan.pipeline} · ${plan.cells.length} cells, ${finished} finished · sweep file ${plan.file}`,
      `generated ${now.toISOString()} from the artifact store; every number is read from a stage artifact, none recomputed`,
    ],
    sections,
    empty: sections.length ? undefined : 'No cell has finished a stage this report plots yet.',
  });
  const figures = sections.flatMap((s) => s.figures);
  return {
    sweep: plan.sweep, pipeline: plan.pipeline, html, sections: sections.map((s) => s.id), plots: figures.map((f) => f.id),
    svgs: Object.fromEntries(figures.map((f) => [`${f.id}.svg`, standaloneSvg(f.svg)])),
  };
}

/** Build the report of a saved sweep and write it atomically into the LayerFlow home. */
export async function writeReport(env: LayerflowEnv, sweep: string): Promise<Report & { path: string }> {
  const plan = await savedPlan(env, sweep);
  const report = await buildReport(await collectResults(env, plan));
  const path = reportPath(env.home, plan.sweep);
  await writeFileAtomic(path, report.html);
  return { ...report, path };
}
