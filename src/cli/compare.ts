/**
 * `layerflow compare <sweep>`: read the sweep's saved plan and results from the artifact store,
 * compare its cells (src/results/compare.ts) and, for the table, link MLflow's run comparison of
 * the cells' parent runs. MLflow being down costs the link, never the table.
 */
import type { LayerflowEnv } from '../config/env.ts';
import type { SweepPlan } from '../config/plan.ts';
import { ConfigError } from '../errors.ts';
import { collectResults } from '../results/collect.ts';
import { compareCells, compareUrl, formatCsv, formatJson, formatTable, pickParentRuns } from '../results/compare.ts';
import { MlflowClient } from '../tracking/mlflow.ts';
import { savedPlan } from './sweeps.ts';

export const FORMATS = ['table', 'csv', 'json'] as const;
export type CompareFormat = (typeof FORMATS)[number];

export interface CompareCommandOptions {
  by?: string;
  metric?: string[];
  format?: string;
}

/** The command's whole output. */
export async function compareCommand(env: LayerflowEnv, sweep: string, o: CompareCommandOptions = {}): Promise<string> {
  const format = (o.format ?? 'table') as CompareFormat;
  if (!FORMATS.includes(format)) throw new ConfigError(`unknown format "${o.format}"; expected one of: ${FORMATS.join(', ')}`);
  const plan = await savedPlan(env, sweep);
  const { cells } = await collectResults(env, plan);
  const cmp = compareCells(plan.sweep, cells, { by: o.by, metrics: o.metric });
  if (format === 'csv') return formatCsv(cmp);
  if (format === 'json') return formatJson(cmp);
  const cellIds = cmp.groups.flatMap((g) => g.cells);
  const link = await mlflowLink(env.mlflowUri, plan, cellIds);
  return `${formatTable(cmp)}\n${'url' in link ? `MLflow comparison of these ${link.runs} run(s): ${link.url}${link.missing ? ` (${link.missing} cell(s) have no MLflow run yet)` : ''}` : `MLflow comparison: unavailable (${link.reason})`}`;
}

/** The MLflow compare URL of the parent runs of `cellIds`, or why there is none. Never throws. */
export async function mlflowLink(
  mlflowUri: string,
  plan: SweepPlan,
  cellIds: string[],
  client = new MlflowClient(mlflowUri, 5000),
): Promise<{ url: string; runs: number; missing: number } | { reason: string }> {
  try {
    if (!(await client.health())) return { reason: `MLflow at ${mlflowUri} is not reachable` };
    const exp = await client.getExperimentByName(plan.sweep);
    if (!exp) return { reason: `MLflow at ${mlflowUri} has no experiment "${plan.sweep}"` };
    const runs = await client.searchRuns({ experimentIds: [exp.experiment_id], filter: `tags.\`layerflow.sweep\` = '${plan.sweep.replace(/'/g, "\\'")}'` });
    const keyOf = new Map(plan.cells.map((c) => [c.cellId, `${plan.sweep}/${c.cellId}/${c.cellKey}`]));
    const parents = pickParentRuns(runs, cellIds.map((cellId) => ({ cellId, runKey: keyOf.get(cellId) })));
    if (!parents.size) return { reason: `no parent run of these cells in MLflow experiment "${plan.sweep}"` };
    const ids = cellIds.flatMap((c) => (parents.has(c) ? [parents.get(c)!] : []));
    return { url: compareUrl(mlflowUri, [exp.experiment_id], ids), runs: ids.length, missing: cellIds.length - ids.length };
  } catch (err) {
    return { reason: `MLflow at ${mlflowUri}: ${(err as Error).message}` };
  }
}
