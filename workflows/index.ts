export { sweepWorkflow, sweepStateQuery } from './sweep.ts';
export { experimentWorkflow, cellStateQuery } from './experiment.ts';
