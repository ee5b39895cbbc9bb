/**
 * Registers the tests' file-transform pipeline (test/pipeline/files-pipeline.ts) as a plug-in, the
 * way a researcher registers their own: LAYERFLOW_PIPELINES. Child processes (the CLI) inherit it.
 */
import { fileURLToPath } from 'node:url';
import { loadPipelineDefs, loadPipelines } from '../../pipelines/index.ts';

export const DEMO_PIPELINE_FILE = fileURLToPath(new URL('../pipeline/files-pipeline.ts', import.meta.url));

export function registerTestPipelines(): void {
  const list = (process.env.LAYERFLOW_PIPELINES ?? '').split(',').filter(Boolean);
  if (!list.includes(DEMO_PIPELINE_FILE)) process.env.LAYERFLOW_PIPELINES = [...list, DEMO_PIPELINE_FILE].join(',');
}

registerTestPipelines();

export { loadPipelineDefs, loadPipelines };
