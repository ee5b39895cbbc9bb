/**
 * LayerIF (SCIENCE.md §3): task-specific layer quality from per-layer influence, used two ways.
 *
 *   data ─► finetune ─► gradients ─► influence ─► layer_scores ─┬► allocate_experts ─► moe_finetune ─► benchmark_moe
 *     │                                                          └► allocate_sparsity ─► prune ───────► benchmark_pruned
 *     └► benchmark_base   (the base model zero-shot: the tables' dense / not fine-tuned reference row)
 *
 * The first four stages are the NDR pipeline's own definitions (same objects, so the same cache
 * keys: a LayerIF sweep after an NDR sweep on the same model and task reuses their artifacts).
 * A task is BIG-bench (or JSONL in its shape), multiple choice or generative: fine-tuning and
 * gradients use the gold answer's tokens; the benchmarks score the held-out documents zero-shot by
 * option log-likelihood (acc, acc_norm) or by greedy generation (exact match); the three benchmark
 * stages are one implementation (activities/benchmark-choice.ts), so their numbers compare.
 * `benchmark_base` reads only the data split and the model: one per model × task × seed, shared by
 * every allocation row (a sweep with `targets:` lists it to get the reference row).
 * Changing β or S re-keys only the allocation stage it belongs to and what follows it. AlphaLoRA,
 * MoLA, OWL, AlphaPruning and uniform do not read the layer scores, so their allocations (and the
 * models trained or pruned with them) are shared across tasks, seeds and score variants where
 * their own inputs agree; a sweep's `targets: [benchmark_moe]` runs only the MoE branch.
 */
import { z } from 'zod';
import type { PipelineDef, StageDef } from '../src/config/pipeline.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { ndrDef, ndrPipeline } from './ndr.ts';
import { layer_scores, LayerScoreSettings } from '../activities/layer-scores.ts';
import { InfluenceSettings } from '../activities/influence.ts';
import { allocate_experts, ExpertSettings } from '../activities/experts.ts';
import { moe_finetune, MoeSettings } from '../activities/moe.ts';
import { allocate_sparsity, SparsitySettings } from '../activities/sparsity.ts';
import { prune, PruneSettings } from '../activities/prune.ts';
import { benchmarkChoice, ChoiceBenchmarkSettings } from '../activities/benchmark-choice.ts';

const shared = (name: string): StageDef => ndrDef.stages.find((s) => s.name === name)!;
const device = { device: true, heartbeatMs: 5 * 60_000, timeoutMs: 6 * 3600_000 } as const;
const host = { device: false, heartbeatMs: 5 * 60_000, timeoutMs: 3600_000 } as const;
const schema = (s: z.ZodType) => s as unknown as z.ZodType<Record<string, unknown>>;

/** Only the LayerIF allocators read the layer scores: the others are keyed (and shared) without them. */
const scoresIfLayerIf = (s: Record<string, unknown>): string[] => (s.allocator === 'layerif' ? ['layer_scores'] : []);

export const layerifStages: StageDef[] = [
  // The NDR pipeline's influence stage refuses `validation: mean` (ndr reads the matrix); here it is the point.
  shared('data'), shared('finetune'), shared('gradients'), { ...shared('influence'), settings: schema(InfluenceSettings) },
  { name: 'layer_scores',      version: 1, kind: 'layer-scores', needs: ['influence'],                 reads: [],                                  ...host,   settings: schema(LayerScoreSettings) },
  { name: 'allocate_experts',  version: 1, kind: 'experts',      needs: ['layer_scores'],              reads: ['model'],                           ...device, settings: schema(ExpertSettings), uses: scoresIfLayerIf },
  { name: 'moe_finetune',      version: 1, kind: 'adapter',      needs: ['data', 'allocate_experts'],  reads: ['model', 'seed'],                   ...device, settings: schema(MoeSettings) },
  { name: 'benchmark_moe',     version: 1, kind: 'benchmark',    needs: ['data', 'moe_finetune'],      reads: ['model'],                           ...device, settings: schema(ChoiceBenchmarkSettings) },
  { name: 'allocate_sparsity', version: 1, kind: 'sparsity',     needs: ['layer_scores'],              reads: ['model', 'stages.prune.criterion'], ...device, settings: schema(SparsitySettings), uses: scoresIfLayerIf },
  { name: 'prune',             version: 1, kind: 'model',        needs: ['allocate_sparsity'],         reads: ['model'],                           ...device, settings: schema(PruneSettings) },
  { name: 'benchmark_pruned',  version: 1, kind: 'benchmark',    needs: ['data', 'prune'],             reads: ['model'],                           ...device, settings: schema(ChoiceBenchmarkSettings) },
  // Last in the list: adding it changes no other stage's key (a key is its own slice + its needs' keys).
  { name: 'benchmark_base',    version: 1, kind: 'benchmark',    needs: ['data'],                      reads: ['model'],                           ...device, settings: schema(ChoiceBenchmarkSettings) },
];

export const layerifDef: PipelineDef = {
  name: 'layerif',
  description: 'LayerIF: data → finetune → gradients → influence → layer_scores → (allocate_experts → moe_finetune → benchmark_moe | allocate_sparsity → prune → benchmark_pruned); data → benchmark_base (base model reference)',
  model: ndrDef.model,
  task: ndrDef.task,
  method: ndrDef.method,
  inputFiles: ndrDef.inputFiles,
  stages: layerifStages,
};

export const layerifPipeline: { def: PipelineDef; stages: Record<string, StageImpl> } = {
  def: layerifDef,
  stages: {
    data: ndrPipeline.stages.data, finetune: ndrPipeline.stages.finetune, gradients: ndrPipeline.stages.gradients, influence: ndrPipeline.stages.influence,
    layer_scores, allocate_experts, moe_finetune, benchmark_moe: benchmarkChoice, allocate_sparsity, prune, benchmark_pruned: benchmarkChoice, benchmark_base: benchmarkChoice,
  },
};
