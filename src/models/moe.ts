/**
 * LoRA-MoE (MoLA style, SCIENCE.md 3a): on each target module of block l, s_l LoRA experts and a
 * router. Per token: p = softmax(W_r x) over the s_l experts, keep the top-K (K = 2, 1 where
 * s_l = 1), renormalise over them, h = W₀x + scaling · Σ_{j∈topK} p_j B_j A_j x.
 * Experts are evaluated densely and weighted by a sparse gate (exactly the top-K sum; LoRA ranks are
 * small, so the dense expert pass costs little). Tensor names (LayerFlow's, PEFT has no MoE):
 *   base_model.model.<module>.moe.router.weight [s, in]
 *   base_model.model.<module>.moe.lora_A.weight [s, r, in]     (uniform init, see initMoe)
 *   base_model.model.<module>.moe.lora_B.weight [s, out, r]    (zero init)
 */
import { ConfigError } from '../errors.ts';
import * as O from '../onnx/index.ts';
import type { Value } from '../onnx/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import type { ModelContext } from './context.ts';
import { allModules, checkTargets, mulberry32, type LinearModule } from './lora.ts';

export interface MoeSpec {
  r: number;
  alpha: number;
  targets: string[];
  /** Experts per block, length = numLayers (s_l ≥ 1; from allocateExperts). */
  experts: number[];
  /** Default 2 (1 wherever a block has a single expert). */
  topK?: number;
}

export const moeKey = (module: string, what: 'router' | 'lora_A' | 'lora_B'): string => `base_model.model.${module}.moe.${what}.weight`;

export function moeModules(c: ModelConfig, s: MoeSpec): LinearModule[] {
  checkTargets(c, s.targets, 'moe');
  if (s.experts.length !== c.numLayers) throw new ConfigError(`moe: experts has ${s.experts.length} entries; expected one per block (${c.numLayers})`);
  s.experts.forEach((e, l) => { if (!Number.isInteger(e) || e < 1) throw new ConfigError(`moe: experts[${l}] is ${e}; expected an integer >= 1`); });
  if (!Number.isInteger(s.r) || s.r <= 0 || !(s.alpha > 0)) throw new ConfigError(`moe: r ${s.r} / alpha ${s.alpha} must be positive`);
  return allModules(c).filter((m) => s.targets.includes(m.leaf));
}

export interface MoeUnit { key: string; module: string; layer: number; shape: number[] }
/** Trainable MoE tensors: router, A, B for every target module. */
export function moeUnits(c: ModelConfig, s: MoeSpec): MoeUnit[] {
  return moeModules(c, s).flatMap((m) => {
    const e = s.experts[m.layer];
    return [
      { key: moeKey(m.name, 'router'), module: m.name, layer: m.layer, shape: [e, m.inF] },
      { key: moeKey(m.name, 'lora_A'), module: m.name, layer: m.layer, shape: [e, s.r, m.inF] },
      { key: moeKey(m.name, 'lora_B'), module: m.name, layer: m.layer, shape: [e, m.outF, s.r] },
    ];
  });
}

/** The delta added to module m's output for x [B, T, in]; records the load-balancing term in ctx. */
export function moeDelta(ctx: ModelContext, x: Value, m: LinearModule): Value {
  const spec = ctx.moe!;
  const s = spec.experts[m.layer], r = spec.r;
  const K = s === 1 ? 1 : Math.min(spec.topK ?? 2, s);
  for (const k of ['router', 'lora_A', 'lora_B'] as const) {
    if (ctx.isPerExample(moeKey(m.name, k))) throw new ConfigError(`moe: per-example gradients of ${moeKey(m.name, k)} are not supported`);
  }
  const Wr = ctx.param(moeKey(m.name, 'router'), [s, m.inF]);
  const A = ctx.param(moeKey(m.name, 'lora_A'), [s, r, m.inF]);
  const B = ctx.param(moeKey(m.name, 'lora_B'), [s, m.outF, r]);
  const probs = O.softmax(O.matMul(x, O.transpose(Wr)), -1); // [B, T, s]
  const [top, idx] = O.topK(probs, K);
  const gate = O.scatterElements(O.zerosLike(probs), idx, O.div(top, O.reduceSum(top, [-1])), { axis: -1 }); // [B, T, s]
  const ax = O.reshape(O.matMul(x, O.transpose(O.reshape(A, [s * r, m.inF]))), [0, 0, s, r]); // [B, T, s, r]
  const eo = O.matMul(O.transpose(ax, [2, 0, 1, 3]), O.unsqueeze(O.transposeLast2(B), [1])); // [s, B, T, out]
  const mixed = O.reduceSum(O.mul(O.transpose(eo, [1, 2, 0, 3]), O.unsqueeze(gate, [-1])), [2], false);
  // Mixtral-style load balancing: s · Σ_e (fraction of routed slots to e) · (mean router prob of e), over real tokens.
  const mask = O.reshape(ctx.tokenMask, [0, 0]); // [B, T]
  const n = O.reduceSum(mask, undefined, false);
  const routed = O.reduceSum(O.oneHot(idx, s, ctx.dtype), [2]); // [B, T, 1, s] -> sum over K
  const frac = O.div(O.reduceSum(O.mul(O.reshape(routed, [0, 0, s]), O.unsqueeze(mask, [-1])), [0, 1], false), n);
  const pmean = O.div(O.reduceSum(O.mul(probs, O.unsqueeze(mask, [-1])), [0, 1], false), n);
  ctx.moeAux.push(O.mul(O.reduceSum(O.mul(frac, pmean), undefined, false), s));
  return O.mul(mixed, spec.alpha / r);
}

/** Router ~ N(0, 0.02²)-like uniform, A ~ U(−1/√in, 1/√in), B = 0 (the MoE starts as the base model). */
export function initMoe(args: { config: ModelConfig; moe: MoeSpec; seed?: number }): Map<string, { dims: number[]; data: Float32Array }> {
  const rnd = mulberry32(args.seed ?? 0);
  const out = new Map<string, { dims: number[]; data: Float32Array }>();
  for (const u of moeUnits(args.config, args.moe)) {
    const n = u.shape.reduce((a, b) => a * b, 1), inF = u.shape[u.shape.length - 1];
    const bound = u.key.endsWith('lora_B.weight') ? 0 : u.key.endsWith('router.weight') ? 0.02 * Math.sqrt(3) : 1 / Math.sqrt(inF);
    out.set(u.key, { dims: u.shape, data: Float32Array.from({ length: n }, () => (2 * rnd() - 1) * bound) });
  }
  return out;
}
