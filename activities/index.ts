import { paths } from '../src/config/env.ts';
import { setSessionCacheDir } from '../src/runtime/session-cache.ts';
import { createStageActivities, type StageActivityDeps } from './stage.ts';
import { createTrackingActivities } from './tracking.ts';
import { createDeviceActivities, type TaskQueueService } from './devices.ts';

export interface ActivityDeps extends StageActivityDeps {
  /** Temporal's WorkflowService and namespace, for the device queues' pollers and backlog. */
  taskQueues?: { service: TaskQueueService; namespace: string };
}

export function createActivities(deps: ActivityDeps) {
  // Every worker process makes its activities here: its stage sessions reuse optimised models.
  setSessionCacheDir(paths.ortCache(deps.home));
  return {
    ...createStageActivities(deps),
    ...createTrackingActivities(deps),
    ...createDeviceActivities({ home: deps.home, service: deps.taskQueues?.service, namespace: deps.taskQueues?.namespace }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { RunStageInput, StageOutcome, LedgerLine, StageHints, OomDetails, ResolveCachedInput, LoadCellPlanInput } from './stage.ts';
export type { DevicePresenceInput } from './devices.ts';
export type { RecordCellInput } from './tracking.ts';
