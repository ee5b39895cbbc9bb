/**
 * RoPE scaling from GGUF files: linear scaling from rope.scaling.* / rope.scale_linear metadata, and
 * Llama 3.x "llama3" scaling recovered from the rope_freqs.weight tensor (written here exactly as
 * llama.cpp's convert_hf_to_gguf.py computes it), checked through our RoPE code (ropeInvFreq);
 * everything not reproducible is refused with a ConfigError naming the file.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import { ropeInvFreq } from '../../src/models/ops.ts';
import { GgufReader, GgufValueType as V } from '../../src/weights/gguf.ts';
import { modelConfigFromGguf, readGgufModelConfig } from '../../src/weights/gguf-hf.ts';
import { GgmlType } from '../../src/weights/gguf-quants.ts';
import { buildGguf, type Kv } from './gguf-build.ts';

const HEAD_DIM = 64, THETA = 500000;

/** convert_hf_to_gguf.py LlamaModel.generate_extra_tensors for rope_type llama3 (float32 freqs, factors stored as F32). */
function llama3Factors(p: { factor: number; lo: number; hi: number; old: number }, dim = HEAD_DIM, theta = THETA): number[] {
  const out: number[] = [];
  for (let i = 0; i < dim / 2; i++) {
    const freq = Math.fround(1 / Math.fround(Math.pow(theta, (2 * i) / dim)));
    const wl = (2 * Math.PI) / freq, loWl = p.old / p.lo, hiWl = p.old / p.hi;
    if (wl < hiWl) out.push(1);
    else if (wl > loWl) out.push(p.factor);
    else {
      const s = (p.old / wl - p.lo) / (p.hi - p.lo);
      out.push(1 / ((1 - s) / p.factor + s));
    }
  }
  return out;
}

/** The temporary folders made below, removed after this file's tests. */
const tmpDirs: string[] = [];
test.after.always(() => Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true }))));

async function gguf(extra: Kv[], ropeFreqs?: number[]): Promise<string> {
  const kvs: Kv[] = [
    ['general.architecture', V.STRING, 'llama'],
    ['llama.block_count', V.UINT32, 1],
    ['llama.context_length', V.UINT32, 131072],
    ['llama.embedding_length', V.UINT32, 2 * HEAD_DIM],
    ['llama.feed_forward_length', V.UINT32, 16],
    ['llama.attention.head_count', V.UINT32, 2],
    ['llama.rope.freq_base', V.FLOAT32, THETA],
    ['llama.rope.dimension_count', V.UINT32, HEAD_DIM],
    ['llama.vocab_size', V.UINT32, 32],
    ...extra,
  ];
  const tensors = ropeFreqs ? [{ name: 'rope_freqs.weight', ne: [ropeFreqs.length], type: GgmlType.F32, data: new Uint8Array(Float32Array.from(ropeFreqs).buffer) }] : [];
  const dir = await mkdtemp(join(tmpdir(), 'lf-gguf-rope-'));
  tmpDirs.push(dir);
  const p = join(dir, 'model.gguf');
  await writeFile(p, buildGguf(kvs, tensors));
  return p;
}

async function config(extra: Kv[], ropeFreqs?: number[]) {
  const r = await GgufReader.open(await gguf(extra, ropeFreqs));
  try { return await readGgufModelConfig(r); } finally { await r.close(); }
}

/** Our RoPE frequencies for a config vs llama.cpp's (base frequency / rope_freqs factor). */
function assertReproduces(t: import('ava').ExecutionContext, scaling: Record<string, unknown> | null, factors: number[]) {
  const base = ropeInvFreq(HEAD_DIM, THETA, null);
  const got = ropeInvFreq(HEAD_DIM, THETA, scaling);
  got.forEach((f, i) => {
    const want = base[i] / Math.fround(factors[i]);
    t.true(Math.abs(f - want) <= 1e-6 * want, `frequency ${i}: ${f} vs ${want}`);
  });
}

test('Llama 3.1 / 3.2 rope_freqs → the llama3 rope_scaling record of their config.json', async (t) => {
  for (const factor of [8, 32]) {
    const factors = llama3Factors({ factor, lo: 1, hi: 4, old: 8192 });
    t.true(factors.some((f) => f > 1 && f < factor), 'the fixture has a smooth band');
    const c = await config([], factors);
    t.deepEqual(c.ropeScaling, { rope_type: 'llama3', factor, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
    t.is(c.ropeTheta, THETA);
    assertReproduces(t, c.ropeScaling, factors);
  }
});

test('llama3 factors with other parameters are recovered up to an equivalent record', async (t) => {
  // Only old/low and old/high matter: (16, lo 2, hi 8, old 4096) ≡ (16, lo 1, hi 4, old 2048).
  const factors = llama3Factors({ factor: 16, lo: 2, hi: 8, old: 4096 });
  const c = await config([], factors);
  t.deepEqual(c.ropeScaling, { rope_type: 'llama3', factor: 16, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 2048 });
  assertReproduces(t, c.ropeScaling, factors);
  // head_dim 16: at most one frequency in the smooth band, so the published Llama 3.1 values are tried.
  const small = llama3Factors({ factor: 8, lo: 1, hi: 4, old: 8192 }, 16);
  const r = await GgufReader.open(await gguf([['llama.embedding_length', V.UINT32, 32], ['llama.rope.dimension_count', V.UINT32, 16]], small));
  t.deepEqual((await readGgufModelConfig(r)).ropeScaling, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
  await r.close();
});

test('rope_freqs of all ones is no scaling; factors no llama3 record reproduces are refused', async (t) => {
  t.is((await config([], new Array(HEAD_DIM / 2).fill(1))).ropeScaling, null);
  const odd = Array.from({ length: HEAD_DIM / 2 }, (_, i) => 1 + i / 10); // no flat bands
  const p = await gguf([], odd);
  const r = await GgufReader.open(p);
  await t.throwsAsync(readGgufModelConfig(r), { instanceOf: ConfigError, message: new RegExp(`${p}: rope_freqs.weight \\[1, 1.1, .*\\] is not reproduced by any llama3 rope_scaling`) });
  // The sync reader cannot check the values, so it refuses instead of ignoring the tensor.
  t.throws(() => modelConfigFromGguf(r), { instanceOf: ConfigError, message: /has a rope_freqs.weight tensor; read the config with readGgufModelConfig/ });
  await r.close();
  await t.throwsAsync(config([], [1, 2, 3]), { instanceOf: ConfigError, message: /rope_freqs.weight has 3 values; expected head_dim \/ 2 = 32/ });
  await t.throwsAsync(config([], new Array(HEAD_DIM / 2).fill(0)), { instanceOf: ConfigError, message: /non-positive or non-finite/ });
});

test('linear scaling metadata → { rope_type: linear, factor }; yarn, partial rotary and linear+rope_freqs are refused', async (t) => {
  t.deepEqual((await config([['llama.rope.scaling.type', V.STRING, 'linear'], ['llama.rope.scaling.factor', V.FLOAT32, 4]])).ropeScaling, { rope_type: 'linear', factor: 4 });
  t.deepEqual((await config([['llama.rope.scale_linear', V.FLOAT32, 2]])).ropeScaling, { rope_type: 'linear', factor: 2 }); // older key; type defaults to linear
  t.is((await config([['llama.rope.scaling.type', V.STRING, 'none'], ['llama.rope.scaling.factor', V.FLOAT32, 4]])).ropeScaling, null);
  t.is((await config([['llama.rope.scaling.type', V.STRING, 'linear'], ['llama.rope.scaling.factor', V.FLOAT32, 1]])).ropeScaling, null);
  t.is((await config([])).ropeScaling, null);
  await t.throwsAsync(config([['llama.rope.scaling.type', V.STRING, 'yarn'], ['llama.rope.scaling.factor', V.FLOAT32, 4], ['llama.rope.scaling.original_context_length', V.UINT32, 32768]]),
    { instanceOf: ConfigError, message: /model.gguf: metadata llama.rope.scaling.type is "yarn" \(factor 4\); RoPE scaling "yarn" is not supported/ });
  await t.throwsAsync(config([['llama.rope.dimension_count', V.UINT32, 32]]), { instanceOf: ConfigError, message: /rope.dimension_count is 32 but the head size is 64; partial rotary/ });
  await t.throwsAsync(config([['llama.rope.scaling.factor', V.FLOAT32, 2]], llama3Factors({ factor: 8, lo: 1, hi: 4, old: 8192 })),
    { instanceOf: ConfigError, message: /both linear RoPE scaling \(factor 2\) and a rope_freqs.weight tensor/ });
});
