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
 */
import { ConfigError, DataError } from '../errors.ts';
import { ropeInvFreq } from '../models/ops.ts';
import type { GgufReader, GgufValue } from './gguf.ts';
import type { ModelConfig } from './hf-config.ts';

/** The llama3-style per-frequency RoPE divisor tensor ([head_dim / 2], F32). */
export const ROPE_FREQS = 'rope_freqs.weight';

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

/**
 * The model record (same shape as hf-config's) from a llama-family GGUF's `<arch>.*` metadata.
 * `ropeFreqs` are the values of the file's rope_freqs.weight tensor; a file that has one needs them
 * (use readGgufModelConfig, which reads them).
 */
export function modelConfigFromGguf(reader: GgufReader, ropeFreqs?: Float32Array): ModelConfig {
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
