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
 */
import { GraphBuilder, gemm } from '../onnx/index.ts';
import { createSession, type HostTensor, type Session } from '../runtime/index.ts';
import { ConfigError, DataError } from '../errors.ts';
import { checkSpec, projectionRows, type ProjectionSpec } from './projection.ts';

export function buildProjectionGraph(): Uint8Array {
  const g = new GraphBuilder({ name: 'gradient_projection' });
  const X = g.input('X', 'float32', ['rows', 'cols']);
  const Pt = g.input('Pt', 'float32', ['cols', 'k']);
  const acc = g.input('acc', 'float32', ['rows', 'k']);
  g.output(gemm(X, Pt, acc), 'Y');
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
  private cached = 0;
  private constructor(private readonly session: Session, private readonly blockBytes: number, private readonly cacheBytes: number) {}

  static async create({ device, threads, blockBytes = 32 << 20, cacheBytes = 256 << 20 }: ProjectorOptions): Promise<GradientProjector> {
    if (!(Number.isInteger(blockBytes) && blockBytes > 0) || !(Number.isInteger(cacheBytes) && cacheBytes >= 0)) {
      throw new ConfigError(`gradient projector: blockBytes ${blockBytes}, cacheBytes ${cacheBytes}; expected a positive and a non-negative integer`);
    }
    return new GradientProjector(await createSession({ model: buildProjectionGraph(), device, threads }), blockBytes, cacheBytes);
  }

  /** Y = X Pᵀ: X [rows × from] row-major (float32) → [rows × to]. */
  async project(spec: ProjectionSpec, X: Float32Array, rows: number): Promise<Float32Array> {
    checkSpec(spec);
    const { from: d, to: k } = spec;
    if (!Number.isInteger(rows) || rows < 0 || X.length !== rows * d) throw new DataError(`projection of unit ${spec.unit}: ${X.length} values for ${rows} rows of ${d}`);
    if (rows === 0) return new Float32Array(0);
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

  async release(): Promise<void> {
    this.cache.clear();
    await this.session.release();
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
