/**
 * Registered pipelines: the declarative DAG (def) and the stage implementations (stages).
 * Built in: `ndr` (SCIENCE.md §4) and `layerif` (§3). More come from plug-in modules named in LAYERFLOW_PIPELINES
 * (comma-separated paths to .ts/.js files, each exporting `pipeline: PipelineModule`): that is how
 * a researcher adds a pipeline without editing LayerFlow, and how the tests register their
 * file-transform pipeline (test/pipeline/files-pipeline.ts). Product code never imports test/.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PipelineDef } from '../src/config/pipeline.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { ConfigError } from '../src/errors.ts';
import { ndrPipeline } from './ndr.ts';
import { layerifPipeline } from './layerif.ts';

export interface PipelineModule {
  def: PipelineDef;
  stages: Record<string, StageImpl>;
}

export const builtinPipelines: Record<string, PipelineModule> = {
  ndr: ndrPipeline,
  layerif: layerifPipeline,
};

const loaded = new Map<string, Promise<Record<string, PipelineModule>>>();

/** Built-in pipelines plus the plug-ins named in `LAYERFLOW_PIPELINES` (loaded once per list). */
export function loadPipelines(env: NodeJS.ProcessEnv = process.env): Promise<Record<string, PipelineModule>> {
  const list = (env.LAYERFLOW_PIPELINES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const id = list.join(',');
  let p = loaded.get(id);
  if (!p) {
    p = (async () => {
      const out: Record<string, PipelineModule> = { ...builtinPipelines };
      for (const file of list) {
        let mod: { pipeline?: PipelineModule };
        try {
          mod = (await import(pathToFileURL(resolve(file)).href)) as { pipeline?: PipelineModule };
        } catch (err) {
          throw new ConfigError(`LAYERFLOW_PIPELINES: cannot load ${file} (${(err as Error).message})`, { cause: err });
        }
        const m = mod.pipeline;
        if (!m?.def?.name || !m.stages) throw new ConfigError(`LAYERFLOW_PIPELINES: ${file} does not export \`pipeline: { def, stages }\``);
        if (out[m.def.name] && out[m.def.name] !== m) throw new ConfigError(`LAYERFLOW_PIPELINES: ${file} registers pipeline "${m.def.name}", which is already registered`);
        for (const s of m.def.stages) if (!m.stages[s.name]) throw new ConfigError(`pipeline ${m.def.name} (${file}): stage ${s.name} has no implementation`);
        out[m.def.name] = m;
      }
      return out;
    })();
    p.catch(() => loaded.delete(id));
    loaded.set(id, p);
  }
  return p;
}

export async function loadPipelineDefs(env: NodeJS.ProcessEnv = process.env): Promise<Record<string, PipelineDef>> {
  return Object.fromEntries(Object.entries(await loadPipelines(env)).map(([k, m]) => [k, m.def]));
}
