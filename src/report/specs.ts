/**
 * The report's plots as Vega-Lite specs: pure functions from plain rows (already averaged over
 * seeds, see data.ts) to a spec, so tests can check a plot without a sweep. Rows carry a `panel`
 * label; with more than one panel the plot is a wrapped facet, one panel per label, in the order
 * the rows first name them. Nominal domains keep the rows' order too (layer groups as the NDR
 * paper lists them, allocators as the sweep lists them).
 */
import type { TopLevelSpec } from 'vega-lite';

/** Mean layer score S_l of one task × layer (mean over seeds), and relative to the task's max |S|. */
export interface LayerScoreRow {
  panel: string;
  task: string;
  layer: number;
  score: number;
  relative: number;
}

/** NDR@L of one layer group × aggregation at one L (percent). */
export interface NdrCurveRow {
  panel: string;
  aggregation: string;
  L: number;
  ndr: number;
}

/** NDR@30 of one layer group × aggregation. */
export interface NdrBarRow {
  panel: string;
  group: string;
  aggregation: string;
  ndr30: number;
}

/** NDR@30 of one layer's own units under one aggregation. */
export interface NdrLayerRow {
  panel: string;
  aggregation: string;
  layer: number;
  ndr30: number;
}

/** Experts allocated to one layer by one allocator. */
export interface ExpertRow {
  panel: string;
  allocator: string;
  layer: number;
  experts: number;
}

/** Sparsity ratio of one layer under one allocator. */
export interface SparsityRow {
  panel: string;
  allocator: string;
  layer: number;
  ratio: number;
}

/** A single-view spec: what each facet panel draws. */
type UnitSpec = Extract<TopLevelSpec, { facet: unknown }>['spec'];

const unique = <T>(xs: T[]) => [...new Set(xs)];

const CONFIG = {
  font: 'sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12 },
  header: { labelFontSize: 12, labelFontWeight: 'bold' as const },
  legend: { labelFontSize: 11, titleFontSize: 12, titleLimit: 300, labelLimit: 300 },
  view: { stroke: '#ddd' },
};

/**
 * One unit spec over `rows`, faceted by `panel` (wrapped at `columns`) when the rows name several
 * panels. The unit's width/height apply per panel.
 */
function panelled(rows: Array<{ panel: string }>, unit: UnitSpec, columns: number, opts: { ownX?: boolean } = {}): TopLevelSpec {
  const panels = unique(rows.map((r) => r.panel));
  const base = { background: 'white', config: CONFIG, data: { values: rows } };
  if (panels.length <= 1) return { ...base, ...unit } as TopLevelSpec;
  return {
    ...base,
    facet: { field: 'panel', type: 'nominal', sort: panels, title: null },
    columns: Math.min(columns, panels.length),
    spec: unit,
    // ownX: each panel its own x domain (layer-indexed plots of models with different depths).
    resolve: { axis: { x: 'independent' }, ...(opts.ownX ? { scale: { x: 'independent' } } : {}) },
  } as TopLevelSpec;
}

/**
 * Heatmap of layer scores: x = layer, y = task, one rect per task × layer, colour = S_l relative to
 * the task's largest |S_l| (task-specific layer importance, LayerIF); a panel per model / method /
 * layer-score variant.
 */
export function layerScoreHeatmap(rows: LayerScoreRow[]): TopLevelSpec {
  const signed = rows.some((r) => r.relative < 0);
  return panelled(rows, {
    width: { step: 18 },
    height: { step: 22 },
    mark: { type: 'rect', tooltip: false },
    encoding: {
      x: { field: 'layer', type: 'ordinal', title: 'layer', axis: { labelAngle: 0 } },
      y: { field: 'task', type: 'nominal', title: 'task', sort: unique(rows.map((r) => r.task)) },
      color: {
        field: 'relative',
        type: 'quantitative',
        title: 'S_l / max |S_l|',
        scale: signed ? { scheme: 'redblue', domain: [-1, 1], reverse: true } : { scheme: 'blues', domain: [0, 1] },
      },
    },
  }, 1, { ownX: true });
}

/** NDR@L curves: x = L (% of training samples, most harmful first), y = NDR, a line + points per aggregation; a panel per layer group. */
export function ndrCurves(rows: NdrCurveRow[]): TopLevelSpec {
  return panelled(rows, {
    width: 170,
    height: 130,
    mark: { type: 'line', point: true, tooltip: false },
    encoding: {
      x: { field: 'L', type: 'quantitative', title: 'L (%)', scale: { domain: [0, Math.max(50, ...rows.map((r) => r.L))] } },
      y: { field: 'ndr', type: 'quantitative', title: 'NDR@L', scale: { domain: [0, 1] } },
      color: { field: 'aggregation', type: 'nominal', sort: unique(rows.map((r) => r.aggregation)), title: 'aggregation' },
    },
  }, 4);
}

/** NDR@30 bars: per layer group, one bar per aggregation; a panel per method when several. */
export function ndr30Bars(rows: NdrBarRow[]): TopLevelSpec {
  const aggs = unique(rows.map((r) => r.aggregation));
  return panelled(rows, {
    width: { step: 14 }, // with xOffset: the step of one bar
    height: 160,
    mark: { type: 'bar', tooltip: false },
    encoding: {
      x: { field: 'group', type: 'nominal', title: 'layer group', sort: unique(rows.map((r) => r.group)), axis: { labelAngle: 0 } },
      xOffset: { field: 'aggregation', type: 'nominal', sort: aggs },
      y: { field: 'ndr30', type: 'quantitative', title: 'NDR@30', scale: { domain: [0, 1] } },
      color: { field: 'aggregation', type: 'nominal', sort: aggs, title: 'aggregation' },
    },
  }, 2);
}

/** NDR@30 per layer: x = layer, y = NDR@30 of the layer's own units, a line + points per aggregation. */
export function ndrByLayer(rows: NdrLayerRow[]): TopLevelSpec {
  return panelled(rows, {
    width: 300,
    height: 150,
    mark: { type: 'line', point: true, tooltip: false },
    encoding: {
      x: { field: 'layer', type: 'quantitative', title: 'layer', axis: { tickMinStep: 1, format: 'd' } },
      y: { field: 'ndr30', type: 'quantitative', title: 'NDR@30', scale: { domain: [0, 1] } },
      color: { field: 'aggregation', type: 'nominal', sort: unique(rows.map((r) => r.aggregation)), title: 'aggregation' },
    },
  }, 2, { ownX: true });
}

/** Experts per layer: per layer, one bar per allocator; a panel per model × task. */
export function expertsPerLayer(rows: ExpertRow[]): TopLevelSpec {
  const allocators = unique(rows.map((r) => r.allocator));
  return panelled(rows, {
    width: { step: Math.max(6, 24 - 3 * allocators.length) }, // with xOffset: the step of one bar
    height: 150,
    mark: { type: 'bar', tooltip: false },
    encoding: {
      x: { field: 'layer', type: 'ordinal', title: 'layer', axis: { labelAngle: 0 } },
      xOffset: { field: 'allocator', type: 'nominal', sort: allocators },
      y: { field: 'experts', type: 'quantitative', title: 'experts' },
      color: { field: 'allocator', type: 'nominal', sort: allocators, title: 'allocation' },
    },
  }, 1, { ownX: true });
}

/** Sparsity per layer: a line + points per allocator over the layers; a panel per model × task × criterion × S. */
export function sparsityPerLayer(rows: SparsityRow[]): TopLevelSpec {
  const allocators = unique(rows.map((r) => r.allocator));
  return panelled(rows, {
    width: 300,
    height: 150,
    mark: { type: 'line', point: true, tooltip: false },
    encoding: {
      x: { field: 'layer', type: 'quantitative', title: 'layer', axis: { tickMinStep: 1, format: 'd' } },
      y: { field: 'ratio', type: 'quantitative', title: 'sparsity', scale: { zero: false } },
      color: { field: 'allocator', type: 'nominal', sort: allocators, title: 'allocation' },
    },
  }, 2, { ownX: true });
}
