/**
 * GGUF (llama.cpp) tensor names -> Hugging Face names for llama-family architectures, undoing the
 * Q/K row permutation llama.cpp's converter applies for its interleaved rope
 * (convert_hf_to_gguf.py, LlamaModel.permute):
 *   w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols)
 * with n_head = num_attention_heads for q_proj and num_key_value_heads for k_proj.
 * Only the `llama` architecture is permuted (Mistral converts as `llama`); qwen2 uses NEOX rope and
 * is stored unpermuted.
 */
import { ConfigError, DataError } from '../errors.ts';
import type { GgufReader, GgufValue } from './gguf.ts';
import type { ModelConfig } from './hf-config.ts';

export const LLAMA_FAMILY = ['llama', 'mistral', 'qwen2'] as const;

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

/** HF name for a llama-family GGUF tensor name, or undefined (e.g. rope_freqs.weight has no HF tensor). */
export function hfNameForGguf(name: string): string | undefined {
  if (GLOBAL[name]) return GLOBAL[name];
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
  if (!m || !BLOCK[m[2]]) return undefined;
  return `model.layers.${m[1]}.${BLOCK[m[2]]}.${m[3]}`;
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

/**
 * Reads every mappable tensor of a llama-family GGUF, dequantised to float32, under HF names with
 * the rope permutation undone. Unmapped tensors are listed in `skipped`.
 */
export async function loadGgufAsHf(reader: GgufReader): Promise<{ tensors: Map<string, { shape: number[]; values: Float32Array }>; skipped: string[] }> {
  const meta = reader.metadata;
  const arch = meta.get('general.architecture');
  if (typeof arch !== 'string' || !(LLAMA_FAMILY as readonly string[]).includes(arch)) {
    throw new ConfigError(`${reader.path}: general.architecture is ${JSON.stringify(arch)}; expected one of ${LLAMA_FAMILY.join(', ')}`);
  }
  const tensors = new Map<string, { shape: number[]; values: Float32Array }>();
  const skipped: string[] = [];
  for (const t of reader.tensors) {
    const hf = hfNameForGguf(t.name);
    if (!hf) { skipped.push(t.name); continue; }
    let { shape, values } = await reader.readFloat32(t.name);
    const layer = Number(/^blk\.(\d+)\./.exec(t.name)?.[1] ?? 0);
    const isQ = /\.attn_q\.(weight|bias)$/.test(t.name), isK = /\.attn_k\.(weight|bias)$/.test(t.name);
    if (arch === 'llama' && (isQ || isK)) {
      const nHead = headCount(meta, `${arch}.attention.head_count`, layer, reader.path);
      const nKv = meta.has(`${arch}.attention.head_count_kv`) ? headCount(meta, `${arch}.attention.head_count_kv`, layer, reader.path) : nHead;
      const cols = shape.length === 2 ? shape[1] : 1;
      values = unpermuteRope(values, shape[0], cols, isQ ? nHead : nKv, `${reader.path}: ${t.name}`);
    }
    tensors.set(hf, { shape, values });
  }
  return { tensors, skipped };
}

/** The model record (same shape as hf-config's) from a llama-family GGUF's `<arch>.*` metadata. */
export function modelConfigFromGguf(reader: GgufReader): ModelConfig {
  const m = reader.metadata;
  const arch = m.get('general.architecture');
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
  return {
    modelType: arch === 'qwen2' ? 'qwen2' : 'llama', hiddenSize: hidden, numLayers: int('block_count'), numHeads: heads,
    numKvHeads: kv, headDim: int('attention.key_length', hidden / heads), intermediateSize: int('feed_forward_length'),
    vocabSize: vocab, maxPositions: int('context_length'), norm: 'rms', normEps: num('attention.layer_norm_rms_epsilon', 1e-5),
    positions: 'rope', ropeTheta: num('rope.freq_base', 10000), ropeScaling: null, hiddenAct: 'silu',
    tieWordEmbeddings: !names.has('output.weight'), attentionBias: names.has('blk.0.attn_q.bias'), slidingWindow: null,
    bosTokenId: id('tokenizer.ggml.bos_token_id'), eosTokenIds: eos === null ? [] : [eos],
  };
}
