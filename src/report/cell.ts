/**
 * The plots of one cell, for its parent run in MLflow (artifacts `plots/<id>.svg`): drawn from one
 * finished stage's tracking event as it is delivered, with the report's own Vega-Lite specs
 * (specs.ts) rendered to SVG in Node (render.ts). Which plots a stage gives:
 *   layer_scores       layer-scores     the cell's layer scores (one heatmap row: its task × layers)
 *   ndr                ndr-curves       NDR@L per layer group × aggregation (from ndr.json)
 *                      ndr30            NDR@30 bars per layer group × aggregation
 *                      ndr30-by-layer   NDR@30 of each layer's own units per aggregation
 *   allocate_experts   experts          experts per layer
 *   allocate_sparsity  sparsity         sparsity ratio per layer
 * Values come from the event's series (the manifest's, also on a cache hit) and, where the plot
 * needs more than a series, from the stage's files in the artifact store. Other stages: no plot.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { StageEvent } from '../tracking/events.ts';
import { refOf, type ArtifactStore } from '../store/artifacts.ts';
import { allocationLabel } from '../cli/results.ts';
import { expertsPerLayer, layerScoreHeatmap, ndr30Bars, ndrByLayer, ndrCurves, sparsityPerLayer, type NdrBarRow, type NdrCurveRow } from './specs.ts';
import { renderSvg, standaloneSvg } from './render.ts';

export interface CellPlot {
  /** File stem: the plot is logged as `plots/<id>.svg`. */
  id: string;
  spec: TopLevelSpec;
}

/** `ndr.json` of the ndr stage (activities/ndr.ts), as far as the plots read it. */
interface NdrJson {
  groups: Array<{ group: string; byAggregation: Record<string, { at: Record<string, number> }> }>;
}

/** A series as delivered: JSON turns NaN into null; such steps are gaps. */
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Layer-indexed values of `series`, gaps left out. */
const byLayer = (values: Array<number | null> | undefined) => (values ?? []).flatMap((v, layer) => (finite(v) ? [{ layer, value: v }] : []));

const titled = (spec: TopLevelSpec, text: string, subtitle: string): TopLevelSpec => ({ ...spec, title: { text, subtitle, anchor: 'start', fontSize: 13, subtitleColor: '#555' } }) as TopLevelSpec;

/** The plots one finished stage event gives its cell (none for a failed stage or a stage without per-layer data). */
export async function cellPlotSpecs(e: StageEvent, store?: ArtifactStore): Promise<CellPlot[]> {
  if (e.status !== 'FINISHED') return [];
  const p = e.cellParams;
  const series = (e.series ?? {}) as Record<string, Array<number | null>>;
  // The run is the cell: subtitles name only what the plot needs read with it (a cell id is long).
  const who = [p['model.id'], p['task.id']].filter(Boolean).join(' · ') || e.cellId;
  const files = async <T>(file: string): Promise<T | undefined> => {
    if (!store) return undefined;
    const hit = await store.lookup(e.key);
    if (hit.status !== 'hit' || !refOf(hit.manifest).files[file]) return undefined;
    return store.readJson<T>(refOf(hit.manifest), file);
  };
  const out: CellPlot[] = [];

  if (e.stage === 'layer_scores') {
    const values = byLayer(series.layer_score);
    if (!values.length) return [];
    const max = Math.max(...values.map((v) => Math.abs(v.value)));
    const task = p['task.id'] ?? 'task';
    const rows = values.map(({ layer, value }) => ({ panel: '', task, layer, score: value, relative: max > 0 ? value / max : 0 }));
    const method = [p['method.id'], p['stages.layer_scores.variant']].filter(Boolean).join(' · ');
    out.push({ id: 'layer-scores', spec: titled(layerScoreHeatmap(rows), 'Layer scores S_l', `${who}${method ? ` · ${method}` : ''} · relative to the largest |S_l|`) });
  }

  if (e.stage === 'allocate_experts') {
    const values = byLayer(series.experts);
    if (!values.length) return [];
    const allocator = allocationLabel.benchmark_moe(p);
    out.push({ id: 'experts', spec: titled(expertsPerLayer(values.map(({ layer, value }) => ({ panel: '', allocator, layer, experts: value }))), 'LoRA-MoE experts per layer', `${who} · ${allocator}`) });
  }

  if (e.stage === 'allocate_sparsity') {
    const values = byLayer(series.ratio);
    if (!values.length) return [];
    const alloc = p['stages.allocate_sparsity.allocator'];
    const allocator = alloc === 'layerif' ? `layerif ${p['stages.layer_scores.variant']}` : alloc ?? 'allocation';
    const target = p['stages.allocate_sparsity.sparsity'];
    out.push({ id: 'sparsity', spec: titled(sparsityPerLayer(values.map(({ layer, value }) => ({ panel: '', allocator, layer, ratio: value }))), 'Sparsity per layer', `${who} · ${allocator}${target ? ` · S=${target}` : ''}`) });
  }

  if (e.stage === 'ndr') {
    const ndr = await files<NdrJson>('ndr.json');
    const curves: NdrCurveRow[] = [];
    const bars: NdrBarRow[] = [];
    if (ndr) {
      for (const g of ndr.groups) {
        for (const [aggregation, r] of Object.entries(g.byAggregation)) {
          for (const L of Object.keys(r.at).map(Number).sort((a, b) => a - b)) if (finite(r.at[String(L)])) curves.push({ panel: g.group, aggregation, L, ndr: r.at[String(L)] });
          if (finite(r.at['30'])) bars.push({ panel: '', group: g.group, aggregation, ndr30: r.at['30'] });
        }
      }
    } else {
      // No store at hand: the bars from the stage's metrics `ndr30.<group>.<aggregation>`.
      for (const [k, v] of Object.entries(e.metrics)) {
        const m = /^ndr30\.(.+)\.([a-z]+(?:-c)?)$/.exec(k);
        if (m && finite(v)) bars.push({ panel: '', group: m[1].replace(/_/g, ' '), aggregation: m[2], ndr30: v });
      }
    }
    const method = p['method.id'] ? ` · ${p['method.id']}` : '';
    if (curves.length) out.push({ id: 'ndr-curves', spec: titled(ndrCurves(curves), 'NDR@L', `${who}${method} · one panel per layer group`) });
    if (bars.length) out.push({ id: 'ndr30', spec: titled(ndr30Bars(bars), 'NDR@30', `${who}${method} · per layer group and aggregation`) });
    const perLayer = Object.entries(series)
      .flatMap(([k, values]) => {
        const m = /^ndr30_by_layer\.(.+)$/.exec(k);
        return m ? byLayer(values).map(({ layer, value }) => ({ panel: '', aggregation: m[1], layer, ndr30: value })) : [];
      });
    if (perLayer.length) out.push({ id: 'ndr30-by-layer', spec: titled(ndrByLayer(perLayer), 'NDR@30 per layer', `${who}${method} · each layer's own units`) });
  }
  return out;
}

/** The cell plots of one stage event as standalone SVG files, by artifact path (`plots/<id>.svg`). */
export async function cellPlotFiles(e: StageEvent, store?: ArtifactStore): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const plot of await cellPlotSpecs(e, store)) out[`plots/${plot.id}.svg`] = standaloneSvg(await renderSvg(plot.spec));
  return out;
}
