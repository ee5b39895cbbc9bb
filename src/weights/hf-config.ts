/**
 * Hugging Face `config.json` -> typed model record for the architectures LayerFlow builds
 * (model_type llama, mistral, qwen2, gpt2, gemma3_text). Structural sizes are required; optional
 * fields take the defaults of the corresponding transformers *Config class. Problems throw
 * ConfigError naming the file, the field, what it was and what was expected.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, MissingArtifactError } from '../errors.ts';

export const MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2', 'gemma3_text'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

/** Attention kind of a Gemma 3 layer (HF `layer_types`). */
export type Gemma3LayerType = 'sliding_attention' | 'full_attention';

/**
 * What a Gemma 3 text model (transformers Gemma3TextConfig) adds to the Llama-family record. Its
 * ModelConfig keeps `ropeTheta` / `ropeScaling` for the full-attention layers and `slidingWindow`
 * for the sliding-attention ones; norm weights follow HF's `x_normed * (1 + weight)` convention.
 */
export interface Gemma3Extras {
  layerTypes: Gemma3LayerType[];
  /** RoPE base of the sliding-window layers (HF rope_local_base_freq), unscaled. */
  ropeLocalBaseFreq: number;
  /** Attention scores are scaled by queryPreAttnScalar ** -0.5. */
  queryPreAttnScalar: number;
  /** Embeddings are multiplied by this (sqrt(hidden_size); HF rounds it to the weights' dtype). */
  embedScale: number;
}

export interface ModelConfig {
  modelType: ModelType;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  /** 'rms' (Llama family) or 'layer' (GPT-2). */
  norm: 'rms' | 'layer';
  normEps: number;
  /** 'rope' (Llama family) or 'learned' absolute positions (GPT-2). */
  positions: 'rope' | 'learned';
  /** RoPE base; null for GPT-2. */
  ropeTheta: number | null;
  ropeScaling: Record<string, unknown> | null;
  hiddenAct: string;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections (Qwen2: always; Llama: `attention_bias`; GPT-2: yes). */
  attentionBias: boolean;
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** Present exactly when modelType is 'gemma3_text'. */
  gemma3?: Gemma3Extras;
}

type Json = Record<string, unknown>;

class Fields {
  constructor(private j: Json, private file: string) {}
  private err(key: string, want: string) {
    return new ConfigError(`${this.file}: field "${key}" ${key in this.j ? `is ${JSON.stringify(this.j[key])}` : 'is missing'}; expected ${want}`);
  }
  int(key: string, dflt?: number): number {
    const v = this.j[key] ?? dflt;
    if (!Number.isInteger(v) || (v as number) <= 0) throw this.err(key, 'a positive integer');
    return v as number;
  }
  num(key: string, dflt: number): number {
    const v = this.j[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.err(key, 'a positive number');
    return v;
  }
  bool(key: string, dflt: boolean): boolean {
    const v = this.j[key] ?? dflt;
    if (typeof v !== 'boolean') throw this.err(key, 'true or false');
    return v;
  }
  str(key: string, dflt: string): string {
    const v = this.j[key] ?? dflt;
    if (typeof v !== 'string') throw this.err(key, 'a string');
    return v;
  }
  optInt(key: string): number | null {
    const v = this.j[key];
    if (v === undefined || v === null) return null;
    if (!Number.isInteger(v) || (v as number) < 0) throw this.err(key, 'a non-negative integer or null');
    return v as number;
  }
  ids(key: string): number[] {
    const v = this.j[key];
    if (v === undefined || v === null) return [];
    const arr = Array.isArray(v) ? v : [v];
    if (!arr.every((x) => Number.isInteger(x) && x >= 0)) throw this.err(key, 'a token id or a list of token ids');
    return arr as number[];
  }
  obj(key: string): Record<string, unknown> | null {
    const v = this.j[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) throw this.err(key, 'an object or null');
    return v as Record<string, unknown>;
  }
}

/** Parses an already-loaded config.json object. `file` names it in errors. */
export function parseHfConfig(json: unknown, file = 'config.json'): ModelConfig {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(`${file}: expected a JSON object`);
  const j = json as Json;
  const modelType = j.model_type;
  if (!(MODEL_TYPES as readonly unknown[]).includes(modelType)) {
    throw new ConfigError(`${file}: field "model_type" is ${JSON.stringify(modelType)}; expected one of ${MODEL_TYPES.join(', ')}`);
  }
  const f = new Fields(j, file);
  if (modelType === 'gpt2') {
    const hidden = f.int('n_embd'), heads = f.int('n_head');
    if (hidden % heads) throw new ConfigError(`${file}: n_embd ${hidden} is not divisible by n_head ${heads}`);
    return {
      modelType, hiddenSize: hidden, numLayers: f.int('n_layer'), numHeads: heads, numKvHeads: heads,
      headDim: hidden / heads, intermediateSize: j.n_inner == null ? 4 * hidden : f.int('n_inner'),
      vocabSize: f.int('vocab_size'), maxPositions: f.int('n_positions', 1024), norm: 'layer',
      normEps: f.num('layer_norm_epsilon', 1e-5), positions: 'learned', ropeTheta: null, ropeScaling: null,
      hiddenAct: f.str('activation_function', 'gelu_new'), tieWordEmbeddings: f.bool('tie_word_embeddings', true),
      attentionBias: true, slidingWindow: null, bosTokenId: f.optInt('bos_token_id'), eosTokenIds: f.ids('eos_token_id'),
    };
  }
  if (modelType === 'gemma3_text') return parseGemma3Text(j, f, file);
  const mt = modelType as Exclude<ModelType, 'gpt2' | 'gemma3_text'>;
  const hidden = f.int('hidden_size'), heads = f.int('num_attention_heads');
  const kv = f.int('num_key_value_heads', mt === 'mistral' ? 8 : heads);
  if (heads % kv) throw new ConfigError(`${file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kv}`);
  const headDim = j.head_dim == null ? hidden / heads : f.int('head_dim');
  if (!Number.isInteger(headDim)) throw new ConfigError(`${file}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads} and no head_dim is given`);
  const sliding = mt === 'mistral' ? f.optInt('sliding_window') : mt === 'qwen2' && j.use_sliding_window === true ? f.optInt('sliding_window') : null;
  return {
    modelType: mt, hiddenSize: hidden, numLayers: f.int('num_hidden_layers'), numHeads: heads, numKvHeads: kv, headDim,
    intermediateSize: f.int('intermediate_size'), vocabSize: f.int('vocab_size'),
    maxPositions: f.int('max_position_embeddings', { llama: 2048, mistral: 4096 * 32, qwen2: 32768 }[mt]),
    norm: 'rms', normEps: f.num('rms_norm_eps', 1e-6), positions: 'rope', ...rope(f, j), hiddenAct: f.str('hidden_act', 'silu'),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    attentionBias: mt === 'qwen2' ? true : f.bool('attention_bias', false),
    slidingWindow: sliding, bosTokenId: f.optInt('bos_token_id'), eosTokenIds: f.ids('eos_token_id'),
  };
}

/**
 * Gemma 3 text config (transformers Gemma3TextConfig, 4.5x and 5.x forms): `layer_types` or every
 * `sliding_window_pattern`-th (default 6th) layer full attention; RoPE from `rope_parameters`
 * keyed by layer type (5.x) or `rope_theta` / `rope_local_base_freq` / `rope_scaling` (4.x, the
 * scaling applying to the full-attention layers only). Logit soft-capping and bidirectional
 * attention (Gemma 2 / EmbeddingGemma features) are refused.
 */
function parseGemma3Text(j: Json, f: Fields, file: string): ModelConfig {
  const hidden = f.int('hidden_size'), heads = f.int('num_attention_heads'), numLayers = f.int('num_hidden_layers');
  const kv = f.int('num_key_value_heads', 4);
  if (heads % kv) throw new ConfigError(`${file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kv}`);
  for (const k of ['final_logit_softcapping', 'attn_logit_softcapping']) {
    if (j[k] !== undefined && j[k] !== null) throw new ConfigError(`${file}: field "${k}" is ${JSON.stringify(j[k])}; logit soft-capping is not supported (Gemma 3 uses null)`);
  }
  if (j.use_bidirectional_attention === true) throw new ConfigError(`${file}: field "use_bidirectional_attention" is true; only causal Gemma 3 models are supported`);
  let layerTypes: Gemma3LayerType[];
  if (j.layer_types !== undefined && j.layer_types !== null) {
    const lt = j.layer_types;
    if (!Array.isArray(lt) || lt.length !== numLayers || !lt.every((x) => x === 'sliding_attention' || x === 'full_attention')) {
      throw new ConfigError(`${file}: field "layer_types" is ${JSON.stringify(lt).slice(0, 80)}; expected ${numLayers} entries of "sliding_attention" or "full_attention"`);
    }
    layerTypes = lt as Gemma3LayerType[];
  } else {
    const pattern = j.sliding_window_pattern !== undefined ? f.int('sliding_window_pattern') : f.int('_sliding_window_pattern', 6);
    layerTypes = Array.from({ length: numLayers }, (_, i) => ((i + 1) % pattern ? 'sliding_attention' : 'full_attention'));
  }
  const { ropeTheta, ropeScaling, ropeLocalBaseFreq } = gemma3Rope(j, f, file);
  const act = f.str('hidden_activation', 'gelu_pytorch_tanh');
  return {
    modelType: 'gemma3_text', hiddenSize: hidden, numLayers, numHeads: heads, numKvHeads: kv, headDim: f.int('head_dim', 256),
    intermediateSize: f.int('intermediate_size'), vocabSize: f.int('vocab_size'), maxPositions: f.int('max_position_embeddings', 131072),
    norm: 'rms', normEps: f.num('rms_norm_eps', 1e-6), positions: 'rope', ropeTheta, ropeScaling, hiddenAct: act,
    tieWordEmbeddings: f.bool('tie_word_embeddings', true), attentionBias: f.bool('attention_bias', false),
    slidingWindow: f.int('sliding_window', 4096), bosTokenId: j.bos_token_id === undefined ? 2 : f.optInt('bos_token_id'), eosTokenIds: j.eos_token_id === undefined ? [1] : f.ids('eos_token_id'),
    gemma3: { layerTypes, ropeLocalBaseFreq, queryPreAttnScalar: f.num('query_pre_attn_scalar', 256), embedScale: Math.sqrt(hidden) },
  };
}

function gemma3Rope(j: Json, f: Fields, file: string): { ropeTheta: number; ropeScaling: Record<string, unknown> | null; ropeLocalBaseFreq: number } {
  const scalingOf = (p: Record<string, unknown> | null, where: string): Record<string, unknown> | null => {
    const type = p ? String(p.rope_type ?? p.type ?? 'default') : 'default';
    if (type === 'default') return null;
    if (type !== 'linear' || !(typeof p!.factor === 'number' && p!.factor > 0)) throw new ConfigError(`${file}: ${where} is ${JSON.stringify(p)}; Gemma 3 supports default or linear RoPE scaling (with a positive factor)`);
    return { rope_type: 'linear', factor: p!.factor };
  };
  const theta = (v: unknown, where: string): number => {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new ConfigError(`${file}: ${where} is ${JSON.stringify(v)}; expected a positive number`);
    return v;
  };
  const p = f.obj('rope_parameters');
  if (p && (p.full_attention !== undefined || p.sliding_attention !== undefined)) {
    const obj = (k: string): Record<string, unknown> => {
      const v = p[k] ?? {};
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${file}: rope_parameters.${k} is ${JSON.stringify(v)}; expected an object`);
      return v as Record<string, unknown>;
    };
    const full = obj('full_attention'), local = obj('sliding_attention');
    if (scalingOf(local, 'rope_parameters.sliding_attention')) throw new ConfigError(`${file}: rope_parameters.sliding_attention scales RoPE; only the full-attention layers of Gemma 3 may`);
    return {
      ropeTheta: theta(full.rope_theta ?? j.rope_theta ?? 1e6, 'rope_parameters.full_attention.rope_theta'), ropeScaling: scalingOf(full, 'rope_parameters.full_attention'),
      ropeLocalBaseFreq: theta(local.rope_theta ?? j.rope_local_base_freq ?? 10000, 'rope_parameters.sliding_attention.rope_theta'),
    };
  }
  if (p) return { ropeTheta: theta(p.rope_theta ?? j.rope_theta ?? 1e6, 'rope_parameters.rope_theta'), ropeScaling: scalingOf(p, 'rope_parameters'), ropeLocalBaseFreq: f.num('rope_local_base_freq', 10000) };
  return { ropeTheta: f.num('rope_theta', 1e6), ropeScaling: scalingOf(f.obj('rope_scaling'), 'field "rope_scaling"'), ropeLocalBaseFreq: f.num('rope_local_base_freq', 10000) };
}

/**
 * RoPE settings: transformers ≤ 4 writes `rope_theta` + `rope_scaling`; transformers 5 writes
 * `rope_parameters: { rope_type, rope_theta, ... }`.
 */
function rope(f: { num(k: string, d: number): number; obj(k: string): Record<string, unknown> | null }, j: Record<string, unknown>): { ropeTheta: number; ropeScaling: Record<string, unknown> | null } {
  const p = f.obj('rope_parameters');
  if (!p) return { ropeTheta: f.num('rope_theta', 10000), ropeScaling: f.obj('rope_scaling') };
  const theta = p.rope_theta ?? j.rope_theta ?? 10000;
  if (typeof theta !== 'number' || !(theta > 0)) throw new ConfigError(`config.json: rope_parameters.rope_theta is ${JSON.stringify(theta)}; expected a positive number`);
  const type = p.rope_type ?? p.type ?? 'default';
  return { ropeTheta: theta, ropeScaling: type === 'default' ? null : p };
}

/** Reads and parses a config.json file. */
export async function readHfConfig(path: string): Promise<ModelConfig> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    throw new MissingArtifactError(`${path}: cannot read model config (${(err as NodeJS.ErrnoException).code ?? err})`, { cause: err });
  }
  let json: unknown;
  try { json = JSON.parse(text); } catch (err) { throw new ConfigError(`${path}: not valid JSON (${(err as Error).message})`); }
  return parseHfConfig(json, path);
}

/**
 * The HF `config.json` of a Llama-family ModelConfig (the inverse of parseHfConfig), so a model
 * LayerFlow derived (e.g. pruned weights of a GGUF model) is saved as a normal HF model folder.
 */
export function hfConfigJson(c: ModelConfig): Record<string, unknown> {
  if (c.modelType === 'gpt2') throw new ConfigError('hfConfigJson: writing GPT-2 configs is not supported; expected a Llama-family model');
  if (c.modelType === 'gemma3_text') return gemma3ConfigJson(c);
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[c.modelType];
  return {
    architectures: [arch],
    model_type: c.modelType,
    ...decoderSizes(c),
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling,
    hidden_act: c.hiddenAct,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.attentionBias,
    ...(c.slidingWindow !== null ? { sliding_window: c.slidingWindow } : {}),
    ...specialTokens(c),
  };
}

/** The size fields every decoder config.json (Llama family, Gemma 3) writes the same way. */
const decoderSizes = (c: ModelConfig) => ({
  hidden_size: c.hiddenSize,
  num_hidden_layers: c.numLayers,
  num_attention_heads: c.numHeads,
  num_key_value_heads: c.numKvHeads,
  head_dim: c.headDim,
  intermediate_size: c.intermediateSize,
  vocab_size: c.vocabSize,
  max_position_embeddings: c.maxPositions,
  rms_norm_eps: c.normEps,
});

const specialTokens = (c: ModelConfig) => ({
  bos_token_id: c.bosTokenId,
  eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
  torch_dtype: 'float32',
});

/** Gemma3TextConfig JSON with both transformers 4.x (rope_theta, rope_local_base_freq, rope_scaling) and 5.x (rope_parameters) RoPE keys. */
function gemma3ConfigJson(c: ModelConfig): Record<string, unknown> {
  const g = c.gemma3;
  if (!g) throw new ConfigError('hfConfigJson: a gemma3_text config without its Gemma 3 fields (layer types, local rope base, query_pre_attn_scalar)');
  const full = { rope_type: c.ropeScaling ? 'linear' : 'default', rope_theta: c.ropeTheta, ...(c.ropeScaling ? { factor: c.ropeScaling.factor } : {}) };
  return {
    architectures: ['Gemma3ForCausalLM'],
    model_type: 'gemma3_text',
    ...decoderSizes(c),
    hidden_activation: c.hiddenAct,
    query_pre_attn_scalar: g.queryPreAttnScalar,
    sliding_window: c.slidingWindow,
    layer_types: g.layerTypes,
    rope_theta: c.ropeTheta,
    rope_local_base_freq: g.ropeLocalBaseFreq,
    rope_scaling: c.ropeScaling,
    rope_parameters: { full_attention: full, sliding_attention: { rope_type: 'default', rope_theta: g.ropeLocalBaseFreq } },
    final_logit_softcapping: null,
    attn_logit_softcapping: null,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.attentionBias,
    ...specialTokens(c),
  };
}
