/**
 * Small building blocks shared by the architectures: Range/Cos/Sin (position paths only, never
 * differentiated), RMSNorm (and Gemma's (1 + w) form), LayerNorm, SiLU, tanh-GELU, RoPE, masked
 * multi-head attention (optional per-head q/k norms and score scale).
 */
import { ConfigError } from '../errors.ts';
import * as O from '../onnx/index.ts';
import type { OpDef, Value } from '../onnx/index.ts';
import { unknownDim } from '../onnx/shape.ts';

/**
 * ONNX Range(start, limit, delta) on scalars; the length takes the limit's known (symbolic) size, else
 * the name the caller gives, else an unknown dim. (Never a guessed name: value_info that names two
 * different sizes alike makes ORT's planner try buffers of the wrong size — "Shape mismatch attempting
 * to re-use buffer" — and fall back.)
 */
const rangeDef = (name?: string): OpDef => ({
  type: 'Range',
  infer: ([s, l]) => [{ dtype: s!.dtype, shape: [l?.known?.[0] ?? name ?? unknownDim()] }],
});
const CosDef: OpDef = { type: 'Cos', infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }] };
const SinDef: OpDef = { type: 'Sin', infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }] };

/** [0, 1, ..., n-1] as int64, n a scalar int64 Value (e.g. gather(shapeOf(ids), scalar 1)); `dim` names its length when n's value is not known. */
export function arange(n: Value, dim?: string): Value {
  const g = n.graph;
  return g.apply(rangeDef(dim), [g.constant(0, 'int64'), n, g.constant(1, 'int64')])[0];
}
export const cos = (x: Value): Value => x.graph.apply(CosDef, [x])[0];
export const sin = (x: Value): Value => x.graph.apply(SinDef, [x])[0];

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · w (HF LlamaRMSNorm). */
export function rmsNorm(x: Value, w: Value, eps: number): Value {
  const ms = O.reduceMean(O.mul(x, x), [-1]);
  return O.mul(O.div(x, O.sqrt(O.add(ms, eps))), w);
}

/** Gemma RMSNorm (HF Gemma3RMSNorm): x / sqrt(mean(x²) + eps) · (1 + w), w stored as HF stores it. */
export const gemmaRmsNorm = (x: Value, w: Value, eps: number): Value => rmsNorm(x, O.add(w, 1), eps);

/** LayerNorm over the last axis with biased variance (torch.nn.LayerNorm). */
export function layerNorm(x: Value, w: Value, b: Value, eps: number): Value {
  const c = O.sub(x, O.reduceMean(x, [-1]));
  const v = O.reduceMean(O.mul(c, c), [-1]);
  return O.add(O.mul(O.div(c, O.sqrt(O.add(v, eps))), w), b);
}

/**
 * SiLU x·σ(x). In float64, σ is written 0.5(1 + tanh(x/2)): ORT fuses x·Sigmoid(x) into
 * com.microsoft.QuickGelu, which has no double kernel.
 */
export const silu = (x: Value): Value =>
  O.mul(x, x.dtype === 'float64' ? O.mul(O.add(O.tanh(O.mul(x, 0.5)), 1), 0.5) : O.sigmoid(x));
/** HF 'gelu_new' / 'gelu_pytorch_tanh': 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). */
export function geluTanh(x: Value): Value {
  const inner = O.mul(O.add(x, O.mul(O.mul(O.mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return O.mul(O.mul(x, 0.5), O.add(O.tanh(inner), 1));
}
/** Exact GELU ('gelu'): 0.5 x (1 + erf(x / √2)). */
export const geluErf = (x: Value): Value => O.mul(O.mul(x, 0.5), O.add(O.erf(O.mul(x, Math.SQRT1_2)), 1));

export function activation(name: string, x: Value): Value {
  switch (name) {
    case 'silu': case 'swish': return silu(x);
    case 'gelu_new': case 'gelu_pytorch_tanh': case 'gelu_fast': return geluTanh(x);
    case 'gelu': return geluErf(x);
    default: throw new ConfigError(`hidden activation "${name}" is not supported; expected silu, gelu, gelu_new or gelu_pytorch_tanh`);
  }
}

/** RoPE inverse frequencies (HF `_compute_default_rope_parameters` + 'linear' / 'llama3' scaling). */
export function ropeInvFreq(headDim: number, theta: number, scaling: Record<string, unknown> | null): number[] {
  const base = Array.from({ length: headDim / 2 }, (_, i) => Math.fround(1 / Math.pow(theta, (2 * i) / headDim)));
  const type = scaling ? String(scaling.rope_type ?? scaling.type ?? 'default') : 'default';
  if (type === 'default') return base;
  if (type === 'linear') return base.map((f) => f / Number(scaling!.factor));
  if (type === 'llama3') {
    const factor = Number(scaling!.factor), lo = Number(scaling!.low_freq_factor), hi = Number(scaling!.high_freq_factor);
    const old = Number(scaling!.original_max_position_embeddings);
    const loWl = old / lo, hiWl = old / hi;
    return base.map((f) => {
      const wl = (2 * Math.PI) / f;
      if (wl < hiWl) return f;
      if (wl > loWl) return f / factor;
      const s = (old / wl - lo) / (hi - lo);
      return (1 - s) * (f / factor) + s * f;
    });
  }
  throw new ConfigError(`rope_scaling type "${type}" is not supported; expected default, linear or llama3`);
}

/** cos/sin tables [T, headDim] for positions 0..T-1 (HF layout: frequencies repeated twice). */
export function ropeTables(pos: Value, invFreq: number[], dtype: 'float32' | 'float64'): { cos: Value; sin: Value } {
  const g = pos.graph;
  const inv = g.constant(invFreq.map(Math.fround), 'float32', [1, invFreq.length]);
  const freqs = O.mul(O.unsqueeze(O.cast(pos, 'float32'), [-1]), inv); // [T, dh/2], float32 as in HF
  // cos/sin in float64: ORT's float32 kernels round differently in their SIMD body and scalar tail,
  // which made a position's table depend on the sequence length.
  const emb = O.cast(O.concat([freqs, freqs], -1), 'float64');
  return { cos: O.cast(cos(emb), dtype), sin: O.cast(sin(emb), dtype) };
}

function rotateHalf(x: Value, dh: number): Value {
  const [x1, x2] = O.split(x, [dh / 2, dh / 2], -1);
  return O.concat([O.neg(x2), x1], -1);
}
const applyRope = (x: Value, r: { cos: Value; sin: Value }, dh: number): Value =>
  O.add(O.mul(x, r.cos), O.mul(rotateHalf(x, dh), r.sin));

export interface AttentionArgs {
  /** [B, T, H·dh], [B, T, kvH·dh], [B, T, kvH·dh] */
  q: Value; k: Value; v: Value;
  heads: number; kvHeads: number; headDim: number;
  /** Additive mask [B, 1, 1, T, T] (0 where allowed, a large negative number elsewhere). */
  bias: Value;
  rope?: { cos: Value; sin: Value };
  /** Per-head norms of queries / keys over head_dim, applied before RoPE (Gemma 3 q_norm, k_norm). */
  normQ?: (x: Value) => Value;
  normK?: (x: Value) => Value;
  /** Score scale; default 1/√headDim (Gemma 3: query_pre_attn_scalar^-0.5). */
  scale?: number;
}

/**
 * Scaled dot-product attention with grouped-query heads: query head h uses kv head ⌊h / (H/kvH)⌋
 * (HF repeat_kv), done by broadcasting [B, kvH, n_rep, T, dh] against [B, kvH, 1, T, dh]
 * instead of copying k and v. Returns [B, T, H·dh].
 */
export function attention(a: AttentionArgs): Value {
  const { heads, kvHeads, headDim: dh } = a;
  const rep = heads / kvHeads;
  const split = (x: Value, r: number) => O.transpose(O.reshape(x, [0, 0, kvHeads, r, dh]), [0, 2, 3, 1, 4]);
  let q = split(a.q, rep), k = split(a.k, 1);
  const v = split(a.v, 1);
  if (a.normQ) q = a.normQ(q);
  if (a.normK) k = a.normK(k);
  if (a.rope) { q = applyRope(q, a.rope, dh); k = applyRope(k, a.rope, dh); }
  const scores = O.add(O.mul(O.matMul(q, O.transposeLast2(k)), a.scale ?? 1 / Math.sqrt(dh)), a.bias);
  const ctx = O.matMul(O.softmax(scores, -1), v); // [B, kvH, rep, T, dh]
  return O.reshape(O.transpose(ctx, [0, 3, 1, 2, 4]), [0, 0, heads * dh]);
}

export const MASK_NEG = -1e9;

/**
 * Additive attention bias [B, 1, 1, T, T]: causal (plus an optional sliding window) and key padding
 * from attention_mask [B, T] (1 = token, 0 = padding).
 */
export function attentionBias(pos: Value, attentionMask: Value, dtype: 'float32' | 'float64', slidingWindow: number | null): Value {
  const i = O.unsqueeze(pos, [1]), j = O.unsqueeze(pos, [0]); // [T,1], [1,T]
  const zero = attentionMask.graph.constant(0, dtype);
  let causal = O.where(O.greater(j, i), MASK_NEG, zero);
  if (slidingWindow !== null) {
    const far = O.greater(O.sub(i, j), attentionMask.graph.constant(slidingWindow - 1, 'int64'));
    causal = O.add(causal, O.where(far, MASK_NEG, zero));
  }
  const pad = O.mul(O.sub(1, O.cast(attentionMask, dtype)), MASK_NEG); // [B, T]
  return O.add(O.unsqueeze(pad, [1, 2, 3]), causal);
}
