/**
 * `layerflow compare`: a sweep's cells × metrics, as data and as text. Cells that agree on every
 * axis but `seed` form a group (mean ± sample std over its seeds); `--by AXIS` pivots that axis'
 * values into column groups. Pure functions, no I/O: the command glue is src/cli/compare.ts.
 */
import { ConfigError } from '../errors.ts';
import type { AxisValue } from '../config/sweep.ts';
import type { MlflowRun } from '../tracking/mlflow.ts';
import type { CellRecord } from './collect.ts';
import { decimalsFor, mean, std, table } from './stats.ts';

/** Which way a metric is better: perplexity and losses lower, everything else higher. */
/** Which way a metric improves; 'none' for descriptive quantities (realised sparsity, counts), never ranked. */
export type Better = 'higher' | 'lower' | 'none';

export function better(metric: string): Better {
  const name = metric.slice(metric.indexOf('.') + 1);
  if (/^(realised|realised_mean|target|documents|steps|samples|shards|units|m|n|min_ratio|max_ratio|total|min_experts|max_experts|clipped)$/.test(name)) return 'none';
  return /(^|[._-])(perplexity|loss)($|[._-])/.test(name) ? 'lower' : 'higher';
}

/** One group × metric: mean, sample std (null below two values) and how many cells gave a value. */
export interface Stat {
  mean: number;
  std: number | null;
  n: number;
}

/** Cells agreeing on every axis but `seed`. */
export interface Group {
  /** Every axis but `seed` (kept with `--by seed`), full names (`stages.allocate_experts.allocator`). */
  axes: Record<string, AxisValue>;
  /** The cells of the group that have a value for at least one compared metric. */
  cells: string[];
  seeds: AxisValue[];
  /** Per compared metric that at least one of the cells has. */
  stats: Record<string, Stat>;
}

export interface CompareRow {
  /** The row axes' values (every axis but `seed` and the `--by` axis). */
  axes: Record<string, AxisValue>;
  /** Per value of the `--by` axis (one entry without `--by`): the group, if any cell of it has results. */
  groups: Array<Group | undefined>;
}

export interface CompareColumn {
  metric: string;
  /** Index into `byValues` (0 without `--by`). */
  by: number;
  better: Better;
  /** Rows with the best mean in this column (ties share it; see bestOf); with `rankedAcross: 'by'`, [0] where this column is its metric's best. */
  best: number[];
}

export interface Comparison {
  sweep: string;
  /** Every axis of the sweep (full names), in the sweep's order. */
  axes: string[];
  /** The `--by` axis (full name), if any. */
  by?: string;
  byValues: AxisValue[];
  /** Row axes: every axis but `seed` and `by`. */
  rowAxes: string[];
  metrics: string[];
  groups: Group[];
  rows: CompareRow[];
  columns: CompareColumn[];
  /** What `best` ranks: the rows of each column, or (one row pivoted by an axis) each metric's columns. */
  rankedAcross: 'rows' | 'by';
  /** Cells in the sweep, and cells with at least one compared metric. */
  cellCount: number;
  cellsWithResults: number;
}

/** An axis' name as cell ids spell it: without the `stages.` prefix. */
export const shortAxis = (axis: string): string => axis.replace(/^stages\./, '');

const SEED = 'seed';

/** The sweep axis named `name` (short or full form); ConfigError listing the sweep's axes otherwise. */
export function resolveAxis(name: string, axes: string[], sweep: string): string {
  const hit = axes.find((a) => a === name || shortAxis(a) === name || a === `stages.${name}`);
  if (hit) return hit;
  throw new ConfigError(`unknown axis "${name}" for sweep ${sweep}; expected one of: ${axes.map(shortAxis).join(', ')}`);
}

/** Every `<stage>.<metric>` with a finite value in some cell, in first-seen order. */
export function availableMetrics(cells: CellRecord[]): string[] {
  const seen = new Set<string>();
  for (const c of cells) {
    for (const k of Object.keys(c.headline)) seen.add(k);
    for (const [stage, rec] of Object.entries(c.stages)) for (const [m, v] of Object.entries(rec.metrics)) if (Number.isFinite(v)) seen.add(`${stage}.${m}`);
  }
  return [...seen];
}

/** The headline metrics some cell has, in first-seen order. */
export function headlineColumns(cells: CellRecord[]): string[] {
  return [...new Set(cells.flatMap((c) => Object.keys(c.headline)))];
}

/**
 * The metrics to compare: the headline ones by default, else each requested name (repeatable,
 * or comma-separated) as `<stage>.<metric>` or, where only one stage has it, a bare metric name.
 */
export function resolveMetrics(requested: string[] | undefined, cells: CellRecord[], sweep: string): string[] {
  const available = availableMetrics(cells);
  const names = [...new Set((requested ?? []).flatMap((r) => r.split(',')).map((r) => r.trim()).filter(Boolean))];
  if (!names.length) {
    const head = headlineColumns(cells);
    if (head.length) return head;
    throw new ConfigError(`sweep ${sweep} has no headline metrics yet; choose some with --metric <stage>.<metric>; available: ${available.join(', ')}`);
  }
  const set = new Set(available);
  return [...new Set(names.map((n) => {
    if (set.has(n)) return n;
    const bySuffix = available.filter((a) => a.endsWith(`.${n}`));
    if (bySuffix.length === 1) return bySuffix[0];
    if (bySuffix.length > 1) throw new ConfigError(`metric "${n}" is ambiguous in sweep ${sweep}; expected one of: ${bySuffix.join(', ')}`);
    throw new ConfigError(`unknown metric "${n}" in sweep ${sweep}; expected <stage>.<metric>, one of: ${available.join(', ')}`);
  }))];
}

/** A cell's value of `<stage>.<metric>`, if finite. */
export function metricValue(cell: CellRecord, metric: string): number | undefined {
  const v = cell.headline[metric] ?? cell.stages[metric.slice(0, metric.indexOf('.'))]?.metrics[metric.slice(metric.indexOf('.') + 1)];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Mean, sample std (null below two values) and n of some values. */
export function stat(values: number[]): Stat {
  return { mean: mean(values), std: values.length < 2 ? null : std(values), n: values.length };
}

/**
 * Indexes of the best of some means (`undefined` = no value): the highest or lowest, ties (equal up
 * to rounding) sharing it; none when fewer than two have a value or when all of them tie.
 */
export function bestOf(means: Array<number | undefined>, dir: Better): number[] {
  const present = means.filter((m): m is number => m !== undefined);
  if (present.length < 2 || dir === 'none') return [];
  const top = dir === 'higher' ? Math.max(...present) : Math.min(...present);
  const best = means.flatMap((m, i) => (m !== undefined && Math.abs(m - top) <= 1e-12 * Math.max(1, Math.abs(top)) ? [i] : []));
  return best.length === present.length ? [] : best;
}

const keyOf = (axes: string[], values: Record<string, AxisValue>) => JSON.stringify(axes.map((a) => values[a] ?? null));

/**
 * Group `cells` (all of a sweep's cells) over every axis but `seed`, aggregate `metrics` (default:
 * the headline ones) and lay the groups out as rows × (metric × `by` value) columns.
 * Throws ConfigError for an unknown axis or metric and for a sweep without results.
 */
export function compareCells(sweep: string, cells: CellRecord[], opts: { by?: string; metrics?: string[] } = {}): Comparison {
  const axes = [...new Set(cells.flatMap((c) => Object.keys(c.axes)))];
  const by = opts.by === undefined ? undefined : resolveAxis(opts.by, axes, sweep);
  const finished = cells.filter((c) => Object.keys(c.headline).length || Object.values(c.stages).some((s) => s.ref));
  if (!finished.length) throw new ConfigError(`sweep ${sweep} has no finished cells yet: none of its ${cells.length} cells has a stage result in the store; see \`layerflow status ${sweep}\``);
  const metrics = resolveMetrics(opts.metrics, cells, sweep);
  // Seeds are averaged, unless the comparison is pivoted by them (`--by seed`: one column per seed).
  const groupAxes = axes.filter((a) => a !== SEED || a === by);
  const rowAxes = groupAxes.filter((a) => a !== by);

  const groups = new Map<string, Group & { values: Record<string, number[]> }>();
  for (const c of cells) {
    const vals = metrics.map((m) => [m, metricValue(c, m)] as const).filter((x): x is readonly [string, number] => x[1] !== undefined);
    if (!vals.length) continue;
    const k = keyOf(groupAxes, c.axes);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { axes: Object.fromEntries(groupAxes.map((a) => [a, c.axes[a]])), cells: [], seeds: [], stats: {}, values: {} }));
    g.cells.push(c.cellId);
    if (c.axes[SEED] !== undefined) g.seeds.push(c.axes[SEED]);
    for (const [m, v] of vals) (g.values[m] ??= []).push(v);
  }
  const all = [...groups.values()].map(({ values, ...g }) => ({ ...g, stats: Object.fromEntries(metrics.filter((m) => values[m]).map((m) => [m, stat(values[m])])) }));

  const byValues = by === undefined ? [] : [...new Set(cells.map((c) => c.axes[by]))].filter((v) => all.some((g) => g.axes[by] === v));
  const rowMap = new Map<string, CompareRow>();
  for (const g of all) {
    const k = keyOf(rowAxes, g.axes);
    let r = rowMap.get(k);
    if (!r) rowMap.set(k, (r = { axes: Object.fromEntries(rowAxes.map((a) => [a, g.axes[a]])), groups: new Array(Math.max(1, byValues.length)).fill(undefined) }));
    r.groups[by === undefined ? 0 : byValues.indexOf(g.axes[by])] = g;
  }
  const rows = [...rowMap.values()];
  const meanOf = (r: CompareRow, metric: string, b: number) => r.groups[b]?.stats[metric]?.mean;
  const columns: CompareColumn[] = metrics.flatMap((metric) =>
    Array.from({ length: Math.max(1, byValues.length) }, (_, b) => ({ metric, by: b, better: better(metric), best: bestOf(rows.map((r) => meanOf(r, metric, b)), better(metric)) })),
  ).filter((col) => rows.some((r) => r.groups[col.by]?.stats[col.metric]));
  // One row pivoted: nothing to rank down a column, so each metric's entries are ranked across its `by` values.
  const rankedAcross = by !== undefined && rows.length === 1 ? 'by' : 'rows';
  if (rankedAcross === 'by')
    for (const metric of metrics) {
      const cols = columns.filter((c) => c.metric === metric);
      const best = bestOf(cols.map((c) => meanOf(rows[0], metric, c.by)), better(metric));
      cols.forEach((c, i) => (c.best = best.includes(i) ? [0] : []));
    }
  return { sweep, axes, by, byValues, rowAxes, metrics, groups: all, rows, columns, rankedAcross, cellCount: cells.length, cellsWithResults: all.reduce((a, g) => a + g.cells.length, 0) };
}

const list = (xs: AxisValue[]) => xs.map(String).join(', ');

/** `mean±std` with the column's decimals; `—` without a value. */
function entry(s: Stat | undefined, decimals: number): string {
  if (!s) return '—';
  return `${s.mean.toFixed(decimals)}${s.std === null ? '' : `±${s.std.toFixed(decimals)}`}`;
}

/**
 * The terminal table: a title (sweep, cells with results, fixed axes), the table with `*` after
 * each column's best entry, and a legend saying which way each metric is better.
 */
export function formatTable(c: Comparison): string {
  const varying = c.rowAxes.filter((a) => new Set(c.rows.map((r) => JSON.stringify(r.axes[a]))).size > 1);
  const fixed = c.rowAxes.filter((a) => !varying.includes(a) && c.rows.length).map((a) => `${shortAxis(a)}=${c.rows[0].axes[a]}`);
  const labels = varying.length ? varying : [''];
  const decimals = c.columns.map((col) => decimalsFor(Math.max(0, ...c.rows.map((r) => Math.abs(r.groups[col.by]?.stats[col.metric]?.mean ?? 0)))));
  const marked = c.columns.some((col) => col.best.length);
  const body = c.rows.map((r, i) => [
    ...(varying.length ? varying.map((a) => String(r.axes[a])) : ['(all)']),
    ...c.columns.map((col, j) => `${entry(r.groups[col.by]?.stats[col.metric], decimals[j])}${marked ? (col.best.includes(i) ? '*' : ' ') : ''}`),
  ]);
  const head = labels.map(shortAxis);
  const seeds = [...new Set(c.groups.flatMap((g) => g.seeds))];
  const ns = c.groups.flatMap((g) => Object.values(g.stats).map((s) => s.n));
  const nMin = Math.min(...ns), nMax = Math.max(...ns);
  const title = [
    `sweep ${c.sweep}: ${c.cellsWithResults} of ${c.cellCount} cells have results; ${c.rows.length} row(s)${c.by ? `, columns metric × ${shortAxis(c.by)}` : ''}`,
    c.by === SEED ? '; one column per seed, nothing averaged' : seeds.length > 1 ? `; mean±std over seeds ${list(seeds)} (${nMin === nMax ? `n=${nMin} per entry` : `n=${nMin}–${nMax} per entry: some seeds have no result`})` : seeds.length ? `; seed ${seeds[0]}` : '',
    fixed.length ? `; fixed: ${fixed.join(', ')}` : '',
  ].join('');
  const text = c.by
    ? table(
        [...head, ...c.columns.map((col) => String(c.byValues[col.by]) + (marked ? ' ' : ''))],
        body,
        { left: labels.length, groups: [{ label: '', span: labels.length }, ...c.metrics.filter((m) => c.columns.some((col) => col.metric === m)).map((m) => ({ label: m, span: c.columns.filter((col) => col.metric === m).length }))] },
      )
    : table([...head, ...c.columns.map((col) => col.metric + (marked ? ' ' : ''))], body, { left: labels.length });
  const lower = c.metrics.filter((m) => better(m) === 'lower');
  const unranked = c.metrics.filter((m) => better(m) === 'none');
  const legend = (marked
    ? `* best ${c.rankedAcross === 'by' ? `of its metric's ${shortAxis(c.by!)} values` : 'in its column'}: higher is better${lower.length ? `, except ${lower.join(', ')} (lower is better)` : ''}`
    : 'nothing to rank: no column has two different entries') + (unranked.length ? `; not ranked (descriptive): ${unranked.join(', ')}` : '');
  return [title, text, legend].join('\n');
}

const csvField = (v: string) => (/[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/**
 * One line per group × metric: the non-seed axes (short names; the `--by` axis last), metric,
 * mean, std (empty below two values), n, at full precision. No decorations.
 */
export function formatCsv(c: Comparison): string {
  const axes = [...c.rowAxes, ...(c.by ? [c.by] : [])];
  const lines = [[...axes.map(shortAxis), 'metric', 'mean', 'std', 'n'].map(csvField).join(',')];
  for (const r of c.rows)
    for (const col of c.columns) {
      const g = r.groups[col.by];
      const s = g?.stats[col.metric];
      if (!g || !s) continue;
      lines.push([...axes.map((a) => String(g.axes[a])), col.metric, String(s.mean), s.std === null ? '' : String(s.std), String(s.n)].map(csvField).join(','));
    }
  return lines.join('\n');
}

/** Machine-readable form: the groups with their axes (short names), cells, seeds and per-metric mean, std, n. */
export function toJson(c: Comparison) {
  const axes = [...c.rowAxes, ...(c.by ? [c.by] : [])];
  return {
    sweep: c.sweep,
    by: c.by ? shortAxis(c.by) : null,
    axes: axes.map(shortAxis),
    metrics: c.metrics.map((name) => ({ name, better: better(name) })),
    cells: { total: c.cellCount, withResults: c.cellsWithResults },
    groups: c.rows.flatMap((r) => r.groups.filter((g): g is Group => g !== undefined)).map((g) => ({
      axes: Object.fromEntries(axes.map((a) => [shortAxis(a), g.axes[a]])),
      cells: g.cells,
      seeds: g.seeds,
      metrics: g.stats,
    })),
  };
}

export const formatJson = (c: Comparison): string => JSON.stringify(toJson(c), null, 2);

/** The tag keys publish.ts sets on MLflow runs. */
const TAG_CELL = 'layerflow.cell';
const TAG_RUN_KEY = 'layerflow.run_key';
const TAG_PARENT = 'mlflow.parentRunId';

/**
 * Each cell's parent run among an experiment's runs: tagged `layerflow.cell` = the cell id, with no
 * `mlflow.parentRunId`, not deleted. Where a cell has several (its config changed between runs),
 * the one whose run key matches the cell's current key wins, else the latest.
 */
export function pickParentRuns(runs: MlflowRun[], cells: Array<{ cellId: string; runKey?: string }>): Map<string, string> {
  const tags = (r: MlflowRun) => new Map((r.data.tags ?? []).map((t) => [t.key, t.value]));
  const byCell = new Map<string, Array<{ run: MlflowRun; tags: Map<string, string> }>>();
  for (const run of runs) {
    const t = tags(run);
    const cell = t.get(TAG_CELL);
    if (cell === undefined || t.has(TAG_PARENT) || run.info.lifecycle_stage === 'deleted') continue;
    byCell.set(cell, [...(byCell.get(cell) ?? []), { run, tags: t }]);
  }
  const out = new Map<string, string>();
  for (const c of cells) {
    const cands = byCell.get(c.cellId);
    if (!cands?.length) continue;
    const exact = c.runKey === undefined ? undefined : cands.find((x) => x.tags.get(TAG_RUN_KEY) === c.runKey);
    const pick = exact ?? [...cands].sort((a, b) => (b.run.info.start_time ?? 0) - (a.run.info.start_time ?? 0))[0];
    out.set(c.cellId, pick.run.info.run_id);
  }
  return out;
}

/**
 * MLflow's run-comparison page for these runs: `<uri>/#/compare-runs?runs=[…]&experiments=[…]`
 * (the route MLflow's own UI builds; quotes percent-encoded, which the UI decodes before parsing).
 */
export function compareUrl(mlflowUri: string, experimentIds: string[], runIds: string[]): string {
  // Brackets and commas stay readable (`[%22a%22,%22b%22]`); quotes are encoded so terminals keep the link whole.
  const enc = (xs: string[]) => encodeURIComponent(JSON.stringify(xs)).replace(/%5B/g, '[').replace(/%5D/g, ']').replace(/%2C/g, ',');
  return `${mlflowUri.replace(/\/+$/, '')}/#/compare-runs?runs=${enc(runIds)}&experiments=${enc(experimentIds)}`;
}
