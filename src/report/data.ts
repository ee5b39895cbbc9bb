/**
 * The report's plot rows, read from a sweep's collected results (src/results/collect.ts): each
 * stage artifact is read once per cache key, values are averaged over seeds (over the distinct
 * artifacts behind a panel × series × x), and a panel label names only the dimensions that vary
 * in the sweep (model, method, variant, task, criterion, S). An empty array means the sweep has
 * no such results, and the report leaves that section out.
 */
import type { ArtifactRef } from '../store/artifacts.ts';
import type { CellRecord } from '../results/collect.ts';
import { allocationLabel, mean, ndrRows, type CollectedResults } from '../cli/results.ts';
import type { ExpertRow, LayerScoreRow, NdrBarRow, NdrCurveRow, SparsityRow } from './specs.ts';

/** `layer-scores.json` (activities/layer-scores.ts). */
interface LayerScoresJson {
  variant: string;
  grouping: string;
  method: string;
  layers: Array<{ layer: number; score: number }>;
}

/** One artifact behind a plot: where it goes (panel dimensions, series), its key, its values per x. */
interface Sample {
  dims: Array<[string, string]>;
  series: string;
  key: string;
  values: number[];
}

/** Reads each (stage key, file) once. */
function reader(r: CollectedResults) {
  const cache = new Map<string, Promise<unknown>>();
  return <T>(ref: ArtifactRef, file: string): Promise<T> => {
    const id = `${ref.key}/${file}`;
    if (!cache.has(id)) cache.set(id, r.store.readJson<T>(ref, file));
    return cache.get(id) as Promise<T>;
  };
}

/**
 * Panel labels from the samples' dimensions, keeping only those with more than one value
 * ("model m · variant TOP25"); '' when nothing varies.
 */
function panelLabels(samples: Sample[]): string[] {
  const names = [...new Set(samples.flatMap((s) => s.dims.map(([k]) => k)))];
  const varying = names.filter((k) => new Set(samples.map((s) => s.dims.find(([n]) => n === k)?.[1])).size > 1);
  return samples.map((s) => s.dims.filter(([k]) => varying.includes(k)).map(([k, v]) => `${k} ${v}`).join(' · '));
}

/**
 * Mean over the distinct artifacts (keys) of each panel × series, per x position: the seeds of a
 * task-specific allocation, or the one shared artifact of an allocation that ignores the task.
 */
function meanBy(samples: Sample[]): Array<{ panel: string; series: string; x: number; value: number }> {
  const labels = panelLabels(samples);
  const groups = new Map<string, { panel: string; series: string; byKey: Map<string, number[]> }>();
  samples.forEach((s, i) => {
    const id = JSON.stringify([labels[i], s.series]);
    const g = groups.get(id) ?? { panel: labels[i], series: s.series, byKey: new Map() };
    g.byKey.set(s.key, s.values);
    groups.set(id, g);
  });
  return [...groups.values()].flatMap((g) => {
    const vs = [...g.byKey.values()];
    const n = Math.max(...vs.map((v) => v.length));
    return Array.from({ length: n }, (_, x) => ({ panel: g.panel, series: g.series, x, value: mean(vs.map((v) => v[x]).filter((y) => y !== undefined)) }));
  });
}

async function samplesOf(r: CollectedResults, stage: string, make: (c: CellRecord, ref: ArtifactRef) => Promise<Sample | undefined>): Promise<Sample[]> {
  const out: Sample[] = [];
  const seen = new Set<string>();
  for (const c of r.cells) {
    const s = c.stages[stage];
    if (!s?.ref) continue;
    const sample = await make(c, s.ref);
    if (!sample) continue;
    const id = JSON.stringify([sample.dims, sample.series, sample.key]);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(sample);
  }
  return out;
}

/** Layer scores per panel (model, method, variant) × task × layer, mean over seeds, and relative to the task's max |S|. */
export async function layerScoreRows(r: CollectedResults): Promise<LayerScoreRow[]> {
  const read = reader(r);
  const samples = await samplesOf(r, 'layer_scores', async (c, ref) => {
    const ls = await read<LayerScoresJson>(ref, 'layer-scores.json');
    const dims: Array<[string, string]> = [['model', c.params['model.id']], ['method', ls.method], ['variant', ls.variant], ['grouping', ls.grouping]];
    return { dims, series: c.params['task.id'], key: ref.key, values: ls.layers.map((l) => l.score) };
  });
  const rows = meanBy(samples);
  const maxAbs = new Map<string, number>();
  for (const x of rows) {
    const id = JSON.stringify([x.panel, x.series]);
    maxAbs.set(id, Math.max(maxAbs.get(id) ?? 0, Math.abs(x.value)));
  }
  return rows.map((x) => {
    const m = maxAbs.get(JSON.stringify([x.panel, x.series]))!;
    return { panel: x.panel, task: x.series, layer: x.x, score: x.value, relative: m > 0 ? x.value / m : 0 };
  });
}

/** Experts per panel (model, task) × allocation × layer, mean over seeds. */
export async function expertRows(r: CollectedResults): Promise<ExpertRow[]> {
  const read = reader(r);
  const samples = await samplesOf(r, 'allocate_experts', async (c, ref) => {
    const e = await read<{ experts: number[] }>(ref, 'experts.json');
    return { dims: [['model', c.params['model.id']], ['task', c.params['task.id']]], series: allocationLabel.benchmark_moe(c.params), key: ref.key, values: e.experts };
  });
  return meanBy(samples).map((x) => ({ panel: x.panel, allocator: x.series, layer: x.x, experts: x.value }));
}

/** Sparsity ratio per panel (model, task, criterion, S) × allocation × layer, mean over seeds. */
export async function sparsityRows(r: CollectedResults): Promise<SparsityRow[]> {
  const read = reader(r);
  const samples = await samplesOf(r, 'allocate_sparsity', async (c, ref) => {
    const s = await read<{ ratios: number[] }>(ref, 'sparsity.json');
    const p = c.params;
    const alloc = p['stages.allocate_sparsity.allocator'];
    const dims: Array<[string, string]> = [['model', p['model.id']], ['task', p['task.id']], ['criterion', p['stages.prune.criterion']], ['S', p['stages.allocate_sparsity.sparsity']]];
    return { dims, series: alloc === 'layerif' ? `layerif ${p['stages.layer_scores.variant']}` : alloc, key: ref.key, values: s.ratios };
  });
  return meanBy(samples).map((x) => ({ panel: x.panel, allocator: x.series, layer: x.x, ratio: x.value }));
}

/**
 * NDR@L per panel (method, layer group) × aggregation × L, and NDR@30 per method × group ×
 * aggregation: mean over the distinct influence results (seeds and any other axis), as the NDR
 * table counts them.
 */
export async function ndrPlotRows(r: CollectedResults): Promise<{ curves: NdrCurveRow[]; bars: NdrBarRow[] }> {
  const seen = await ndrRows(r);
  const byInfluence = new Map<string, (typeof seen)[number]>();
  for (const row of seen) if (!byInfluence.has(row.influenceKey)) byInfluence.set(row.influenceKey, row);
  const unique = [...byInfluence.values()];
  const methods = [...new Set(unique.map((u) => u.ndr.method))];
  const groups = [...new Set(unique.flatMap((u) => u.ndr.groups.map((g) => g.group)))];
  const aggs = [...new Set(unique.flatMap((u) => u.ndr.groups.flatMap((g) => Object.keys(g.byAggregation))))];
  const curves: NdrCurveRow[] = [];
  const bars: NdrBarRow[] = [];
  for (const m of methods) {
    const mine = unique.filter((u) => u.ndr.method === m);
    for (const g of groups) {
      const panel = methods.length > 1 ? `${m} · ${g}` : g;
      for (const a of aggs) {
        const res = mine.map((u) => u.ndr.groups.find((x) => x.group === g)?.byAggregation[a]).filter((x) => x !== undefined);
        if (!res.length) continue;
        const Ls = [...new Set(res.flatMap((x) => Object.keys(x.at).map(Number)))].sort((p, q) => p - q);
        for (const L of Ls) {
          const v = res.map((x) => x.at[String(L)]).filter((y) => typeof y === 'number');
          if (v.length) curves.push({ panel, aggregation: a, L, ndr: mean(v) });
        }
        const at30 = res.map((x) => x.at['30']).filter((y) => typeof y === 'number');
        if (at30.length) bars.push({ panel: methods.length > 1 ? m : '', group: g, aggregation: a, ndr30: mean(at30) });
      }
    }
  }
  return { curves, bars };
}
