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

/**
 * The LayerIF tables (the shape of LayerIF Tables 1–2): rows = allocation (and criterion, S for
 * pruning), columns = tasks and their mean; each entry mean ± std of acc over seeds. A row whose
 * mean differs from the best row's by more than the two spreads together is marked `*`; the line
 * under each table states the ordering that came out.
 */
export async function layerifResults(env: LayerflowEnv, plan: SweepPlan): Promise<string> {
  const store = new ArtifactStore(paths.store(env.home));
  const out: string[] = [];
  for (const branch of [
    { stage: 'benchmark_moe', title: 'LoRA-MoE zero-shot accuracy (acc)', row: (p: Record<string, string>) => `${p['stages.allocate_experts.allocator']}${p['stages.allocate_experts.allocator'] === 'layerif' ? ` ${p['stages.layer_scores.variant']}` : p['stages.allocate_experts.allocator'] === 'mola' ? ` ${p['stages.allocate_experts.pattern']}` : ''}` },
    { stage: 'benchmark_pruned', title: 'Pruned-model zero-shot accuracy (acc)', row: (p: Record<string, string>) => `${p['stages.allocate_sparsity.allocator']} / ${p['stages.prune.criterion']} / S=${p['stages.allocate_sparsity.sparsity']}` },
  ]) {
    const acc = new Map<string, Map<string, number[]>>(); // row → task → values
    const seenKeys = new Set<string>();
    for (const c of plan.cells) {
      const s = c.stages.find((x) => x.name === branch.stage);
      if (!s) continue;
      const hit = await store.lookup(s.key);
      if (hit.status !== 'hit') continue;
      const row = branch.row(c.params), task = c.params['task.id'];
      const id = `${row}|${task}|${c.params.seed}`;
      if (seenKeys.has(id)) continue;
      seenKeys.add(id);
      const byTask = acc.get(row) ?? new Map<string, number[]>();
      byTask.set(task, [...(byTask.get(task) ?? []), hit.manifest.metrics.acc]);
      acc.set(row, byTask);
    }
    if (!acc.size) continue;
    const tasks = [...new Set([...acc.values()].flatMap((m) => [...m.keys()]))];
    // Per row: the per-seed mean over tasks gives the row's mean ± std.
    const rowMean = new Map([...acc].map(([r, m]) => {
      const seeds = Math.min(...tasks.map((t) => m.get(t)?.length ?? 0));
      const perSeed = Array.from({ length: seeds }, (_, i) => mean(tasks.map((t) => m.get(t)![i])));
      return [r, perSeed] as const;
    }));
    const best = [...rowMean].filter(([, v]) => v.length).sort((a, b) => mean(b[1]) - mean(a[1]))[0];
    const rows = [...acc].map(([r, m]) => {
      const v = rowMean.get(r)!;
      const beyond = best && r !== best[0] && v.length && Math.abs(mean(best[1]) - mean(v)) > std(best[1]) + std(v);
      return [r, '', ...tasks.map((t) => fmt(m.get(t) ?? [])), `${fmt(v)}${beyond ? ' *' : ''}`];
    });
    out.push(`${branch.title}, mean±std over seeds; * = differs from the best row by more than both spreads`);
    out.push(table(['allocation', '', ...tasks, 'mean'], rows));
    const ordered = [...rowMean].filter(([, v]) => v.length).sort((a, b) => mean(b[1]) - mean(a[1]));
    const separated = ordered.filter(([r]) => rows.find((x) => x[0] === r)![tasks.length + 2].endsWith('*')).length;
    out.push(`  ordering by mean: ${ordered.map(([r, v]) => `${r} ${mean(v).toFixed(3)}`).join(' > ')}; ${separated ? `${separated} row(s) separated from the best beyond the spread` : 'no difference exceeds the spread: the ordering is within noise'}`);
  }
  return out.join('\n');
}
