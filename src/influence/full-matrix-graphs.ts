/**
 * The ONNX graph of the influence engine (full-matrix.ts), SCIENCE.md §2: one graph per precision
 * holding every product the engine needs as an independent branch (below), each with its own inputs
 * and symbolic dims, so one session serves every unit, shape and method.
 *
 * Why one session: ORT gives each session its own intra-op thread pool, whose threads spin for a
 * while after a run. When a computation alternates between sessions (V Gᵀ, then row norms, then the
 * DataInf correction), the idle pool of the previous session spins on the cores the next one needs:
 * on 2 cores that made the DataInf matrix ~1.8× slower than the sum of its parts (bench/README.md).
 * With one session, consecutive runs share one pool. A run feeds the branch it wants and empty
 * tensors for the others (`idleShapes`), whose nodes then cost microseconds.
 *
 * The graphs hold only the O(n·d) and O(m·n·d) products; the O(m·n) combinations (cosine division,
 * DataInf's λ, weights and final (P − C/n)/λ) run on the host in float64. Layout choices, measured in
 * bench/README.md:
 *  - Products against G are written with G as the *left* operand (Pᵀ = G Vᵀ [n × m], Cᵀ = G Rᵀ): MLAS
 *    reads the left operand in place and packs only the right one, so the large G is not copied into
 *    packed panels (about 1.2–1.5× faster than V Gᵀ for m = 128, n = 1024, d = 32768).
 *  - Squared row norms are (B ⊙ B)·1 over blocks B sized from the L3 cache (full-matrix.ts
 *    `rowBlockBytes`), walked by a Scan inside one run (the
 *    `norms` branch): the squared block stays in cache for the MatMul, and the dot products B u of the
 *    same block are read from cache too, so G costs about one pass over memory. ORT's ReduceSumSquare is
 *    about 2× slower; a whole-matrix Mul writes and re-reads n·d values; one run per block pays ORT's
 *    ~0.1 ms per-run overhead per block.
 */
import { gemm, GraphBuilder, matMul, mul, reshape, scan, transpose, type Value } from '../onnx/index.ts';

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
 * The branches: inputs with their dims (symbolic names private to the branch) and the shape fed
 * when the branch is idle, and outputs.
 *  - `project`: Y = A Bᵀ, A [a, d], B [b, d] → [a, b]. Pᵀ = G Vᵀ, and a streamed block's Cᵀ = B Rᵀ.
 *  - `accumulate`: R_out = R + W B, W [m, b], B [b, d], R [m, d] (streamed DataInf: R = Σ_b W_b B_b).
 *  - `dot`: v = c V [1, d] (the reduced validation gradient: c [1, m] holds 1/m, or 1 for a sum or a
 *    given vector), then dot = X vᵀ [r, 1] over the whole X = G; outputs dot and dot_v (v itself).
 *  - `norms`: squared row norms (B ⊙ B)·1 with `ones` [d, 1], and the dot products B vᵀ with
 *    v = c V [k, d] (k = 1, or k = 0 with c [0, 0] when only the norms are wanted; `s_ushape` = [d, k]), over cache-sized
 *    row blocks B of G in one run: a Scan walks the blocks of S3 [nb, b, d] (a view of the first nb·b
 *    rows), so B ⊙ B and B are read from cache by the MatMuls and G costs about one pass over memory;
 *    the last r < b rows come as S [r, d] (a Scan needs nb ≥ 1: fewer than b rows go in as one block).
 *    Outputs norm_sq3 [nb, b, 1], s_dot3 [nb, b, k], norm_sq [r, 1], s_dot [r, k], s_v [k, d].
 *  - `correction` (projection) and `correction_gram`: DataInf's Cᵀ [n, m] = (W (G Gᵀ))ᵀ from the weights
 *    W [m, n] (W = P diag(1/(λ+‖g‖²)), made on the host) and G [n, d], in one run: G (W G)ᵀ, or
 *    (G Gᵀ) Wᵀ (G Gᵀ is symmetric).
 *  - `correction_vec`: the mean-gradient DataInf's G r with r = Gᵀ w = Σ_i w_i g_i, w [n, 1] (r as a
 *    transposed-A Gemm: ~15% faster than (wᵀ G)ᵀ for one vector, slower for an [m × n] W).
 */
const BRANCHES = {
  project: { inputs: { A: [['p_a', 'p_d'], [0, 1]], B: [['p_b', 'p_d'], [0, 1]] }, outputs: ['Y'] },
  accumulate: { inputs: { acc_W: [['a_m', 'a_b'], [0, 1]], acc_B: [['a_b', 'a_d'], [1, 1]], acc_R: [['a_m', 'a_d'], [0, 1]] }, outputs: ['R_out'] },
  dot: { inputs: { dot_X: [['t_r', 't_d'], [0, 1]], dot_c: [[1, 't_m'], [1, 0]], dot_V: [['t_m', 't_d'], [0, 1]] }, outputs: ['dot', 'dot_v'] },
  norms: {
    inputs: {
      S3: [['s_nb', 's_b', 's_d'], [1, 0, 1]], S: [['s_r', 's_d'], [0, 1]], ones: [['s_d', 1], [1, 1]],
      s_c: [['s_k', 's_m'], [0, 0]], s_V: [['s_m', 's_d'], [0, 1]], s_ushape: [[2], [1, 0]],
    },
    outputs: ['norm_sq3', 's_dot3', 'norm_sq', 's_dot', 's_v'],
  },
  correction: { inputs: { cor_W: [['c_m', 'c_n'], [0, 0]], cor_G: [['c_n', 'c_d'], [0, 1]] }, outputs: ['Ct'] },
  correction_vec: { inputs: { vec_w: [['v_n', 1], [0, 1]], vec_G: [['v_n', 'v_d'], [0, 1]] }, outputs: ['Gr'] },
  correction_gram: { inputs: { gram_W: [['g_m', 'g_n'], [0, 0]], gram_G: [['g_n', 'g_d'], [0, 1]] }, outputs: ['Ct_gram'] },
} as const satisfies Record<string, { inputs: Record<string, readonly [readonly (string | number)[], readonly number[]]>; outputs: readonly string[] }>;

export type Branch = keyof typeof BRANCHES;

/** Every input of the graph with the shape of the empty tensor fed while its branch is idle. */
export function idleShapes(): Record<string, readonly number[]> {
  const out: Record<string, readonly number[]> = {};
  for (const b of Object.values(BRANCHES)) for (const [name, [, idle]] of Object.entries(b.inputs)) out[name] = idle;
  return out;
}

export function branchOutputs(b: Branch): readonly string[] {
  return BRANCHES[b].outputs;
}

/** Every branch of BRANCHES in one graph. */
export function buildInfluenceGraph(dtype: Precision): Uint8Array {
  const g = new GraphBuilder({ name: `influence_${dtype}` });
  const x: Record<string, Value> = {};
  for (const b of Object.values(BRANCHES)) {
    for (const [name, [dims]] of Object.entries(b.inputs)) x[name] = g.input(name, name === 's_ushape' ? 'int64' : dtype, [...dims]);
  }
  g.output(gemm(x.A, x.B, null, { transB: 1 }), 'Y');
  g.output(gemm(x.acc_W, x.acc_B, x.acc_R), 'R_out');
  const dotV = matMul(x.dot_c, x.dot_V);
  // [1, d] → [d, 1] as a Reshape: a Transpose here is fused by ORT into a transB MatMul (~40% slower GEMV).
  g.output(matMul(x.dot_X, reshape(dotV, [-1, 1])), 'dot');
  g.output(dotV, 'dot_v');
  const sV = matMul(x.s_c, x.s_V);
  const sU = reshape(sV, x.s_ushape, { allowZero: true }); // [k, d] → [d, k], k ≤ 1 (see `dot`)
  g.output(sV, 's_v');
  const body = new GraphBuilder({ name: 'row_block', prefix: 'blk_' });
  const B = body.input('blk_B', dtype, ['s_b', 's_d']);
  const [ones, u] = [body.outer(x.ones), body.outer(sU)];
  body.output(matMul(mul(B, B), ones), 'blk_norm_sq');
  body.output(matMul(B, u), 'blk_dot');
  const [norms3, dots3] = scan(body, [], [x.S3]);
  g.output(norms3, 'norm_sq3');
  g.output(dots3, 's_dot3');
  g.output(matMul(mul(x.S, x.S), x.ones), 'norm_sq');
  g.output(matMul(x.S, sU), 's_dot');
  g.output(matMul(x.cor_G, transpose(matMul(x.cor_W, x.cor_G), [1, 0])), 'Ct');
  g.output(matMul(x.vec_G, gemm(x.vec_G, x.vec_w, null, { transA: 1 })), 'Gr');
  g.output(gemm(gemm(x.gram_G, x.gram_G, null, { transB: 1 }), x.gram_W, null, { transB: 1 }), 'Ct_gram');
  return g.toModel();
}
