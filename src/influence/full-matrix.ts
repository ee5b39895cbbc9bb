/**
 * Full [m × n] influence matrix per unit, and the mean-gradient scores, as ONNX graphs run through
 * src/runtime on the engine's device (`cpu:N` or `cuda:N`), SCIENCE.md §2:
 *
 *   TracIn:  V Gᵀ
 *   cosine:  (V Gᵀ) / (‖v_j‖ ‖g_k‖)            (0 where a norm is 0, as in cosine.ts)
 *   DataInf: (1/λ) [ V Gᵀ − (1/n) (V Gᵀ) diag(1/(λ+‖g_i‖²)) (G Gᵀ) ],  λ_l = 0.1 · Σ_i‖g_i‖² / (n·d)
 *
 * Entry (j, k) = influence of training sample k on validation sample j; sign: positive = helpful
 * (`convention: 'positive=helpful'` in every result). Plain-TS reference: reference-matrix.ts.
 *
 *   const engine = createInfluenceEngine({ device: 'cpu:0', precision: 'float32' });
 *   const mat = await engine.influenceMatrix({ method: 'datainf', train, validation });
 *   const mats = await engine.influenceMatrixStream({ method: 'datainf', train: shards, validation: [valQ, valV] });
 *   const scores = await engine.influenceScores({ method: 'datainf', train, validation }); // mean-gradient path
 *   await engine.release();
 *
 * Graphs (full-matrix-graphs.ts) have symbolic dims m, n, d: each is built and its session created
 * once per (graph kind, precision) on first use and reused for every unit and shape.
 *
 * Memory (elements of the engine precision unless noted; m = validation rows, n = training rows,
 * d = unit size, b = rows of the largest shard chunk):
 *  - `influenceMatrix` (in memory, one graph run): inputs m·d + n·d; ORT temporaries m·n (V Gᵀ, W)
 *    plus m·d (`projection`) or n² (`gram`); result m·n float64.
 *  - `influenceMatrixStream` / `blockRows`: per unit V and R (2·m·d), V Gᵀ blocks (m·n), one chunk
 *    (b·d) and its m·b products; result m·n float64 (+ m·n of 1/λ-scaled blocks for DataInf).
 *    n·d is never held: O(m·d + m·n + b·d) per unit, summed over the units of one call (call per unit
 *    subset to bound it further; the source is re-read per call).
 * Passes over the shards: TracIn/cosine 1; DataInf with λ given 2 (V Gᵀ and R = W G; then R Gᵀ);
 * DataInf with the default λ 3 (λ needs Σ‖g_i‖² of all rows before W is known).
 *
 * Finiteness: instead of scanning n·d entries in JavaScript up front, the host checks the outputs
 * (the m·n result, and the n squared row norms that cosine and DataInf compute anyway): a NaN/Inf
 * gradient entry makes them non-finite. Only then are the inputs scanned, to name row and column
 * (DataError, as checkUnitGradients); if the inputs are finite, the error reports overflow in the
 * engine precision.
 *
 * Speed: bench/influence.ts, results and analysis in bench/README.md (on 2 CPU cores the one-run
 * paths are at NumPy/OpenBLAS parity: the full matrix is GEMM-bound, and row norms run as a batched
 * MatMul, see rowNormSq in full-matrix-graphs.ts; the ONNX paths are 13–32× faster than the plain-TS
 * functions).
 */
import { ConfigError, DataError } from '../errors.ts';
import { createSession, parseDevice, type HostArray, type HostTensor, type Session } from '../runtime/index.ts';
import { cosineFromParts } from './cosine.ts';
import { checkLambda, dataInfDamping, DEFAULT_DAMPING_SCALE } from './datainf.ts';
import {
  buildBlockAccumulateGraph, buildBlockFinishGraph, buildBlockProjectGraph, buildFullMatrixGraph, buildMeanScoresGraph, buildRowNormsGraph,
  correctionCost, type Association, type Precision,
} from './full-matrix-graphs.ts';
import type { GradientShard, GradientSource } from './streaming.ts';
import { checkMatrixInputs } from './reference-matrix.ts';
import {
  checkUnitGradients, checkUnitShape, SIGN_CONVENTION, type InfluenceMatrix, type InfluenceMethod, type UnitGradients, type UnitInfluence, type UnitRef,
  type ValidationReduction,
} from './types.ts';

export type { Association, Precision } from './full-matrix-graphs.ts';
export { correctionCost } from './full-matrix-graphs.ts';

export interface InfluenceEngineOptions {
  /** `cpu:N` or `cuda:N` (the same device as the model). */
  device: string;
  /** CPU intra-op threads (default: all cores). */
  threads?: number;
  /** Compute precision of the graphs (default float32, like the gradients); inputs are converted if needed. */
  precision?: Precision;
}

export interface FullMatrixArgs {
  method: InfluenceMethod;
  /** Training gradients [n × d] of one unit. */
  train: UnitGradients;
  /** Validation gradients [m × d] of the same unit. */
  validation: UnitGradients;
  /** DataInf: multiplier of the mean squared gradient entry in λ (default 0.1). */
  dampingScale?: number;
  /** DataInf: use this λ instead of the data-dependent default. */
  lambda?: number;
  /** DataInf correction association (default `auto`: the cheaper by multiply-adds, see correctionCost). */
  association?: Association | 'auto';
  /** Stream `train` through the block graphs in chunks of this many rows (bounds device memory). */
  blockRows?: number;
}

export interface MatrixStreamArgs {
  method: InfluenceMethod;
  /** Re-iterable shards of training gradients (streaming.ts format: chunks of one or more units, rows in order). */
  train: GradientSource;
  /** Validation gradients [m_l × d_l], one record per unit (matched to training chunks by `unit`). */
  validation: readonly UnitGradients[];
  dampingScale?: number;
  /** Explicit DataInf λ per unit (saves one pass). */
  lambda?: Record<string, number>;
}

export interface MeanScoresArgs {
  method: InfluenceMethod;
  train: UnitGradients;
  /** Validation gradients [m × d] (reduced in the graph with `reduction`) or an already-reduced d-vector. */
  validation: UnitGradients | Float64Array;
  reduction?: ValidationReduction;
  dampingScale?: number;
  lambda?: number;
}

export function createInfluenceEngine(opts: InfluenceEngineOptions): InfluenceEngine {
  return new InfluenceEngine(opts);
}

type Key = string;

export class InfluenceEngine {
  readonly device: string;
  readonly precision: Precision;
  private readonly threads?: number;
  private readonly sessions = new Map<Key, Promise<Session>>();
  private released = false;

  constructor({ device, threads, precision = 'float32' }: InfluenceEngineOptions) {
    parseDevice(device); // ConfigError on a malformed device string, before any graph is built
    if (precision !== 'float32' && precision !== 'float64') {
      throw new ConfigError(`influence engine: precision '${precision}'; expected 'float32' or 'float64'`);
    }
    if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
      throw new ConfigError(`influence engine: threads must be a positive integer, got ${threads}`);
    }
    this.device = device;
    this.precision = precision;
    this.threads = threads;
  }

  /** Number of distinct graphs (sessions) built so far; constant across units and shapes. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Release every session. The engine cannot be used afterwards. */
  async release(): Promise<void> {
    this.released = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }

  private session(key: Key, build: () => Uint8Array): Promise<Session> {
    if (this.released) throw new ConfigError(`influence engine on ${this.device}: used after release()`);
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession({ model: build(), device: this.device, threads: this.threads });
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /** Full [m × n] influence matrix of one unit (SCIENCE.md §2), one graph run (or streamed with `blockRows`). */
  async influenceMatrix(args: FullMatrixArgs): Promise<InfluenceMatrix> {
    const { method, train, validation, dampingScale, lambda, association = 'auto', blockRows } = args;
    checkMethod(method);
    checkMatrixInputs(train, validation, { scanValues: false }); // NaN/Inf: found from the outputs after the run
    const lamArgs = damping(method, train.unit, dampingScale, lambda);
    if (blockRows !== undefined) {
      if (!(Number.isInteger(blockRows) && blockRows > 0)) throw new ConfigError(`influenceMatrix: blockRows must be a positive integer, got ${blockRows}`);
      if (blockRows < train.n) {
        const [mat] = await this.influenceMatrixStream({
          method, train: () => rowBlocks(train, blockRows), validation: [validation], dampingScale,
          ...(lambda !== undefined ? { lambda: { [train.unit]: lambda } } : {}),
        });
        return mat;
      }
    }
    if (association !== 'auto' && association !== 'gram' && association !== 'projection') {
      throw new ConfigError(`influenceMatrix: association '${association}'; expected 'auto', 'gram' or 'projection'`);
    }
    const { n, d } = train;
    const m = validation.n;
    const assoc: Association = association !== 'auto' ? association
      : correctionCost('gram', m, n, d) < correctionCost('projection', m, n, d) ? 'gram' : 'projection';
    const key = method === 'datainf' ? `full:datainf:${assoc}` : `full:${method}`;
    const s = await this.session(key, () => buildFullMatrixGraph(method, this.precision, assoc));
    const feeds: Record<string, HostTensor> = {
      V: this.tensor(validation.data, [m, d]),
      G: this.tensor(train.data, [n, d]),
    };
    if (lamArgs) Object.assign(feeds, this.dampingFeeds(lamArgs));
    if (method !== 'tracin') Object.assign(feeds, this.normFeeds(d));
    const out = await s.run(feeds);
    const suspects: Suspect[] = [{ g: validation, what: 'validation gradients' }, { g: train, what: 'training gradients' }];
    if (out.g_norm_sq) checkNorms(out.g_norm_sq.data as FloatArray, train, 'training gradients', this.precision);
    if (out.v_norm_sq) checkNorms(out.v_norm_sq.data as FloatArray, validation, 'validation gradients', this.precision);
    const lam = lamArgs ? lamArgs.fixed ?? checkGraphDamping(Number((out.lambda.data as FloatArray)[0]), train.unit) : undefined;
    const data = Float64Array.from(out.M.data as FloatArray);
    checkResult(data, train.unit, method, this.precision, suspects);
    const base = matrixBase(train, method, m, n);
    return lam !== undefined ? { ...base, lambda: lam, data } : { ...base, data };
  }

  /** Full influence matrices for every unit in the training shards, streamed over row chunks (see the header). */
  async influenceMatrixStream(args: MatrixStreamArgs): Promise<InfluenceMatrix[]> {
    const { method, train, validation, dampingScale, lambda } = args;
    checkMethod(method);
    const vals = new Map<string, UnitGradients>();
    for (const v of validation) {
      checkUnitShape(v, 'validation gradients');
      if (v.n === 0) throw new DataError(`validation gradients (unit ${v.unit}): empty set; expected m ≥ 1 samples`);
      if (vals.has(v.unit)) throw new DataError(`validation gradients: unit ${v.unit} appears twice; expected one record per unit`);
      vals.set(v.unit, v);
    }
    const scale = dampingScale ?? DEFAULT_DAMPING_SCALE;
    if (method === 'datainf') checkScale(scale);
    const knownLambda = method === 'datainf' && lambda !== undefined;
    const norms = method !== 'tracin';
    const project = await this.session(norms ? 'block:project-norms' : 'block:project', () => buildBlockProjectGraph(this.precision, norms));
    const rowNorms = method === 'cosine' ? await this.session('row-norms', () => buildRowNormsGraph(this.precision)) : undefined;
    const accumulate = method === 'datainf' ? await this.session('block:accumulate', () => buildBlockAccumulateGraph(this.precision)) : undefined;
    const finish = method === 'datainf' ? await this.session('block:finish', () => buildBlockFinishGraph(this.precision)) : undefined;

    const states = new Map<string, StreamState>();
    const accumulateR = async (st: StreamState, chunk: UnitGradients, t: number): Promise<void> => {
      const P = st.blocks[t], gn = st.gnBlocks[t], b = chunk.n;
      const W = this.alloc(st.m * b);
      for (let i = 0; i < b; i++) {
        const c = 1 / (st.lambda! + gn[i]);
        for (let j = 0; j < st.m; j++) W[j * b + i] = P[j * b + i] * c;
      }
      const out = await accumulate!.run({
        W: { data: W, dims: [st.m, b] }, B: this.tensor(chunk.data, [b, st.d]), R: { data: st.R!, dims: [st.m, st.d] },
      });
      st.R = out.R_out.data as FloatArray;
    };

    // Pass 1: V Gᵀ per chunk and squared norms (and R when λ is known).
    await forEachChunk(train, 'training gradients', async (chunk, row0) => {
      let st = states.get(chunk.unit);
      if (!st) {
        const v = vals.get(chunk.unit);
        if (!v) throw new DataError(`training gradients (unit ${chunk.unit}): no validation gradients for this unit; expected one of [${[...vals.keys()].join(', ')}]`);
        st = {
          ref: { unit: chunk.unit, layer: chunk.layer, kind: chunk.kind }, d: chunk.d, m: v.n, rows: 0,
          V: this.convert(v.data), val: v, blocks: [], gnBlocks: [], sizes: [],
        };
        if (knownLambda) {
          st.lambda = checkLambda(lambda![chunk.unit], chunk.unit);
          st.R = this.alloc(st.m * st.d);
        }
        states.set(chunk.unit, st);
      }
      if (chunk.d !== st.d) throw new DataError(`training gradients (unit ${chunk.unit}): shard has d=${chunk.d}; earlier shards had d=${st.d}`);
      if (chunk.d !== st.val.d) throw new DataError(`unit ${chunk.unit}: training gradients have d=${chunk.d}, validation gradients have d=${st.val.d}; expected equal`);
      const out = await project.run({ V: { data: st.V, dims: [st.m, st.d] }, B: this.tensor(chunk.data, [chunk.n, chunk.d]), ...(norms ? this.normFeeds(st.d) : {}) });
      const P = out.P.data as FloatArray;
      checkResult(P, chunk.unit, 'V Gᵀ', this.precision, [{ g: st.val, what: 'validation gradients' }, { g: chunk, what: 'training gradients', row0 }]);
      const gn = norms ? out.g_norm_sq.data as FloatArray : new Float32Array(0);
      if (norms) {
        checkNorms(gn, chunk, 'training gradients', this.precision, row0);
        if (rowNorms && !st.vn) {
          const vn = (await rowNorms.run({ X: { data: st.V, dims: [st.m, st.d] }, ...this.normFeeds(st.d) })).norm_sq.data as FloatArray;
          checkNorms(vn, st.val, 'validation gradients', this.precision);
          st.vn = Float64Array.from(vn);
        }
      }
      st.blocks.push(P);
      st.gnBlocks.push(gn);
      st.sizes.push(chunk.n);
      st.rows += chunk.n;
      if (knownLambda) await accumulateR(st, chunk, st.blocks.length - 1);
    });
    if (states.size === 0) throw new DataError('training gradients: the shard source yielded no rows; expected n ≥ 1 samples');

    const results: InfluenceMatrix[] = [];
    if (method !== 'datainf') {
      for (const st of states.values()) {
        const data = assemble(st, (P, j, i, b) => P[j * b + i]);
        if (method === 'cosine') {
          const gn = concatNorms(st);
          for (let j = 0; j < st.m; j++) for (let k = 0; k < st.rows; k++) data[j * st.rows + k] = cosineFromParts(data[j * st.rows + k], st.vn![j], gn[k]);
        }
        results.push({ ...matrixBase(st.ref, method, st.m, st.rows), data });
      }
      return results;
    }

    // DataInf: λ per unit, then R = W G (pass 2 unless λ was given), then M = P/λ − (R/(nλ)) Gᵀ.
    if (!knownLambda) {
      for (const st of states.values()) {
        let sum = 0;
        for (const gn of st.gnBlocks) for (let i = 0; i < gn.length; i++) sum += gn[i];
        st.lambda = dataInfDamping({ sumNormSq: sum, n: st.rows, d: st.d, scale, unit: st.ref.unit });
        st.R = this.alloc(st.m * st.d);
      }
      const counts = await forEachChunk(train, 'training gradients', async (chunk, _row0, t) => {
        const st = states.get(chunk.unit)!;
        sameChunk(st, chunk, t, 'pass 2 (R = W G)');
        await accumulateR(st, chunk, t);
      });
      checkSameRows(states, counts, 'pass 2 (R = W G)');
    }
    const finals = new Map<string, (FloatArray)[]>();
    for (const st of states.values()) {
      const c = 1 / (st.rows * st.lambda!);
      const Rs = st.R!;
      for (let p = 0; p < Rs.length; p++) Rs[p] *= c;
      finals.set(st.ref.unit, []);
    }
    const counts = await forEachChunk(train, 'training gradients', async (chunk, row0, t) => {
      const st = states.get(chunk.unit)!;
      sameChunk(st, chunk, t, 'final pass (R Gᵀ)');
      const P = st.blocks[t];
      const Ps = this.alloc(P.length);
      const il = 1 / st.lambda!;
      for (let p = 0; p < P.length; p++) Ps[p] = P[p] * il;
      const out = await finish!.run({ Rs: { data: st.R!, dims: [st.m, st.d] }, B: this.tensor(chunk.data, [chunk.n, chunk.d]), Ps: { data: Ps, dims: [st.m, chunk.n] } });
      const M = out.M.data as FloatArray;
      checkResult(M, chunk.unit, method, this.precision, [{ g: st.val, what: 'validation gradients' }, { g: chunk, what: 'training gradients', row0 }]);
      finals.get(chunk.unit)!.push(M);
    });
    checkSameRows(states, counts, 'final pass (R Gᵀ)');
    for (const st of states.values()) {
      st.blocks = finals.get(st.ref.unit)!;
      const data = assemble(st, (P, j, i, b) => P[j * b + i]);
      results.push({ ...matrixBase(st.ref, method, st.m, st.rows), lambda: st.lambda, data });
    }
    return results;
  }

  /**
   * Mean-gradient path (SCIENCE.md §2 last bullet): one score per training sample against the reduced
   * validation gradient, in one graph run; DataInf via r = Σ_i w_i g_i (no n×n matrix). Same record as
   * tracInInfluence / cosineInfluence / dataInfInfluence.
   */
  async influenceScores(args: MeanScoresArgs): Promise<UnitInfluence> {
    const { method, train, validation, reduction = 'mean', dampingScale, lambda } = args;
    checkMethod(method);
    if (reduction !== 'mean' && reduction !== 'sum') throw new ConfigError(`influenceScores: reduction '${reduction}'; expected 'mean' or 'sum'`);
    checkUnitShape(train, 'training gradients');
    if (train.n === 0) throw new DataError(`training gradients (unit ${train.unit}): empty set; expected n ≥ 1 samples`);
    const val: UnitGradients = validation instanceof Float64Array
      ? { unit: train.unit, layer: train.layer, n: 1, d: validation.length, data: validation }
      : validation;
    if (!(validation instanceof Float64Array)) {
      checkUnitShape(val, 'validation gradients');
      if (val.n === 0) throw new DataError(`validation gradients (unit ${val.unit}): empty set; expected m ≥ 1 samples`);
    }
    if (val.d !== train.d) throw new DataError(`unit ${train.unit}: validation gradient has ${val.d} values per sample; expected d = ${train.d} (same as training gradients)`);
    const lamArgs = damping(method, train.unit, dampingScale, lambda);
    const s = await this.session(`mean:${method}`, () => buildMeanScoresGraph(method, this.precision));
    const redScale = validation instanceof Float64Array || reduction === 'sum' ? 1 : 1 / val.n;
    const feeds: Record<string, HostTensor> = {
      V: this.tensor(val.data, [val.n, val.d]), G: this.tensor(train.data, [train.n, train.d]), red_scale: this.scalar(redScale),
    };
    if (lamArgs) Object.assign(feeds, this.dampingFeeds(lamArgs));
    if (method !== 'tracin') Object.assign(feeds, this.normFeeds(train.d));
    const out = await s.run(feeds);
    const suspects: Suspect[] = [{ g: val, what: 'validation gradients' }, { g: train, what: 'training gradients' }];
    if (out.g_norm_sq) checkNorms(out.g_norm_sq.data as FloatArray, train, 'training gradients', this.precision);
    if (out.v_norm_sq && !Number.isFinite((out.v_norm_sq.data as FloatArray)[0])) {
      checkInputs(suspects);
      throw new DataError(`unit ${train.unit}: ‖v‖² of the reduced validation gradient is ${(out.v_norm_sq.data as FloatArray)[0]} in ${this.precision} (overflow); expected finite (rescale the gradients or use precision 'float64')`);
    }
    const lam = lamArgs ? lamArgs.fixed ?? checkGraphDamping(Number((out.lambda.data as FloatArray)[0]), train.unit) : undefined;
    const scores = Float64Array.from(out.S.data as FloatArray);
    checkResult(scores, train.unit, method, this.precision, suspects);
    return {
      unit: train.unit, layer: train.layer, kind: train.kind, method, convention: SIGN_CONVENTION, validation: reduction,
      ...(lam !== undefined ? { lambda: lam } : {}), scores,
    };
  }

  // ---- host helpers ----

  private alloc(len: number): FloatArray {
    return this.precision === 'float32' ? new Float32Array(len) : new Float64Array(len);
  }
  /** The data in the engine precision (no copy when it already is). */
  private convert(data: FloatArray): FloatArray {
    if (this.precision === 'float32') return data instanceof Float32Array ? data : Float32Array.from(data);
    return data instanceof Float64Array ? data : Float64Array.from(data);
  }
  private tensor(data: FloatArray, dims: number[]): HostTensor {
    return { data: this.convert(data) as HostArray, dims };
  }
  private scalar(x: number): HostTensor {
    return { data: this.precision === 'float32' ? Float32Array.of(x) : Float64Array.of(x), dims: [] };
  }
  /** Feeds of rowNormSq (full-matrix-graphs.ts) for unit size d: `norm_shape` [-1, k, d/k] and `norm_eye` I_k. */
  private normFeeds(d: number): Record<string, HostTensor> {
    const k = normBlocks(d);
    const eye = this.alloc(k * k);
    for (let i = 0; i < k; i++) eye[i * k + i] = 1;
    return { norm_shape: { data: BigInt64Array.of(-1n, BigInt(k), BigInt(d / k)), dims: [3] }, norm_eye: { data: eye as HostArray, dims: [k, k] } };
  }
  private dampingFeeds(l: DampingArgs): Record<string, HostTensor> {
    return { lam_fixed: this.scalar(l.fixed ?? 0), lam_scale: this.scalar(l.fixed !== undefined ? 0 : l.scale) };
  }
}

// ---- validation and assembly ----

interface StreamState {
  ref: UnitRef;
  d: number;
  m: number;
  rows: number;
  V: FloatArray;
  val: UnitGradients;
  vn?: Float64Array;
  /** Per chunk: [m × b] products (V Gᵀ, later the final blocks), squared norms, and row counts. */
  blocks: (FloatArray)[];
  gnBlocks: (FloatArray)[];
  sizes: number[];
  lambda?: number;
  R?: FloatArray;
}

interface DampingArgs { fixed?: number; scale: number }

/**
 * k for the [k × d/k] view of a row in rowNormSq: a divisor of d, preferring 8 and 16 (fastest in
 * bench/README.md: MLAS batched [k × d/k]·[d/k × k]), then the nearest other divisor in 2..32.
 * A d with none (a prime d > 32) gets k = 1: correct, but ~3× slower than k = 8.
 */
function normBlocks(d: number): number {
  for (const k of [8, 16, 4, 12, 24, 6, 10, 20, 32, 14, 28, 5, 7, 9, 11, 13, 15, 3, 2]) if (d % k === 0) return k;
  return 1;
}

const METHODS: readonly InfluenceMethod[] = ['tracin', 'cosine', 'datainf'];
function checkMethod(method: InfluenceMethod): void {
  if (!METHODS.includes(method)) throw new ConfigError(`influence method '${method}'; expected one of ${METHODS.join(', ')}`);
}

function checkScale(scale: number): void {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new ConfigError(`DataInf damping scale is ${scale}; expected a positive finite number (default 0.1)`);
}

function damping(method: InfluenceMethod, unit: string, dampingScale: number | undefined, lambda: number | undefined): DampingArgs | undefined {
  if (method !== 'datainf') return undefined;
  if (lambda !== undefined) return { fixed: checkLambda(lambda, unit), scale: 0 };
  const scale = dampingScale ?? DEFAULT_DAMPING_SCALE;
  checkScale(scale);
  return { scale };
}

/** The data-dependent λ computed in the graph (inputs already known finite): typed error as in datainf.ts. */
function checkGraphDamping(lambda: number, unit: string): number {
  if (!(lambda > 0) || !Number.isFinite(lambda)) {
    throw new DataError(`unit ${unit}: DataInf damping λ = ${lambda} (all training gradients are zero?); expected λ > 0`);
  }
  return lambda;
}


type FloatArray = Float32Array | Float64Array;

/** An input to scan when an output is non-finite; `row0` numbers its rows in messages. */
interface Suspect { g: UnitGradients; what: string; row0?: number }

/** Throws the DataError of checkUnitGradients (row, column, value) for the first non-finite input entry. */
function checkInputs(suspects: readonly Suspect[]): void {
  for (const { g, what, row0 } of suspects) checkUnitGradients(row0 !== undefined ? { ...g, rowOffset: row0 } : g, what);
}

/** Squared row norms must be finite: NaN/Inf in that row (named), or overflow of the precision. */
function checkNorms(norms: ArrayLike<number>, g: UnitGradients, what: string, precision: Precision, row0 = g.rowOffset ?? 0): void {
  for (let i = 0; i < norms.length; i++) {
    if (Number.isFinite(norms[i])) continue;
    checkInputs([{ g, what, row0 }]);
    throw new DataError(`${what} (unit ${g.unit}): row ${row0 + i} has squared norm ${norms[i]} in ${precision} (overflow); expected finite (rescale the gradients or use precision 'float64')`);
  }
}

/** Every output entry must be finite: NaN/Inf in an input (named), or overflow of the precision. */
function checkResult(data: ArrayLike<number>, unit: string, what: string, precision: Precision, suspects: readonly Suspect[]): void {
  for (let i = 0; i < data.length; i++) {
    if (Number.isFinite(data[i])) continue;
    checkInputs(suspects);
    throw new DataError(`unit ${unit}: ${what} influence entry ${i} is ${data[i]} in ${precision} (overflow); expected finite (use precision 'float64' or a larger λ)`);
  }
}

function matrixBase(ref: UnitRef, method: InfluenceMethod, m: number, n: number) {
  return { unit: ref.unit, layer: ref.layer, kind: ref.kind, method, convention: SIGN_CONVENTION, m, n };
}

/** [m × n] float64 from the per-chunk [m × b] blocks. */
function assemble(st: StreamState, at: (P: ArrayLike<number>, j: number, i: number, b: number) => number): Float64Array {
  const n = st.rows;
  const out = new Float64Array(st.m * n);
  let k0 = 0;
  st.blocks.forEach((P, t) => {
    const b = st.sizes[t];
    for (let j = 0; j < st.m; j++) for (let i = 0; i < b; i++) out[j * n + k0 + i] = at(P, j, i, b);
    k0 += b;
  });
  return out;
}

function concatNorms(st: StreamState): Float64Array {
  const out = new Float64Array(st.rows);
  let k = 0;
  for (const gn of st.gnBlocks) for (let i = 0; i < gn.length; i++) out[k++] = gn[i];
  return out;
}

function sameChunk(st: StreamState, chunk: UnitGradients, t: number, pass: string): void {
  if (st.sizes[t] !== chunk.n) {
    throw new DataError(`training gradients (unit ${chunk.unit}): ${pass} chunk ${t} has ${chunk.n} rows; pass 1 had ${st.sizes[t] ?? 'no such chunk'} (the source must yield the same shards every time)`);
  }
}

function checkSameRows(states: Map<string, StreamState>, counts: Map<string, number>, pass: string): void {
  for (const st of states.values()) {
    if (counts.get(st.ref.unit) !== st.rows) {
      throw new DataError(`training gradients (unit ${st.ref.unit}): ${pass} saw ${counts.get(st.ref.unit) ?? 0} rows; pass 1 saw ${st.rows} (the source must yield the same shards every time)`);
    }
  }
}

/**
 * Walk the shards once; `fn(chunk, row0, t)` gets each non-empty chunk with its first row index and its
 * chunk index within its unit. Chunks must be contiguous and in order (as in streaming.ts).
 */
async function forEachChunk(
  source: GradientSource, what: string, fn: (chunk: UnitGradients, row0: number, t: number) => Promise<void>,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const chunks = new Map<string, number>();
  for await (const shard of source() as AsyncIterable<GradientShard>) {
    for (const chunk of Array.isArray(shard) ? shard : [shard]) {
      checkUnitShape(chunk, what);
      const row0 = seen.get(chunk.unit) ?? 0;
      if (chunk.rowOffset !== undefined && chunk.rowOffset !== row0) {
        throw new DataError(`${what} (unit ${chunk.unit}): shard starts at row ${chunk.rowOffset}; expected row ${row0} (shards must be contiguous and in order)`);
      }
      if (chunk.n === 0) continue;
      const t = chunks.get(chunk.unit) ?? 0;
      await fn(chunk, row0, t);
      seen.set(chunk.unit, row0 + chunk.n);
      chunks.set(chunk.unit, t + 1);
    }
  }
  return seen;
}

/** Row blocks of an in-memory gradient matrix as views (no copies); `rowOffset` counts from 0. */
export function* rowBlocks(g: UnitGradients, blockRows: number): Generator<UnitGradients> {
  for (let r = 0; r < g.n; r += blockRows) {
    const b = Math.min(blockRows, g.n - r);
    yield { unit: g.unit, layer: g.layer, kind: g.kind, n: b, d: g.d, data: g.data.subarray(r * g.d, (r + b) * g.d), rowOffset: r };
  }
}
