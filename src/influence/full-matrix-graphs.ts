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
 * ([0 × 1]) tensors for the others (`EMPTY_FEEDS`), whose nodes then cost microseconds.
 *
 * The graphs hold only the O(n·d) and O(m·n·d) products; the O(m·n) combinations (cosine division,
 * DataInf's λ, weights and final (P − C/n)/λ) run on the host in float64. Layout choices, measured in
 * bench/README.md:
 *  - Products against G are written with G as the *left* operand (Pᵀ = G Vᵀ [n × m], Cᵀ = G Rᵀ): MLAS
 *    reads the left operand in place and packs only the right one, so the large G is not copied into
 *    packed panels (about 1.2–1.5× faster than V Gᵀ for m = 128, n = 1024, d = 32768).
 *  - Squared row norms are (B ⊙ B)·1 over blocks B of a few MiB, walked by a Scan inside one run (the
 *    `norms` branch): the squared block stays in cache for the MatMul, and the dot products B u of the
 *    same block are read from cache too, so G costs about one pass over memory. ORT's ReduceSumSquare is
 *    about 2× slower (scalar); a whole-matrix Mul writes and re-reads n·d values; one run per block
 *    pays ORT's ~0.1 ms per-run overhead per block.
 */
import { gemm, GraphBuilder, matMul, mul, scan, transpose, type Value } from '../onnx/index.ts';

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
 *  - `accumulate`: R_out = R + W B, W [m, b], B [b, d], R [m, d] (streamed DataInf R = Σ W_b B; v = c·Σ_j v_j).
 *  - `dot`: dot = X u, X [r, d], u [d, 1] (the matrix-vector product G v, fed the whole G).
 *  - `norms`: squared row norms (B ⊙ B)·1 with `ones` [d, 1], and the dot products B u with u [d, k]
 *    (k = 1, or k = 0 when only the norms are wanted), over cache-sized row blocks B of G in one run:
 *    a Scan walks the blocks of S3 [nb, b, d] (a view of the first nb·b rows), so B ⊙ B and B are read
 *    from cache by the two MatMuls and G costs about one pass over memory; the last r < b rows come as
 *    S [r, d] (a Scan needs nb ≥ 1: fewer than b rows go in as one block). Outputs norm_sq3 [nb, b, 1], s_dot3 [nb, b, k], norm_sq [r, 1], s_dot [r, k].
 *  - `correction` (projection) and `correction_gram`: DataInf's Cᵀ [n, m] = (W (G Gᵀ))ᵀ from the weights
 *    W [m, n] (W = P diag(1/(λ+‖g‖²)), made on the host) and G [n, d], in one run: G (W G)ᵀ, or
 *    (G Gᵀ) Wᵀ (G Gᵀ is symmetric). With m = 1 it is the mean-gradient path's G r, r = Σ_i w_i g_i.
 */
const BRANCHES = {
  project: { inputs: { A: [['p_a', 'p_d'], [0, 1]], B: [['p_b', 'p_d'], [0, 1]] }, outputs: ['Y'] },
  accumulate: { inputs: { acc_W: [['a_m', 'a_b'], [0, 1]], acc_B: [['a_b', 'a_d'], [1, 1]], acc_R: [['a_m', 'a_d'], [0, 1]] }, outputs: ['R_out'] },
  dot: { inputs: { dot_X: [['t_r', 't_d'], [0, 1]], dot_u: [['t_d', 1], [1, 1]] }, outputs: ['dot'] },
  norms: {
    inputs: { S3: [['s_nb', 's_b', 's_d'], [1, 0, 1]], S: [['s_r', 's_d'], [0, 1]], ones: [['s_d', 1], [1, 1]], s_u: [['s_d', 's_k'], [1, 0]] },
    outputs: ['norm_sq3', 's_dot3', 'norm_sq', 's_dot'],
  },
  correction: { inputs: { cor_W: [['c_m', 'c_n'], [0, 0]], cor_G: [['c_n', 'c_d'], [0, 1]] }, outputs: ['Ct'] },
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
  for (const b of Object.values(BRANCHES)) for (const [name, [dims]] of Object.entries(b.inputs)) x[name] = g.input(name, dtype, [...dims]);
  g.output(gemm(x.A, x.B, null, { transB: 1 }), 'Y');
  g.output(gemm(x.acc_W, x.acc_B, x.acc_R), 'R_out');
  g.output(matMul(x.dot_X, x.dot_u), 'dot');
  const body = new GraphBuilder({ name: 'row_block', prefix: 'blk_' });
  const B = body.input('blk_B', dtype, ['s_b', 's_d']);
  const [ones, u] = [body.outer(x.ones), body.outer(x.s_u)];
  body.output(matMul(mul(B, B), ones), 'blk_norm_sq');
  body.output(matMul(B, u), 'blk_dot');
  const [norms3, dots3] = scan(body, [], [x.S3]);
  g.output(norms3, 'norm_sq3');
  g.output(dots3, 's_dot3');
  g.output(matMul(mul(x.S, x.S), x.ones), 'norm_sq');
  g.output(matMul(x.S, x.s_u), 's_dot');
  g.output(matMul(x.cor_G, transpose(matMul(x.cor_W, x.cor_G), [1, 0])), 'Ct');
  g.output(gemm(gemm(x.gram_G, x.gram_G, null, { transB: 1 }), x.gram_W, null, { transB: 1 }), 'Ct_gram');
  return g.toModel();
}
