import test, { type ExecutionContext } from 'ava';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../../src/errors.ts';
import { GgufReader } from '../../src/weights/gguf.ts';
import { modelConfigFromGguf } from '../../src/weights/gguf-hf.ts';
import { parseHfConfig, readHfConfig } from '../../src/weights/hf-config.ts';
import { readPeftAdapter, writePeftAdapter, type LoraConfig, type LoraPair } from '../../src/weights/peft.ts';
import { readSafetensors } from '../../src/weights/safetensors.ts';

const tmp = async (t: ExecutionContext) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-peft-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};
const config: LoraConfig = { r: 2, loraAlpha: 16, loraDropout: 0.05, targetModules: ['q_proj', 'v_proj'], baseModelNameOrPath: 'tiny/llama', taskType: 'CAUSAL_LM' };
const pair = (inF: number, outF: number, seed: number): LoraPair => ({
  a: { shape: [2, inF], values: Float32Array.from({ length: 2 * inF }, (_, i) => Math.fround(Math.sin(seed + i))) },
  b: { shape: [outF, 2], values: Float32Array.from({ length: 2 * outF }, (_, i) => Math.fround(Math.cos(seed + i))) },
});

test('PEFT adapter: written files follow PEFT layout and read back identical', async (t) => {
  const dir = await tmp(t);
  const weights = new Map([
    ['model.layers.0.self_attn.q_proj', pair(8, 8, 1)],
    ['model.layers.0.self_attn.v_proj', pair(8, 4, 2)],
    ['model.layers.1.self_attn.q_proj', pair(8, 8, 3)],
  ]);
  await writePeftAdapter({ dir, config, weights });
  t.deepEqual((await readdir(dir)).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  const cfg = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
  t.like(cfg, { peft_type: 'LORA', r: 2, lora_alpha: 16, lora_dropout: 0.05, target_modules: ['q_proj', 'v_proj'], task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny/llama', bias: 'none', fan_in_fan_out: false, use_rslora: false });
  const st = await readSafetensors(join(dir, 'adapter_model.safetensors'));
  t.deepEqual([...st.tensors.keys()].sort(), [
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
    'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
    'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight',
  ]);
  t.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape, [4, 2]);
  t.deepEqual(st.metadata, { format: 'pt' });
  const back = await readPeftAdapter(dir);
  t.like(back.config, { r: 2, loraAlpha: 16, loraDropout: 0.05, targetModules: ['q_proj', 'v_proj'], baseModelNameOrPath: 'tiny/llama', taskType: 'CAUSAL_LM' });
  t.deepEqual([...back.weights.keys()], [...weights.keys()].sort());
  for (const [m, p] of weights) {
    const q = back.weights.get(m)!;
    t.deepEqual(q.a.shape, p.a.shape); t.deepEqual(q.b.shape, p.b.shape);
    t.deepEqual([...q.a.values], [...p.a.values]); t.deepEqual([...q.b.values], [...p.b.values]);
  }
});

test('PEFT adapter: rank mismatch, missing half, bad config and missing files are typed errors', async (t) => {
  const dir = await tmp(t);
  await t.throwsAsync(writePeftAdapter({ dir, config, weights: new Map([['m.q_proj', { a: { shape: [3, 4], values: new Float32Array(12) }, b: { shape: [4, 3], values: new Float32Array(12) } }]]) }),
    { instanceOf: DataError, message: /module "m.q_proj": lora_A is \[3,4\].*r = 2/ });
  await t.throwsAsync(writePeftAdapter({ dir, config: { ...config, r: 0 }, weights: new Map() }), { instanceOf: ConfigError, message: /field "r" is 0; expected a positive integer/ });
  await t.throwsAsync(readPeftAdapter(dir), { instanceOf: MissingArtifactError, message: /adapter_config.json: cannot read adapter config/ });
  await writePeftAdapter({ dir, config, weights: new Map([['m.q_proj', pair(4, 4, 0)]]) });
  const cfgPath = join(dir, 'adapter_config.json');
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8'));
  await writeFile(cfgPath, JSON.stringify({ ...cfg, peft_type: 'IA3' }));
  await t.throwsAsync(readPeftAdapter(dir), { instanceOf: ConfigError, message: /field "peft_type" is "IA3"; expected "LORA"/ });
  await writeFile(cfgPath, JSON.stringify({ ...cfg, r: 4 }));
  await t.throwsAsync(readPeftAdapter(dir), { instanceOf: DataError, message: /lora_A is \[2,4\].*r = 4/ });
});

// ---- config.json --------------------------------------------------------------------------------

const llama = {
  model_type: 'llama', hidden_size: 2048, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4,
  intermediate_size: 5632, vocab_size: 32000, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000,
  tie_word_embeddings: false, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2, rope_scaling: null,
};

test('config.json: llama (TinyLlama-style), qwen2 and gpt2 records', (t) => {
  t.deepEqual(parseHfConfig(llama), {
    modelType: 'llama', hiddenSize: 2048, numLayers: 22, numHeads: 32, numKvHeads: 4, headDim: 64, intermediateSize: 5632,
    vocabSize: 32000, maxPositions: 2048, norm: 'rms', normEps: 1e-5, positions: 'rope', ropeTheta: 10000, ropeScaling: null,
    hiddenAct: 'silu', tieWordEmbeddings: false, attentionBias: false, slidingWindow: null, bosTokenId: 1, eosTokenIds: [2],
  });
  const qwen = parseHfConfig({ model_type: 'qwen2', hidden_size: 896, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, intermediate_size: 4864, vocab_size: 151936, tie_word_embeddings: true, rope_theta: 1000000, eos_token_id: [151643, 151645] });
  t.like(qwen, { headDim: 64, attentionBias: true, tieWordEmbeddings: true, ropeTheta: 1e6, normEps: 1e-6, maxPositions: 32768, eosTokenIds: [151643, 151645] });
  const gpt2 = parseHfConfig({ model_type: 'gpt2', n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, vocab_size: 50257, n_inner: null });
  t.like(gpt2, { intermediateSize: 3072, headDim: 64, norm: 'layer', normEps: 1e-5, positions: 'learned', ropeTheta: null, tieWordEmbeddings: true, hiddenAct: 'gelu_new' });
  t.like(parseHfConfig({ ...llama, model_type: 'mistral', num_key_value_heads: undefined, sliding_window: 4096 }), { numKvHeads: 8, slidingWindow: 4096 });
});

test('config.json: missing and wrong fields name the field and the file', async (t) => {
  const { hidden_size: _h, ...noHidden } = llama;
  t.throws(() => parseHfConfig(noHidden, 'cfg.json'), { instanceOf: ConfigError, message: 'cfg.json: field "hidden_size" is missing; expected a positive integer' });
  t.throws(() => parseHfConfig({ ...llama, vocab_size: '32000' }, 'cfg.json'), { instanceOf: ConfigError, message: 'cfg.json: field "vocab_size" is "32000"; expected a positive integer' });
  t.throws(() => parseHfConfig({ ...llama, model_type: 'bert' }), { instanceOf: ConfigError, message: /"model_type" is "bert"; expected one of llama, mistral, qwen2, gpt2/ });
  t.throws(() => parseHfConfig({ ...llama, num_key_value_heads: 5 }), { instanceOf: ConfigError, message: /not a multiple of num_key_value_heads 5/ });
  t.throws(() => parseHfConfig({ ...llama, tie_word_embeddings: 'yes' }), { instanceOf: ConfigError, message: /"tie_word_embeddings" is "yes"; expected true or false/ });
  const dir = await tmp(t);
  await writeFile(join(dir, 'config.json'), JSON.stringify(llama));
  t.is((await readHfConfig(join(dir, 'config.json'))).numKvHeads, 4);
  await writeFile(join(dir, 'bad.json'), '{');
  await t.throwsAsync(readHfConfig(join(dir, 'bad.json')), { instanceOf: ConfigError, message: /bad.json: not valid JSON/ });
  await t.throwsAsync(readHfConfig(join(dir, 'none.json')), { instanceOf: MissingArtifactError });
});

test('model record from GGUF metadata (fixture written by gguf-py)', async (t) => {
  const r = await GgufReader.open(new URL('../fixtures/weights/tiny-llama.gguf', import.meta.url).pathname);
  t.deepEqual(modelConfigFromGguf(r), {
    modelType: 'llama', hiddenSize: 8, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 4, intermediateSize: 16, vocabSize: 12,
    maxPositions: 64, norm: 'rms', normEps: Math.fround(1e-5), positions: 'rope', ropeTheta: 10000, ropeScaling: null, hiddenAct: 'silu',
    tieWordEmbeddings: false, attentionBias: false, slidingWindow: null, bosTokenId: 1, eosTokenIds: [2],
  });
  await r.close();
});

test('config.json written by transformers 5 (rope_parameters) keeps rope_theta and scaling', (t) => {
  const base = { model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128, vocab_size: 100 };
  t.is(parseHfConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }).ropeTheta, 500000);
  t.is(parseHfConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }).ropeScaling, null);
  const scaled = parseHfConfig({ ...base, rope_parameters: { rope_type: 'linear', rope_theta: 10000, factor: 2 } });
  t.deepEqual(scaled.ropeScaling, { rope_type: 'linear', rope_theta: 10000, factor: 2 });
  t.is(parseHfConfig({ ...base, rope_theta: 1000 }).ropeTheta, 1000);
  t.throws(() => parseHfConfig({ ...base, rope_parameters: { rope_theta: -1 } }), { instanceOf: ConfigError, message: /rope_theta/ });
});

test('a GPT-2 (Conv1D) adapter records fan_in_fan_out and reads back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-peft-fifo-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config: LoraConfig = { r: 1, loraAlpha: 2, loraDropout: 0, targetModules: ['c_attn'], baseModelNameOrPath: null, taskType: 'CAUSAL_LM', fanInFanOut: true };
  const weights = new Map<string, LoraPair>([['transformer.h.0.attn.c_attn', { a: { shape: [1, 2], values: new Float32Array([1, 2]) }, b: { shape: [3, 1], values: new Float32Array([3, 4, 5]) } }]]);
  await writePeftAdapter({ dir, config, weights });
  t.is(JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8')).fan_in_fan_out, true);
  t.true((await readPeftAdapter(dir)).config.fanInFanOut);
});
