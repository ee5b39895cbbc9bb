/**
 * Temporary LayerFlow homes with finished-looking sweeps for the report tests: a real plan (the
 * built-in pipelines' parseSweep + planSweep) saved as `<home>/sweeps/<name>/plan.json`, and
 * artifacts with known numbers committed directly into its artifact store under the plan's stage
 * keys — no services, no stage code. The numbers are functions of (task, seed, layer, ...) that
 * the tests recompute.
 *
 *   layerif:  tasks a, b × experts {layerif +VE, layerif TOP25, uniform} × sparsity {layerif, owl}
 *             × seeds 1, 2 (24 cells); 4 layers; layer_scores, allocate_experts,
 *             allocate_sparsity, benchmark_moe, benchmark_pruned committed
 *   ndr:      methods tracin, datainf × aggregation {mean, vote} × seeds 1, 2 (8 cells);
 *             5 layer groups × 3 aggregations; ndr and benchmark committed
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSweep } from '../../src/config/sweep.ts';
import { planSweep, type SweepPlan, type CellPlan } from '../../src/config/plan.ts';
import { resolveEnv, paths, type LayerflowEnv } from '../../src/config/env.ts';
import { writeFileAtomic } from '../../src/store/atomic.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import { builtinPipelines } from '../../pipelines/index.ts';

const defs: Record<string, PipelineDef> = Object.fromEntries(Object.entries(builtinPipelines).map(([k, v]) => [k, v.def]));

export const LAYERS = 4;
export const TASKS = ['a', 'b'];
export const SEEDS = [1, 2];

/** Known numbers of the LayerIF fixture. */
export const layerScore = (task: string, seed: number, variant: string, layer: number) => (layer + 1) * (task === 'a' ? 1 : 2) * (variant === 'TOP25' ? 0.5 : 1) + seed / 10;
export const layerifExperts = (task: string, seed: number, variant: string) => [0, 1, 2, 3].map((l) => 3 + ((l + seed + (task === 'b' ? 1 : 0) + (variant === 'TOP25' ? 2 : 0)) % 4));
export const UNIFORM_EXPERTS = [4, 4, 4, 4];
export const layerifRatios = (task: string, seed: number, variant: string) => [0, 1, 2, 3].map((l) => 0.3 + 0.1 * ((l + seed + (task === 'b' ? 2 : 0) + (variant === 'TOP25' ? 1 : 0)) % 4));
export const OWL_RATIOS = [0.45, 0.5, 0.55, 0.5];
export const moeAcc = (label: string, task: string, seed: number) => 0.5 + { 'layerif +VE': 0.1, 'layerif TOP25': 0.08, uniform: 0.02 }[label]! + (task === 'b' ? 0.05 : 0) + seed * 0.01;
export const prunedAcc = (label: string, task: string, seed: number) => 0.4 + (label.startsWith('layerif') ? 0.06 : 0) + (task === 'b' ? 0.03 : 0) + seed * 0.005;

const LAYERIF_SWEEP = `sweep: report-layerif
pipeline: layerif
models:
  - { id: m, source: smollm2-135m-instruct }
tasks:
  - { id: a, source: bigbench, name: winowhy }
  - { id: b, source: bigbench, name: strategyqa }
methods:
  - { id: datainf, influence: datainf }
axes:
  stages.allocate_experts.allocator: [layerif, uniform]
  stages.layer_scores.variant: [+VE, TOP25]
  stages.allocate_sparsity.allocator: [layerif, owl]
  seed: [1, 2]
exclude:
  - { stages.allocate_experts.allocator: uniform, stages.layer_scores.variant: TOP25 }
`;

export const NDR_GROUPS = ['WE', 'blocks 0-1', 'blocks 2-3', 'CL', 'all'];
export const NDR_AGGS = ['mean', 'rank', 'vote'];
export const NDR_LS = [10, 20, 30, 40, 50];
export const ndrAt = (method: string, seed: number, group: string, agg: string, L: number) =>
  Math.min(1, (L / 100) * (1 + NDR_GROUPS.indexOf(group) * 0.2 + NDR_AGGS.indexOf(agg) * 0.1 + (method === 'tracin' ? 0.3 : 0)) + seed / 100);

const NDR_SWEEP = `sweep: report-ndr
pipeline: ndr
models:
  - { id: m, source: smollm2-135m-instruct }
tasks:
  - { id: spam, source: spam-assassin }
methods:
  - { id: tracin, influence: tracin }
  - { id: datainf, influence: datainf }
axes:
  stages.ndr.aggregation: [mean, vote]
  seed: [1, 2]
`;

export interface Fixture {
  env: LayerflowEnv;
  plan: SweepPlan;
  store: ArtifactStore;
  /** Remove the temporary home (for t.teardown). */
  cleanup: () => Promise<void>;
}

async function planIn(home: string, yaml: string): Promise<SweepPlan> {
  const sweep = await parseSweep(join(home, 'sweep.yaml'), yaml, defs);
  const plan = planSweep(sweep, defs[sweep.pipeline]);
  await writeFileAtomic(join(paths.sweep(home, plan.sweep), 'plan.json'), JSON.stringify(plan, null, 1));
  return plan;
}

async function commitOnce(store: ArtifactStore, done: Set<string>, c: CellPlan, stage: string, files: Record<string, string>, metrics: Record<string, number>) {
  const s = c.stages.find((x) => x.name === stage)!;
  if (done.has(s.key)) return;
  done.add(s.key);
  await store.commit({ key: s.key, parts: s.parts, kind: s.kind, files, metrics });
}

async function newHome(prefix: string): Promise<{ home: string; env: LayerflowEnv; store: ArtifactStore }> {
  const home = await mkdtemp(join(tmpdir(), prefix));
  await writeFile(join(home, 'sweep.yaml'), '# see test/report/fixture.ts\n');
  const env = resolveEnv({ home }, {});
  return { home, env, store: new ArtifactStore(paths.store(home)) };
}

/** The LayerIF fixture; `skip` leaves those stages uncommitted (to test absent sections). */
export async function layerifFixture(skip: string[] = []): Promise<Fixture> {
  const { home, env, store } = await newHome('lf-report-layerif-');
  const plan = await planIn(home, LAYERIF_SWEEP);
  const done = new Set<string>();
  for (const c of plan.cells) {
    const p = c.params;
    const task = p['task.id'], seed = Number(p.seed), variant = p['stages.layer_scores.variant'];
    const ea = p['stages.allocate_experts.allocator'], sa = p['stages.allocate_sparsity.allocator'];
    const label = ea === 'layerif' ? `layerif ${variant}` : ea;
    if (!skip.includes('layer_scores') && c.stages.some((s) => s.name === 'layer_scores')) {
      const layers = Array.from({ length: LAYERS }, (_, l) => ({ layer: l, score: layerScore(task, seed, variant, l), units: [`model.layers.${l}`] }));
      await commitOnce(store, done, c, 'layer_scores', { 'layer-scores.json': JSON.stringify({ variant, grouping: 'per-block', method: 'datainf', convention: 'positive = helpful', layers }) }, { layers: LAYERS });
    }
    if (!skip.includes('allocate_experts')) {
      const experts = ea === 'layerif' ? layerifExperts(task, seed, variant) : UNIFORM_EXPERTS;
      const total = experts.reduce((a, b) => a + b, 0);
      await commitOnce(store, done, c, 'allocate_experts', { 'experts.json': JSON.stringify({ allocator: ea, total, experts, shares: experts.map((e) => e / total), alphas: null }) }, { total });
    }
    if (!skip.includes('allocate_sparsity')) {
      const ratios = sa === 'layerif' ? layerifRatios(task, seed, variant) : OWL_RATIOS;
      await commitOnce(store, done, c, 'allocate_sparsity', { 'sparsity.json': JSON.stringify({ allocator: sa, criterion: p['stages.prune.criterion'], epsilon: 0.1, target: 0.5, ratios, realised: 0.5, clipped: [], metric: null, sizes: [1, 1, 1, 1] }) }, { target: 0.5, realised: 0.5 });
    }
    if (!skip.includes('benchmark_moe')) {
      const acc = moeAcc(label, task, seed);
      await commitOnce(store, done, c, 'benchmark_moe', { 'benchmark.json': '{}' }, { acc, acc_norm: acc - 0.01, documents: 50 });
    }
    if (!skip.includes('benchmark_pruned')) {
      const acc = prunedAcc(sa === 'layerif' ? `layerif ${variant}` : sa, task, seed);
      await commitOnce(store, done, c, 'benchmark_pruned', { 'benchmark.json': '{}' }, { acc, acc_norm: acc + 0.02, perplexity: 30 + seed + (sa === 'owl' ? 2 : 0), documents: 50 });
    }
  }
  return { env, plan, store, cleanup: () => rm(env.home, { recursive: true, force: true }) };
}

/** The NDR fixture: ndr.json and benchmark metrics for every cell (`skip`: stages left out). */
export async function ndrFixture(skip: string[] = []): Promise<Fixture> {
  const { home, env, store } = await newHome('lf-report-ndr-');
  const plan = await planIn(home, NDR_SWEEP);
  const done = new Set<string>();
  for (const c of plan.cells) {
    const method = c.params['method.id'], seed = Number(c.params.seed), agg = c.params['stages.ndr.aggregation'];
    const groups = NDR_GROUPS.map((g, i) => ({
      group: g,
      units: 2,
      cancellation: g === 'WE' ? null : 1 + i / 10 + seed / 100,
      byAggregation: Object.fromEntries(NDR_AGGS.map((a) => [a, { at: Object.fromEntries(NDR_LS.map((L) => [String(L), ndrAt(method, seed, g, a, L)])), auc: 0.5 + NDR_AGGS.indexOf(a) / 20 + seed / 100, curve: [] }])),
    }));
    const ndr = { method, aggregation: agg, group: 'all', p: 0.2, Ls: NDR_LS, random: { ndr30: 0.3, auc: 0.5 }, groups };
    await commitOnce(store, done, c, 'ndr', { 'ndr.json': JSON.stringify(ndr), 'scores.json': '{}' }, { ndr30: ndrAt(method, seed, 'all', agg, 30) });
    if (!skip.includes('benchmark')) await commitOnce(store, done, c, 'benchmark', { 'benchmark.json': '{}' }, { accuracy_noisy: 0.7 + seed / 100, accuracy_retrained: 0.75 + seed / 100 + (agg === 'vote' ? 0.02 : 0), accuracy_gain: 0.05 });
  }
  return { env, plan, store, cleanup: () => rm(env.home, { recursive: true, force: true }) };
}
