/**
 * Shared record types for influence computations (SCIENCE.md §1–§2).
 * Plain data only, so the ONNX implementation (full-matrix.ts) and activities can reuse them.
 */
import { DataError } from '../errors.ts';

/** Sign convention of every influence score: positive = helpful (SCIENCE.md §2, "Sign"). */
export const SIGN_CONVENTION = 'positive=helpful' as const;
export type SignConvention = typeof SIGN_CONVENTION;

export type InfluenceMethod = 'tracin' | 'cosine' | 'datainf';

/** How the validation gradients are reduced to one vector for LayerIF (SCIENCE.md §2, last bullet). */
export type ValidationReduction = 'mean' | 'sum';

/** Kind of unit; `block` units belong to transformer block `layer` (SCIENCE.md §1, §4 layer groups). */
export type UnitKind = 'block' | 'embedding' | 'classifier';

/** Identity of one influence unit (one LoRA tensor, the classifier head, or the word embedding). */
export interface UnitRef {
  unit: string;
  /** Transformer block index for `block` units; for embedding/classifier any number (ignored by groups). */
  layer: number;
  kind?: UnitKind;
}

/**
 * Per-sample gradients of one unit: an [n × d] row-major matrix, row i = flattened g_{l,i}.
 * A shard of rows uses the same record with `rowOffset` (index of its first row in the full set).
 */
export interface UnitGradients extends UnitRef {
  n: number;
  d: number;
  data: Float32Array | Float64Array;
  rowOffset?: number;
  /**
   * Each row's ‖g_i‖² when already known (an unprojected F32 gradient store keeps them): the engine then
   * uses them instead of a norm pass over the rows — cosine's denominators, DataInf's 1/(λ + ‖g_i‖²)
   * weights and λ. They must be the norms of these rows (see gradient-store.ts rowNormsOfStoredRows).
   */
  normSq?: Float64Array;
}

/** One score per training sample for one unit, against the reduced validation gradient. */
export interface UnitInfluence extends UnitRef {
  method: InfluenceMethod;
  convention: SignConvention;
  validation: ValidationReduction;
  /** DataInf damping λ_l (undefined for TracIn / cosine). */
  lambda?: number;
  /** Length n: I_l(k) for each training sample k. */
  scores: Float64Array;
}

/** Full influence matrix of one unit: [m × n] row-major, entry (j, k) = influence of train k on validation j. */
export interface InfluenceMatrix extends UnitRef {
  method: InfluenceMethod;
  convention: SignConvention;
  m: number;
  n: number;
  lambda?: number;
  data: Float64Array;
}

/** Shape-only validation of a UnitGradients record (no scan of the values). */
export function checkUnitShape(g: UnitGradients, what: string): void {
  if (!g || typeof g !== 'object') throw new DataError(`${what}: expected a UnitGradients record, got ${g}`);
  if (!Number.isInteger(g.n) || !Number.isInteger(g.d) || g.n < 0 || g.d < 1) {
    throw new DataError(`${what} (unit ${g.unit}): n=${g.n}, d=${g.d}; expected integer n ≥ 0 and d ≥ 1`);
  }
  if (!(g.data instanceof Float32Array || g.data instanceof Float64Array)) {
    throw new DataError(`${what} (unit ${g.unit}): data must be a Float32Array or Float64Array`);
  }
  if (g.data.length !== g.n * g.d) {
    throw new DataError(`${what} (unit ${g.unit}): data has ${g.data.length} values; expected n·d = ${g.n}·${g.d} = ${g.n * g.d}`);
  }
  if (g.normSq !== undefined) {
    if (!(g.normSq instanceof Float64Array) || g.normSq.length !== g.n) throw new DataError(`${what} (unit ${g.unit}): normSq has ${g.normSq?.length} values; expected a Float64Array of n = ${g.n}`);
    for (let i = 0; i < g.n; i++) {
      if (!(Number.isFinite(g.normSq[i]) && g.normSq[i] >= 0)) throw new DataError(`${what} (unit ${g.unit}): normSq of row ${i + (g.rowOffset ?? 0)} is ${g.normSq[i]}; expected a finite number ≥ 0`);
    }
  }
}

/** Throws DataError unless `g` is a well-formed, finite [n × d] gradient matrix. */
export function checkUnitGradients(g: UnitGradients, what: string): void {
  checkUnitShape(g, what);
  for (let i = 0; i < g.data.length; i++) {
    if (!Number.isFinite(g.data[i])) {
      throw new DataError(`${what} (unit ${g.unit}): row ${Math.floor(i / g.d) + (g.rowOffset ?? 0)}, column ${i % g.d} is ${g.data[i]}; expected a finite number`);
    }
  }
}
