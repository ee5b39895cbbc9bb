/**
 * A sweep's results as data: every cell with its axes and, per stage, the metrics of the artifact
 * its key names (read from the artifact store, never recomputed). `layerflow compare`, `report`
 * and `results` read sweeps through this.
 */
import { ArtifactStore, refOf, type ArtifactRef } from '../store/artifacts.ts';
import { paths, type LayerflowEnv } from '../config/env.ts';
import type { SweepPlan } from '../config/plan.ts';
import type { AxisValue } from '../config/sweep.ts';
import { headlineMetrics } from './headline.ts';

export interface StageResultRecord {
  key: string;
  /** Undefined where the stage has no verified artifact (not run yet, failed, or missing). */
  ref?: ArtifactRef;
  metrics: Record<string, number>;
}

export interface CellRecord {
  cellId: string;
  axes: Record<string, AxisValue>;
  /** The resolved cell config, flattened (`task.id`, `stages.allocate_experts.allocator`, ...). */
  params: Record<string, string>;
  stages: Record<string, StageResultRecord>;
  /** `<stage>.<metric>` → value for the stages that finished (see headline.ts). */
  headline: Record<string, number>;
}

export interface SweepResults {
  plan: SweepPlan;
  store: ArtifactStore;
  cells: CellRecord[];
}

/** Read every cell's stage artifacts of `plan` (one lookup per distinct key). */
export async function collectResults(env: LayerflowEnv, plan: SweepPlan): Promise<SweepResults> {
  const store = new ArtifactStore(paths.store(env.home));
  const byKey = new Map<string, StageResultRecord>();
  const cells: CellRecord[] = [];
  for (const c of plan.cells) {
    const stages: Record<string, StageResultRecord> = {};
    const headline: Record<string, number> = {};
    for (const s of c.stages) {
      let rec = byKey.get(s.key);
      if (!rec) {
        const hit = await store.lookup(s.key);
        rec = hit.status === 'hit' ? { key: s.key, ref: refOf(hit.manifest), metrics: hit.manifest.metrics } : { key: s.key, metrics: {} };
        byKey.set(s.key, rec);
      }
      stages[s.name] = rec;
      Object.assign(headline, headlineMetrics(s.name, rec.metrics));
    }
    cells.push({ cellId: c.cellId, axes: c.axes, params: c.params, stages, headline });
  }
  return { plan, store, cells };
}
