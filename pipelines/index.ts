/**
 * Registered pipelines: the declarative DAG (def) and the stage implementations (stages).
 * `demo` is the file-transform pipeline that proves the orchestrator until the LayerIF and
 * NDR pipelines land; it lives under test/ (issue 2, item 8).
 */
import type { PipelineDef } from '../src/config/pipeline.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { filesPipeline, filesStages } from '../test/pipeline/files-pipeline.ts';

export interface PipelineModule {
  def: PipelineDef;
  stages: Record<string, StageImpl>;
}

export const pipelineModules: Record<string, PipelineModule> = {
  demo: { def: filesPipeline, stages: filesStages },
};

export const pipelineDefs: Record<string, PipelineDef> = Object.fromEntries(
  Object.entries(pipelineModules).map(([k, m]) => [k, m.def]),
);
