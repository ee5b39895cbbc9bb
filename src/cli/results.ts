/**
 * The results a researcher came for, read back from the artifact store after a sweep: for the NDR
 * pipeline, NDR@30 / AUC-NDR per method × aggregation × layer group (mean ± std over seeds and
 * any other axis), the retrained and noisy accuracies per method × aggregation, and the random
 * ordering's NDR@30 for reference.
 */
import { ArtifactStore, refOf } from '../store/artifacts.ts';
import { paths, type LayerflowEnv } from '../config/env.ts';
import type { SweepPlan } from '../config/plan.ts';

interface NdrJson {
  method: string;
  aggregation: string;
  random: { ndr30: number; auc: number };
  groups: Array<{ group: string; cancellation: number | null; byAggregation: Record<string, { at: Record<string, number>; auc: number }> }>;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const fmt = (xs: number[]) => (xs.length ? `${mean(xs).toFixed(3)}${xs.length > 1 ? `±${std(xs).toFixed(3)}` : ''}` : '—');

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '  ' + r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(header), '  ' + w.map((x) => '─'.repeat(x)).join('  '), ...rows.map(line)].join('\n');
}

/** The NDR results tables of a finished (or partly finished) sweep; '' when no cell has results. */
export async function ndrResults(env: LayerflowEnv, plan: SweepPlan): Promise<string> {
  const store = new ArtifactStore(paths.store(env.home));
  const ndrByKey = new Map<string, { cell: string; ndr: NdrJson; retrain?: number; noisy?: number }>();
  const seen: Array<{ cell: string; ndr: NdrJson; retrain?: number; noisy?: number }> = [];
  for (const c of plan.cells) {
    const key = (s: string) => c.stages.find((x) => x.name === s)?.key;
    const nk = key('ndr'), ik = key('influence');
    if (!nk || !ik) continue;
    const hit = await store.lookup(nk);
    if (hit.status !== 'hit') continue;
    const ndr = await store.readJson<NdrJson>(refOf(hit.manifest), 'ndr.json');
    const bench = await store.lookup(key('benchmark') ?? '');
    const row = { cell: c.cellId, ndr, retrain: bench.status === 'hit' ? bench.manifest.metrics.accuracy_retrained : undefined, noisy: bench.status === 'hit' ? bench.manifest.metrics.accuracy_noisy : undefined };
    if (!ndrByKey.has(ik)) ndrByKey.set(ik, row);
    seen.push(row);
  }
  if (!seen.length) return '';
  const methods = [...new Set(seen.map((s) => s.ndr.method))];
  const groups = [...new Set(seen.flatMap((s) => s.ndr.groups.map((g) => g.group)))];
  const aggs = [...new Set(seen.flatMap((s) => s.ndr.groups.flatMap((g) => Object.keys(g.byAggregation))))];
  // Every NDR stage computes every aggregation and group from its influence scores: one per distinct
  // influence key (method × model × task × seed) is counted once, whatever the cell's aggregation.
  const unique = [...ndrByKey.values()];
  const cell = (m: string, a: string, g: string, pick: (v: { at: Record<string, number>; auc: number }) => number) => {
    const vals = unique.filter((u) => u.ndr.method === m).map((u) => u.ndr.groups.find((x) => x.group === g)?.byAggregation[a]).filter((x) => x !== undefined);
    return fmt(vals.map(pick));
  };
  const rowsOf = (pick: (v: { at: Record<string, number>; auc: number }) => number) =>
    methods.flatMap((m) => aggs.map((a) => [m, a, ...groups.map((g) => cell(m, a, g, pick))]));
  const random = fmt(unique.map((u) => u.ndr.random.ndr30));
  const out = [
    `NDR@30 per method × aggregation × layer group (mean±std over seeds; fraction of the noisy samples among the 30% ranked most harmful; random ordering ${random})`,
    table(['method', 'aggregation', ...groups], rowsOf((v) => v.at['30'])),
    `AUC-NDR (area under the whole NDR curve; 1 = every noisy sample ranked first)`,
    table(['method', 'aggregation', ...groups], rowsOf((v) => v.auc)),
  ];
  const cancel = groups.map((g) => fmt(unique.map((u) => u.ndr.groups.find((x) => x.group === g)?.cancellation).filter((x): x is number => typeof x === 'number')));
  out.push(table(['cancellation effect C', '', ...groups], [['(training gradients)', '', ...cancel]]));
  const acc: string[][] = [];
  for (const m of methods) {
    for (const a of [...new Set(seen.filter((s) => s.ndr.method === m).map((s) => s.ndr.aggregation))]) {
      const cs = seen.filter((s) => s.ndr.method === m && s.ndr.aggregation === a);
      const ndr30 = cs.map((s) => s.ndr.groups.find((g) => g.group === 'all')?.byAggregation[a]?.at['30']).filter((x): x is number => x !== undefined);
      acc.push([m, a, fmt(ndr30), fmt(cs.map((s) => s.retrain).filter((x): x is number => x !== undefined)), fmt(cs.map((s) => s.noisy).filter((x): x is number => x !== undefined))]);
    }
  }
  out.push('Retraining without the 30% lowest-scored samples (evaluation-set accuracy; the ground truth NDR is compared with)');
  out.push(table(['method', 'aggregation', 'NDR@30 (all)', 'retrained acc', 'noisy-model acc'], acc));
  return out.join('\n');
}
