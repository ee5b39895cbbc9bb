/**
 * GGUF (llama.cpp) tensor names -> Hugging Face names for llama-family architectures, undoing the
 * Q/K row permutation llama.cpp's converter applies for its interleaved rope
 * (convert_hf_to_gguf.py, LlamaModel.permute):
 *   w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols)
 * with n_head = num_attention_heads for q_proj and num_key_value_heads for k_proj.
 * Only the `llama` architecture is permuted (Mistral converts as `llama`); qwen2 uses NEOX rope and
 * is stored unpermuted.
 *
 * RoPE scaling: GGUF keeps linear scaling as `<arch>.rope.scaling.type` / `.factor` (or the older
 * `<arch>.rope.scale_linear`), and Llama 3.x "llama3" scaling only as a `rope_freqs.weight` tensor
 * of per-frequency divisors (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors). Both become
 * the HF-shaped `ropeScaling` record; rope_freqs is accepted only when a llama3 record reproduces
 * it through our RoPE code (ropeInvFreq), anything else (yarn, longrope, partial rotary, factors
 * of another shape) is refused with a ConfigError rather than dropped.
 *
 * gemma3 (Gemma 3 text models, e.g. Gemma 3 270M): names map to transformers' Gemma3 modules
 * (GEMMA3_BLOCK below: attn_norm → input_layernorm, post_attention_norm → post_attention_layernorm,
 * ffn_norm → pre_feedforward_layernorm, post_ffw_norm → post_feedforward_layernorm, attn_q_norm /
 * attn_k_norm → self_attn.q_norm / k_norm). Q/K are stored unpermuted (Gemma3Model.modify_tensors
 * in convert_hf_to_gguf.py does not permute; llama.cpp runs Gemma with NEOX rope). Norm weights:
 * HF's Gemma3RMSNorm computes `x_normed * (1 + weight)` (modeling_gemma3.py; its weight is
 * initialised to zeros), while llama.cpp multiplies by the stored tensor, so its converter stores
 * `weight + 1` for every HF tensor whose name ends in "norm.weight" (Gemma3Model.norm_shift = 1.0,
 * "Gemma3RMSNorm adds 1.0 to the norm value"), and transformers' GGUF loader undoes it
 * (modeling_gguf_pytorch_utils.py, Gemma2TensorProcessor, used for gemma3: `weights - 1` for
 * every "norm.weight"). loadGgufAsHf does the same, in float32, so the HF-named norm weights follow
 * HF's convention (weight, not 1 + weight). Checked against transformers 5.24's
 * Gemma3ForCausalLM.from_pretrained(gguf_file=...) state dict, every tensor bit for bit
 * (test/weights/gemma3-gguf.test.ts); e.g. Gemma 3 270M's output_norm holds values up to 301 in the
 * file. gemma3ConfigFromGguf returns the Gemma 3 config as its own record (Gemma3Config, checked
 * field by field against transformers); modelConfigFromGemma3 turns it into the ModelConfig the
 * graphs run, its Gemma-only fields (layer types, local rope base, query_pre_attn_scalar, embedding
 * scale) under `gemma3`.
 */
import { ConfigError, DataError } from '../errors.ts';
import { ropeInvFreq } from '../models/ops.ts';
import type { GgufReader, GgufValue } from './gguf.ts';
import type { Gemma3LayerType, ModelConfig } from './hf-config.ts';

/** The llama3-style per-frequency RoPE divisor tensor ([head_dim / 2], F32). */
export const ROPE_FREQS = 'rope_freqs.weight';

export const LLAMA_FAMILY = ['llama', 'mistral', 'qwen2'] as const;
/** Architectures loadGgufAsHf reads: the llama family and gemma3. */
export const GGUF_HF_ARCHS = [...LLAMA_FAMILY, 'gemma3'] as const;
export type GgufHfArch = (typeof GGUF_HF_ARCHS)[number];

const GLOBAL: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};
const BLOCK: Record<string, string> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

/** gemma3 blocks (gguf-py tensor_mapping.py for MODEL_ARCH.GEMMA3; transformers Gemma3DecoderLayer). */
const GEMMA3_BLOCK: Record<string, string> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
  post_attention_norm: 'post_attention_layernorm',
  ffn_norm: 'pre_feedforward_layernorm',
  post_ffw_norm: 'post_feedforward_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

/**
 * HF name for a GGUF tensor name of architecture `arch` (default llama), or undefined (e.g.
 * rope_freqs.weight has no HF tensor).
 */
export function hfNameForGguf(name: string, arch: string = 'llama'): string | undefined {
  if (GLOBAL[name]) return GLOBAL[name];
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
  const block = arch === 'gemma3' ? GEMMA3_BLOCK : BLOCK;
  if (!m || !Object.hasOwn(block, m[2])) return undefined;
  return `model.layers.${m[1]}.${block[m[2]]}.${m[3]}`;
}

/** Whether loadGgufAsHf subtracts 1 from this gemma3 tensor (see the header: `weight + 1` in the file). */
export function isGemmaShiftedNorm(ggufName: string): boolean {
  return ggufName.endsWith('norm.weight');
}

/**
 * Inverse of llama.cpp's permute on the rows of a [rows, cols] matrix (or a [rows] bias):
 * GGUF row h*hd + 2*i + j holds HF row h*hd + j*hd/2 + i (hd = rows / nHead).
 */
export function unpermuteRope(values: Float32Array, rows: number, cols: number, nHead: number, what = 'tensor'): Float32Array {
  if (rows % (2 * nHead) !== 0) throw new DataError(`${what}: ${rows} rows cannot be split into ${nHead} heads of even size`);
  const hd = rows / nHead;
  const out = new Float32Array(values.length);
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < hd / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * hd + 2 * i + j) * cols;
        const dst = (h * hd + j * (hd / 2) + i) * cols;
        out.set(values.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

function headCount(meta: Map<string, GgufValue>, key: string, layer: number, file: string): number {
  const v = meta.get(key);
  const n = Array.isArray(v) ? v[layer] : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw new ConfigError(`${file}: metadata ${key} is ${JSON.stringify(v)}; expected a positive integer (or per-layer array)`);
  return n;
}

function ggufArch(reader: GgufReader, allowed: readonly string[]): string {
  const arch = reader.metadata.get('general.architecture');
  if (typeof arch !== 'string' || !allowed.includes(arch)) {
    throw new ConfigError(`${reader.path}: general.architecture is ${JSON.stringify(arch)}; expected one of ${allowed.join(', ')}`);
  }
  return arch;
}

export interface HfTensorFromGguf { gguf: string; hf: string; shape: number[]; values: Float32Array }

/**
 * Every mappable tensor of a llama-family or gemma3 GGUF, one at a time (file order), dequantised
 * to float32 under its HF name, in HF's form: llama's rope permutation undone, gemma3's norm
 * weights shifted back by -1 (see the header). Unmapped tensors come as `{ gguf, hf: undefined }`.
 * Holding only one tensor at a time, this suits checks over a whole large file; `only` (GGUF
 * names) skips the others without reading them.
 */
export async function* ggufTensorsAsHf(reader: GgufReader, only?: (ggufName: string) => boolean): AsyncGenerator<HfTensorFromGguf | { gguf: string; hf: undefined }> {
  const meta = reader.metadata;
  const arch = ggufArch(reader, GGUF_HF_ARCHS);
  for (const t of reader.tensors) {
    if (only && !only(t.name)) continue;
    const hf = hfNameForGguf(t.name, arch);
    if (!hf) { yield { gguf: t.name, hf: undefined }; continue; }
    let { shape, values } = await reader.readFloat32(t.name);
    const layer = Number(/^blk\.(\d+)\./.exec(t.name)?.[1] ?? 0);
    const isQ = /\.attn_q\.(weight|bias)$/.test(t.name), isK = /\.attn_k\.(weight|bias)$/.test(t.name);
    if (arch === 'llama' && (isQ || isK)) {
      const nHead = headCount(meta, `${arch}.attention.head_count`, layer, reader.path);
      const nKv = meta.has(`${arch}.attention.head_count_kv`) ? headCount(meta, `${arch}.attention.head_count_kv`, layer, reader.path) : nHead;
      const cols = shape.length === 2 ? shape[1] : 1;
      values = unpermuteRope(values, shape[0], cols, isQ ? nHead : nKv, `${reader.path}: ${t.name}`);
    }
    if (arch === 'gemma3' && isGemmaShiftedNorm(t.name)) {
      for (let i = 0; i < values.length; i++) values[i] = Math.fround(values[i] - 1);
    }
    yield { gguf: t.name, hf, shape, values };
  }
}

/**
 * Reads every mappable tensor of a llama-family or gemma3 GGUF, dequantised to float32, under HF
 * names and in HF's form (ggufTensorsAsHf). Unmapped tensors are listed in `skipped`.
 */
export async function loadGgufAsHf(reader: GgufReader): Promise<{ tensors: Map<string, { shape: number[]; values: Float32Array }>; skipped: string[] }> {
  const tensors = new Map<string, { shape: number[]; values: Float32Array }>();
  const skipped: string[] = [];
  for await (const t of ggufTensorsAsHf(reader)) {
    if (t.hf === undefined) skipped.push(t.gguf);
    else tensors.set(t.hf, { shape: t.shape, values: t.values });
  }
  return { tensors, skipped };
}

/**
 * The model record (same shape as hf-config's) from a llama-family GGUF's `<arch>.*` metadata.
 * `ropeFreqs` are the values of the file's rope_freqs.weight tensor; a file that has one needs them
 * (use readGgufModelConfig, which reads them).
 */
export function modelConfigFromGguf(reader: GgufReader, ropeFreqs?: Float32Array): ModelConfig {
  const m = reader.metadata;
  const arch = m.get('general.architecture');
  if (arch === 'gemma3') {
    throw new ConfigError(`${reader.path}: general.architecture is "gemma3" (Gemma 3); its configuration is not a Llama-family model record: read it with gemma3ConfigFromGguf`);
  }
  if (typeof arch !== 'string' || !(LLAMA_FAMILY as readonly string[]).includes(arch)) {
    throw new ConfigError(`${reader.path}: general.architecture is ${JSON.stringify(arch)}; expected one of ${LLAMA_FAMILY.join(', ')}`);
  }
  const int = (key: string, dflt?: number): number => {
    const v = m.get(`${arch}.${key}`) ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ConfigError(`${reader.path}: metadata ${arch}.${key} is ${JSON.stringify(v)}; expected a positive integer`);
    return v;
  };
  const num = (key: string, dflt: number): number => {
    const v = m.get(`${arch}.${key}`) ?? dflt;
    if (typeof v !== 'number' || !(v > 0)) throw new ConfigError(`${reader.path}: metadata ${arch}.${key} is ${JSON.stringify(v)}; expected a positive number`);
    return v;
  };
  const hidden = int('embedding_length'), heads = headCount(m, `${arch}.attention.head_count`, 0, reader.path);
  const kv = m.has(`${arch}.attention.head_count_kv`) ? headCount(m, `${arch}.attention.head_count_kv`, 0, reader.path) : heads;
  const tokens = m.get('tokenizer.ggml.tokens');
  const vocab = Array.isArray(tokens) ? tokens.length : int('vocab_size');
  const names = new Set(reader.tensors.map((t) => t.name));
  const id = (k: string) => { const v = m.get(k); return typeof v === 'number' ? v : null; };
  const eos = id('tokenizer.ggml.eos_token_id');
  const headDim = int('attention.key_length', hidden / heads);
  const ropeTheta = num('rope.freq_base', 10000);
  const ropeScaling = ropeScalingFromGguf(reader, arch, headDim, ropeTheta, ropeFreqs);
  return {
    modelType: arch === 'qwen2' ? 'qwen2' : 'llama', hiddenSize: hidden, numLayers: int('block_count'), numHeads: heads,
    numKvHeads: kv, headDim, intermediateSize: int('feed_forward_length'),
    vocabSize: vocab, maxPositions: int('context_length'), norm: 'rms', normEps: num('attention.layer_norm_rms_epsilon', 1e-5),
    positions: 'rope', ropeTheta, ropeScaling, hiddenAct: 'silu',
    tieWordEmbeddings: !names.has('output.weight'), attentionBias: names.has('blk.0.attn_q.bias'), slidingWindow: null,
    bosTokenId: id('tokenizer.ggml.bos_token_id'), eosTokenIds: eos === null ? [] : [eos],
  };
}

/** modelConfigFromGguf, reading the rope_freqs.weight tensor first when the file has one. */
export async function readGgufModelConfig(reader: GgufReader): Promise<ModelConfig> {
  const has = reader.tensors.some((t) => t.name === ROPE_FREQS);
  return modelConfigFromGguf(reader, has ? (await reader.readFloat32(ROPE_FREQS)).values : undefined);
}

export type { Gemma3LayerType } from './hf-config.ts';

/**
 * A Gemma 3 text model's configuration, with transformers' Gemma3TextConfig semantics (field names
 * as in ModelConfig where they mean the same). Norm weights read by loadGgufAsHf follow HF's
 * `x_normed * (1 + weight)` convention.
 */
export interface Gemma3Config extends Pick<ModelConfig, 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize' | 'vocabSize' | 'maxPositions' | 'normEps'> {
  modelType: 'gemma3_text';
  /** RoPE base of the full-attention (global) layers. */
  ropeTheta: number;
  /** RoPE base of the sliding-window (local) layers (HF rope_local_base_freq). */
  ropeLocalBaseFreq: number;
  /** Linear RoPE scaling of the global layers only, or null. */
  ropeScaling: { rope_type: 'linear'; factor: number } | null;
  slidingWindow: number;
  layerTypes: Gemma3LayerType[];
  /** Attention scores are scaled by queryPreAttnScalar ** -0.5. */
  queryPreAttnScalar: number;
  /** The gated feed-forward's activation: GELU, tanh approximation. */
  hiddenAct: 'gelu_pytorch_tanh';
  /** Embeddings are multiplied by this (sqrt(hidden_size), HF Gemma3TextScaledWordEmbedding). */
  embedScale: number;
  tieWordEmbeddings: boolean;
  attnLogitSoftcapping: null;
  finalLogitSoftcapping: null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

/**
 * The Gemma 3 configuration from a gemma3 GGUF's `gemma3.*` metadata, as transformers (5.24)
 * reads it (AutoConfig.from_pretrained(gguf_file=...); checked field by field in
 * test/weights/gemma3-gguf.test.ts). Keys the converter does not write take the defaults both
 * transformers' Gemma3TextConfig and llama.cpp (llama-model.cpp, LLM_ARCH_GEMMA3) use:
 * local rope base 10000 (unless `gemma3.rope.freq_base_swa` is present), every sixth layer global
 * (unless `gemma3.attention.sliding_window_pattern` gives one bool per layer, true = sliding),
 * query_pre_attn_scalar = head_dim (llama.cpp scales by 1/sqrt(head_dim) for all sizes but 27B,
 * whose GGUF this function refuses), no logit soft-capping (the converter asserts it is absent).
 */
export function gemma3ConfigFromGguf(reader: GgufReader): Gemma3Config {
  const m = reader.metadata, file = reader.path;
  const arch = ggufArch(reader, ['gemma3']);
  const key = (k: string) => `${arch}.${k}`;
  const int = (k: string, dflt?: number): number => {
    const v = m.get(key(k)) ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ConfigError(`${file}: metadata ${key(k)} is ${JSON.stringify(v)}; expected a positive integer`);
    return v;
  };
  const num = (k: string, dflt: number): number => {
    const v = m.get(key(k)) ?? dflt;
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new ConfigError(`${file}: metadata ${key(k)} is ${JSON.stringify(v)}; expected a positive number`);
    return v;
  };
  const hidden = int('embedding_length'), numLayers = int('block_count');
  const heads = headCount(m, key('attention.head_count'), 0, file);
  const kv = m.has(key('attention.head_count_kv')) ? headCount(m, key('attention.head_count_kv'), 0, file) : heads;
  for (let l = 1; l < numLayers; l++) {
    if (headCount(m, key('attention.head_count'), l, file) !== heads || (m.has(key('attention.head_count_kv')) && headCount(m, key('attention.head_count_kv'), l, file) !== kv)) {
      throw new ConfigError(`${file}: per-layer head counts that vary across layers are not supported for gemma3`);
    }
  }
  const headDim = int('attention.key_length', 256);
  if (int('attention.value_length', headDim) !== headDim) throw new ConfigError(`${file}: metadata ${key('attention.value_length')} differs from ${key('attention.key_length')} (${headDim}); Gemma 3 uses one head size`);
  if (m.has(key('rope.dimension_count')) && m.get(key('rope.dimension_count')) !== headDim) {
    throw new ConfigError(`${file}: metadata ${key('rope.dimension_count')} is ${JSON.stringify(m.get(key('rope.dimension_count')))} but the head size is ${headDim}; partial rotary embeddings are not supported`);
  }
  if (numLayers === 62) throw new ConfigError(`${file}: 62 blocks is Gemma 3 27B (llama-model.cpp), whose attention scale (query_pre_attn_scalar = hidden_size / num_heads) differs from the other sizes; not supported`);
  const scalingType = m.get(key('rope.scaling.type')) ?? 'none';
  const factor = m.get(key('rope.scaling.factor')) ?? 1;
  if (typeof factor !== 'number' || !(factor > 0)) throw new ConfigError(`${file}: metadata ${key('rope.scaling.factor')} is ${JSON.stringify(factor)}; expected a positive number`);
  if (scalingType !== 'none' && scalingType !== 'linear') throw new ConfigError(`${file}: metadata ${key('rope.scaling.type')} is ${JSON.stringify(scalingType)}; Gemma 3 uses none or linear`);
  const ropeScaling = scalingType === 'linear' && factor !== 1 ? { rope_type: 'linear' as const, factor } : null;
  const pattern = m.get(key('attention.sliding_window_pattern'));
  let layerTypes: Gemma3LayerType[];
  if (pattern === undefined) {
    layerTypes = Array.from({ length: numLayers }, (_, i) => ((i + 1) % 6 === 0 ? 'full_attention' : 'sliding_attention'));
  } else if (Array.isArray(pattern) && pattern.length === numLayers && pattern.every((b) => typeof b === 'boolean')) {
    layerTypes = pattern.map((b) => (b ? 'sliding_attention' : 'full_attention'));
  } else {
    throw new ConfigError(`${file}: metadata ${key('attention.sliding_window_pattern')} is ${JSON.stringify(pattern).slice(0, 80)}; expected ${numLayers} booleans (true = sliding window)`);
  }
  const tokens = m.get('tokenizer.ggml.tokens');
  const id = (k: string) => { const v = m.get(k); return typeof v === 'number' ? v : null; };
  const eos = id('tokenizer.ggml.eos_token_id');
  const names = new Set(reader.tensors.map((t) => t.name));
  return {
    modelType: 'gemma3_text', hiddenSize: hidden, numLayers, numHeads: heads, numKvHeads: kv, headDim,
    intermediateSize: int('feed_forward_length'), vocabSize: Array.isArray(tokens) ? tokens.length : int('vocab_size'),
    maxPositions: int('context_length'), normEps: num('attention.layer_norm_rms_epsilon', 1e-6),
    ropeTheta: num('rope.freq_base', 1e6), ropeLocalBaseFreq: num('rope.freq_base_swa', 10000), ropeScaling,
    slidingWindow: int('attention.sliding_window'), layerTypes, queryPreAttnScalar: headDim,
    hiddenAct: 'gelu_pytorch_tanh', embedScale: Math.sqrt(hidden), tieWordEmbeddings: !names.has('output.weight'),
    attnLogitSoftcapping: null, finalLogitSoftcapping: null,
    bosTokenId: id('tokenizer.ggml.bos_token_id'), eosTokenIds: eos === null ? [] : [eos], padTokenId: id('tokenizer.ggml.padding_token_id'),
  };
}

/**
 * The ModelConfig the graphs run (src/models/transformer.ts) for a Gemma 3 config: the shared
 * fields as they are, `ropeTheta` / `ropeScaling` of the full-attention layers, `slidingWindow` of
 * the sliding ones, and the rest under `gemma3`.
 */
export function modelConfigFromGemma3(g: Gemma3Config): ModelConfig {
  return {
    modelType: 'gemma3_text', hiddenSize: g.hiddenSize, numLayers: g.numLayers, numHeads: g.numHeads, numKvHeads: g.numKvHeads,
    headDim: g.headDim, intermediateSize: g.intermediateSize, vocabSize: g.vocabSize, maxPositions: g.maxPositions,
    norm: 'rms', normEps: g.normEps, positions: 'rope', ropeTheta: g.ropeTheta, ropeScaling: g.ropeScaling, hiddenAct: g.hiddenAct,
    tieWordEmbeddings: g.tieWordEmbeddings, attentionBias: false, slidingWindow: g.slidingWindow,
    bosTokenId: g.bosTokenId, eosTokenIds: [...g.eosTokenIds],
    gemma3: { layerTypes: [...g.layerTypes], ropeLocalBaseFreq: g.ropeLocalBaseFreq, queryPreAttnScalar: g.queryPreAttnScalar, embedScale: g.embedScale },
  };
}

/**
 * `ropeScaling` from `<arch>.rope.*` metadata and rope_freqs.weight, as llama.cpp reads them
 * (llama-model.cpp): scaling type defaults to linear, factor from rope.scaling.factor, else
 * rope.scale_linear, 0 or absent meaning 1; rope_freqs divides each base frequency.
 */
function ropeScalingFromGguf(reader: GgufReader, arch: string, headDim: number, theta: number, ropeFreqs: Float32Array | undefined): Record<string, unknown> | null {
  const m = reader.metadata, file = reader.path;
  const key = (k: string) => `${arch}.${k}`;
  const rotary = m.get(key('rope.dimension_count'));
  if (rotary !== undefined && rotary !== headDim) {
    throw new ConfigError(`${file}: metadata ${key('rope.dimension_count')} is ${JSON.stringify(rotary)} but the head size is ${headDim}; partial rotary embeddings are not supported`);
  }
  const typeV = m.get(key('rope.scaling.type')) ?? 'linear';
  if (typeof typeV !== 'string') throw new ConfigError(`${file}: metadata ${key('rope.scaling.type')} is ${JSON.stringify(typeV)}; expected a string`);
  const factorKey = m.has(key('rope.scaling.factor')) ? key('rope.scaling.factor') : key('rope.scale_linear');
  const factorV = m.get(factorKey) ?? 0;
  if (typeof factorV !== 'number' || !Number.isFinite(factorV) || factorV < 0) throw new ConfigError(`${file}: metadata ${factorKey} is ${JSON.stringify(factorV)}; expected a non-negative number`);
  const factor = factorV === 0 ? 1 : factorV;
  const type = typeV === 'none' || factor === 1 ? 'none' : typeV;
  if (type !== 'none' && type !== 'linear') {
    throw new ConfigError(`${file}: metadata ${key('rope.scaling.type')} is "${type}" (factor ${factor}); RoPE scaling "${type}" is not supported (expected none, linear, or llama3 via ${ROPE_FREQS})`);
  }
  const linear = type === 'linear' ? { rope_type: 'linear', factor } : null;

  if (!reader.tensors.some((t) => t.name === ROPE_FREQS)) return linear;
  if (!ropeFreqs) throw new ConfigError(`${file}: has a ${ROPE_FREQS} tensor; read the config with readGgufModelConfig so its values can be checked`);
  if (linear) throw new ConfigError(`${file}: has both linear RoPE scaling (factor ${factor}) and a ${ROPE_FREQS} tensor; combining them is not supported`);
  if (ropeFreqs.length !== headDim / 2) throw new ConfigError(`${file}: ${ROPE_FREQS} has ${ropeFreqs.length} values; expected head_dim / 2 = ${headDim / 2}`);
  const base = ropeInvFreq(headDim, theta, null);
  const want = base.map((f, i) => f / ropeFreqs[i]);
  if (!want.every((f) => Number.isFinite(f) && f > 0)) throw new ConfigError(`${file}: ${ROPE_FREQS} holds non-positive or non-finite factors`);
  if (ropeFreqs.every((f) => f === 1)) return null;
  const orig = m.get(key('rope.scaling.original_context_length'));
  for (const cand of llama3Candidates(base, ropeFreqs, typeof orig === 'number' ? orig : undefined)) {
    const got = ropeInvFreq(headDim, theta, cand);
    if (got.every((f, i) => Math.abs(f - want[i]) <= 1e-5 * want[i])) return cand;
  }
  const shown = Array.from(ropeFreqs.slice(0, 8), (f) => +f.toPrecision(6)).join(', ');
  throw new ConfigError(`${file}: ${ROPE_FREQS} [${shown}${ropeFreqs.length > 8 ? ', …' : ''}] is not reproduced by any llama3 rope_scaling (factor, low/high_freq_factor, original_max_position_embeddings); these per-frequency RoPE factors are not supported`);
}

/**
 * llama3 records that may produce `factors` (divisors of the base frequencies `base`): one fitted
 * to the smooth band (factors strictly between 1 and the maximum: 1/f = (1-s)/factor + s with s
 * linear in 1/wavelength; only old/low and old/high matter, so low_freq_factor is fixed to 1), then
 * Llama 3.1's published values with the file's maximum factor. The caller verifies each.
 */
function llama3Candidates(base: number[], factors: Float32Array, original: number | undefined): Record<string, unknown>[] {
  const factor = Math.max(...factors);
  const rec = (lo: number, hi: number, old: number) => ({ rope_type: 'llama3', factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: old });
  const out: Record<string, unknown>[] = [];
  const tol = 1e-4 * factor;
  const smooth = [...factors.keys()].filter((i) => factors[i] > 1 + tol && factors[i] < factor - tol);
  if (smooth.length >= 2) {
    const pt = (i: number) => ({ x: base[i] / (2 * Math.PI), s: (1 / factors[i] - 1 / factor) / (1 - 1 / factor) });
    const p = pt(smooth[0]), q = pt(smooth[smooth.length - 1]);
    const a = (q.s - p.s) / (q.x - p.x), b = p.s - a * p.x; // s = a/wavelength + b, a = old/(hi-lo), b = -lo/(hi-lo)
    if (Number.isFinite(a) && b < 0) {
      const hi = 1 - 1 / b, old = -a / b;
      const round = (v: number, step: number) => (Math.abs(Math.round(v / step) * step - v) <= 1e-3 * Math.abs(v) ? Math.round(v / step) * step : v);
      out.push(rec(1, round(hi, 0.5), round(old, 1)), rec(1, hi, old));
    }
  }
  for (const old of new Set([original ?? 8192, 8192])) out.push(rec(1, 4, old));
  return out;
}
