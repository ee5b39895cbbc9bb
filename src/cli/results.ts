/**
 * The results a researcher came for, read back from the artifact store after a sweep: for the NDR
 * pipeline, NDR@30 / AUC-NDR per method × aggregation × layer group (mean ± std over seeds and
 * any other axis), the retrained and noisy accuracies per method × aggregation, and the random
 * ordering's NDR@30 for reference; for LayerIF, the shape of its Tables 1–2. The rows are computed
 * once as data (`ndrTables`, `layerifTables`: header + rows of formatted cells); the terminal text
 * (`ndrResults`, `layerifResults`) and the HTML report (src/report/) both render them.
 */
import type { LayerflowEnv } from '../config/env.ts';
import type { SweepPlan } from '../config/plan.ts';
import { collectResults, type SweepResults } from '../results/collect.ts';
import { blockScores } from '../allocation/block-scores.ts';

/** `ndr.json` of the ndr stage (activities/ndr.ts). */
export interface NdrJson {
  method: string;
  aggregation: string;
  Ls?: number[];
  random: { ndr30: number; auc: number };
  groups: Array<{ group: string; cancellation: number | null; byAggregation: Record<string, { at: Record<string, number>; auc: number }> }>;
}

/** One results table as data: every cell already formatted (`0.615±0.007`, `—` when empty). */
export interface ResultTable {
  /** A short name (the HTML heading of a table without a title). */
  name: string;
  /** The stage whose results the rows are (benchmark_moe, benchmark_pruned, ndr, benchmark). */
  stage: string;
  /** The line printed above the table, if any. */
  title?: string;
  header: string[];
  rows: string[][];
  /** The line printed under the table, if any. */
  note?: string;
}

/** What the tables read: the collected cells and the store their artifacts are in. */
export type CollectedResults = Pick<SweepResults, 'store' | 'cells'>;

export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
export const std = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const fmt = (xs: number[]) => (xs.length ? `${mean(xs).toFixed(3)}${xs.length > 1 ? `±${std(xs).toFixed(3)}` : ''}` : '—');

/** A table as terminal text: the first two columns left-aligned, the rest right-aligned. */
export function tableText(t: ResultTable): string {
  const { header, rows } = t;
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '  ' + r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  const body = [line(header), '  ' + w.map((x) => '─'.repeat(x)).join('  '), ...rows.map(line)].join('\n');
  return [t.title, body, t.note].filter((x) => x !== undefined).join('\n');
}

const tablesText = (ts: ResultTable[]) => ts.map(tableText).join('\n');

/** The cells' records of only these stages (one lookup per distinct key, as collectResults does). */
function collectStages(env: LayerflowEnv, plan: SweepPlan, stages: string[]): Promise<SweepResults> {
  return collectResults(env, { ...plan, cells: plan.cells.map((c) => ({ ...c, stages: c.stages.filter((s) => stages.includes(s.name)) })) });
}

/** The NDR results tables of a finished (or partly finished) sweep; '' when no cell has results. */
export async function ndrResults(env: LayerflowEnv, plan: SweepPlan): Promise<string> {
  return tablesText(await ndrTables(await collectStages(env, plan, ['ndr', 'influence', 'benchmark'])));
}

/**
 * The LayerIF tables as text — acc of both branches, then the pruned models' perplexity (lower is
 * better), each with the base model's reference row where the sweep ran `benchmark_base` — then
 * the layer-score tables; '' when no cell has any of these results.
 */
export async function layerifResults(env: LayerflowEnv, plan: SweepPlan): Promise<string> {
  const r = await collectStages(env, plan, ['benchmark_moe', 'benchmark_pruned', 'benchmark_base', 'layer_scores']);
  return tablesText([...(await layerifTables(r, 'acc')), ...(await layerifTables(r, 'perplexity')), ...(await layerScoreTables(r))]);
}

/**
 * Task-specific layer importance as text (LayerIF): one table per model × method × variant, a row per
 * task — the number of layers, the three layers with the highest S_l (the worst-trained, which get
 * the most experts and the most pruning) and the mean of S_l / max |S_l| over each quarter of the
 * depth, so models of different depths can be compared. Mean over seeds. Per-matrix scores are
 * averaged per block first (src/allocation/block-scores.ts), as the allocators read them.
 */
export async function layerScoreTables(r: CollectedResults): Promise<ResultTable[]> {
  const panels = new Map<string, Map<string, Map<string, number[]>>>(); // panel → task → key → scores
  const read = new Map<string, Promise<{ method: string; variant: string; grouping?: string; layers: Array<{ layer: number; score: number }> }>>();
  for (const c of r.cells) {
    const s = c.stages.layer_scores;
    if (!s?.ref) continue;
    let p = read.get(s.ref.key);
    if (!p) read.set(s.ref.key, (p = r.store.readJson(s.ref, 'layer-scores.json')));
    const ls = await p;
    const panel = `model ${c.params['model.id']} · ${ls.method} · ${ls.variant}`;
    const tasks = panels.get(panel) ?? new Map<string, Map<string, number[]>>();
    const keys = tasks.get(c.params['task.id']) ?? new Map<string, number[]>();
    // Per-matrix scores (the ablation) are averaged per block, as the allocators read them.
    keys.set(s.ref.key, blockScores(ls.layers, ls.grouping).scores);
    tasks.set(c.params['task.id'], keys);
    panels.set(panel, tasks);
  }
  const out: ResultTable[] = [];
  for (const [panel, tasks] of panels) {
    const rows = [...tasks].map(([task, keys]) => {
      const runs = [...keys.values()];
      const n = Math.min(...runs.map((x) => x.length));
      const avg = Array.from({ length: n }, (_, l) => mean(runs.map((x) => x[l])));
      const max = Math.max(...avg.map(Math.abs)) || 1;
      const top = avg.map((v, l) => [l, v] as const).sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 3).map(([l]) => String(l));
      const quarter = (q: number) => {
        const part = avg.slice(Math.floor((q * n) / 4), Math.floor(((q + 1) * n) / 4));
        return part.length ? (mean(part) / max).toFixed(2) : '—';
      };
      return [task, `${runs.length}`, `${n}`, top.join(', '), ...[0, 1, 2, 3].map(quarter)];
    });
    out.push({
      name: `Layer scores: ${panel}`,
      stage: 'layer_scores',
      title: `Layer scores S_l, ${panel} (mean over seeds; a higher S_l marks a worse-trained layer)`,
      header: ['task', 'seeds', 'layers', 'top-3 layers by S_l', 'depth 0–¼', '¼–½', '½–¾', '¾–1'],
      rows,
      note: '  depth columns: mean S_l / max |S_l| of the task over each quarter of the layers',
    });
  }
  return out;
}

/** The NDR rows of every cell with an ndr result, `ndr.json` read once per key. */
export async function ndrRows(r: CollectedResults): Promise<Array<{ cell: string; influenceKey: string; ndr: NdrJson; retrain?: number; noisy?: number }>> {
  const read = new Map<string, Promise<NdrJson>>();
  const out = [];
  for (const c of r.cells) {
    const nd = c.stages.ndr, inf = c.stages.influence;
    if (!nd || !inf || !nd.ref) continue;
    const ref = nd.ref;
    if (!read.has(nd.key)) read.set(nd.key, r.store.readJson<NdrJson>(ref, 'ndr.json'));
    const ndr = await read.get(nd.key)!;
    const bench = c.stages.benchmark;
    out.push({ cell: c.cellId, influenceKey: inf.key, ndr, retrain: bench?.ref ? bench.metrics.accuracy_retrained : undefined, noisy: bench?.ref ? bench.metrics.accuracy_noisy : undefined });
  }
  return out;
}

/**
 * NDR@30 and AUC-NDR per method × aggregation × layer group, the cancellation effect per group,
 * and the retraining accuracies per method × the cells' aggregation; [] when no cell has results.
 */
export async function ndrTables(r: CollectedResults): Promise<ResultTable[]> {
  const seen = await ndrRows(r);
  if (!seen.length) return [];
  const ndrByKey = new Map<string, (typeof seen)[number]>();
  for (const row of seen) if (!ndrByKey.has(row.influenceKey)) ndrByKey.set(row.influenceKey, row);
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
  const out: ResultTable[] = [
    {
      name: 'NDR@30',
      stage: 'ndr',
      title: `NDR@30 per method × aggregation × layer group (mean±std over seeds; fraction of the noisy samples among the 30% ranked most harmful; random ordering ${random})`,
      header: ['method', 'aggregation', ...groups],
      rows: rowsOf((v) => v.at['30']),
    },
    {
      name: 'AUC-NDR',
      stage: 'ndr',
      title: `AUC-NDR (area under the whole NDR curve; 1 = every noisy sample ranked first)`,
      header: ['method', 'aggregation', ...groups],
      rows: rowsOf((v) => v.auc),
    },
  ];
  const cancel = groups.map((g) => fmt(unique.map((u) => u.ndr.groups.find((x) => x.group === g)?.cancellation).filter((x): x is number => typeof x === 'number')));
  out.push({ name: 'Cancellation effect per layer group', stage: 'ndr', header: ['cancellation effect C', '', ...groups], rows: [['(training gradients)', '', ...cancel]] });
  const acc: string[][] = [];
  for (const m of methods) {
    for (const a of [...new Set(seen.filter((s) => s.ndr.method === m).map((s) => s.ndr.aggregation))]) {
      const cs = seen.filter((s) => s.ndr.method === m && s.ndr.aggregation === a);
      const ndr30 = cs.map((s) => s.ndr.groups.find((g) => g.group === 'all')?.byAggregation[a]?.at['30']).filter((x): x is number => x !== undefined);
      acc.push([m, a, fmt(ndr30), fmt(cs.map((s) => s.retrain).filter((x): x is number => x !== undefined)), fmt(cs.map((s) => s.noisy).filter((x): x is number => x !== undefined))]);
    }
  }
  out.push({
    name: 'Retraining',
    stage: 'benchmark',
    title: 'Retraining without the 30% lowest-scored samples (evaluation-set accuracy; the ground truth NDR is compared with)',
    header: ['method', 'aggregation', 'NDR@30 (all)', 'retrained acc', 'noisy-model acc'],
    rows: acc,
  });
  return out;
}

/** The row label of a LayerIF cell in each branch: allocator (+ layer-score variant / MoLA pattern), or that / criterion / S. */
export const allocationLabel = {
  benchmark_moe: (p: Record<string, string>) => `${p['stages.allocate_experts.allocator']}${p['stages.allocate_experts.allocator'] === 'layerif' ? ` ${p['stages.layer_scores.variant']}` : p['stages.allocate_experts.allocator'] === 'mola' ? ` ${p['stages.allocate_experts.pattern']}` : ''}`,
  benchmark_pruned: (p: Record<string, string>) => `${p['stages.allocate_sparsity.allocator']}${p['stages.allocate_sparsity.allocator'] === 'layerif' ? ` ${p['stages.layer_scores.variant']}` : ''} / ${p['stages.prune.criterion']} / S=${p['stages.allocate_sparsity.sparsity']}`,
};

export type LayerifMetric = 'acc' | 'acc_norm' | 'perplexity';

const BRANCHES: Record<LayerifMetric, { better: 'higher' | 'lower'; titles: Partial<Record<keyof typeof allocationLabel, string>> }> = {
  acc: { better: 'higher', titles: { benchmark_moe: 'LoRA-MoE zero-shot accuracy (acc)', benchmark_pruned: 'Pruned-model zero-shot accuracy (acc)' } },
  acc_norm: { better: 'higher', titles: { benchmark_moe: 'LoRA-MoE zero-shot accuracy (acc_norm)', benchmark_pruned: 'Pruned-model zero-shot accuracy (acc_norm)' } },
  perplexity: { better: 'lower', titles: { benchmark_pruned: 'Pruned-model perplexity (held-out text; lower is better)' } },
};

/** The reference row of each LayerIF table: the base model (`benchmark_base`), zero-shot, no fine-tuning and no pruning. */
export const REFERENCE_LABEL = { benchmark_moe: 'base model (no fine-tuning)', benchmark_pruned: 'dense base model (S=0)' } as const;

/**
 * The LayerIF tables (the shape of LayerIF Tables 1–2): rows = allocation (and criterion, S for
 * pruning), columns = tasks and their mean; each entry mean ± std of `metric` over seeds. A row
 * whose mean differs from the best row's by more than the two spreads together is marked `*`; the
 * note under each table states the ordering that came out. Where the sweep ran `benchmark_base`,
 * the base model's row comes first as a reference (`REFERENCE_LABEL`): it is not ranked or marked,
 * and the note says whether the best row differs from it by more than both spreads. [] when no
 * cell has a result of the branch.
 */
export async function layerifTables(r: CollectedResults, metric: LayerifMetric = 'acc'): Promise<ResultTable[]> {
  const out: ResultTable[] = [];
  const spec = BRANCHES[metric];
  const higher = spec.better === 'higher';
  // The base model's values (one per task × seed; the same stage key serves every allocation row).
  const base = new Map<string, number[]>(); // task → values
  const baseSeen = new Set<string>();
  for (const c of r.cells) {
    const s = c.stages.benchmark_base;
    if (!s?.ref || typeof s.metrics[metric] !== 'number') continue;
    const task = c.params['task.id'], id = `${c.params['model.id']}|${task}|${c.params.seed}`;
    if (baseSeen.has(id)) continue;
    baseSeen.add(id);
    base.set(task, [...(base.get(task) ?? []), s.metrics[metric]]);
  }
  for (const stage of ['benchmark_moe', 'benchmark_pruned'] as const) {
    const title = spec.titles[stage];
    if (!title) continue;
    const acc = new Map<string, Map<string, number[]>>(); // row → task → values
    const seenKeys = new Set<string>();
    for (const c of r.cells) {
      const s = c.stages[stage];
      if (!s?.ref || typeof s.metrics[metric] !== 'number') continue;
      const row = allocationLabel[stage](c.params), task = c.params['task.id'];
      const id = `${row}|${task}|${c.params.seed}`;
      if (seenKeys.has(id)) continue;
      seenKeys.add(id);
      const byTask = acc.get(row) ?? new Map<string, number[]>();
      byTask.set(task, [...(byTask.get(task) ?? []), s.metrics[metric]]);
      acc.set(row, byTask);
    }
    if (!acc.size) continue;
    const tasks = [...new Set([...acc.values()].flatMap((m) => [...m.keys()]))];
    // Per row: the per-seed mean over tasks gives the row's mean ± std.
    const perSeedMean = (m: Map<string, number[]>) => {
      const seeds = Math.min(...tasks.map((t) => m.get(t)?.length ?? 0));
      return Array.from({ length: seeds }, (_, i) => mean(tasks.map((t) => m.get(t)![i])));
    };
    const rowMean = new Map([...acc].map(([row, m]) => [row, perSeedMean(m)] as const));
    const ordered = [...rowMean].filter(([, v]) => v.length).sort((a, b) => (higher ? mean(b[1]) - mean(a[1]) : mean(a[1]) - mean(b[1])));
    const best = ordered[0];
    // A spread needs at least two seeds on both sides: with one seed nothing is marked.
    const spread = (v: readonly number[]) => v.length >= 2;
    const beyondSpread = (a: number[], b: number[]) => spread(a) && spread(b) && Math.abs(mean(a) - mean(b)) > std(a) + std(b);
    const oneSeed = !best || !spread(best[1]) || ordered.every(([, v]) => !spread(v));
    const rows = [...acc].map(([row, m]) => {
      const v = rowMean.get(row)!;
      const beyond = best && row !== best[0] && beyondSpread(best[1], v);
      return [row, '', ...tasks.map((t) => fmt(m.get(t) ?? [])), `${fmt(v)}${beyond ? ' *' : ''}`];
    });
    const separated = ordered.filter(([row]) => rows.find((x) => x[0] === row)![tasks.length + 2].endsWith('*')).length;
    let reference = '';
    if (tasks.some((t) => base.has(t))) {
      const label = REFERENCE_LABEL[stage];
      const v = perSeedMean(base);
      rows.unshift([label, '', ...tasks.map((t) => fmt(base.get(t) ?? [])), fmt(v)]);
      reference = v.length
        ? `; reference ${label} ${mean(v).toFixed(3)} (not ranked): the best row ${!best ? '—' : !spread(best[1]) || !spread(v) ? 'cannot be judged against it with one seed' : beyondSpread(best[1], v) ? `is ${(higher ? mean(best[1]) > mean(v) : mean(best[1]) < mean(v)) ? 'better' : 'worse'} by more than both spreads` : 'is within the spreads of it'}`
        : `; reference ${label}: not every task has a result`;
    }
    out.push({
      name: title,
      stage,
      title: `${title}, mean±std over seeds; * = differs from the best row by more than both spreads`,
      header: ['allocation', '', ...tasks, 'mean'],
      rows,
      note: `  ordering by mean: ${ordered.map(([row, v]) => `${row} ${mean(v).toFixed(3)}`).join(higher ? ' > ' : ' < ')}; ${oneSeed ? 'one seed per row: no spread to judge the differences by (run more seeds)' : separated ? `${separated} row(s) separated from the best beyond the spread` : 'no difference exceeds the spread: the ordering is within noise'}${reference}`,
    });
  }
  return out;
}
