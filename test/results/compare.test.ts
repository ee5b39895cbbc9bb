/**
 * `layerflow compare` as pure functions: grouping over seeds (means and sample stds written out by
 * hand below), best-per-column marks (perplexity lower is better), pivoting by an axis, csv/json
 * that parse back to the same numbers, the errors, and the MLflow compare link.
 */
import test from 'ava';
import type { AxisValue } from '../../src/config/sweep.ts';
import { ConfigError } from '../../src/errors.ts';
import type { ArtifactRef } from '../../src/store/artifacts.ts';
import type { MlflowRun } from '../../src/tracking/mlflow.ts';
import type { CellRecord } from '../../src/results/collect.ts';
import { headlineMetrics } from '../../src/results/headline.ts';
import { mlflowLink } from '../../src/cli/compare.ts';
import type { SweepPlan } from '../../src/config/plan.ts';
import type { MlflowClient } from '../../src/tracking/mlflow.ts';
import { better, bestOf, compareCells, compareUrl, formatCsv, formatJson, formatTable, pickParentRuns, resolveAxis, type Comparison, type Stat } from '../../src/results/compare.ts';
import { table } from '../../src/results/stats.ts';

const ALLOC = 'stages.allocate_experts.allocator';

function cell(axes: Record<string, AxisValue>, metrics: Record<string, Record<string, number>>): CellRecord {
  const cellId = Object.entries(axes).map(([k, v]) => `${k.replace(/^stages\./, '')}=${v}`).join(',');
  const stages = Object.fromEntries(Object.entries(metrics).map(([s, m]) => [s, { key: `${s}:${cellId}`, ref: { key: `${s}:${cellId}`, stage: s, kind: s, files: {} } as ArtifactRef, metrics: m }]));
  const headline = Object.assign({}, ...Object.entries(metrics).map(([s, m]) => headlineMetrics(s, m))) as Record<string, number>;
  return { cellId, axes, params: {}, stages, headline };
}

/** acc and perplexity per task → allocator → seed; `undefined` = the cell has not finished. */
const ACC: Record<string, Record<string, Array<number | undefined>>> = {
  a: { layerif: [0.5, 0.6, 0.7], uniform: [0.55, 0.55, 0.58] },
  b: { layerif: [0.4, 0.44, undefined], uniform: [0.45, 0.47, 0.49] },
};
const PPL: Record<string, Record<string, number[]>> = {
  a: { layerif: [20, 22, 24], uniform: [18, 18, 18] },
  b: { layerif: [30, 34], uniform: [40, 41, 42] },
};
const SEEDS = [1, 2, 3];

function sweepCells(): CellRecord[] {
  const out: CellRecord[] = [];
  for (const task of ['a', 'b'])
    for (const alloc of ['layerif', 'uniform'])
      SEEDS.forEach((seed, i) => {
        const axes = { model: 'm', task, [ALLOC]: alloc, seed };
        const acc = ACC[task][alloc][i];
        out.push(acc === undefined
          ? cell(axes, {})
          : cell(axes, { allocate_experts: { total: 24 + i }, benchmark_moe: { acc, documents: 100 }, benchmark_pruned: { perplexity: PPL[task][alloc][i] } }));
      });
  return out;
}

// Expected group statistics, by hand: mean, sample std (n − 1), n.
const EXPECTED: Record<string, Record<string, Stat>> = {
  'a/layerif': { 'benchmark_moe.acc': { mean: 0.6, std: 0.1, n: 3 }, 'benchmark_pruned.perplexity': { mean: 22, std: 2, n: 3 } },
  'a/uniform': { 'benchmark_moe.acc': { mean: 0.56, std: Math.sqrt(0.0003), n: 3 }, 'benchmark_pruned.perplexity': { mean: 18, std: 0, n: 3 } },
  'b/layerif': { 'benchmark_moe.acc': { mean: 0.42, std: Math.sqrt(0.0008), n: 2 }, 'benchmark_pruned.perplexity': { mean: 32, std: Math.sqrt(8), n: 2 } },
  'b/uniform': { 'benchmark_moe.acc': { mean: 0.47, std: 0.02, n: 3 }, 'benchmark_pruned.perplexity': { mean: 41, std: 1, n: 3 } },
};

const close = (a: number | null | undefined, b: number | null) => (a === null || b === null ? a === b : a !== undefined && Math.abs(a - b) < 1e-9);
const groupName = (axes: Record<string, AxisValue>) => `${axes.task}/${axes[ALLOC]}`;

function assertStats(t: import('ava').ExecutionContext, got: Record<string, Stat>, want: Record<string, Stat>, where: string) {
  t.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), where);
  for (const [m, s] of Object.entries(want)) {
    t.true(close(got[m].mean, s.mean), `${where} ${m} mean ${got[m].mean} ≠ ${s.mean}`);
    t.true(close(got[m].std, s.std), `${where} ${m} std ${got[m].std} ≠ ${s.std}`);
    t.is(got[m].n, s.n, `${where} ${m} n`);
  }
}

test('groups cells over seeds: mean and sample std per group and headline metric', (t) => {
  const c = compareCells('s', sweepCells());
  t.deepEqual(c.metrics, ['benchmark_moe.acc', 'benchmark_pruned.perplexity']);
  t.deepEqual(c.rowAxes, ['model', 'task', ALLOC]);
  t.is(c.groups.length, 4);
  t.is(c.cellCount, 12);
  t.is(c.cellsWithResults, 11);
  for (const g of c.groups) assertStats(t, g.stats, EXPECTED[groupName(g.axes)], groupName(g.axes));
  t.deepEqual(c.groups.find((g) => groupName(g.axes) === 'b/layerif')!.seeds, [1, 2]);
  t.deepEqual(c.rows.map((r) => groupName(r.axes)), ['a/layerif', 'a/uniform', 'b/layerif', 'b/uniform']);
});

test('one seed: std is null (csv empty), not 0', (t) => {
  const c = compareCells('s', [cell({ task: 'a', seed: 1 }, { benchmark_moe: { acc: 0.25 } }), cell({ task: 'b', seed: 1 }, { benchmark_moe: { acc: 0.75 } })]);
  t.deepEqual(c.groups.map((g) => g.stats['benchmark_moe.acc']), [{ mean: 0.25, std: null, n: 1 }, { mean: 0.75, std: null, n: 1 }]);
  t.deepEqual(formatCsv(c).split('\n'), ['task,metric,mean,std,n', 'a,benchmark_moe.acc,0.25,,1', 'b,benchmark_moe.acc,0.75,,1']);
  t.regex(formatTable(c), /0\.750\*/);
  t.notRegex(formatTable(c), /±/);
});

test('best per column: highest accuracy, lowest perplexity; the legend says which way', (t) => {
  const c = compareCells('s', sweepCells());
  const best = Object.fromEntries(c.columns.map((col) => [col.metric, col.best.map((i) => groupName(c.rows[i].axes))]));
  t.deepEqual(best, { 'benchmark_moe.acc': ['a/layerif'], 'benchmark_pruned.perplexity': ['a/uniform'] });
  t.deepEqual(c.columns.map((col) => col.better), ['higher', 'lower']);
  const text = formatTable(c);
  const line = (label: RegExp) => text.split('\n').find((l) => label.test(l))!;
  t.regex(line(/^ {2}a\s+layerif/), /0\.600±0\.100\*\s+22\.00±2\.00$/);
  t.regex(line(/^ {2}a\s+uniform/), /0\.560±0\.017 \s+18\.00±0\.00\*$/);
  t.regex(line(/^ {2}b\s+layerif/), /0\.420±0\.028 \s+32\.00±2\.83$/);
  t.regex(text, /\* best in its column: higher is better, except benchmark_pruned\.perplexity \(lower is better\)/);
  t.regex(text, /mean±std over seeds 1, 2, 3 \(n=2–3 per entry: some seeds have no result\); fixed: model=m/);
  t.regex(text, /11 of 12 cells have results/);
  t.notRegex(text, /^ {2}model/m, 'a constant axis is no column');
});

test('better(): perplexity and losses lower, everything else higher; bestOf ties and all-tie', (t) => {
  t.is(better('benchmark_pruned.perplexity'), 'lower');
  t.is(better('moe.best_validation_loss'), 'lower');
  t.is(better('benchmark_moe.acc'), 'higher');
  t.is(better('benchmark.accuracy_gain'), 'higher');
  t.is(better('ndr.auc_ndr.all.mean-c'), 'higher');
  t.deepEqual(bestOf([0.5, 0.7, undefined, 0.7], 'higher'), [1, 3]);
  t.deepEqual(bestOf([0.5, 0.7, 0.6], 'lower'), [0]);
  t.deepEqual(bestOf([0.1 + 0.2, 0.3], 'higher'), [], 'equal up to rounding: all tie, nothing is best');
  t.deepEqual(bestOf([0.4, undefined], 'higher'), [], 'one value: nothing to rank');
});

test('--by pivots an axis into column groups (metric × value); short and full axis names', (t) => {
  const c = compareCells('s', sweepCells(), { by: 'task' });
  t.is(c.by, 'task');
  t.deepEqual(c.byValues, ['a', 'b']);
  t.deepEqual(c.rows.map((r) => r.axes[ALLOC]), ['layerif', 'uniform']);
  t.deepEqual(c.columns.map((col) => `${col.metric}@${c.byValues[col.by]}`), ['benchmark_moe.acc@a', 'benchmark_moe.acc@b', 'benchmark_pruned.perplexity@a', 'benchmark_pruned.perplexity@b']);
  for (const r of c.rows) r.groups.forEach((g, b) => assertStats(t, g!.stats, EXPECTED[`${c.byValues[b]}/${r.axes[ALLOC]}`], `${c.byValues[b]}/${r.axes[ALLOC]}`));
  t.deepEqual(c.columns.map((col) => col.best.map((i) => c.rows[i].axes[ALLOC])), [['layerif'], ['uniform'], ['uniform'], ['layerif']]);
  const text = formatTable(c).split('\n');
  t.regex(text[1], /benchmark_moe\.acc.*benchmark_pruned\.perplexity/);
  t.regex(text[2], /^ {2}allocate_experts\.allocator\s+a\s+b\s+a\s+b\s*$/);
  t.regex(text.find((l) => l.includes('layerif'))!, /0\.600±0\.100\*\s+0\.420±0\.028 \s+22\.00±2\.00 \s+32\.00±2\.83\*$/);

  for (const name of ['allocate_experts.allocator', ALLOC]) {
    const p = compareCells('s', sweepCells(), { by: name });
    t.is(p.by, ALLOC, name);
    t.deepEqual(p.byValues, ['layerif', 'uniform']);
    t.deepEqual(p.rows.map((r) => r.axes.task), ['a', 'b']);
  }
});

test('--by seed: one column per seed, nothing averaged', (t) => {
  const c = compareCells('s', sweepCells(), { by: 'seed', metrics: ['benchmark_moe.acc'] });
  t.deepEqual(c.byValues, [1, 2, 3]);
  t.deepEqual(c.rows.map((r) => r.groups.map((g) => g?.stats['benchmark_moe.acc'].mean)), [[0.5, 0.6, 0.7], [0.55, 0.55, 0.58], [0.4, 0.44, undefined], [0.45, 0.47, 0.49]]);
  t.true(c.groups.every((g) => g.stats['benchmark_moe.acc'].n === 1));
  t.regex(formatTable(c).split('\n').find((l) => /b\s+layerif/.test(l))!, /0\.400\s+0\.440\s+—\s*$/);
});

test('--by with one row left ranks each metric across the axis values', (t) => {
  const cells = sweepCells().filter((c) => c.axes.task === 'a');
  const c = compareCells('s', cells, { by: 'allocate_experts.allocator', metrics: ['benchmark_pruned.perplexity'] });
  t.is(c.rows.length, 1);
  t.is(c.rankedAcross, 'by');
  t.deepEqual(c.columns.map((col) => col.best), [[], [0]]);
  t.regex(formatTable(c), /\(all\)\s+22\.00±2\.00 \s+18\.00±0\.00\*/);
  t.regex(formatTable(c), /\* best of its metric's allocate_experts\.allocator values: higher is better, except benchmark_pruned\.perplexity/);
});

test('--metric: any stage metric, repeatable or comma list, bare name where unambiguous', (t) => {
  const c = compareCells('s', sweepCells(), { metrics: ['allocate_experts.total,benchmark_moe.acc', 'documents', 'benchmark_moe.acc'] });
  t.deepEqual(c.metrics, ['allocate_experts.total', 'benchmark_moe.acc', 'benchmark_moe.documents']);
  const a = c.groups.find((g) => groupName(g.axes) === 'a/layerif')!;
  t.deepEqual(a.stats['allocate_experts.total'], { mean: 25, std: 1, n: 3 });
  t.deepEqual(a.stats['benchmark_moe.documents'], { mean: 100, std: 0, n: 3 });
  t.false('benchmark_pruned.perplexity' in a.stats);
});

function parseCsv(text: string): Array<Record<string, string>> {
  const [head, ...lines] = text.split('\n').map((l) => l.split(','));
  return lines.map((l) => Object.fromEntries(head.map((h, i) => [h, l[i]])));
}

test('csv: one line per group × metric, parses back to the same numbers', (t) => {
  for (const by of [undefined, 'task']) {
    const c = compareCells('s', sweepCells(), { by });
    const csv = formatCsv(c);
    t.is(csv.split('\n')[0], by ? 'model,allocate_experts.allocator,task,metric,mean,std,n' : 'model,task,allocate_experts.allocator,metric,mean,std,n');
    const rows = parseCsv(csv);
    t.is(rows.length, 8);
    t.false(/[*±]/.test(csv));
    for (const r of rows) {
      const want = EXPECTED[`${r.task}/${r['allocate_experts.allocator']}`][r.metric];
      const g = c.groups.find((x) => groupName(x.axes) === `${r.task}/${r['allocate_experts.allocator']}`)!.stats[r.metric];
      t.is(Number(r.mean), g.mean, 'full precision');
      t.is(Number(r.std), g.std!);
      t.true(close(Number(r.mean), want.mean) && close(Number(r.std), want.std) && Number(r.n) === want.n, JSON.stringify(r));
    }
  }
});

test('json: groups with axes, cells, seeds and mean/std/n per metric; parses back to the same numbers', (t) => {
  const c = compareCells('s', sweepCells(), { by: 'task' });
  const j = JSON.parse(formatJson(c)) as {
    sweep: string; by: string; axes: string[]; metrics: Array<{ name: string; better: string }>; cells: { total: number; withResults: number };
    groups: Array<{ axes: Record<string, AxisValue>; cells: string[]; seeds: number[]; metrics: Record<string, Stat> }>;
  };
  t.is(j.sweep, 's');
  t.is(j.by, 'task');
  t.deepEqual(j.axes, ['model', 'allocate_experts.allocator', 'task']);
  t.deepEqual(j.metrics, [{ name: 'benchmark_moe.acc', better: 'higher' }, { name: 'benchmark_pruned.perplexity', better: 'lower' }]);
  t.deepEqual(j.cells, { total: 12, withResults: 11 });
  t.is(j.groups.length, 4);
  for (const g of j.groups) {
    const name = `${g.axes.task}/${g.axes['allocate_experts.allocator']}`;
    assertStats(t, g.metrics, EXPECTED[name], name);
    t.deepEqual(g.metrics, c.groups.find((x) => groupName(x.axes) === name)!.stats);
  }
  const bl = j.groups.find((g) => g.axes.task === 'b' && g.axes['allocate_experts.allocator'] === 'layerif')!;
  t.deepEqual(bl.cells, ['model=m,task=b,allocate_experts.allocator=layerif,seed=1', 'model=m,task=b,allocate_experts.allocator=layerif,seed=2']);
  t.deepEqual(bl.seeds, [1, 2]);
});

function configError(t: import('ava').ExecutionContext, fn: () => unknown): string {
  const err = t.throws(fn, { instanceOf: ConfigError });
  return err?.message ?? '';
}

test('errors: unknown axis lists the axes, unknown metric lists the metrics, no results, ambiguous name', (t) => {
  const cells = sweepCells();
  let m = configError(t, () => compareCells('s', cells, { by: 'allocator' }));
  t.regex(m, /unknown axis "allocator" for sweep s; expected one of: model, task, allocate_experts\.allocator, seed$/);
  t.throws(() => resolveAxis('stages.task', ['task'], 's'), { instanceOf: ConfigError });

  m = configError(t, () => compareCells('s', cells, { metrics: ['benchmark_moe.acc', 'benchmark_moe.accuracy'] }));
  t.regex(m, /unknown metric "benchmark_moe\.accuracy" in sweep s/);
  for (const name of ['allocate_experts.total', 'benchmark_moe.acc', 'benchmark_moe.documents', 'benchmark_pruned.perplexity']) t.true(m.includes(name), name);

  const unfinished = cells.map((c) => ({ ...c, stages: Object.fromEntries(Object.entries(c.stages).map(([k, s]) => [k, { key: s.key, metrics: {} }])), headline: {} }));
  m = configError(t, () => compareCells('s', unfinished));
  t.regex(m, /sweep s has no finished cells yet: none of its 12 cells has a stage result/);

  const noHeadline = cells.map((c) => ({ ...c, headline: {} }));
  m = configError(t, () => compareCells('s', noHeadline));
  t.regex(m, /no headline metrics yet; choose some with --metric <stage>\.<metric>; available: allocate_experts\.total, benchmark_moe\.acc/);

  const two = [cell({ task: 'a', seed: 1 }, { benchmark_moe: { acc: 0.5 }, benchmark_pruned: { acc: 0.4 } })];
  m = configError(t, () => compareCells('s', two, { metrics: ['acc'] }));
  t.is(m, 'metric "acc" is ambiguous in sweep s; expected one of: benchmark_moe.acc, benchmark_pruned.acc');
});

test('compareUrl: MLflow compare-runs route; the UI reads the run and experiment ids back', (t) => {
  const url = compareUrl('http://127.0.0.1:5000/', ['7'], ['abc123', 'def456']);
  t.is(url, 'http://127.0.0.1:5000/#/compare-runs?runs=[%22abc123%22,%22def456%22]&experiments=[%227%22]');
  // What MLflow's compare page does with location.search: decode, split, JSON.parse.
  const q = new URLSearchParams(new URL(url).hash.replace(/^#\/compare-runs/, ''));
  t.deepEqual(JSON.parse(q.get('runs')!), ['abc123', 'def456']);
  t.deepEqual(JSON.parse(q.get('experiments')!), ['7']);
  t.deepEqual(JSON.parse(decodeURIComponent(new URL(url).hash).match(/runs=(\[.*?\])/)![1]), ['abc123', 'def456']);
});

const run = (id: string, tags: Record<string, string>, start = 0, lifecycle = 'active'): MlflowRun => ({
  info: { run_id: id, experiment_id: '1', status: 'FINISHED', start_time: start, artifact_uri: '', lifecycle_stage: lifecycle },
  data: { tags: Object.entries(tags).map(([key, value]) => ({ key, value })) },
});

test('pickParentRuns: the cell-tagged run without a parent; current run key first, else the latest', (t) => {
  const runs = [
    run('stage-a', { 'layerflow.cell': 'A', 'mlflow.parentRunId': 'p-a' }, 50),
    run('p-a-old', { 'layerflow.cell': 'A', 'layerflow.run_key': 's/A/old' }, 10),
    run('p-a', { 'layerflow.cell': 'A', 'layerflow.run_key': 's/A/cur' }, 5),
    run('p-b-1', { 'layerflow.cell': 'B', 'layerflow.run_key': 's/B/x' }, 1),
    run('p-b-2', { 'layerflow.cell': 'B', 'layerflow.run_key': 's/B/y' }, 2),
    run('p-c-deleted', { 'layerflow.cell': 'C' }, 9, 'deleted'),
    run('other', {}, 3),
  ];
  const got = pickParentRuns(runs, [{ cellId: 'A', runKey: 's/A/cur' }, { cellId: 'B', runKey: 's/B/z' }, { cellId: 'C' }, { cellId: 'D' }]);
  t.deepEqual([...got], [['A', 'p-a'], ['B', 'p-b-2']]);
});

test('table(): left labels, right-aligned numbers, column groups widened to their label', (t) => {
  const text = table([['k', 'x', 'y']], [['a', '1', '22']], { left: 1, groups: [{ label: '', span: 1 }, { label: 'a long group', span: 2 }] });
  t.deepEqual(text.split('\n'), ['     a long group', '  k  x          y', '  ─  ─  ─────────', '  a  1         22']);
  t.is(table(['h1', 'h2', 'n'], [['a', 'b', '1']]), ['  h1  h2  n', '  ──  ──  ─', '  a   b   1'].join('\n'));
});

test('a comparison without seeds or varying axes still renders', (t) => {
  const c: Comparison = compareCells('s', [cell({ model: 'm' }, { benchmark_moe: { acc: 0.5 } })]);
  const text = formatTable(c);
  t.regex(text, /\(all\)\s+0\.500/);
  t.regex(text, /nothing to rank/);
});

test('mlflowLink: the compare URL of the cells\' parent runs, or why there is none (never throws)', async (t) => {
  const plan = { sweep: 's', cells: [{ cellId: 'A', cellKey: 'ka' }, { cellId: 'B', cellKey: 'kb' }] } as unknown as SweepPlan;
  const fake = (over: Partial<Record<'health' | 'getExperimentByName' | 'searchRuns', unknown>>) =>
    ({
      health: async () => true,
      getExperimentByName: async () => ({ experiment_id: '4', name: 's', lifecycle_stage: 'active' }),
      searchRuns: async () => [run('ra', { 'layerflow.cell': 'A', 'layerflow.run_key': 's/A/ka' }), run('rb', { 'layerflow.cell': 'B' })],
      ...over,
    }) as unknown as MlflowClient;
  t.deepEqual(await mlflowLink('http://m:5000', plan, ['A', 'B'], fake({})), { url: compareUrl('http://m:5000', ['4'], ['ra', 'rb']), runs: 2, missing: 0 });
  t.deepEqual(await mlflowLink('http://m:5000', plan, ['A', 'B', 'C'], fake({})), { url: compareUrl('http://m:5000', ['4'], ['ra', 'rb']), runs: 2, missing: 1 });
  t.deepEqual(await mlflowLink('http://m:5000', plan, ['A'], fake({ health: async () => false })), { reason: 'MLflow at http://m:5000 is not reachable' });
  t.deepEqual(await mlflowLink('http://m:5000', plan, ['A'], fake({ getExperimentByName: async () => undefined })), { reason: 'MLflow at http://m:5000 has no experiment "s"' });
  t.deepEqual(await mlflowLink('http://m:5000', plan, ['A'], fake({ searchRuns: async () => [] })), { reason: 'no parent run of these cells in MLflow experiment "s"' });
  const broken = await mlflowLink('http://m:5000', plan, ['A'], fake({ searchRuns: async () => { throw new Error('boom'); } }));
  t.deepEqual(broken, { reason: 'MLflow at http://m:5000: boom' });
  // A real client on a closed port: unreachable, quickly, without throwing.
  t.true('reason' in (await mlflowLink('http://127.0.0.1:9', plan, ['A'])));
});

test('descriptive metrics (realised sparsity, counts) are never ranked', (t) => {
  t.is(better('allocate_sparsity.realised'), 'none');
  t.is(better('prune.realised_mean'), 'none');
  t.is(better('benchmark_pruned.perplexity'), 'lower');
  t.is(better('benchmark_moe.acc'), 'higher');
  t.deepEqual(bestOf([0.5, 0.6], 'none'), []);
});
