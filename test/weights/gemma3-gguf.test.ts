/**
 * The real Gemma 3 270M Q4_K_M GGUF (infra/fetch-models.sh; Gemma Terms of Use) through the model
 * kit's readers, against references computed once from the same file:
 *  - test/fixtures/models/gemma3/dequant_reference.safetensors (gguf-py's quants.dequantize, by
 *    test/fixtures/scripts/gemma3_dequant_reference.py): one real tensor of every ggml type the file
 *    uses plus the Q8_0 embedding, rows compared value by value and whole tensors by sha256;
 *  - test/fixtures/models/gemma3/hf_reference.json (transformers' Gemma3ForCausalLM loaded from
 *    the GGUF, by gemma3_hf_reference.py): every tensor under its HF name, with HF's norm-weight
 *    convention, by sha256 of its float32 bytes; and the config transformers derives.
 * Then loadModel's gemma3_text ModelConfig, and the same config read from transformers' config.json
 * forms (parseHfConfig). Without the GGUF these tests fail (CI runs the fetch step first).
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { loadModel } from '../../src/models/load.ts';
import { sha256File } from '../../src/store/hash.ts';
import { GgufReader } from '../../src/weights/gguf.ts';
import { gemma3ConfigFromGguf, ggufTensorsAsHf, hfNameForGguf, modelConfigFromGemma3, modelConfigFromGguf } from '../../src/weights/gguf-hf.ts';
import { DEQUANTIZABLE, ggmlTypeName } from '../../src/weights/gguf-quants.ts';
import { hfConfigJson, parseHfConfig } from '../../src/weights/hf-config.ts';
import { rawToFloat32, readSafetensors } from '../../src/weights/safetensors.ts';

const HOME = resolve(process.env.LAYERFLOW_HOME ?? new URL('../../.layerflow', import.meta.url).pathname);
const GGUF = resolve(HOME, 'models/gemma3-270m/gemma-3-270m-q4_k_m.gguf');
const GGUF_SHA256 = 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818'; // infra/fetch-models.sh
const DEQUANT = new URL('../fixtures/models/gemma3/dequant_reference.safetensors', import.meta.url).pathname;
const HF = new URL('../fixtures/models/gemma3/hf_reference.json', import.meta.url).pathname;

async function open(): Promise<GgufReader> {
  if (!existsSync(GGUF)) throw new Error(`Gemma 3 GGUF missing at ${GGUF}: run \`bash infra/fetch-models.sh\` (part of infra/install.sh) before the tests`);
  return GgufReader.open(GGUF);
}
const f32sha = (v: Float32Array) => createHash('sha256').update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).digest('hex');
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < Math.min(a.length, b.length); i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test.serial('the GGUF is the pinned file; its tensor table uses F32, Q8_0, Q5_0, Q4_K, Q6_K, all dequantisable', async (t) => {
  t.is(await sha256File(GGUF), GGUF_SHA256);
  const r = await open();
  try {
    t.is(r.metadata.get('general.architecture'), 'gemma3');
    t.is(r.tensors.length, 236);
    const types = new Map<string, number>();
    for (const x of r.tensors) types.set(x.typeName, (types.get(x.typeName) ?? 0) + 1);
    t.deepEqual(Object.fromEntries(types), { F32: 109, Q8_0: 10, Q5_0: 81, Q4_K: 27, Q6_K: 9 });
    for (const x of r.tensors) t.true(DEQUANTIZABLE.has(x.type), `${x.name}: ${ggmlTypeName(x.type)}`);
    t.deepEqual(r.tensors.filter((x) => !hfNameForGguf(x.name, 'gemma3')).map((x) => x.name), [], 'every tensor has an HF name');
  } finally { await r.close(); }
});

test.serial('dequantisation of a real tensor of every type equals gguf-py bit for bit (rows by value, whole tensors by sha256)', async (t) => {
  const { tensors, metadata } = await readSafetensors(DEQUANT);
  t.is(metadata.gguf_sha256, GGUF_SHA256);
  const meta = JSON.parse(metadata.tensors) as Record<string, { type: string; shape: number[]; rows: number[]; sha256_f32le: string }>;
  t.deepEqual([...new Set(Object.values(meta).map((m) => m.type))].sort(), ['F32', 'Q4_K', 'Q5_0', 'Q6_K', 'Q8_0']);
  const r = await open();
  try {
    for (const [name, m] of Object.entries(meta)) {
      const info = r.tensor(name);
      t.is(info.typeName, m.type, name);
      t.deepEqual(info.shape, m.shape, name);
      const want = rawToFloat32(tensors.get(name)!, name);
      const cols = m.shape.length === 1 ? m.shape[0] : m.shape[1];
      for (const [k, row] of m.rows.entries()) {
        const got = (await r.readRowsFloat32(name, row, 1)).values;
        const diff = maxAbsDiff(got, want.subarray(k * cols, (k + 1) * cols));
        t.is(diff, 0, `${name} (${m.type}) row ${row}: max |LayerFlow - gguf-py| = ${diff}`);
      }
      // The whole tensor, in chunks of rows (the 262,144 × 640 embedding is 671 MB as float32).
      const rows = m.shape.length === 1 ? 1 : m.shape[0];
      const h = createHash('sha256');
      for (let s = 0; s < rows; s += 16384) {
        const v = (await r.readRowsFloat32(name, s, Math.min(16384, rows - s))).values;
        h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      }
      t.is(h.digest('hex'), m.sha256_f32le, `${name} (${m.type}): all ${m.shape.join(' × ')} values`);
    }
  } finally { await r.close(); }
});

test.serial('every tensor under its HF name equals transformers\' Gemma3ForCausalLM (norms as HF weights, not 1 + w)', async (t) => {
  const ref = JSON.parse(await readFile(HF, 'utf8')) as { gguf_sha256: string; tensors: Record<string, { shape: number[]; sha256_f32le: string; head: number[]; sum: number }> };
  t.is(ref.gguf_sha256, GGUF_SHA256);
  const r = await open();
  const seen = new Set<string>();
  try {
    for await (const x of ggufTensorsAsHf(r)) {
      if (x.hf === undefined) { t.fail(`${x.gguf} has no HF name`); continue; }
      const want = ref.tensors[x.hf];
      if (!want) { t.fail(`${x.gguf} → ${x.hf}: not in transformers' state dict`); continue; }
      seen.add(x.hf);
      t.deepEqual(x.shape, want.shape, x.hf);
      if (f32sha(x.values) !== want.sha256_f32le) {
        let sum = 0;
        for (const v of x.values) sum += v;
        t.fail(`${x.gguf} → ${x.hf}: values differ from transformers' (head ${[...x.values.subarray(0, 4)]} vs ${want.head}, sum ${sum} vs ${want.sum})`);
      }
    }
    t.deepEqual([...seen].sort(), Object.keys(ref.tensors).sort(), 'the same tensor names (lm_head is tied to the embedding)');
  } finally { await r.close(); }
});

test.serial('norm weights: the file stores 1 + w (llama.cpp), the HF-named tensors hold w', async (t) => {
  const r = await open();
  try {
    const raw = (await r.readFloat32('output_norm.weight')).values;
    const hf = new Map<string, Float32Array>();
    const wanted = ['output_norm.weight', 'blk.0.attn_q_norm.weight', 'blk.0.ffn_up.weight'];
    for await (const x of ggufTensorsAsHf(r, (n) => wanted.includes(n))) if (x.hf) hf.set(x.hf, x.values);
    t.deepEqual([...hf.keys()].sort(), ['model.layers.0.mlp.up_proj.weight', 'model.layers.0.self_attn.q_norm.weight', 'model.norm.weight']);
    const w = hf.get('model.norm.weight')!;
    t.is(Math.max(...raw), 301);
    t.is(Math.max(...w), 300);
    t.true(raw.every((v, i) => Math.fround(v - 1) === w[i]));
    const q = (await r.readFloat32('blk.0.attn_q_norm.weight')).values;
    t.true(q.every((v, i) => Math.fround(v - 1) === hf.get('model.layers.0.self_attn.q_norm.weight')![i]), 'q/k norms are shifted too');
    const up = (await r.readFloat32('blk.0.ffn_up.weight')).values;
    t.true(up.every((v, i) => v === hf.get('model.layers.0.mlp.up_proj.weight')![i]), 'projections are not shifted');
  } finally { await r.close(); }
});

test.serial('gemma3ConfigFromGguf equals the config transformers derives from the file', async (t) => {
  const ref = JSON.parse(await readFile(HF, 'utf8')) as { config: Record<string, any> };
  const c = ref.config;
  const r = await open();
  try {
    const g = gemma3ConfigFromGguf(r);
    t.deepEqual(g, {
      modelType: c.model_type, hiddenSize: c.hidden_size, numLayers: c.num_hidden_layers, numHeads: c.num_attention_heads,
      numKvHeads: c.num_key_value_heads, headDim: c.head_dim, intermediateSize: c.intermediate_size, vocabSize: c.vocab_size,
      maxPositions: c.max_position_embeddings, normEps: c.rms_norm_eps,
      ropeTheta: c.rope_parameters.full_attention.rope_theta, ropeLocalBaseFreq: c.rope_parameters.sliding_attention.rope_theta,
      ropeScaling: null, slidingWindow: c.sliding_window, layerTypes: c.layer_types, queryPreAttnScalar: c.query_pre_attn_scalar,
      hiddenAct: c.hidden_activation, embedScale: Math.sqrt(c.hidden_size), tieWordEmbeddings: c.tie_word_embeddings,
      attnLogitSoftcapping: c.attn_logit_softcapping, finalLogitSoftcapping: c.final_logit_softcapping,
      bosTokenId: c.bos_token_id, eosTokenIds: [c.eos_token_id], padTokenId: c.pad_token_id,
    });
    t.is(c.rope_parameters.full_attention.rope_type, 'default');
    t.is(c.rope_parameters.sliding_attention.rope_type, 'default');
    // The reading of the metadata.
    t.like(g, { numLayers: 18, hiddenSize: 640, numHeads: 4, numKvHeads: 1, headDim: 256, intermediateSize: 2048, ropeTheta: 1e6, slidingWindow: 512, vocabSize: 262144 });
    t.deepEqual(g.layerTypes.flatMap((k, i) => (k === 'full_attention' ? [i] : [])), [5, 11, 17]);
    t.throws(() => modelConfigFromGguf(r), { instanceOf: ConfigError, message: /"gemma3" \(Gemma 3\).*gemma3ConfigFromGguf/ });
  } finally { await r.close(); }
});

test.serial('loadModel accepts gemma3: a gemma3_text ModelConfig from gemma3ConfigFromGguf, every tensor under its HF name', async (t) => {
  const r = await open();
  let g: ReturnType<typeof gemma3ConfigFromGguf>;
  try { g = gemma3ConfigFromGguf(r); } finally { await r.close(); }
  const m = await loadModel({ id: 'gemma3', path: GGUF });
  t.is(m.format, 'gguf');
  t.deepEqual(m.config, modelConfigFromGemma3(g));
  t.like(m.config, { modelType: 'gemma3_text', norm: 'rms', positions: 'rope', ropeTheta: g.ropeTheta, slidingWindow: g.slidingWindow, hiddenAct: 'gelu_pytorch_tanh', tieWordEmbeddings: true });
  t.deepEqual(m.config.gemma3, { layerTypes: g.layerTypes, ropeLocalBaseFreq: g.ropeLocalBaseFreq, queryPreAttnScalar: g.queryPreAttnScalar, embedScale: g.embedScale });
  const ref = JSON.parse(await readFile(HF, 'utf8')) as { tensors: Record<string, { shape: number[] }> };
  t.deepEqual([...m.weights.keys()].sort(), Object.keys(ref.tensors).sort());
  t.is(Math.max(...m.weights.get('model.norm.weight')!.data), 300, 'norm weights in HF\'s convention (the file holds 1 + w)');
  t.is(m.tokenizer.vocabSize, g.vocabSize);
});

test('config.json of Gemma 3 (gemma3_text): transformers 5\'s form (rope_parameters per layer type) and 4.x\'s give the GGUF\'s ModelConfig; unsupported features are refused', async (t) => {
  const ref = JSON.parse(await readFile(HF, 'utf8')) as { config: Record<string, unknown> };
  const r = await open();
  let want: ReturnType<typeof modelConfigFromGemma3>;
  try { want = modelConfigFromGemma3(gemma3ConfigFromGguf(r)); } finally { await r.close(); }
  // transformers 5.24's Gemma3TextConfig.to_dict() of this file (rope_parameters keyed by layer type).
  t.deepEqual(parseHfConfig(ref.config), want);
  // google/gemma-3-270m's config.json as transformers 4.55 wrote it (rope_theta, rope_local_base_freq, no layer_types in older ones).
  const { rope_parameters: _r, layer_types: _l, ...rest } = ref.config;
  const v4 = { ...rest, rope_theta: 1e6, rope_local_base_freq: 10000, rope_scaling: null, _sliding_window_pattern: 6 };
  t.deepEqual(parseHfConfig(v4), want);
  t.deepEqual(parseHfConfig({ ...v4, rope_scaling: { rope_type: 'linear', factor: 8 } }).ropeScaling, { rope_type: 'linear', factor: 8 });
  t.deepEqual(parseHfConfig({ ...v4, sliding_window_pattern: 2 }).gemma3!.layerTypes.slice(0, 4), ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention']);
  t.deepEqual(parseHfConfig(hfConfigJson(want)), want, 'hfConfigJson writes what parseHfConfig reads');
  t.throws(() => parseHfConfig({ ...v4, final_logit_softcapping: 30 }), { instanceOf: ConfigError, message: /field "final_logit_softcapping" is 30; logit soft-capping is not supported/ });
  t.throws(() => parseHfConfig({ ...v4, attn_logit_softcapping: 50 }), { instanceOf: ConfigError, message: /attn_logit_softcapping/ });
  t.throws(() => parseHfConfig({ ...v4, use_bidirectional_attention: true }), { instanceOf: ConfigError, message: /only causal Gemma 3 models/ });
  t.throws(() => parseHfConfig({ ...v4, layer_types: ['sliding_attention'] }), { instanceOf: ConfigError, message: /field "layer_types" .*expected 18 entries/ });
  t.throws(() => parseHfConfig({ ...ref.config, rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 }, sliding_attention: { rope_type: 'linear', factor: 2, rope_theta: 1e4 } } }), { instanceOf: ConfigError, message: /sliding_attention scales RoPE/ });
  t.throws(() => parseHfConfig({ ...v4, rope_scaling: { rope_type: 'yarn', factor: 2 } }), { instanceOf: ConfigError, message: /default or linear RoPE scaling/ });
});
