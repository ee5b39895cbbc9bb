/**
 * Hugging Face `config.json` -> typed model record for the architectures LayerFlow builds
 * (model_type llama, mistral, qwen2, gpt2). Structural sizes are required; optional fields take
 * the defaults of the corresponding transformers *Config class. Problems throw ConfigError naming
 * the file, the field, what it was and what was expected.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, MissingArtifactError } from '../errors.ts';

export const MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2'] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

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
  const mt = modelType as Exclude<ModelType, 'gpt2'>;
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
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[c.modelType];
  return {
    architectures: [arch],
    model_type: c.modelType,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    intermediate_size: c.intermediateSize,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling,
    hidden_act: c.hiddenAct,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.attentionBias,
    ...(c.slidingWindow !== null ? { sliding_window: c.slidingWindow } : {}),
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    torch_dtype: 'float32',
  };
}
