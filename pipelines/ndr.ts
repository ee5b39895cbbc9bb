/**
 * NDR (SCIENCE.md §4, "First is Not Really Better Than Last"):
 *
 *   data ─► finetune ─► gradients ─► influence ─► ndr ─► retrain ─► benchmark
 *
 * One cell = model × task × method × seed. `data`, `finetune` and `gradients` read no method, so
 * one gradient store serves every influence method; `ndr` reads only its own settings (aggregation,
 * group), so changing the aggregation re-runs `ndr`, `retrain` and `benchmark` only.
 */
import { z } from 'zod';
import type { PipelineDef, StageDef } from '../src/config/pipeline.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { data, DataSettings } from '../activities/data.ts';
import { finetune, FinetuneSettings } from '../activities/finetune.ts';
import { gradients, GradientSettings } from '../activities/gradients.ts';
import { influence, InfluenceSettings, MethodEntry } from '../activities/influence.ts';
import { ndr, NdrSettings } from '../activities/ndr.ts';
import { retrain, RetrainSettings } from '../activities/retrain.ts';
import { benchmark, BenchmarkSettings } from '../activities/benchmark.ts';
import { ModelEntry } from '../activities/shared.ts';
import { TaskEntryFields } from '../src/data/task.ts';

// Heartbeat timeouts are generous: on a 2-core machine a host-side stage shares the CPU with a
// device stage's ONNX threads and can go a minute between heartbeats.
const device = { device: true, heartbeatMs: 5 * 60_000, timeoutMs: 6 * 3600_000 } as const;
const host = { device: false, heartbeatMs: 5 * 60_000, timeoutMs: 3600_000 } as const;

export const ndrStages: StageDef[] = [
  { name: 'data',      version: 1, kind: 'dataset',   needs: [],                                            reads: ['task', 'seed'],  ...host, settings: DataSettings },
  { name: 'finetune',  version: 1, kind: 'adapter',   needs: ['data'],                                      reads: ['model', 'seed'], ...device, settings: FinetuneSettings },
  { name: 'gradients', version: 1, kind: 'gradients', needs: ['data', 'finetune'],                          reads: ['model'],         ...device, settings: GradientSettings },
  { name: 'influence', version: 1, kind: 'scores',    needs: ['gradients'],                                 reads: ['method'],        ...device, settings: InfluenceSettings.refine((x) => x.validation !== 'mean', { message: 'the ndr stage reads one row per influence sample: expected validation each (or absent); mean is for LayerIF (the layerif pipeline)', path: ['validation'] }) },
  { name: 'ndr',       version: 1, kind: 'ndr',       needs: ['data', 'finetune', 'gradients', 'influence'], reads: [],               ...host, settings: NdrSettings },
  { name: 'retrain',   version: 1, kind: 'adapter',   needs: ['data', 'finetune', 'ndr'],                   reads: ['model', 'seed'], ...device, settings: RetrainSettings },
  { name: 'benchmark', version: 1, kind: 'benchmark', needs: ['data', 'finetune', 'retrain'],               reads: ['model'],         ...device, settings: BenchmarkSettings },
].map((s) => ({ ...s, settings: s.settings as unknown as z.ZodType<Record<string, unknown>> }));

export const ndrDef: PipelineDef = {
  name: 'ndr',
  description: 'NDR: data → finetune → gradients → influence → ndr → retrain → benchmark',
  model: ModelEntry,
  task: TaskEntryFields,
  method: MethodEntry,
  inputFiles: ['model.path', 'task.path'],
  stages: ndrStages,
};

export const ndrPipeline: { def: PipelineDef; stages: Record<string, StageImpl> } = {
  def: ndrDef,
  stages: { data, finetune, gradients, influence, ndr, retrain, benchmark },
};
