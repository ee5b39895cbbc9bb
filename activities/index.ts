import { createStageActivities, type StageActivityDeps } from './stage.ts';
import { createTrackingActivities } from './tracking.ts';

export function createActivities(deps: StageActivityDeps) {
  return { ...createStageActivities(deps), ...createTrackingActivities(deps) };
}

export type Activities = ReturnType<typeof createActivities>;
export type { RunStageInput, StageOutcome, LedgerLine } from './stage.ts';
export type { RecordCellInput } from './tracking.ts';
