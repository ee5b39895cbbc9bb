/**
 * Streaming influence over gradient shards (SCIENCE.md §2 "Cost"; DESIGN.md contract 4).
 *
 * A shard is a list of row chunks, one `UnitGradients` per unit (rows `rowOffset …
 * rowOffset+n−1` of that unit). The full n×d matrix is never held: memory is O(n + d) per unit.
 * The source is a factory so it can be read several times (e.g. re-reading shard files).
 *
 * Passes over the training shards:
 *  - TracIn, cosine: 1 pass (v·g_k and ‖g_k‖²).
 *  - DataInf with λ given: 2 passes. Pass 1: v·g_i, ‖g_i‖² and r = Σ_i (v·g_i)/(λ+‖g_i‖²) g_i;
 *    pass 2: r·g_k.
 *  - DataInf with the default data-dependent λ: 3 passes. λ needs Σ‖g_i‖² over *all* rows
 *    before r can be accumulated, and r must be complete before any r·g_k, so
 *    pass 1: v·g_i, ‖g_i‖² (scalars only) → λ; pass 2: r; pass 3: r·g_k.
 *    (Pass 1 can be skipped by passing λ, e.g. from norms cached with the gradients.)
 */
import { DataError } from '../errors.ts';
import { cosineFromParts } from './cosine.ts';
import { checkLambda, dataInfDamping } from './datainf.ts';
import {
  checkUnitGradients, SIGN_CONVENTION,
  type InfluenceMethod, type UnitGradients, type UnitInfluence, type UnitRef, type ValidationReduction,
} from './types.ts';
import { addScaledRow, dot, rowDot, rowNormSq } from './vector.ts';

/** One shard: row chunks of one or more units. */
export type GradientShard = UnitGradients | UnitGradients[];
/** Re-iterable source of shards (sync or async). */
export type GradientSource = () => Iterable<GradientShard> | AsyncIterable<GradientShard>;

interface UnitState extends UnitRef {
  d: number;
  rows: number;
  vg: number[];
  normSq: number[];
  sumNormSq: number;
}

async function forEachChunk(source: GradientSource, what: string, fn: (chunk: UnitGradients, row0: number) => void): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for await (const shard of source()) {
    for (const chunk of Array.isArray(shard) ? shard : [shard]) {
      checkUnitGradients(chunk, what);
      const row0 = seen.get(chunk.unit) ?? 0;
      if (chunk.rowOffset !== undefined && chunk.rowOffset !== row0) {
        throw new DataError(`${what} (unit ${chunk.unit}): shard starts at row ${chunk.rowOffset}; expected row ${row0} (shards must be contiguous and in order)`);
      }
      fn(chunk, row0);
      seen.set(chunk.unit, row0 + chunk.n);
    }
  }
  return seen;
}

/**
 * Reduce streamed validation gradients to one vector per unit (sum or mean over the m rows).
 */
export async function reduceValidationStream(source: GradientSource, reduction: ValidationReduction = 'mean'): Promise<Map<string, Float64Array>> {
  const acc = new Map<string, Float64Array>();
  const counts = await forEachChunk(source, 'validation gradients', (chunk) => {
    let v = acc.get(chunk.unit);
    if (!v) acc.set(chunk.unit, (v = new Float64Array(chunk.d)));
    if (v.length !== chunk.d) throw new DataError(`validation gradients (unit ${chunk.unit}): shard has d=${chunk.d}; earlier shards had d=${v.length}`);
    for (let j = 0; j < chunk.n; j++) addScaledRow(v, chunk.data, j, chunk.d, 1);
  });
  for (const [unit, v] of acc) {
    const m = counts.get(unit) ?? 0;
    if (m === 0) throw new DataError(`validation gradients (unit ${unit}): empty set; expected m ≥ 1 samples`);
    if (reduction === 'mean') for (let p = 0; p < v.length; p++) v[p] /= m;
  }
  return acc;
}

export interface StreamingInfluenceArgs {
  method: InfluenceMethod;
  train: GradientSource;
  /** Reduced validation gradient per unit (see `reduceValidationStream`). */
  validation: Map<string, Float64Array>;
  /** Recorded in the results; the vectors in `validation` must already be reduced this way. */
  reduction?: ValidationReduction;
  dampingScale?: number;
  /** Explicit DataInf λ per unit (saves one pass). */
  lambda?: Record<string, number>;
}

/** Influence scores for every unit found in the training shards, one value per sample (SCIENCE.md §2). */
export async function streamingInfluence(args: StreamingInfluenceArgs): Promise<UnitInfluence[]> {
  const { method, train, validation, reduction = 'mean', dampingScale, lambda } = args;
  const states = new Map<string, UnitState>();
  const vectorFor = (chunk: UnitGradients): Float64Array => {
    const v = validation.get(chunk.unit);
    if (!v) throw new DataError(`training gradients (unit ${chunk.unit}): no validation gradient for this unit; expected one of [${[...validation.keys()].join(', ')}]`);
    if (v.length !== chunk.d) throw new DataError(`unit ${chunk.unit}: validation gradient has ${v.length} values; training shard has d=${chunk.d}`);
    return v;
  };
  const knownLambda = method === 'datainf' && lambda !== undefined;
  const rAcc = new Map<string, Float64Array>();

  // Pass 1: per-row scalars (and r when λ is known).
  await forEachChunk(train, 'training gradients', (chunk) => {
    const v = vectorFor(chunk);
    let st = states.get(chunk.unit);
    if (!st) {
      st = { unit: chunk.unit, layer: chunk.layer, kind: chunk.kind, d: chunk.d, rows: 0, vg: [], normSq: [], sumNormSq: 0 };
      states.set(chunk.unit, st);
    }
    if (st.d !== chunk.d) throw new DataError(`training gradients (unit ${chunk.unit}): shard has d=${chunk.d}; earlier shards had d=${st.d}`);
    let r: Float64Array | undefined;
    let lam = 0;
    if (knownLambda) {
      lam = checkLambda(lambda![chunk.unit], chunk.unit);
      r = rAcc.get(chunk.unit) ?? new Float64Array(chunk.d);
      rAcc.set(chunk.unit, r);
    }
    for (let i = 0; i < chunk.n; i++) {
      const vg = rowDot(chunk.data, i, chunk.d, v);
      const ns = rowNormSq(chunk.data, i, chunk.d);
      st.vg.push(vg);
      st.normSq.push(ns);
      st.sumNormSq += ns;
      if (r) addScaledRow(r, chunk.data, i, chunk.d, vg / (lam + ns));
    }
    st.rows += chunk.n;
  });
  if (states.size === 0) throw new DataError('training gradients: the shard source yielded no rows; expected n ≥ 1 samples');
  for (const st of states.values()) if (st.rows === 0) throw new DataError(`training gradients (unit ${st.unit}): empty set; expected n ≥ 1 samples`);

  const result = (st: UnitState, scores: Float64Array, lam?: number): UnitInfluence => ({
    unit: st.unit, layer: st.layer, kind: st.kind, method, convention: SIGN_CONVENTION, validation: reduction,
    ...(lam !== undefined ? { lambda: lam } : {}), scores,
  });

  if (method === 'tracin') return [...states.values()].map((st) => result(st, Float64Array.from(st.vg)));
  if (method === 'cosine') {
    return [...states.values()].map((st) => {
      const v = validation.get(st.unit)!;
      const vv = dot(v, v);
      return result(st, Float64Array.from(st.vg, (vg, k) => cosineFromParts(vg, vv, st.normSq[k])));
    });
  }

  // DataInf.
  const lams = new Map<string, number>();
  for (const st of states.values()) {
    lams.set(st.unit, knownLambda
      ? lambda![st.unit]
      : dataInfDamping({ sumNormSq: st.sumNormSq, n: st.rows, d: st.d, scale: dampingScale, unit: st.unit }));
  }
  const checkSameRows = (counts: Map<string, number>, pass: string) => {
    for (const st of states.values()) {
      if (counts.get(st.unit) !== st.rows) throw new DataError(`training gradients (unit ${st.unit}): ${pass} saw ${counts.get(st.unit) ?? 0} rows; pass 1 saw ${st.rows} (the source must yield the same shards every time)`);
    }
  };
  if (!knownLambda) {
    const counts = await forEachChunk(train, 'training gradients', (chunk, row0) => {
      const st = states.get(chunk.unit)!;
      const lam = lams.get(chunk.unit)!;
      let r = rAcc.get(chunk.unit);
      if (!r) rAcc.set(chunk.unit, (r = new Float64Array(st.d)));
      for (let i = 0; i < chunk.n; i++) addScaledRow(r, chunk.data, i, chunk.d, st.vg[row0 + i] / (lam + st.normSq[row0 + i]));
    });
    checkSameRows(counts, 'pass 2 (r)');
  }
  const scores = new Map<string, Float64Array>();
  const counts = await forEachChunk(train, 'training gradients', (chunk, row0) => {
    const st = states.get(chunk.unit)!;
    const lam = lams.get(chunk.unit)!;
    const r = rAcc.get(chunk.unit)!;
    let s = scores.get(chunk.unit);
    if (!s) scores.set(chunk.unit, (s = new Float64Array(st.rows)));
    for (let i = 0; i < chunk.n; i++) {
      const k = row0 + i;
      s[k] = (st.vg[k] - rowDot(chunk.data, i, chunk.d, r) / st.rows) / lam;
    }
  });
  checkSameRows(counts, 'final pass (r·g_k)');
  return [...states.values()].map((st) => result(st, scores.get(st.unit)!, lams.get(st.unit)));
}
