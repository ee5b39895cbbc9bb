/**
 * ONNX graphs for the influence matrix (SCIENCE.md §2), built once per (kind, precision) with
 * symbolic dims m (validation rows), n (training rows, or b for one row block) and d (unit size),
 * so one session serves every unit and every shape. Used by full-matrix.ts.
 *
 * Only what a method needs is computed: TracIn is one Gemm; cosine and DataInf add the squared row
 * norms (one batched MatMul over G, see rowNormSq; extra inputs `norm_shape`, `norm_eye`), which are
 * also returned (`g_norm_sq`, and `v_norm_sq` for cosine) so the host can check them: a NaN/Inf entry makes its row's norm non-finite. NaN/Inf in the
 * result itself is checked on the host as well (a non-finite entry of g_k makes column k of V Gᵀ
 * non-finite), so no O(n·d) scan runs in JavaScript unless something is wrong.
 *
 * DataInf damping inside a graph: λ = lam_fixed + lam_scale · Σ_i ‖g_i‖² / (n·d), so the default
 * λ_l = 0.1 · (1/(n·d)) Σ‖g_i‖² is (lam_fixed, lam_scale) = (0, 0.1) and an explicit λ is (λ, 0).
 */
import {
  add, cast, div, gemm, GraphBuilder, greater, matMul, mul, reduceSum, reshape, size, sqrt, sub, transpose, unsqueeze, where,
  type Value,
} from '../onnx/index.ts';
import type { InfluenceMethod } from './types.ts';

export type Precision = 'float32' | 'float64';

/**
 * How DataInf's correction term (V Gᵀ) diag(1/(λ+‖g‖²)) (G Gᵀ) is associated:
 *  - `gram`:       W (G Gᵀ)   with W = (V Gᵀ) diag(·): n²·d + m·n² multiply-adds, an [n × n] temporary;
 *  - `projection`: (W G) Gᵀ:  2·m·n·d multiply-adds, an [m × d] temporary R = W G.
 * Mathematically identical; `projection` is cheaper whenever m < n (the usual case) and is the only
 * one that streams over row blocks of G in a fixed number of passes.
 */
export type Association = 'gram' | 'projection';

/** Multiply-add count of the DataInf correction for each association (used by `auto`). */
export function correctionCost(assoc: Association, m: number, n: number, d: number): number {
  return assoc === 'gram' ? n * n * d + m * n * n : 2 * m * n * d;
}

/**
 * Squared norm of each row of a 2-D x [r, d]: [r]. ORT's ReduceSumSquare over [1024 × 32768] takes
 * ~40 ms on 2 cores (scalar, one thread); this runs in ~13 ms (bench/README.md). Each row is viewed as
 * a [k × d/k] matrix X_i (`norm_shape` = [-1, k, d/k], fed at run time so one graph serves every d),
 * and ‖x_i‖² = tr(X_i X_iᵀ): one batched MatMul (MLAS, SIMD, all threads), then the k diagonal entries
 * picked by `norm_eye` = I_k [k, k] and summed. k is chosen on the host (normView in full-matrix.ts).
 * The two inputs are created once per graph and shared by every norm in it.
 */
function rowNormSq(x: Value): Value {
  const g = x.graph;
  const shape = normInputs.get(g) ?? { view: g.input('norm_shape', 'int64', [3]), eye: g.input('norm_eye', x.dtype, ['k', 'k']) };
  normInputs.set(g, shape);
  const X = reshape(x, shape.view); // [r, k, d/k]
  return reduceSum(mul(matMul(X, transpose(X, [0, 2, 1])), shape.eye), [1, 2], false);
}
const normInputs = new WeakMap<GraphBuilder, { view: Value; eye: Value }>();

/** λ = lam_fixed + lam_scale · Σ gn / numel(G) (a scalar). */
function dampingIn(g: GraphBuilder, G: Value, gn: Value, dtype: Precision): Value {
  const fixed = g.input('lam_fixed', dtype, []);
  const scale = g.input('lam_scale', dtype, []);
  const meanSq = div(reduceSum(gn, undefined, false), cast(size(G), dtype));
  return add(fixed, mul(scale, meanSq));
}

/** cos = P / (‖v‖ ‖g‖ᵀ), 0 where a norm is 0 (cosine.ts convention). */
function cosineFrom(P: Value, vn: Value, gn: Value, vAxis: 'col' | 'scalar'): Value {
  const vNorm = vAxis === 'col' ? unsqueeze(sqrt(vn), [1]) : sqrt(vn);
  const den = mul(vNorm, unsqueeze(sqrt(gn), [0]));
  const pos = greater(den, 0);
  return where(pos, div(P, where(pos, den, 1)), 0);
}

/** DataInf from P = V Gᵀ (rows = validation vectors), all in the graph. */
function dataInfFrom(P: Value, G: Value, gn: Value, lam: Value, assoc: Association, dtype: Precision): Value {
  const W = div(P, add(lam, gn)); // [m, n] · diag(1/(λ+‖g‖²))
  const C = assoc === 'gram'
    ? matMul(W, gemm(G, G, null, { transB: 1 })) // W (G Gᵀ)
    : gemm(matMul(W, G), G, null, { transB: 1 }); // (W G) Gᵀ
  const n = cast(size(gn), dtype);
  return div(sub(P, div(C, n)), lam);
}

/**
 * In-memory full matrix: inputs V [m, d], G [n, d] (+ lam_fixed, lam_scale for DataInf); outputs
 * M [m, n]; cosine also g_norm_sq [n], v_norm_sq [m]; DataInf also g_norm_sq [n], lambda [].
 */
export function buildFullMatrixGraph(method: InfluenceMethod, dtype: Precision, assoc: Association = 'projection'): Uint8Array {
  const g = new GraphBuilder({ name: `influence_matrix_${method}_${assoc}_${dtype}` });
  const V = g.input('V', dtype, ['m', 'd']);
  const G = g.input('G', dtype, ['n', 'd']);
  const P = gemm(V, G, null, { transB: 1 });
  if (method === 'tracin') {
    g.output(P, 'M');
    return g.toModel();
  }
  const gn = rowNormSq(G);
  if (method === 'cosine') {
    const vn = rowNormSq(V);
    g.output(cosineFrom(P, vn, gn, 'col'), 'M');
    g.output(vn, 'v_norm_sq');
  } else {
    const lam = dampingIn(g, G, gn, dtype);
    g.output(dataInfFrom(P, G, gn, lam, assoc, dtype), 'M');
    g.output(lam, 'lambda');
  }
  g.output(gn, 'g_norm_sq');
  return g.toModel();
}

/**
 * Mean-gradient path (one score per training sample): inputs V [m, d], G [n, d], red_scale []
 * (1/m for the mean, 1 for the sum) (+ lam_fixed, lam_scale). v = red_scale · Σ_j v_j.
 * Outputs S [1, n]; cosine also g_norm_sq [n], v_norm_sq [] (‖v‖²); DataInf also g_norm_sq, lambda.
 * DataInf uses r = Σ_i w_i g_i (never the n×n Gram matrix, SCIENCE.md §2 "Cost").
 */
export function buildMeanScoresGraph(method: InfluenceMethod, dtype: Precision): Uint8Array {
  const g = new GraphBuilder({ name: `influence_mean_${method}_${dtype}` });
  const V = g.input('V', dtype, ['m', 'd']);
  const G = g.input('G', dtype, ['n', 'd']);
  const scale = g.input('red_scale', dtype, []);
  const v = mul(reduceSum(V, [0], true), scale); // [1, d]
  const P = gemm(v, G, null, { transB: 1 }); // [1, n]
  if (method === 'tracin') {
    g.output(P, 'S');
    return g.toModel();
  }
  const gn = rowNormSq(G);
  if (method === 'cosine') {
    const vv = reduceSum(mul(v, v), undefined, false);
    g.output(cosineFrom(P, vv, gn, 'scalar'), 'S');
    g.output(vv, 'v_norm_sq');
  } else {
    const lam = dampingIn(g, G, gn, dtype);
    g.output(dataInfFrom(P, G, gn, lam, 'projection', dtype), 'S');
    g.output(lam, 'lambda');
  }
  g.output(gn, 'g_norm_sq');
  return g.toModel();
}

/** Streaming pass 1, one row block B [b, d]: P = V Bᵀ [m, b] (+ g_norm_sq [b] with `norms`). */
export function buildBlockProjectGraph(dtype: Precision, norms: boolean): Uint8Array {
  const g = new GraphBuilder({ name: `influence_block_project${norms ? '_norms' : ''}_${dtype}` });
  const V = g.input('V', dtype, ['m', 'd']);
  const B = g.input('B', dtype, ['b', 'd']);
  g.output(gemm(V, B, null, { transB: 1 }), 'P');
  if (norms) g.output(rowNormSq(B), 'g_norm_sq');
  return g.toModel();
}

/** Squared row norms of X [r, d] (validation rows, once per unit when streaming). */
export function buildRowNormsGraph(dtype: Precision): Uint8Array {
  const g = new GraphBuilder({ name: `influence_row_norms_${dtype}` });
  g.output(rowNormSq(g.input('X', dtype, ['r', 'd'])), 'norm_sq');
  return g.toModel();
}

/** Streaming DataInf accumulation: R_out = R + W B, with W [m, b] the weighted block of V Gᵀ. */
export function buildBlockAccumulateGraph(dtype: Precision): Uint8Array {
  const g = new GraphBuilder({ name: `influence_block_accumulate_${dtype}` });
  const W = g.input('W', dtype, ['m', 'b']);
  const B = g.input('B', dtype, ['b', 'd']);
  const R = g.input('R', dtype, ['m', 'd']);
  g.output(gemm(W, B, R), 'R_out');
  return g.toModel();
}

/** Streaming DataInf finish: M = Ps − Rs Bᵀ, with Ps = P/λ [m, b] and Rs = R/(n·λ) [m, d]. */
export function buildBlockFinishGraph(dtype: Precision): Uint8Array {
  const g = new GraphBuilder({ name: `influence_block_finish_${dtype}` });
  const Rs = g.input('Rs', dtype, ['m', 'd']);
  const B = g.input('B', dtype, ['b', 'd']);
  const Ps = g.input('Ps', dtype, ['m', 'b']);
  g.output(gemm(Rs, B, Ps, { alpha: -1, transB: 1 }), 'M');
  return g.toModel();
}
