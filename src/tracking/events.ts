/** Tracking events: what LayerFlow tells MLflow, kept on disk until MLflow has taken them. */

interface EventBase {
  sweep: string;
  cellId: string;
  /** Identity of the cell's configuration (hash of its stage keys): one parent run per (sweep, cell, cellKey). */
  cellKey: string;
  /** The resolved cell config flattened (parent run params). */
  cellParams: Record<string, string>;
  /** The cell's axis values (parent run tags `layerflow.axis.<axis>`). */
  cellAxes?: Record<string, string | number | boolean>;
  /** Pipeline name (experiment description and tag). */
  pipeline?: string;
  gitCommit?: string;
  time: number;
}

export interface CellEvent extends EventBase {
  type: 'cell';
  status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED';
}

export interface StageEvent extends EventBase {
  type: 'stage';
  stage: string;
  key: string;
  cached: boolean;
  status: 'FINISHED' | 'FAILED';
  startTime: number;
  /** The stage's config slice flattened (nested run params). */
  params: Record<string, string>;
  metrics: Record<string, number>;
  /** Metric series: name → values by step (training loss per step, NDR@30 per layer index). */
  series?: Record<string, number[]>;
  error?: string;
  /** Small files uploaded as artifacts of the nested run (e.g. the manifest). */
  artifacts?: Record<string, string>;
  /** Files of the stage's artifact (key `key`) to upload from the store at delivery time. */
  storeFiles?: string[];
}

export type TrackingEvent = CellEvent | StageEvent;
