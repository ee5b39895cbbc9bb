/**
 * The projection of a gradient shard through ONNX Runtime on the stage's device (projection.ts has the
 * matrix and the reasons): Y [rows × k] = X [rows × d] · Pᵀ [d × k] per unit, one Gemm.
 *
 *   const proj = await GradientProjector.create({ device: 'cpu:0' });
 *   const y = await proj.project({ unit, seed, from: d, to: k }, x, rows);   // Float32Array [rows × k]
 *   await proj.release();
 *
 * The graph is one Gemm with an accumulator, Y = X_c Pᵀ_c + Y_prev, over column blocks c of X: X is the
 * left operand (read in place by MLAS; only Pᵀ is packed, as in full-matrix-graphs.ts), and a unit
 * whose k × d matrix exceeds `blockBytes` (default 32 MiB) is projected block by block, each block of
 * Pᵀ regenerated from the seed, so memory stays O(rows·k + blockBytes) whatever d is. Whole matrices
 * are kept between shards up to `cacheBytes` (default 256 MiB; SmolLM2 r = 4 at k = d/16 needs
 * 120 units × ≤ 1.3 MB), beyond that regenerated (≈ 1 ms per million entries).
 *
 * A unit of the sparse sign matrix (`layerflow.sjlt/1`) goes through its own graph instead
 * (buildSparseProjectionGraph: Gather, Mul, Reshape, ReduceSum, O(rows · d)); its layout (d int64
 * coordinates + d float32 signs) is made once per stage and kept under the same `cacheBytes`.
 */
import { Matrix } from 'ml-matrix';
import { GraphBuilder, gather, gemm, matMul, mul, reduceSum, reshape } from '../onnx/index.ts';
import { basisDirections, checkCalibrationRows, inverseSqrt, transposeRows } from './calibration-basis.ts';
import { createSession, type HostTensor, type Session } from '../runtime/index.ts';
import { ConfigError, DataError } from '../errors.ts';
import { checkSpec, projectionRows, randomPart, sjltLayout, SJLT_GENERATOR, type ProjectionSpec, type UnitProjection } from './projection.ts';

/** R = X − C Uᵀ: the part of each row of X outside span(U) (C = X U its coordinates), one Gemm. */
export function buildResidualGraph(): Uint8Array {
  const g = new GraphBuilder({ name: 'gradient_residual' });
  const C = g.input('C', 'float32', ['rows', 'rank']);
  const U = g.input('U', 'float32', ['cols', 'rank']);
  const X = g.input('X', 'float32', ['rows', 'cols']);
  g.output(gemm(C, U, X, { transB: 1, alpha: -1, beta: 1 }), 'R');
  return g.toModel();
}

export function buildProjectionGraph(): Uint8Array {
  const g = new GraphBuilder({ name: 'gradient_projection' });
  const X = g.input('X', 'float32', ['rows', 'cols']);
  const Pt = g.input('Pt', 'float32', ['cols', 'k']);
  const acc = g.input('acc', 'float32', ['rows', 'k']);
  g.output(gemm(X, Pt, acc), 'Y');
  return g.toModel();
}

/**
 * The sparse sign projection (projection.ts sjltLayout): Y [rows × k] = Σ over each bucket of m signed
 * gathered columns, `shape` = [0, k, m] (0: keep rows). Gather, Mul, Reshape, ReduceSum: O(rows · D').
 */
export function buildSparseProjectionGraph(): Uint8Array {
  const g = new GraphBuilder({ name: 'gradient_sparse_projection' });
  const X = g.input('X', 'float32', ['rows', 'cols']);
  const coord = g.input('coord', 'int64', ['positions']);
  const sign = g.input('sign', 'float32', ['positions']);
  const shape = g.input('shape', 'int64', [3]);
  g.output(reduceSum(reshape(mul(gather(X, coord, 1), sign), shape), [2], false), 'Y');
  return g.toModel();
}

/** K = A Aᵀ in float64: the Gram matrix of the rows of A [a × d] (calibration rows, or basis vectors). */
export function buildGramGraph(): Uint8Array {
  const g = new GraphBuilder({ name: 'basis_gram' });
  const A = g.input('A', 'float64', ['a', 'd']);
  g.output(gemm(A, A, null, { transB: 1 }), 'K');
  return g.toModel();
}

/** Y = W A in float64: r vectors as combinations of the rows of A [a × d] (W [r × a]). */
export function buildCombineGraph(): Uint8Array {
  const g = new GraphBuilder({ name: 'basis_combine' });
  const W = g.input('W', 'float64', ['r', 'a']);
  const A = g.input('A', 'float64', ['a', 'd']);
  g.output(matMul(W, A), 'Y');
  return g.toModel();
}

export interface ProjectorOptions {
  device: string;
  threads?: number;
  /** Largest block of Pᵀ generated at once (bytes, float32). */
  blockBytes?: number;
  /** Whole Pᵀ matrices kept between calls, in total (bytes). */
  cacheBytes?: number;
}

export class GradientProjector {
  /** Seconds spent in `project` (generation + runs), for the stage's metrics. */
  seconds = 0;
  private readonly cache = new Map<string, Float32Array>();
  private readonly layouts = new Map<string, { coord: BigInt64Array; sign: Float32Array; shape: BigInt64Array }>();
  private cached = 0;
  private residual?: Session;
  private sparse?: Session;
  private gram?: Session;
  private combine?: Session;
  private constructor(private readonly session: Session, private readonly blockBytes: number, private readonly cacheBytes: number, private readonly device: string, private readonly threads?: number) {}

  static async create({ device, threads, blockBytes = 32 << 20, cacheBytes = 256 << 20 }: ProjectorOptions): Promise<GradientProjector> {
    if (!(Number.isInteger(blockBytes) && blockBytes > 0) || !(Number.isInteger(cacheBytes) && cacheBytes >= 0)) {
      throw new ConfigError(`gradient projector: blockBytes ${blockBytes}, cacheBytes ${cacheBytes}; expected a positive and a non-negative integer`);
    }
    return new GradientProjector(await createSession({ model: buildProjectionGraph(), device, threads }), blockBytes, cacheBytes, device, threads);
  }

  /**
   * The calibrated projection (calibration-basis.ts) of X [rows × from] with the unit's stored basis U
   * [from × rank] (row-major, float32): [X U, (X − X U Uᵀ) Pᵀ] → [rows × to], P the unit's random part.
   */
  async projectCalibrated(unit: string, pr: UnitProjection, U: Float32Array, X: Float32Array, rows: number): Promise<Float32Array> {
    const r = pr.rank ?? 0, { from: d, to: k } = pr;
    if (pr.kind !== 'calibrated' || U.length !== d * r) throw new DataError(`calibrated projection of unit ${unit}: basis of ${U.length} values for ${d} × ${r} (${pr.kind})`);
    if (!Number.isInteger(rows) || rows < 0 || X.length !== rows * d) throw new DataError(`projection of unit ${unit}: ${X.length} values for ${rows} rows of ${d}`);
    const spec = randomPart(unit, pr);
    if (r === 0) return this.project(spec, X, rows);
    if (rows === 0) return new Float32Array(0);
    const t0 = performance.now();
    const C = await this.run(X, rows, d, U, r, new Float32Array(rows * r));
    this.residual ??= await createSession({ model: buildResidualGraph(), device: this.device, threads: this.threads });
    const R = (await this.residual.run({ C: { data: C, dims: [rows, r] }, U: { data: U, dims: [d, r] }, X: { data: X, dims: [rows, d] } }, ['R'])).R.data as Float32Array;
    this.seconds += (performance.now() - t0) / 1000;
    const Z = await this.project(spec, R, rows);
    const Y = new Float32Array(rows * k), k2 = k - r;
    for (let q = 0; q < rows; q++) {
      Y.set(C.subarray(q * r, (q + 1) * r), q * k);
      Y.set(Z.subarray(q * k2, (q + 1) * k2), q * k + r);
    }
    return Y;
  }

  /**
   * The calibration basis of calibration-basis.ts (same directions: the leading eigen-directions of the
   * rows' Gram matrix, U = Gᵀ V Λ^(−1/2)) with its O(d) products as float64 ONNX GEMMs on the
   * projector's device instead of TypeScript loops: K = G Gᵀ, Uᵀ = W G, then twice S = Uᵀ U,
   * Uᵀ ← S^(−1/2) Uᵀ (symmetric re-orthonormalisation instead of Gram–Schmidt). U [d × r] row-major.
   */
  async calibrationBasis(G: ArrayLike<number>, rows: number, d: number, maxRank: number): Promise<{ U: Float64Array; rank: number; eigenvalues: number[] }> {
    checkCalibrationRows(G, rows, d, maxRank);
    const A = Float64Array.from(G);
    const t0 = performance.now();
    this.gram ??= await createSession({ model: buildGramGraph(), device: this.device, threads: this.threads });
    this.combine ??= await createSession({ model: buildCombineGraph(), device: this.device, threads: this.threads });
    const gramOf = async (X: Float64Array, a: number): Promise<Matrix> => {
      const K = (await this.gram!.run({ A: { data: X, dims: [a, d] } }, ['K'])).K.data as Float64Array;
      const M = new Matrix(a, a);
      for (let i = 0; i < a; i++) for (let j = 0; j <= i; j++) { const v = (K[i * a + j] + K[j * a + i]) / 2; M.set(i, j, v); M.set(j, i, v); }
      return M;
    };
    const combineOf = async (W: Float64Array, r: number, X: Float64Array, a: number): Promise<Float64Array> =>
      (await this.combine!.run({ W: { data: W, dims: [r, a] }, A: { data: X, dims: [a, d] } }, ['Y'])).Y.data as Float64Array;
    const { W, rank, eigenvalues } = basisDirections(await gramOf(A, rows), rows, maxRank);
    let Ut: Float64Array = new Float64Array(0);
    if (rank > 0) {
      Ut = await combineOf(W, rank, A, rows);
      for (let pass = 0; pass < 2; pass++) Ut = await combineOf(inverseSqrt(await gramOf(Ut, rank)), rank, Ut, rank);
    }
    this.seconds += (performance.now() - t0) / 1000;
    return { U: transposeRows(Ut, rank, d), rank, eigenvalues };
  }

  /** Y = X Pᵀ: X [rows × from] row-major (float32) → [rows × to]. */
  async project(spec: ProjectionSpec, X: Float32Array, rows: number): Promise<Float32Array> {
    checkSpec(spec);
    const { from: d, to: k } = spec;
    if (!Number.isInteger(rows) || rows < 0 || X.length !== rows * d) throw new DataError(`projection of unit ${spec.unit}: ${X.length} values for ${rows} rows of ${d}`);
    if (rows === 0) return new Float32Array(0);
    if (spec.generator === SJLT_GENERATOR) return this.projectSparse(spec, X, rows);
    const t0 = performance.now();
    const cols = Math.max(1, Math.min(d, Math.floor(this.blockBytes / (4 * k))));
    let Y: Float32Array = new Float32Array(rows * k);
    if (cols >= d) {
      Y = await this.run(X, rows, d, this.whole(spec), k, Y);
    } else {
      const Xc = new Float32Array(rows * cols), Pt = new Float32Array(cols * k);
      for (let j0 = 0; j0 < d; j0 += cols) {
        const c = Math.min(cols, d - j0);
        const xc = c === cols ? Xc : Xc.subarray(0, rows * c);
        for (let r = 0; r < rows; r++) xc.set(X.subarray(r * d + j0, r * d + j0 + c), r * c);
        Y = await this.run(xc, rows, c, projectionRows(spec, j0, j0 + c, Pt).subarray(0, c * k), k, Y);
      }
    }
    this.seconds += (performance.now() - t0) / 1000;
    return Y;
  }

  /** The sparse sign projection; a unit's layout (d int64 + d float32) is kept while under cacheBytes. */
  private async projectSparse(spec: ProjectionSpec, X: Float32Array, rows: number): Promise<Float32Array> {
    const t0 = performance.now();
    const id = `${spec.generator}/${spec.seed}/${spec.from}/${spec.to}/${spec.unit}`;
    let l = this.layouts.get(id);
    if (!l) {
      const { k, m, coord, sign } = sjltLayout(spec);
      l = { coord: BigInt64Array.from(coord, (c) => BigInt(c)), sign, shape: BigInt64Array.from([0n, BigInt(k), BigInt(m)]) };
      const bytes = l.coord.byteLength + l.sign.byteLength;
      if (this.cached + bytes <= this.cacheBytes) {
        this.layouts.set(id, l);
        this.cached += bytes;
      }
    }
    this.sparse ??= await createSession({ model: buildSparseProjectionGraph(), device: this.device, threads: this.threads });
    const D = l.sign.length;
    const Y = (await this.sparse.run({
      X: { data: X, dims: [rows, spec.from] }, coord: { data: l.coord, dims: [D] }, sign: { data: l.sign, dims: [D] }, shape: { data: l.shape, dims: [3] },
    }, ['Y'])).Y.data as Float32Array;
    this.seconds += (performance.now() - t0) / 1000;
    return Y;
  }

  async release(): Promise<void> {
    this.cache.clear();
    this.layouts.clear();
    await this.session.release();
    await this.residual?.release();
    await this.sparse?.release();
    await this.gram?.release();
    await this.combine?.release();
  }

  /** Pᵀ of a unit that fits one block: from the cache, or generated (and cached while under cacheBytes). */
  private whole(spec: ProjectionSpec): Float32Array {
    const id = `${spec.seed}/${spec.from}/${spec.to}/${spec.unit}`;
    let Pt = this.cache.get(id);
    if (!Pt) {
      Pt = projectionRows(spec);
      if (this.cached + Pt.byteLength <= this.cacheBytes) {
        this.cache.set(id, Pt);
        this.cached += Pt.byteLength;
      }
    }
    return Pt;
  }

  private async run(X: Float32Array, rows: number, cols: number, Pt: Float32Array, k: number, acc: Float32Array): Promise<Float32Array> {
    const feeds: Record<string, HostTensor> = { X: { data: X, dims: [rows, cols] }, Pt: { data: Pt, dims: [cols, k] }, acc: { data: acc, dims: [rows, k] } };
    return (await this.session.run(feeds, ['Y'])).Y.data as Float32Array;
  }
}
