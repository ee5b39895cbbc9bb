/**
 * Influence for the word-embedding (WE) unit from sparse per-sample gradients, SCIENCE.md §1–§2.
 * A sample's embedding gradient is non-zero only on the rows of the tokens it contains, so each
 * sample is stored as (sorted token ids, rows.length × D values) and the dense vocab × D gradient
 * (d_l = vocab · D) is never formed. Entry (j, k) = influence of training sample k on validation
 * sample j, layout [m × n] row-major, sign: positive = helpful — the same `InfluenceMatrix` record
 * as reference-matrix.ts, and the same numbers as it gives on the densified gradients:
 *
 *   TracIn:  V Gᵀ
 *   cosine:  (V Gᵀ) / (‖v_j‖ ‖g_k‖)   (0 where a norm is 0, as in cosine.ts)
 *   DataInf: (1/λ) [ V Gᵀ − (1/n) (V Gᵀ) diag(1/(λ+‖g_i‖²)) (G Gᵀ) ],  λ_l = 0.1 · Σ_i ‖g_i‖² / (n · vocab · D)
 *
 * Dot products merge the two sorted row lists and accumulate in float64: cost O(pairs × shared
 * rows × D) plus O(pairs × (r_a + r_b)) for the merge; the train Gram G Gᵀ (n² pairs) is computed
 * for DataInf only.
 *
 *   const we: SparseUnitGradients = { unit: 'we', layer: -1, kind: 'embedding', D, vocab, samples };
 *   const mat = sparseInfluenceMatrix({ method: 'datainf', train: we, validation: weVal });
 *   const C = sparseCancellationEffect(we);   // SCIENCE.md §4, as cancellation.ts
 *
 * Per-sample rows come from the model runner: `sparseFromRowMap(embeddingRowGrads(...), D)`.
 */
import { DataError } from '../errors.ts';
import { cosineFromParts } from './cosine.ts';
import { checkLambda, dataInfDamping } from './datainf.ts';
import type { InfluenceMatrixArgs } from './reference-matrix.ts';
import { SIGN_CONVENTION, type InfluenceMatrix } from './types.ts';

/** One sample's sparse embedding gradient: only the rows of the tokens present are stored. */
export interface SparseRowGradient {
  /** Token ids, strictly ascending (so unique), each in [0, vocab). */
  rows: Int32Array;
  /** rows.length × D values, row-major: values[r·D + p] = g[rows[r], p]. */
  values: Float32Array | Float64Array;
}

/** Sparse per-sample gradients of one embedding unit; its dense size is d_l = vocab · D. */
export interface SparseUnitGradients {
  unit: string;
  layer: number;
  kind?: 'embedding';
  /** Embedding width (values per row). */
  D: number;
  /** Number of embedding rows (token ids lie in [0, vocab)). */
  vocab: number;
  samples: SparseRowGradient[];
}

export interface SparseInfluenceMatrixArgs extends Omit<InfluenceMatrixArgs, 'train' | 'validation'> {
  train: SparseUnitGradients;
  validation: SparseUnitGradients;
}

/** Sorted sparse row gradient from a Map<tokenId, row> (e.g. models/runner.ts embeddingRowGrads). Values are stored as float32. */
export function sparseFromRowMap(map: Map<number, Float64Array | Float32Array>, D: number): SparseRowGradient {
  if (!Number.isInteger(D) || D < 1) throw new DataError(`sparse row map: D=${D}; expected an integer ≥ 1`);
  const ids = [...map.keys()].sort((a, b) => a - b);
  const rows = new Int32Array(ids.length);
  const values = new Float32Array(ids.length * D);
  for (const [r, id] of ids.entries()) {
    if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) throw new DataError(`sparse row map: token id ${id}; expected a non-negative 32-bit integer`);
    const row = map.get(id)!;
    if (row.length !== D) throw new DataError(`sparse row map: row of token ${id} has ${row.length} values; expected D=${D}`);
    rows[r] = id;
    values.set(row, r * D);
  }
  return { rows, values };
}

/** Throws DataError unless `g` is a well-formed, finite sparse unit (rows ascending, ids in range, values sized rows·D). */
export function checkSparseUnit(g: SparseUnitGradients, what: string): void {
  if (!g || typeof g !== 'object') throw new DataError(`${what}: expected a SparseUnitGradients record, got ${g}`);
  const { unit, D, vocab, samples } = g;
  if (!Number.isInteger(D) || D < 1 || !Number.isInteger(vocab) || vocab < 1 || !Number.isSafeInteger(vocab * D)) {
    throw new DataError(`${what} (unit ${unit}): D=${D}, vocab=${vocab}; expected integers ≥ 1 with vocab·D a safe integer`);
  }
  if (g.kind !== undefined && g.kind !== 'embedding') throw new DataError(`${what} (unit ${unit}): kind '${g.kind}'; expected 'embedding' or none`);
  if (!Array.isArray(samples)) throw new DataError(`${what} (unit ${unit}): samples must be an array`);
  for (const [i, s] of samples.entries()) {
    const at = `${what} (unit ${unit}), sample ${i}`;
    if (!s || !(s.rows instanceof Int32Array)) throw new DataError(`${at}: rows must be an Int32Array`);
    if (!(s.values instanceof Float32Array || s.values instanceof Float64Array)) throw new DataError(`${at}: values must be a Float32Array or Float64Array`);
    const { rows, values } = s;
    if (values.length !== rows.length * D) {
      throw new DataError(`${at}: values has ${values.length} entries; expected rows·D = ${rows.length}·${D} = ${rows.length * D}`);
    }
    for (let r = 0; r < rows.length; r++) {
      const id = rows[r];
      if (id < 0 || id >= vocab) throw new DataError(`${at}: row ${r} has token id ${id}; expected an id in [0, ${vocab})`);
      if (r > 0 && id <= rows[r - 1]) throw new DataError(`${at}: token ids not strictly ascending (rows[${r - 1}]=${rows[r - 1]}, rows[${r}]=${id}); expected sorted unique ids`);
    }
    for (let q = 0; q < values.length; q++) {
      if (!Number.isFinite(values[q])) {
        throw new DataError(`${at}: token ${rows[Math.floor(q / D)]}, column ${q % D} is ${values[q]}; expected a finite number`);
      }
    }
  }
}

/** Validate a (train, validation) pair of sparse units for a full-matrix computation. */
export function checkSparseMatrixInputs(train: SparseUnitGradients, validation: SparseUnitGradients): void {
  checkSparseUnit(train, 'training gradients');
  checkSparseUnit(validation, 'validation gradients');
  if (train.samples.length === 0) throw new DataError(`training gradients (unit ${train.unit}): empty set; expected n ≥ 1 samples`);
  if (validation.samples.length === 0) throw new DataError(`validation gradients (unit ${validation.unit}): empty set; expected m ≥ 1 samples`);
  if (train.D !== validation.D || train.vocab !== validation.vocab) {
    throw new DataError(`unit ${train.unit}: training gradients have D=${train.D}, vocab=${train.vocab}; validation gradients (unit ${validation.unit}) have D=${validation.D}, vocab=${validation.vocab}; expected equal`);
  }
}

/** a · b of two sparse rows (merge of the sorted id lists, float64 accumulation). No validation. */
export function sparseDot(a: SparseRowGradient, b: SparseRowGradient, D: number): number {
  const ra = a.rows, rb = b.rows, va = a.values, vb = b.values;
  let s = 0;
  let x = 0, y = 0;
  while (x < ra.length && y < rb.length) {
    const ia = ra[x], ib = rb[y];
    if (ia < ib) x++;
    else if (ia > ib) y++;
    else {
      const oa = x * D, ob = y * D;
      for (let p = 0; p < D; p++) s += va[oa + p] * vb[ob + p];
      x++;
      y++;
    }
  }
  return s;
}

/** ‖g‖² of a sparse row gradient (float64). */
export function sparseNormSq(g: SparseRowGradient): number {
  let s = 0;
  for (let q = 0; q < g.values.length; q++) s += g.values[q] * g.values[q];
  return s;
}

/** Full [m × n] influence matrix of a sparse (word-embedding) unit; same numbers as influenceMatrixReference on the dense gradients. */
export function sparseInfluenceMatrix({ method, train, validation, dampingScale, lambda }: SparseInfluenceMatrixArgs): InfluenceMatrix {
  checkSparseMatrixInputs(train, validation);
  const { D, vocab, samples: gs } = train;
  const vs = validation.samples;
  const n = gs.length, m = vs.length;
  const vg = new Float64Array(m * n);
  for (let j = 0; j < m; j++) for (let k = 0; k < n; k++) vg[j * n + k] = sparseDot(vs[j], gs[k], D);
  const base = { unit: train.unit, layer: train.layer, kind: train.kind, method, convention: SIGN_CONVENTION, m, n };
  if (method === 'tracin') return { ...base, data: vg };
  const gNorm = Float64Array.from(gs, sparseNormSq);
  if (method === 'cosine') {
    const vNorm = Float64Array.from(vs, sparseNormSq);
    const data = vg.map((x, idx) => cosineFromParts(x, vNorm[Math.floor(idx / n)], gNorm[idx % n]));
    return { ...base, data };
  }
  if (method !== 'datainf') throw new DataError(`unit ${train.unit}: unknown influence method '${String(method)}'; expected tracin, cosine or datainf`);
  const sum = gNorm.reduce((a, b) => a + b, 0);
  const lam = lambda !== undefined ? checkLambda(lambda, train.unit) : dataInfDamping({ sumNormSq: sum, n, d: vocab * D, scale: dampingScale, unit: train.unit });
  // Train Gram G Gᵀ (symmetric; diagonal = ‖g_i‖²).
  const gg = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    gg[i * n + i] = gNorm[i];
    for (let k = i + 1; k < n; k++) gg[i * n + k] = gg[k * n + i] = sparseDot(gs[i], gs[k], D);
  }
  const w = gNorm.map((x) => lam + x);
  const data = new Float64Array(m * n);
  for (let j = 0; j < m; j++) {
    for (let k = 0; k < n; k++) {
      let corr = 0;
      for (let i = 0; i < n; i++) corr += (vg[j * n + i] * gg[i * n + k]) / w[i];
      data[j * n + k] = (vg[j * n + k] - corr / n) / lam;
    }
  }
  return { ...base, lambda: lam, data };
}

/**
 * Cancellation effect (SCIENCE.md §4, cancellation.ts) of sparse gradients, accumulated over
 * streamed chunks with a Map over token rows: C = Σ_i Σ_p |g_{i,p}| / Σ_p |Σ_i g_{i,p}|.
 */
export class SparseCancellationAccumulator {
  private absSum = 0;
  private colSum = new Map<number, Float64Array>();
  private rows = 0;
  private D: number | undefined;
  add(chunk: SparseUnitGradients): void {
    checkSparseUnit(chunk, 'gradients');
    const { D, samples } = chunk;
    if (this.D === undefined) this.D = D;
    if (this.D !== D) throw new DataError(`gradients (unit ${chunk.unit}): chunk has D=${D}; earlier chunks had D=${this.D}`);
    for (const { rows, values } of samples) {
      for (let r = 0; r < rows.length; r++) {
        let acc = this.colSum.get(rows[r]);
        if (!acc) this.colSum.set(rows[r], (acc = new Float64Array(D)));
        for (let p = 0; p < D; p++) {
          const x = values[r * D + p];
          this.absSum += Math.abs(x);
          acc[p] += x;
        }
      }
    }
    this.rows += samples.length;
  }
  /** Numerator Σ_i Σ_p |g_{i,p}| and denominator Σ_p |Σ_i g_{i,p}|: a group of units adds both up (C of the group). */
  parts(): { numerator: number; denominator: number } {
    let den = 0;
    for (const acc of this.colSum.values()) for (const x of acc) den += Math.abs(x);
    return { numerator: this.absSum, denominator: den };
  }
  value(): number {
    if (this.rows === 0) throw new DataError('cancellation effect: no gradient rows; expected n ≥ 1');
    let den = 0;
    for (const acc of this.colSum.values()) for (const x of acc) den += Math.abs(x);
    if (!(den > 0)) throw new DataError('cancellation effect: the summed gradient is exactly zero, so C is undefined (division by 0)');
    return this.absSum / den;
  }
}

/** C for one in-memory sparse unit. */
export function sparseCancellationEffect(grads: SparseUnitGradients): number {
  const acc = new SparseCancellationAccumulator();
  acc.add(grads);
  return acc.value();
}
