/**
 * Full [m × n] influence matrix per unit, and the mean-gradient scores, through ONNX Runtime on the
 * engine's device (`cpu:N` or `cuda:N`), SCIENCE.md §2:
 *
 *   TracIn:  V Gᵀ
 *   cosine:  (V Gᵀ) / (‖v_j‖ ‖g_k‖)            (0 where a norm is 0, as in cosine.ts)
 *   DataInf: (1/λ) [ V Gᵀ − (1/n) (V Gᵀ) diag(1/(λ+‖g_i‖²)) (G Gᵀ) ],  λ_l = 0.1 · Σ_i ‖g_i‖² / (n·d)
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
 * Division of work: the products that touch G (O(n·d) or O(m·n·d)) run as branches of one ONNX graph
 * (full-matrix-graphs.ts: `project` Pᵀ = G Vᵀ, `dot` / `norms` G v and ‖g_i‖² over cache-sized row
 * blocks, `correction` DataInf's G (W G)ᵀ, `accumulate` R += W B when streaming); the O(m·n) rest — λ,
 * the weights W, the cosine division and the final (P − C/n)/λ — runs on the host in float64. The
 * graph is built and its one session created per engine on first use, and reused for every unit,
 * shape and method (one session = one ORT thread pool; see the graph file's header for why).
 *
 * Memory (elements of the engine precision unless noted; m = validation rows, n = training rows,
 * d = unit size, b = rows of the largest shard chunk):
 *  - `influenceMatrix` (in memory): inputs m·d + n·d; ORT temporaries m·n plus m·d (`projection`) or n²
 *    (`gram`), and one cache-sized block for the row norms; result m·n float64.
 *  - `influenceMatrixStream` / `blockRows`: per unit V and R (2·m·d), Pᵀ blocks (m·n), one chunk (b·d)
 *    and its m·b products; result m·n float64. n·d is never held: O(m·d + m·n + b·d) per unit, summed
 *    over the units of one call (call per unit subset to bound it further; the source is re-read per call).
 * Passes over the shards: TracIn/cosine 1; DataInf with λ given 2 (V Gᵀ and R = W G; then R Gᵀ);
 * DataInf with the default λ 3 (λ needs Σ‖g_i‖² of all rows before W is known).
 *
 * Finiteness: instead of scanning n·d entries in JavaScript up front, the host checks the outputs
 * (V Gᵀ, the result, and the squared row norms): a NaN/Inf gradient entry makes them non-finite.
 * Only then are the inputs scanned, to name row and column (DataError, as checkUnitGradients); if the
 * inputs are finite, the error reports overflow in the engine precision.
 *
 * Speed: bench/influence.ts, results and analysis in bench/README.md.
 */
import { ConfigError, DataError } from '../errors.ts';
import { createSession, lastLevelCacheBytes, parseDevice, type HostArray, type HostTensor, type Session } from '../runtime/index.ts';
import { cosineFromParts } from './cosine.ts';
import { dot as vecDot } from './vector.ts';
import { checkLambda, dataInfDamping, DEFAULT_DAMPING_SCALE } from './datainf.ts';
import {
  branchOutputs, buildInfluenceGraph, correctionCost, idleShapes, type Association, type Branch, type Precision,
} from './full-matrix-graphs.ts';
import type { GradientShard, GradientSource } from './streaming.ts';
import { checkMatrixInputs } from './reference-matrix.ts';
import {
  checkUnitGradients, checkUnitShape, SIGN_CONVENTION, type InfluenceMatrix, type InfluenceMethod, type UnitGradients, type UnitInfluence, type UnitRef,
  type ValidationReduction,
} from './types.ts';

export type { Association, Precision } from './full-matrix-graphs.ts';
export { correctionCost } from './full-matrix-graphs.ts';

/**
 * Bytes of G per block of the `norms` Scan: small enough that B ⊙ B and B stay in the CPU caches
 * between the two MatMuls, large enough that the per-iteration overhead is amortised. The best size
 * tracks the last-level cache: 4–8 MiB blocks were fastest on a 2-core EPYC with 32 MiB L3, 1 MiB on
 * one with 8 MiB L3 (bench/README.md), so the default is L3 / 8 within [256 KiB, 8 MiB], and 4 MiB
 * where sysfs does not tell the cache size.
 */
export function rowBlockBytesFor(llcBytes: number | undefined): number {
  if (llcBytes === undefined) return 4 << 20;
  return Math.min(8 << 20, Math.max(256 << 10, Math.floor(llcBytes / 8)));
}

/** rowBlockBytesFor this host's last-level cache. */
export const defaultRowBlockBytes = (): number => rowBlockBytesFor(lastLevelCacheBytes());

export interface InfluenceEngineOptions {
  /** `cpu:N` or `cuda:N` (the same device as the model). */
  device: string;
  /** CPU intra-op threads (default: all cores). */
  threads?: number;
  /** Compute precision of the graphs (default float32, like the gradients); inputs are converted if needed. */
  precision?: Precision;
  /** Bytes of G per row block of the norm / dot pass (default: `defaultRowBlockBytes()`, from the CPU's last-level cache). */
  rowBlockBytes?: number;
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
  /** Validation gradients [m × d] (reduced in a graph with `reduction`) or an already-reduced d-vector. */
  validation: UnitGradients | Float64Array;
  reduction?: ValidationReduction;
  dampingScale?: number;
  lambda?: number;
}

export function createInfluenceEngine(opts: InfluenceEngineOptions): InfluenceEngine {
  return new InfluenceEngine(opts);
}

export class InfluenceEngine {
  readonly device: string;
  readonly precision: Precision;
  private readonly threads?: number;
  /** Bytes per row block of `rowStats` (see defaultRowBlockBytes). */
  readonly rowBlockBytes: number;
  /** The engine's one session (full-matrix-graphs.ts), created on first use. */
  private graph?: Promise<Session>;
  /** `ones` [d, 1] of rowStats, per d. */
  private readonly onesByD = new Map<number, FloatArray>();
  private idleFeeds?: Record<string, HostTensor>;
  private released = false;

  constructor({ device, threads, precision = 'float32', rowBlockBytes = defaultRowBlockBytes() }: InfluenceEngineOptions) {
    parseDevice(device); // ConfigError on a malformed device string, before any graph is built
    if (precision !== 'float32' && precision !== 'float64') {
      throw new ConfigError(`influence engine: precision '${precision}'; expected 'float32' or 'float64'`);
    }
    if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
      throw new ConfigError(`influence engine: threads must be a positive integer, got ${threads}`);
    }
    if (!(Number.isInteger(rowBlockBytes) && rowBlockBytes > 0)) {
      throw new ConfigError(`influence engine: rowBlockBytes must be a positive integer, got ${rowBlockBytes}`);
    }
    this.device = device;
    this.precision = precision;
    this.threads = threads;
    this.rowBlockBytes = rowBlockBytes;
  }

  /** Number of ORT sessions created so far: 0 before the first call, then 1 whatever the units, shapes and methods. */
  get sessionCount(): number {
    return this.graph ? 1 : 0;
  }

  /** Release the session. The engine cannot be used afterwards. */
  async release(): Promise<void> {
    this.released = true;
    const s = this.graph;
    this.graph = undefined;
    this.onesByD.clear();
    if (s) await (await s).release();
  }

  /** The session of the engine's graph; a failed creation is not cached, so the next call retries. */
  private session(): Promise<Session> {
    if (this.released) throw new ConfigError(`influence engine on ${this.device}: used after release()`);
    if (!this.graph) {
      const s = createSession({ model: buildInfluenceGraph(this.precision), device: this.device, threads: this.threads });
      this.graph = s;
      s.catch(() => { if (this.graph === s) this.graph = undefined; });
    }
    return this.graph;
  }

  /** Full [m × n] influence matrix of one unit (SCIENCE.md §2), in memory (or streamed with `blockRows`). */
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
    const suspects: Suspect[] = [{ g: validation, what: 'validation gradients' }, { g: train, what: 'training gradients' }];
    const Pt = await this.project(train, validation, method === 'tracin' ? method : 'V Gᵀ', suspects);
    const base = matrixBase(train, method, m, n);
    if (method === 'tracin') return { ...base, data: transposed(Pt, n, m) };
    const gn = await this.rowNorms(train, 'training gradients');
    if (method === 'cosine') {
      const vn = await this.rowNorms(validation, 'validation gradients');
      const data = new Float64Array(m * n);
      for (let k = 0; k < n; k++) for (let j = 0; j < m; j++) data[j * n + k] = cosineFromParts(Pt[k * m + j], vn[j], gn[k]);
      return { ...base, data };
    }
    const lam = lamArgs!.fixed ?? dataInfDamping({ sumNormSq: sum(gn), n, d, scale: lamArgs!.scale, unit: train.unit });
    const assoc: Association = association !== 'auto' ? association
      : correctionCost('gram', m, n, d) < correctionCost('projection', m, n, d) ? 'gram' : 'projection';
    const W = this.alloc(m * n);
    for (let k = 0; k < n; k++) {
      const c = 1 / (lam + gn[k]);
      for (let j = 0; j < m; j++) W[j * n + k] = Pt[k * m + j] * c;
    }
    const Ct = assoc === 'gram'
      ? (await this.run('correction_gram', { gram_W: { data: W, dims: [m, n] }, gram_G: this.tensor(train.data, [n, d]) })).Ct_gram.data as FloatArray
      : (await this.run('correction', { cor_W: { data: W, dims: [m, n] }, cor_G: this.tensor(train.data, [n, d]) })).Ct.data as FloatArray;
    const data = new Float64Array(m * n);
    dataInfBlock(data, n, 0, Pt, Ct, n, m, lam);
    checkResult(data, train.unit, method, this.precision, suspects);
    return { ...base, lambda: lam, data };
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

    const states = new Map<string, StreamState>();
    /** R += W B for one chunk, W [m × b] = the chunk's Pᵀ block weighted by 1/(λ+‖g_i‖²) (transposed). */
    const accumulateR = async (st: StreamState, chunk: UnitGradients, t: number): Promise<void> => {
      const Pt = st.blocks[t], gn = st.gnBlocks[t], b = chunk.n, m = st.m;
      const W = this.alloc(m * b);
      for (let i = 0; i < b; i++) {
        const c = 1 / (st.lambda! + gn[i]);
        for (let j = 0; j < m; j++) W[j * b + i] = Pt[i * m + j] * c;
      }
      const out = await this.run('accumulate', {
        acc_W: { data: W, dims: [m, b] }, acc_B: this.tensor(chunk.data, [b, st.d]), acc_R: { data: st.R!, dims: [m, st.d] },
      });
      st.R = out.R_out.data as FloatArray;
    };

    // Pass 1: Pᵀ = B Vᵀ per chunk and squared norms (and R when λ is known).
    await forEachChunk(train, 'training gradients', async (chunk, row0) => {
      let st = states.get(chunk.unit);
      if (!st) {
        const v = vals.get(chunk.unit);
        if (!v) throw new DataError(`training gradients (unit ${chunk.unit}): no validation gradients for this unit; expected one of [${[...vals.keys()].join(', ')}]`);
        st = { ref: { unit: chunk.unit, layer: chunk.layer, kind: chunk.kind }, d: chunk.d, m: v.n, rows: 0, val: v, blocks: [], gnBlocks: [], sizes: [] };
        if (knownLambda) {
          st.lambda = checkLambda(lambda![chunk.unit], chunk.unit);
          st.R = this.alloc(st.m * st.d);
        }
        states.set(chunk.unit, st);
      }
      if (chunk.d !== st.d) throw new DataError(`training gradients (unit ${chunk.unit}): shard has d=${chunk.d}; earlier shards had d=${st.d}`);
      if (chunk.d !== st.val.d) throw new DataError(`unit ${chunk.unit}: training gradients have d=${chunk.d}, validation gradients have d=${st.val.d}; expected equal`);
      const suspects: Suspect[] = [{ g: st.val, what: 'validation gradients' }, { g: chunk, what: 'training gradients', row0 }];
      st.blocks.push(await this.project(chunk, st.val, method === 'tracin' ? method : 'V Gᵀ', suspects));
      if (method !== 'tracin') {
        st.gnBlocks.push(await this.rowNorms(chunk, 'training gradients', row0));
        if (method === 'cosine' && !st.vn) st.vn = await this.rowNorms(st.val, 'validation gradients');
      }
      st.sizes.push(chunk.n);
      st.rows += chunk.n;
      if (knownLambda) await accumulateR(st, chunk, st.blocks.length - 1);
    });
    if (states.size === 0) throw new DataError('training gradients: the shard source yielded no rows; expected n ≥ 1 samples');

    const results: InfluenceMatrix[] = [];
    if (method !== 'datainf') {
      for (const st of states.values()) {
        const data = new Float64Array(st.m * st.rows);
        let k0 = 0;
        st.blocks.forEach((Pt, t) => {
          const b = st.sizes[t];
          if (method === 'tracin') transposeInto(data, st.rows, k0, Pt, b, st.m);
          else {
            const gn = st.gnBlocks[t];
            for (let i = 0; i < b; i++) for (let j = 0; j < st.m; j++) data[j * st.rows + k0 + i] = cosineFromParts(Pt[i * st.m + j], st.vn![j], gn[i]);
          }
          k0 += b;
        });
        results.push({ ...matrixBase(st.ref, method, st.m, st.rows), data });
      }
      return results;
    }

    // DataInf: λ per unit, then R = W G (pass 2 unless λ was given), then M = (Pᵀ − Cᵀ/n)/λ with Cᵀ = B Rᵀ per chunk.
    if (!knownLambda) {
      for (const st of states.values()) {
        let s = 0;
        for (const gn of st.gnBlocks) s += sum(gn);
        st.lambda = dataInfDamping({ sumNormSq: s, n: st.rows, d: st.d, scale, unit: st.ref.unit });
        st.R = this.alloc(st.m * st.d);
      }
      const counts = await forEachChunk(train, 'training gradients', async (chunk, _row0, t) => {
        const st = states.get(chunk.unit)!;
        sameChunk(st, chunk, t, 'pass 2 (R = W G)');
        await accumulateR(st, chunk, t);
      });
      checkSameRows(states, counts, 'pass 2 (R = W G)');
    }
    const outs = new Map<string, { data: Float64Array; k0: number }>();
    for (const st of states.values()) outs.set(st.ref.unit, { data: new Float64Array(st.m * st.rows), k0: 0 });
    const counts = await forEachChunk(train, 'training gradients', async (chunk, row0, t) => {
      const st = states.get(chunk.unit)!;
      sameChunk(st, chunk, t, 'final pass (R Gᵀ)');
      const suspects: Suspect[] = [{ g: st.val, what: 'validation gradients' }, { g: chunk, what: 'training gradients', row0 }];
      const R: UnitGradients = { unit: chunk.unit, layer: chunk.layer, n: st.m, d: st.d, data: st.R! };
      const Ct = await this.project(chunk, R, method, suspects);
      const out = outs.get(chunk.unit)!;
      dataInfBlock(out.data, st.rows, out.k0, st.blocks[t], Ct, chunk.n, st.m, st.lambda!);
      out.k0 += chunk.n;
    });
    checkSameRows(states, counts, 'final pass (R Gᵀ)');
    for (const st of states.values()) {
      const { data } = outs.get(st.ref.unit)!;
      checkResult(data, st.ref.unit, method, this.precision, [{ g: st.val, what: 'validation gradients' }]);
      results.push({ ...matrixBase(st.ref, method, st.m, st.rows), lambda: st.lambda, data });
    }
    return results;
  }

  /**
   * Mean-gradient path (SCIENCE.md §2 last bullet): one score per training sample against the reduced
   * validation gradient v, formed in the same run. TracIn is one pass over G (G v); cosine and DataInf
   * get v·g_i and ‖g_i‖² together per cache-sized block (one pass); DataInf then needs r = Σ_i w_i g_i
   * and G r (two more passes, one run; no n×n matrix). Same record as tracInInfluence / cosineInfluence / dataInfInfluence.
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
    const { n, d } = train;
    const suspects: Suspect[] = [{ g: val, what: 'validation gradients' }, { g: train, what: 'training gradients' }];

    // v = c · Σ_j v_j is formed in the same run as the dot products (c = 1/m for the mean; 1 for the sum or a given vector).
    const c = validation instanceof Float64Array || reduction === 'sum' ? 1 : 1 / val.n;
    // Known norms (train.normSq): the dot products alone, one GEMV pass.
    const stats = await this.rowStats(train, { c, V: val }, method !== 'tracin' && !train.normSq, 'training gradients');
    const { dot, v } = stats;
    const normSq = train.normSq ?? stats.normSq;
    const vv = vecDot(v!, v!);
    if (!Number.isFinite(vv)) {
      checkInputs(suspects);
      throw new DataError(`unit ${train.unit}: ‖v‖² of the reduced validation gradient is ${vv} (overflow in ${this.precision}); expected finite (rescale the gradients or use precision 'float64')`);
    }
    const scores = new Float64Array(n);
    let lam: number | undefined;
    if (method === 'tracin') for (let k = 0; k < n; k++) scores[k] = dot[k];
    else if (method === 'cosine') for (let k = 0; k < n; k++) scores[k] = cosineFromParts(dot[k], vv, normSq![k]);
    else {
      lam = lamArgs!.fixed ?? dataInfDamping({ sumNormSq: sum(normSq!), n, d, scale: lamArgs!.scale, unit: train.unit });
      const w = this.alloc(n);
      for (let k = 0; k < n; k++) w[k] = dot[k] / (lam + normSq![k]);
      const Gr = (await this.run('correction_vec', { vec_w: { data: w, dims: [n, 1] }, vec_G: this.tensor(train.data, [n, d]) })).Gr.data as FloatArray;
      for (let k = 0; k < n; k++) scores[k] = (dot[k] - Gr[k] / n) / lam;
    }
    checkResult(scores, train.unit, method, this.precision, suspects);
    return {
      unit: train.unit, layer: train.layer, kind: train.kind, method, convention: SIGN_CONVENTION, validation: reduction,
      ...(lam !== undefined ? { lambda: lam } : {}), scores,
    };
  }

  // ---- graph runs ----

  /** Pᵀ = G Vᵀ [n × m] (`project`, G the left operand); checked finite (`what` names it in the error). */
  private async project(G: UnitGradients, V: UnitGradients, what: string, suspects: readonly Suspect[]): Promise<FloatArray> {
    // One validation row (validation: mean, or DataInf's R of one row): G v as the `dot` branch's GEMV;
    // the `project` Gemm with a one-row transposed B runs it 10–15 % slower (bench/README.md, session 9).
    const Y = V.n === 1
      ? (await this.run('dot', { dot_X: this.tensor(G.data, [G.n, G.d]), dot_c: { data: this.alloc(1).fill(1) as HostArray, dims: [1, 1] }, dot_V: this.tensor(V.data, [1, V.d]) })).dot.data as FloatArray
      : (await this.run('project', { A: this.tensor(G.data, [G.n, G.d]), B: this.tensor(V.data, [V.n, V.d]) })).Y.data as FloatArray;
    checkResult(Y, G.unit, what, this.precision, suspects);
    return Y;
  }

  /** ‖x_i‖² of every row (float64): the record's own `normSq` when given (checked with its shape), else rowStats over cache-sized blocks; checked finite. */
  private async rowNorms(x: UnitGradients, what: string, row0 = x.rowOffset ?? 0): Promise<Float64Array> {
    if (x.normSq) return x.normSq;
    return (await this.rowStats(x, undefined, true, what, row0)).normSq!;
  }

  /**
   * Row statistics of x [r × d] in float64: with `reduce`, v = c · Σ_j V_j (formed in the graph, returned
   * as `v`) and dot_i = x_i·v; with `norms`, ‖x_i‖². With norms, the `norms` branch walks x in blocks of
   * `rowBlockBytes` (views, no copies); without, the `dot` branch takes x whole. One run either way.
   */
  private async rowStats(
    x: UnitGradients, reduce: { c: number; V: UnitGradients } | undefined, norms: boolean, what: string, row0 = x.rowOffset ?? 0,
  ): Promise<{ dot: Float64Array; normSq?: Float64Array; v?: FloatArray }> {
    const { n: r, d } = x;
    const data = this.convert(x.data);
    const dot = new Float64Array(reduce ? r : 0);
    const cV = (c: string, V: string): Record<string, HostTensor> => (reduce
      ? { [c]: { data: this.alloc(reduce.V.n).fill(reduce.c) as HostArray, dims: [1, reduce.V.n] }, [V]: this.tensor(reduce.V.data, [reduce.V.n, d]) }
      : { [c]: { data: this.alloc(0) as HostArray, dims: [0, 0] }, [V]: { data: this.alloc(0) as HostArray, dims: [0, d] } });
    if (!norms) {
      if (!reduce) return { dot };
      const out = await this.run('dot', { dot_X: { data: data as HostArray, dims: [r, d] }, ...cV('dot_c', 'dot_V') });
      dot.set(out.dot.data as FloatArray);
      return { dot, v: out.dot_v.data as FloatArray };
    }
    const normSq = new Float64Array(r);
    const block = Math.min(r, Math.max(1, Math.floor(this.rowBlockBytes / (d * data.BYTES_PER_ELEMENT))));
    const nb = Math.floor(r / block), head = nb * block; // r ≥ 1, so nb ≥ 1 (the Scan needs one block at least)
    const out = await this.run('norms', {
      S3: { data: data.subarray(0, head * d) as HostArray, dims: [nb, block, d] },
      S: { data: data.subarray(head * d) as HostArray, dims: [r - head, d] },
      ones: { data: this.ones(d) as HostArray, dims: [d, 1] },
      ...cV('s_c', 's_V'),
      s_ushape: { data: BigInt64Array.of(BigInt(d), reduce ? 1n : 0n), dims: [2] },
    });
    normSq.set(out.norm_sq3.data as FloatArray);
    normSq.set(out.norm_sq.data as FloatArray, head);
    if (reduce) {
      dot.set(out.s_dot3.data as FloatArray);
      dot.set(out.s_dot.data as FloatArray, head);
    }
    checkNorms(normSq, x, what, this.precision, row0);
    return { dot, normSq, ...(reduce ? { v: out.s_v.data as FloatArray } : {}) };
  }

  /** Run one branch of the engine's graph: `feeds` for its inputs, empty tensors for every other. */
  private async run(branch: Branch, feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
    const s = await this.session();
    if (!this.idleFeeds) {
      this.idleFeeds = {};
      for (const [name, dims] of Object.entries(idleShapes())) {
        // s_ushape is the one int64 input: its idle value is the shape [1, 0] itself.
        this.idleFeeds[name] = name === 's_ushape'
          ? { data: BigInt64Array.from(dims, BigInt), dims: [2] }
          : { data: this.alloc(dims.reduce((a, b) => a * b, 1)) as HostArray, dims };
      }
    }
    return s.run({ ...this.idleFeeds, ...feeds }, [...branchOutputs(branch)]);
  }

  // ---- host helpers ----

  private ones(d: number): FloatArray {
    let o = this.onesByD.get(d);
    if (!o) this.onesByD.set(d, (o = this.alloc(d).fill(1)));
    return o;
  }
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
}

// ---- validation and assembly ----

interface StreamState {
  ref: UnitRef;
  d: number;
  m: number;
  rows: number;
  val: UnitGradients;
  vn?: Float64Array;
  /** Per chunk: Pᵀ blocks [b × m], squared norms (cosine, DataInf), and row counts. */
  blocks: FloatArray[];
  gnBlocks: Float64Array[];
  sizes: number[];
  lambda?: number;
  R?: FloatArray;
}

interface DampingArgs { fixed?: number; scale: number }

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

/** out[j·n + k0 + i] = Yt[i·m + j]: a [b × m] block (rows = training samples) into the [m × n] result. */
function transposeInto(out: Float64Array, n: number, k0: number, Yt: ArrayLike<number>, b: number, m: number): void {
  for (let i = 0; i < b; i++) for (let j = 0; j < m; j++) out[j * n + k0 + i] = Yt[i * m + j];
}

function transposed(Yt: ArrayLike<number>, n: number, m: number): Float64Array {
  const out = new Float64Array(m * n);
  transposeInto(out, n, 0, Yt, n, m);
  return out;
}

/** DataInf entries of training rows k0 … k0+b−1: (P − C/n)/λ from the [b × m] blocks Pᵀ and Cᵀ (n = all rows). */
function dataInfBlock(out: Float64Array, n: number, k0: number, Pt: ArrayLike<number>, Ct: ArrayLike<number>, b: number, m: number, lambda: number): void {
  for (let i = 0; i < b; i++) for (let j = 0; j < m; j++) out[j * n + k0 + i] = (Pt[i * m + j] - Ct[i * m + j] / n) / lambda;
}

function sum(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
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
    yield { unit: g.unit, layer: g.layer, kind: g.kind, n: b, d: g.d, data: g.data.subarray(r * g.d, (r + b) * g.d), rowOffset: r, ...(g.normSq ? { normSq: g.normSq.subarray(r, r + b) } : {}) };
  }
}
