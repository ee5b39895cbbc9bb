/**
 * Planning the LayerIF DAG: which stages a cell runs (`targets`) and what keys them (`uses`: the
 * allocators that ignore the layer scores are keyed without them, so cells share them).
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSweep } from '../../src/config/sweep.ts';
import { planSweep, planCell, type CellPlan } from '../../src/config/plan.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import { builtinPipelines } from '../../pipelines/index.ts';

const defs: Record<string, PipelineDef> = Object.fromEntries(Object.entries(builtinPipelines).map(([k, v]) => [k, v.def]));

const SWEEP = `sweep: plan-test
pipeline: layerif
models:
  - { id: m, source: smollm2-135m-instruct }
tasks:
  - { id: a, source: bigbench, name: winowhy }
  - { id: b, source: bigbench, name: strategyqa }
methods:
  - { id: datainf, influence: datainf }
axes:
  stages.allocate_experts.allocator: [layerif, alphalora, uniform]
  stages.allocate_sparsity.allocator: [layerif, owl]
  seed: [1, 2]
`;

async function plan(t: ExecutionContext, yaml: string) {
  const dir = await mkdtemp(join(tmpdir(), 'lf-plan-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const sweep = await parseSweep(join(dir, 'sweep.yaml'), yaml, defs);
  return { sweep, plan: planSweep(sweep, defs.layerif) };
}
const stage = (c: CellPlan, name: string) => c.stages.find((s) => s.name === name);
const keysOf = (cells: CellPlan[], name: string) => new Set(cells.map((c) => stage(c, name)?.key));

test('allocators that ignore the layer scores are keyed without them and start at once', async (t) => {
  const { plan: p } = await plan(t, SWEEP);
  const by = (alloc: string) => p.cells.filter((c) => c.params['stages.allocate_experts.allocator'] === alloc);
  // LayerIF: one allocation per task × seed (its layer scores differ).
  t.is(keysOf(by('layerif'), 'allocate_experts').size, 4);
  t.deepEqual(stage(by('layerif')[0], 'allocate_experts')!.needs, ['layer_scores']);
  // AlphaLoRA and uniform read only the model: one allocation each across tasks and seeds.
  t.is(keysOf(by('alphalora'), 'allocate_experts').size, 1);
  t.is(keysOf(by('uniform'), 'allocate_experts').size, 1);
  t.deepEqual(stage(by('uniform')[0], 'allocate_experts')!.needs, []);
  t.deepEqual(stage(by('uniform')[0], 'allocate_experts')!.parts.upstream, {});
  // ...but what follows still reads the task × seed's training split.
  t.is(keysOf(by('uniform'), 'moe_finetune').size, 4);
  // Sparsity: OWL is keyed by the model (and criterion, S) only; the pruned model is shared too.
  const owl = p.cells.filter((c) => c.params['stages.allocate_sparsity.allocator'] === 'owl');
  t.is(keysOf(owl, 'allocate_sparsity').size, 1);
  t.is(keysOf(owl, 'prune').size, 1);
  t.is(keysOf(owl, 'benchmark_pruned').size, 4);
  const lif = p.cells.filter((c) => c.params['stages.allocate_sparsity.allocator'] === 'layerif');
  t.is(keysOf(lif, 'prune').size, 4);
});

test('targets keep only the named stages and what they need', async (t) => {
  const { sweep, plan: p } = await plan(t, `${SWEEP}targets: [benchmark_moe]\n`);
  t.deepEqual(sweep.targets, ['benchmark_moe']);
  const names = (c: CellPlan) => c.stages.map((s) => s.name);
  const lif = p.cells.find((c) => c.params['stages.allocate_experts.allocator'] === 'layerif')!;
  t.deepEqual(names(lif), ['data', 'finetune', 'gradients', 'influence', 'layer_scores', 'allocate_experts', 'moe_finetune', 'benchmark_moe']);
  // Uniform experts need no influence at all.
  const uni = p.cells.find((c) => c.params['stages.allocate_experts.allocator'] === 'uniform')!;
  t.deepEqual(names(uni), ['data', 'allocate_experts', 'moe_finetune', 'benchmark_moe']);
  // Same keys as without targets: a targeted sweep shares its artifacts with a full one.
  const full = (await plan(t, SWEEP)).plan.cells.find((c) => c.cellId === lif.cellId)!;
  t.is(stage(full, 'benchmark_moe')!.key, stage(lif, 'benchmark_moe')!.key);
});

test('an unknown target is a typed error naming the field and the stages', async (t) => {
  const err = await t.throwsAsync(plan(t, `${SWEEP}targets: [benchmark]\n`), { instanceOf: SweepConfigError });
  t.is(err!.issues[0].field, 'targets[0]');
  t.regex(err!.issues[0].message, /benchmark_moe/);
  t.is(err!.issues[0].line, 14);
});

test('a stage that uses a need it does not declare is refused', async (t) => {
  const { sweep } = await plan(t, SWEEP);
  const def: PipelineDef = { ...defs.layerif, stages: defs.layerif.stages.map((s) => (s.name === 'prune' ? { ...s, uses: () => ['influence'] } : s)) };
  t.throws(() => planCell('s', sweep.cells[0], def), { message: /stage prune uses influence, which it does not declare in needs/ });
});
