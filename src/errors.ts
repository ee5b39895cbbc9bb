/**
 * Typed errors shared by every part of LayerFlow.
 * `retryable` tells Temporal activities whether a retry can help (DESIGN.md contract 6).
 */
export abstract class LayerflowError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A sweep file or stage configuration is wrong. Never retried. */
export class ConfigError extends LayerflowError {
  readonly code = 'BAD_CONFIG';
  readonly retryable = false;
}

/** Input data is wrong: shapes, NaN/Inf, empty sets, out-of-range values. Never retried. */
export class DataError extends LayerflowError {
  readonly code = 'BAD_DATA';
  readonly retryable = false;
}

/** An artifact a stage needs does not exist or failed verification. */
export class MissingArtifactError extends LayerflowError {
  readonly code = 'MISSING_ARTIFACT';
  readonly retryable = false;
}

/** A transient fault: a service is down, a worker was lost. Retried with backoff. */
export class TransientError extends LayerflowError {
  readonly code = 'TRANSIENT';
  readonly retryable = true;
}

/**
 * A device ran out of memory: an ONNX Runtime allocation failure ("Failed to allocate memory",
 * `bad_alloc`, CUDA out of memory), a JS buffer that could not be allocated, or the device's memory
 * budget (LAYERFLOW_DEVICE_MEMORY_MB) exceeded. Retryable: the cell workflow retries the stage with
 * a halved micro-batch (DESIGN.md contract 6), then on another device, before giving up.
 */
export class OutOfMemoryError extends LayerflowError {
  readonly code = 'OUT_OF_MEMORY';
  readonly retryable = true;
}

/** Throws DataError when any value is NaN or ±Inf. `what` names the array in the message. */
export function assertFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new DataError(`${what}: element ${i} is ${v}; expected a finite number`);
  }
}
