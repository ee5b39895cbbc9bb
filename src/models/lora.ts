/**
 * Linear modules of each architecture (HF module paths, in/out features) and LoRA adapters on them,
 * named exactly like PEFT so src/weights/peft.ts saves/loads them:
 *   base_model.model.<module>.lora_A.weight  [r, in]     base_model.model.<module>.lora_B.weight  [out, r]
 * Update: y = W x + (alpha / r) · B A x   (alpha / √r with useRslora). Dropout is training-time
 * only and is not part of these graphs.
 */
import { createRng } from '../data/random.ts';
import { ConfigError } from '../errors.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import { peftKey, type LoraConfig, type LoraPair } from '../weights/peft.ts';

export interface LoraSpec {
  r: number;
  alpha: number;
  /** Module leaf names as PEFT matches them: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama, Gemma 3); c_attn, c_proj, c_fc (GPT-2). */
  targets: string[];
  /** Restrict to these block indices (PEFT layers_to_transform); default all. */
  layers?: number[];
  useRslora?: boolean;
}

export interface LinearModule {
  /** HF module path, e.g. "model.layers.0.self_attn.q_proj" or "transformer.h.0.attn.c_attn". */
  name: string;
  /** Leaf name PEFT matches (q_proj, c_attn, ...). */
  leaf: string;
  layer: number;
  inF: number;
  outF: number;
  /** 'linear': weight [out, in] (nn.Linear); 'conv1d': weight [in, out] (GPT-2 Conv1D). */
  layout: 'linear' | 'conv1d';
  bias: boolean;
}

export const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export const GPT2_TARGETS = ['c_attn', 'c_proj', 'c_fc'] as const;

/** Every prunable / adaptable linear module of block `l`, in forward order. */
export function blockModules(c: ModelConfig, l: number): LinearModule[] {
  const D = c.hiddenSize, I = c.intermediateSize;
  if (c.modelType === 'gpt2') {
    const p = `transformer.h.${l}`;
    const m = (name: string, leaf: string, inF: number, outF: number): LinearModule => ({ name: `${p}.${name}`, leaf, layer: l, inF, outF, layout: 'conv1d', bias: true });
    return [m('attn.c_attn', 'c_attn', D, 3 * D), m('attn.c_proj', 'c_proj', D, D), m('mlp.c_fc', 'c_fc', D, I), m('mlp.c_proj', 'c_proj', I, D)];
  }
  const p = `model.layers.${l}`, qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
  const m = (name: string, inF: number, outF: number, bias = false): LinearModule => ({ name: `${p}.${name}`, leaf: name.split('.')[1], layer: l, inF, outF, layout: 'linear', bias });
  const qkvBias = c.attentionBias, oBias = (c.modelType === 'llama' || c.modelType === 'gemma3_text') && c.attentionBias;
  return [
    m('self_attn.q_proj', D, qd, qkvBias), m('self_attn.k_proj', D, kvd, qkvBias), m('self_attn.v_proj', D, kvd, qkvBias),
    m('self_attn.o_proj', qd, D, oBias), m('mlp.gate_proj', D, I), m('mlp.up_proj', D, I), m('mlp.down_proj', I, D),
  ];
}

export const allModules = (c: ModelConfig): LinearModule[] => Array.from({ length: c.numLayers }, (_, l) => blockModules(c, l)).flat();

export function checkTargets(c: ModelConfig, targets: string[], what: string): void {
  const known: readonly string[] = c.modelType === 'gpt2' ? GPT2_TARGETS : LLAMA_TARGETS;
  if (targets.length === 0) throw new ConfigError(`${what}: targets is empty; expected some of ${known.join(', ')}`);
  for (const t of targets) if (!known.includes(t)) throw new ConfigError(`${what}: target "${t}" is not a module of ${c.modelType}; expected one of ${known.join(', ')}`);
}

function checkSpec(c: ModelConfig, s: LoraSpec): void {
  if (!Number.isInteger(s.r) || s.r <= 0) throw new ConfigError(`lora: r is ${s.r}; expected a positive integer`);
  if (!(s.alpha > 0)) throw new ConfigError(`lora: alpha is ${s.alpha}; expected a positive number`);
  checkTargets(c, s.targets, 'lora');
  for (const l of s.layers ?? []) if (!Number.isInteger(l) || l < 0 || l >= c.numLayers) throw new ConfigError(`lora: layer ${l} is out of range 0..${c.numLayers - 1}`);
}

/** Modules that carry a LoRA adapter under `spec`. */
export function loraModules(c: ModelConfig, spec: LoraSpec): LinearModule[] {
  checkSpec(c, spec);
  return allModules(c).filter((m) => spec.targets.includes(m.leaf) && (!spec.layers || spec.layers.includes(m.layer)));
}

export const loraScaling = (s: LoraSpec): number => (s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r);

export interface LoraUnit { key: string; module: string; which: 'A' | 'B'; layer: number; shape: [number, number] }

/** The LoRA tensors (influence "units") in module order, A then B, named by their PEFT keys. */
export function loraUnits(c: ModelConfig, spec: LoraSpec): LoraUnit[] {
  return loraModules(c, spec).flatMap((m) => [
    { key: peftKey(m.name, 'A'), module: m.name, which: 'A' as const, layer: m.layer, shape: [spec.r, m.inF] as [number, number] },
    { key: peftKey(m.name, 'B'), module: m.name, which: 'B' as const, layer: m.layer, shape: [m.outF, spec.r] as [number, number] },
  ]);
}

/** PEFT's LoraConfig for writePeftAdapter; GPT-2's Conv1D modules (c_attn, c_proj, c_fc) store W transposed: fan_in_fan_out. */
export function peftConfig(spec: LoraSpec, opts: { base?: string; taskType?: string; dropout?: number } = {}): LoraConfig {
  return { r: spec.r, loraAlpha: spec.alpha, loraDropout: opts.dropout ?? 0, targetModules: [...spec.targets], baseModelNameOrPath: opts.base ?? null, taskType: opts.taskType ?? 'CAUSAL_LM', useRslora: spec.useRslora ?? false, fanInFanOut: spec.targets.some((t) => /^c_(attn|proj|fc)$/.test(t)) };
}

/** Deterministic uniform [0, 1) generator for initialisations (mulberry32, src/data/random.ts). */
export function mulberry32(seed: number): () => number {
  return createRng(seed >>> 0).next;
}

/**
 * PEFT's default init: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0 (so the adapter starts as a no-op).
 * `bScale` > 0 fills B with U(−bScale, bScale) instead (tests want non-zero gradients for A).
 */
export function initLora(args: { config: ModelConfig; lora: LoraSpec; seed?: number; bScale?: number }): Map<string, LoraPair> {
  const rnd = mulberry32(args.seed ?? 0);
  const out = new Map<string, LoraPair>();
  for (const m of loraModules(args.config, args.lora)) {
    const r = args.lora.r, bound = 1 / Math.sqrt(m.inF), bs = args.bScale ?? 0;
    const a = Float32Array.from({ length: r * m.inF }, () => (2 * rnd() - 1) * bound);
    const b = Float32Array.from({ length: m.outF * r }, () => (bs ? (2 * rnd() - 1) * bs : 0));
    out.set(m.name, { a: { shape: [r, m.inF], values: a }, b: { shape: [m.outF, r], values: b } });
  }
  return out;
}
