/**
 * `ndr` (NDR paper §4): per layer group (WE, four block groups, CL, all) and per aggregation (mean,
 * rank, vote and their "-c" variants over the influence samples the checkpoint predicts correctly):
 * one score per training sample, the NDR curve, NDR@L and AUC-NDR; NDR@30 per block as a series
 * with step = layer index; the cancellation effect per group from the training gradients. The
 * cell's aggregation and group give scores.json, the ordering `retrain` drops from. Progress
 * (src/runtime/progress.ts) in three phases: cancellation (gradient shards), ndr (layer group ×
 * aggregation), layers (NDR@30 per layer).
 */
import { z } from 'zod';
import { aggregateInfluence, type AggregationMode } from '../src/influence/aggregation.ts';
import { layerGroups } from '../src/influence/layer-groups.ts';
import { noiseDetectionRate, randomNdrBaseline } from '../src/influence/ndr.ts';
import { CancellationAccumulator } from '../src/influence/cancellation.ts';
import { SparseCancellationAccumulator } from '../src/influence/sparse-rows.ts';
import { isProjected, readShard, shardChunks, type GradientIndex } from '../src/influence/gradient-store.ts';
import type { InfluenceMatrix, UnitRef } from '../src/influence/types.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../src/weights/safetensors.ts';
import { ConfigError } from '../src/errors.ts';
import { withProgress } from '../src/runtime/progress.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import type { NdrDataset } from './shared.ts';
import type { ScoresMeta } from './influence.ts';

export const AGGREGATIONS = ['mean', 'rank', 'vote', 'mean-c', 'rank-c', 'vote-c'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

export const NdrSettings = z.strictObject({
  /** The cell's aggregation: its scores are what `retrain` drops from. */
  aggregation: z.enum(AGGREGATIONS).default('vote'),
  /** The layer group whose scores `retrain` uses: all, WE, CL or blocks-<g> (g = 1..blockGroups). */
  group: z.string().regex(/^(all|WE|CL|blocks-\d+)$/, 'expected all, WE, CL or blocks-<g>').default('all'),
  /** Vote fraction p (k_v = round(p·n)). */
  p: z.number().gt(0).max(1).default(0.2),
  /** NDR@L reported for these L (percent); 30 is the headline. */
  Ls: z.array(z.number().gt(0).max(100)).min(1).default([10, 20, 30, 40, 50]),
  blockGroups: z.number().int().min(1).default(4),
});
export type NdrSettings = z.output<typeof NdrSettings>;

export interface GroupResult {
  group: string;
  units: number;
  cancellation: number | null;
  byAggregation: Record<string, { at: Record<number, number>; auc: number; curve: number[] }>;
}

/** Metric-name form of a group name: "blocks 0-7" → "blocks_0-7". */
export const groupKey = (g: string) => g.replace(/\s+/g, '_');

export const ndr: StageImpl<NdrSettings> = async (ctx) => {
  const s = ctx.settings;
  const store = ctx.store;
  const ds = await store.readJson<NdrDataset>(ctx.inputs.data, 'dataset.json');
  const meta = await store.readJson<ScoresMeta>(ctx.inputs.influence, 'scores.json');
  if (meta.validation === 'mean') throw new ConfigError('ndr: the influence scores hold one row (stages.influence.validation: mean); NDR reads every influence sample\'s row: expected validation each (or absent)');
  const { tensors } = parseSafetensorsBytes(await store.read(ctx.inputs.influence, 'scores.safetensors'), 'influence/scores.safetensors');
  const { correct } = await store.readJson<{ correct: boolean[] }>(ctx.inputs.finetune, 'influence-predictions.json');
  const matrices = new Map<string, InfluenceMatrix>(meta.units.map((u) => [u.unit, {
    unit: u.unit, layer: u.layer, kind: u.kind as UnitRef['kind'], method: meta.method, convention: meta.convention, m: meta.m, n: meta.n,
    data: Float64Array.from(rawToFloat32(tensors.get(u.tensor)!, u.tensor)),
  }]));
  const refs: UnitRef[] = meta.units.map((u) => ({ unit: u.unit, layer: u.layer, kind: u.kind as UnitRef['kind'] }));
  const groups = layerGroups({ units: refs, blockGroups: s.blockGroups });
  // Names as the config writes them: blocks-1 … blocks-<k> in order.
  let b = 0;
  const named = groups.map((g) => ({ ...g, alias: g.name.startsWith('blocks ') ? `blocks-${++b}` : g.name }));
  if (!named.some((g) => g.alias === s.group)) throw new ConfigError(`stages.ndr.group: "${s.group}" is not a layer group of this run; expected one of ${named.map((g) => g.alias).join(', ')}`);

  const gradIndex = await store.readJson<GradientIndex>(ctx.inputs.gradients, 'index.json');
  const cancel = await cancellationByUnit(ctx.store, gradIndex, (done, total) => {
    ctx.signal.throwIfAborted();
    ctx.heartbeat(withProgress(ctx, done, total, 'shard', { phase: 'cancellation' }));
  });
  // On a projected store the sums are of projected gradients: a Johnson–Lindenstrauss estimate of the
  // cancellation effect, reported under its own name so it is never compared as the exact one.
  const cancellationName = isProjected(gradIndex) ? 'cancellation_jl' : 'cancellation';
  const mode = (a: Aggregation) => a.replace('-c', '') as AggregationMode;
  const mask = (a: Aggregation) => (a.endsWith('-c') ? correct : undefined);
  const Ls = [...new Set([...s.Ls, 30])].sort((a, b) => a - b);
  const results: GroupResult[] = [];
  const metrics: Record<string, number> = {};
  let cellScores: Float64Array | undefined;
  const aggregations = AGGREGATIONS.filter((a) => !a.endsWith('-c') || correct.some(Boolean)); // -c: none predicted correctly → none
  const total = named.length * aggregations.length;
  let done = 0;
  for (const g of named) {
    ctx.heartbeat(withProgress(ctx, done, total, 'aggregation', { phase: 'ndr', group: g.name }));
    ctx.signal.throwIfAborted();
    const mats = g.units.map((u) => matrices.get(u)!);
    const parts = g.units.map((u) => cancel.get(u)).filter((x) => x !== undefined);
    const den = parts.reduce((a, p) => a + p.denominator, 0);
    const r: GroupResult = { group: g.name, units: mats.length, cancellation: den > 0 ? parts.reduce((a, p) => a + p.numerator, 0) / den : null, byAggregation: {} };
    for (const a of aggregations) {
      const scores = aggregateInfluence({ matrices: mats, mode: mode(a), p: s.p, correct: mask(a) });
      const res = noiseDetectionRate({ scores, noisyIds: ds.noisyIds, Ls });
      r.byAggregation[a] = { at: res.at, auc: res.auc, curve: Array.from(res.curve) };
      metrics[`ndr30.${groupKey(g.name)}.${a}`] = res.at[30];
      metrics[`auc_ndr.${groupKey(g.name)}.${a}`] = res.auc;
      if (g.alias === s.group && a === s.aggregation) cellScores = scores;
      ctx.heartbeat(withProgress(ctx, ++done, total, 'aggregation', { phase: 'ndr', group: g.name, aggregation: a }));
    }
    if (r.cancellation !== null) metrics[`${cancellationName}.${groupKey(g.name)}`] = r.cancellation;
    results.push(r);
  }
  if (!cellScores) throw new ConfigError(`stages.ndr.aggregation: "${s.aggregation}" cannot be computed: the fine-tuned model predicts no influence sample correctly, so the -c variants are empty`);
  // Per block: NDR@30 of each block's own units, as series over the layer index.
  const byLayer = ['mean', 'rank', 'vote'] as const;
  const series: Record<string, number[]> = Object.fromEntries(byLayer.map((a) => [`ndr30_by_layer.${a}`, []]));
  for (const [i, l] of meta.layers.entries()) {
    ctx.signal.throwIfAborted();
    for (const a of byLayer) series[`ndr30_by_layer.${a}`].push(noiseDetectionRate({ scores: aggregateInfluence({ matrices: l.units.map((u) => matrices.get(u)!), mode: a, p: s.p }), noisyIds: ds.noisyIds, Ls: [30] }).at[30]);
    ctx.heartbeat(withProgress(ctx, i + 1, meta.layers.length, 'layer', { phase: 'layers' }));
  }
  const random = randomNdrBaseline({ n: ds.train.length, noisy: ds.noisyIds.length, Ls: [30] });
  const headline = results.find((r) => r.group === named.find((g) => g.alias === s.group)!.name)!.byAggregation[s.aggregation];
  metrics.ndr30 = headline.at[30];
  metrics.auc_ndr = headline.auc;
  metrics.ndr30_random = random.at[30];
  return {
    files: {
      'ndr.json': JSON.stringify({ method: meta.method, aggregation: s.aggregation, group: s.group, p: s.p, Ls, random: { ndr30: random.at[30], auc: random.auc }, groups: results, cancellationFrom: isProjected(gradIndex) ? 'projected gradients (JL estimate)' : 'gradients' }),
      'scores.json': JSON.stringify({ aggregation: s.aggregation, group: s.group, convention: 'lower = more harmful', scores: Array.from(cellScores) }),
    },
    metrics,
    series,
  };
};

/** Cancellation-effect sums per unit over the training gradients (SCIENCE.md §4). */
async function cancellationByUnit(store: Parameters<typeof readShard>[0], index: GradientIndex, beat: (done: number, total: number) => void): Promise<Map<string, { numerator: number; denominator: number }>> {
  const acc = new Map(index.units.map((u) => [u.unit, new CancellationAccumulator()]));
  const we = index.embedding ? new SparseCancellationAccumulator() : undefined;
  const shards = index.sets.train.shards;
  for (const [k, sh] of shards.entries()) {
    beat(k, shards.length);
    const d = await readShard(store, index, sh);
    for (const c of shardChunks(index, sh, d)) acc.get(c.unit)!.add(c);
    if (we && index.embedding) we.add({ unit: index.embedding.unit, layer: -1, kind: 'embedding', D: index.embedding.D, vocab: index.embedding.vocab, samples: d.embedding! });
    beat(k + 1, shards.length);
  }
  const out = new Map([...acc].map(([u, a]) => [u, a.parts()]));
  if (we && index.embedding) out.set(index.embedding.unit, we.parts());
  return out;
}
