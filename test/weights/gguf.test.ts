import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataError } from '../../src/errors.ts';
import { GgufReader, GgufValueType as V } from '../../src/weights/gguf.ts';
import { loadGgufAsHf, hfNameForGguf, unpermuteRope } from '../../src/weights/gguf-hf.ts';
import { GgmlType, dequantize } from '../../src/weights/gguf-quants.ts';
import { buildGguf, type RawGgufTensor } from './gguf-build.ts';

const FIXTURE = new URL('../fixtures/weights/tiny-llama.gguf', import.meta.url).pathname;
const EXPECTED = new URL('../fixtures/weights/tiny-llama.expected.json', import.meta.url).pathname;

/** The temporary folders made below, removed after this file's tests. */
const tmpDirs: string[] = [];
test.after.always(() => Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true }))));

async function tmpFile(bytes: Uint8Array): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lf-gguf-'));
  tmpDirs.push(dir);
  const p = join(dir, 'x.gguf');
  await writeFile(p, bytes);
  return p;
}
async function readBuilt(tensors: RawGgufTensor[]) {
  const r = await GgufReader.open(await tmpFile(buildGguf([['general.architecture', V.STRING, 'test']], tensors)));
  try {
    const out: Record<string, Float32Array> = {};
    for (const t of tensors) out[t.name] = (await r.readFloat32(t.name)).values;
    return out;
  } finally { await r.close(); }
}
const le16 = (v: number) => [v & 0xff, v >> 8];

// ---- hand-constructed blocks; expected values derived from the block definitions -----------------

test('Q4_0 / Q4_1 / Q8_0 / Q5_0 hand-built blocks', async (t) => {
  // Q4_0 { f16 d = 0.5 (0x3800); qs[j] = j | (15-j) << 4 }: y[j] = (j-8)*0.5, y[j+16] = (7-j)*0.5
  const q40 = new Uint8Array([...le16(0x3800), ...Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4))]);
  // Q4_1 { d = 1 (0x3c00), m = -2 (0xc000), same qs }: y[j] = j - 2, y[j+16] = 13 - j
  const q41 = new Uint8Array([...le16(0x3c00), ...le16(0xc000), ...Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4))]);
  // Q8_0 { d = 0.25 (0x3400); qs = -16..15 }: y[j] = (j-16)/4
  const q80 = new Uint8Array([...le16(0x3400), ...Array.from({ length: 32 }, (_, j) => (j - 16) & 0xff)]);
  // Q5_0 { d = 2 (0x4000); qh = 0x0000ffff (high bit set for y[0..15]); qs[j] = j | j<<4 }:
  // y[j] = ((j | 16) - 16) * 2 = 2j, y[j+16] = (j - 16) * 2
  const q50 = new Uint8Array([...le16(0x4000), 0xff, 0xff, 0, 0, ...Array.from({ length: 16 }, (_, j) => j | (j << 4))]);
  const got = await readBuilt([
    { name: 'q40', ne: [32], type: GgmlType.Q4_0, data: q40 },
    { name: 'q41', ne: [32], type: GgmlType.Q4_1, data: q41 },
    { name: 'q80', ne: [32], type: GgmlType.Q8_0, data: q80 },
    { name: 'q50', ne: [32], type: GgmlType.Q5_0, data: q50 },
  ]);
  const range = (f: (j: number) => number) => Array.from({ length: 16 }, (_, j) => f(j));
  t.deepEqual([...got.q40], [...range((j) => (j - 8) * 0.5), ...range((j) => (7 - j) * 0.5)]);
  t.deepEqual([...got.q41], [...range((j) => j - 2), ...range((j) => 13 - j)]);
  t.deepEqual([...got.q80], Array.from({ length: 32 }, (_, j) => (j - 16) / 4));
  t.deepEqual([...got.q50], [...range((j) => 2 * j), ...range((j) => (j - 16) * 2)]);
});

test('Q4_K hand-built super-block: 6-bit scales/mins unpacked per get_scale_min_k4', async (t) => {
  // d = 1, dmin = 0.5. Sub-block s (32 values) has scale sc[s] = s+1 and min m[s] = 2s (all < 16,
  // so the high 2 bits stored in scales[0..7] bits 6-7 are zero).
  // scales[0..3] = sc[0..3], scales[4..7] = m[0..3], scales[8+k] = sc[4+k] | m[4+k] << 4.
  const sc = [1, 2, 3, 4, 5, 6, 7, 8], mn = [0, 2, 4, 6, 8, 10, 12, 14];
  const scales = [...sc.slice(0, 4), ...mn.slice(0, 4), ...[0, 1, 2, 3].map((k) => sc[4 + k] | (mn[4 + k] << 4))];
  const qs = Array.from({ length: 128 }, (_, l) => (l % 16) | ((15 - (l % 16)) << 4));
  const block = new Uint8Array([...le16(0x3c00), ...le16(0x3800), ...scales, ...qs]);
  const got = (await readBuilt([{ name: 'k', ne: [256], type: GgmlType.Q4_K, data: block }])).k;
  // Chunk c (64 outputs) uses qs[32c..32c+31]: low nibbles -> sub-block 2c, high nibbles -> 2c+1.
  const want: number[] = [];
  for (let c = 0; c < 4; c++) {
    for (let l = 0; l < 32; l++) want.push(sc[2 * c] * (qs[32 * c + l] & 15) - 0.5 * mn[2 * c]);
    for (let l = 0; l < 32; l++) want.push(sc[2 * c + 1] * (qs[32 * c + l] >> 4) - 0.5 * mn[2 * c + 1]);
  }
  t.deepEqual([...got], want);
});

test('Q6_K hand-built super-block packed like quantize_row_q6_K_ref', async (t) => {
  // Choose 6-bit codes L[i] = (7i) % 64 and int8 scales sc[k] = k - 8, d = 0.5.
  const L = Array.from({ length: 256 }, (_, i) => (7 * i) % 64);
  const scl = Array.from({ length: 16 }, (_, k) => k - 8);
  const ql = new Uint8Array(128), qh = new Uint8Array(64);
  for (let j = 0; j < 256; j += 128) {
    const qo = j / 2, ho = j / 4;
    for (let l = 0; l < 32; l++) {
      ql[qo + l] = (L[j + l] & 15) | ((L[j + l + 64] & 15) << 4);
      ql[qo + l + 32] = (L[j + l + 32] & 15) | ((L[j + l + 96] & 15) << 4);
      qh[ho + l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
    }
  }
  const block = new Uint8Array([...ql, ...qh, ...scl.map((s) => s & 0xff), ...le16(0x3800)]);
  const got = (await readBuilt([{ name: 'k', ne: [256], type: GgmlType.Q6_K, data: block }])).k;
  t.deepEqual([...got], L.map((q, i) => 0.5 * scl[i >> 4] * (q - 32)));
});

test('F16 / BF16 / F32 tensors and the ne -> row-major shape reversal', async (t) => {
  const f16 = new Uint8Array([...le16(0x3c00), ...le16(0xc000), ...le16(0x0001), ...le16(0x7bff), ...le16(0x3555), ...le16(0x8000)]);
  const bf16 = new Uint8Array([...le16(0x3f80), ...le16(0xc040)]);
  const p = await tmpFile(buildGguf([], [
    { name: 'h', ne: [3, 2], type: GgmlType.F16, data: f16 },
    { name: 'b', ne: [2], type: GgmlType.BF16, data: bf16 },
  ]));
  const r = await GgufReader.open(p);
  const h = await r.readFloat32('h');
  t.deepEqual(h.shape, [2, 3]);
  t.deepEqual([...h.values], [1, -2, 2 ** -24, 65504, 0.333251953125, -0]);
  t.deepEqual([...(await r.readFloat32('b')).values], [1, -3]);
  await r.close();
});

// ---- reference fixture generated by ggml's gguf-py (test/fixtures/scripts/weights_gguf.py) ------

test('fixture: metadata of every value type', async (t) => {
  const r = await GgufReader.open(FIXTURE);
  const m = r.metadata;
  t.is(r.header.version, 3);
  t.is(m.get('general.architecture'), 'llama');
  t.deepEqual(
    ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'u64', 'i64', 'f64'].map((k) => m.get(`test.${k}`)),
    [200, -100, 60000, -30000, 4000000000, -2000000000, 0.25, true, 'héllo ✓', 2 ** 40 + 3, -(2 ** 40) - 5, 1 / 3],
  );
  t.deepEqual(m.get('test.arr_i32'), [1, -2, 3]);
  t.deepEqual(m.get('test.arr_str'), ['a', 'bc', '']);
  t.deepEqual(m.get('test.arr_nested'), [[1, 2], [3]]);
  t.is(r.header.metadataTypes.get('test.arr_nested'), 'ARRAY:ARRAY');
  t.is(m.get('llama.attention.head_count_kv'), 1);
  await r.close();
});

test('fixture: dequantisation matches gguf-py for Q4_0..Q8_0, Q4_K, Q5_K, Q6_K, Q8_K, BF16 bit-exactly', async (t) => {
  const exp = JSON.parse(await readFile(EXPECTED, 'utf8'));
  const r = await GgufReader.open(FIXTURE);
  for (const [name, e] of Object.entries<{ type: string; shape: number[]; values: number[] }>(exp.quant)) {
    const { shape, values } = await r.readFloat32(name);
    t.is(r.tensor(name).typeName, e.type);
    t.deepEqual(shape, e.shape, name);
    t.deepEqual([...values], e.values.map(Math.fround), name);
  }
  await r.close();
});

test('fixture: llama tensors map to HF names with the rope permutation undone', async (t) => {
  const exp = JSON.parse(await readFile(EXPECTED, 'utf8'));
  const r = await GgufReader.open(FIXTURE);
  const { tensors, skipped } = await loadGgufAsHf(r);
  for (const [name, e] of Object.entries<{ shape: number[]; values: number[] }>(exp.hf)) {
    const got = tensors.get(name);
    t.truthy(got, name);
    t.deepEqual(got!.shape, e.shape, name);
    t.deepEqual([...got!.values], e.values.map(Math.fround), name);
  }
  for (const [hf, g] of Object.entries<string>(exp.hf_map)) t.is(hfNameForGguf(g), hf);
  t.true(skipped.every((s) => s.startsWith('test.')));
  await r.close();
});

test('unpermuteRope inverts llama.cpp permute on a hand example (1 head, head_dim 4)', (t) => {
  // HF rows [r0, r1, r2, r3] -> permute -> [r0, r2, r1, r3]; undo must give back [r0, r1, r2, r3].
  const gguf = new Float32Array([0, 0, 2, 2, 1, 1, 3, 3]);
  t.deepEqual([...unpermuteRope(gguf, 4, 2, 1)], [0, 0, 1, 1, 2, 2, 3, 3]);
});

// ---- validation ---------------------------------------------------------------------------------

test('bad magic, bad version, truncated data, unknown value type, unsupported quant -> DataError naming the file', async (t) => {
  const good = buildGguf([['k', V.UINT32, 1]], [{ name: 'w', ne: [32], type: GgmlType.Q8_0, data: new Uint8Array(34) }]);
  const badMagic = good.slice(); badMagic[0] = 0x58;
  let p = await tmpFile(badMagic);
  await t.throwsAsync(GgufReader.open(p), { instanceOf: DataError, message: new RegExp(`${p}: not a GGUF file`) });
  const v1 = good.slice(); v1[4] = 1;
  await t.throwsAsync(GgufReader.open(await tmpFile(v1)), { instanceOf: DataError, message: /version 1 is not supported/ });
  p = await tmpFile(good.slice(0, good.length - 40));
  await t.throwsAsync(GgufReader.open(p), { instanceOf: DataError, message: /truncated file: tensor "w"/ });
  await t.throwsAsync(GgufReader.open(await tmpFile(buildGguf([['k', 99, 0]], []))), { instanceOf: DataError, message: /key "k": unknown GGUF value type 99/ });
  await t.throwsAsync(GgufReader.open(await tmpFile(good.slice(0, 30))), { instanceOf: DataError, message: /truncated GGUF header/ });
  const q2k = buildGguf([], [{ name: 'q', ne: [256], type: GgmlType.Q2_K, data: new Uint8Array(84) }]);
  const r = await GgufReader.open(await tmpFile(q2k));
  await t.throwsAsync(r.readFloat32('q'), { instanceOf: DataError, message: /dequantising ggml type Q2_K is not supported/ });
  await r.close();
  t.throws(() => dequantize(GgmlType.Q4_0, new Uint8Array(18), 33), { instanceOf: DataError, message: /not a multiple of the Q4_0 block size 32/ });
});

test('GGUF v2 files parse; qwen2 tensors (incl. biases) map to HF names without un-permuting', async (t) => {
  const f32 = (vals: number[]) => new Uint8Array(Float32Array.from(vals).buffer);
  const q = Array.from({ length: 8 }, (_, i) => i); // 4 rows x 2 cols
  const bytes = buildGguf([
    ['general.architecture', V.STRING, 'qwen2'],
    ['qwen2.attention.head_count', V.UINT32, 1],
  ], [
    { name: 'blk.3.attn_q.weight', ne: [2, 4], type: GgmlType.F32, data: f32(q) },
    { name: 'blk.3.attn_q.bias', ne: [4], type: GgmlType.F32, data: f32([0, 1, 2, 3]) },
    { name: 'rope_freqs.weight', ne: [2], type: GgmlType.F32, data: f32([1, 1]) },
  ]);
  bytes[4] = 2; // version 2 has the same layout as 3 for little-endian files
  const r = await GgufReader.open(await tmpFile(bytes));
  t.is(r.header.version, 2);
  const { tensors, skipped } = await loadGgufAsHf(r);
  t.deepEqual([...tensors.get('model.layers.3.self_attn.q_proj.weight')!.values], q);
  t.deepEqual(tensors.get('model.layers.3.self_attn.q_proj.weight')!.shape, [4, 2]);
  t.deepEqual([...tensors.get('model.layers.3.self_attn.q_proj.bias')!.values], [0, 1, 2, 3]);
  t.deepEqual(skipped, ['rope_freqs.weight']);
  await r.close();
});

test('general.alignment is honoured for the data section and tensor offsets', async (t) => {
  const f32 = (vals: number[]) => new Uint8Array(Float32Array.from(vals).buffer);
  const bytes = buildGguf([['general.alignment', V.UINT32, 64]], [
    { name: 'a', ne: [3], type: GgmlType.F32, data: f32([1, 2, 3]) },
    { name: 'b', ne: [2], type: GgmlType.F32, data: f32([4, 5]) },
  ], 64);
  const r = await GgufReader.open(await tmpFile(bytes));
  t.is(r.header.alignment, 64);
  t.is(r.header.dataOffset % 64, 0);
  t.is(r.tensor('b').offset - r.tensor('a').offset, 64);
  t.deepEqual([...(await r.readFloat32('b')).values], [4, 5]);
  await r.close();
  const bad = buildGguf([['general.alignment', V.UINT32, 48]], []);
  await t.throwsAsync(GgufReader.open(await tmpFile(bad)), { instanceOf: DataError, message: /general.alignment is 48; expected a power of two/ });
});

test('gemma3 tensors map to HF Gemma3 names, unpermuted, norm weights shifted back by -1', async (t) => {
  const f32 = (vals: number[]) => new Uint8Array(Float32Array.from(vals).buffer);
  const q = Array.from({ length: 8 }, (_, i) => i); // 4 rows x 2 cols
  const r = await GgufReader.open(await tmpFile(buildGguf([
    ['general.architecture', V.STRING, 'gemma3'],
    ['gemma3.attention.head_count', V.UINT32, 1],
  ], [
    { name: 'blk.0.attn_q.weight', ne: [2, 4], type: GgmlType.F32, data: f32(q) },
    { name: 'blk.0.attn_q_norm.weight', ne: [2], type: GgmlType.F32, data: f32([1, 1.5]) },
    { name: 'blk.0.ffn_norm.weight', ne: [2], type: GgmlType.F32, data: f32([0.25, 3]) },
    { name: 'blk.0.post_ffw_norm.weight', ne: [2], type: GgmlType.F32, data: f32([2, 0]) },
    { name: 'blk.0.post_attention_norm.weight', ne: [2], type: GgmlType.F32, data: f32([1, 1]) },
    { name: 'output_norm.weight', ne: [2], type: GgmlType.F32, data: f32([301, 1.1]) },
  ])));
  const { tensors, skipped } = await loadGgufAsHf(r);
  await r.close();
  t.deepEqual(skipped, []);
  t.deepEqual([...tensors.get('model.layers.0.self_attn.q_proj.weight')!.values], q, 'gemma3 Q/K are not permuted');
  t.deepEqual([...tensors.get('model.layers.0.self_attn.q_norm.weight')!.values], [0, 0.5]);
  t.deepEqual([...tensors.get('model.layers.0.pre_feedforward_layernorm.weight')!.values], [-0.75, 2]);
  t.deepEqual([...tensors.get('model.layers.0.post_feedforward_layernorm.weight')!.values], [1, -1]);
  t.deepEqual([...tensors.get('model.layers.0.post_attention_layernorm.weight')!.values], [0, 0]);
  t.deepEqual([...tensors.get('model.norm.weight')!.values], [300, Math.fround(Math.fround(1.1) - 1)]);
  // The same GGUF names mean other HF modules in llama files.
  t.is(hfNameForGguf('blk.2.ffn_norm.weight'), 'model.layers.2.post_attention_layernorm.weight');
  t.is(hfNameForGguf('blk.2.ffn_norm.weight', 'gemma3'), 'model.layers.2.pre_feedforward_layernorm.weight');
  t.is(hfNameForGguf('blk.2.post_attention_norm.weight'), undefined);
  t.is(hfNameForGguf('blk.2.attn_norm.weight', 'gemma3'), 'model.layers.2.input_layernorm.weight');
});

test('readRowsFloat32 reads and dequantises only the rows asked for', async (t) => {
  // Q8_0, 3 rows of 32: row r has d = 1 (0x3c00) and qs[j] = r * 10 + j - 16.
  const rows = [0, 1, 2].map((r) => [...le16(0x3c00), ...Array.from({ length: 32 }, (_, j) => (r * 10 + j - 16) & 0xff)]);
  const r = await GgufReader.open(await tmpFile(buildGguf([], [
    { name: 'm', ne: [32, 3], type: GgmlType.Q8_0, data: new Uint8Array(rows.flat()) },
    { name: 'v', ne: [4], type: GgmlType.F32, data: new Uint8Array(Float32Array.from([1, 2, 3, 4]).buffer) },
  ])));
  const all = await r.readFloat32('m');
  const mid = await r.readRowsFloat32('m', 1, 2);
  t.deepEqual(mid.shape, [2, 32]);
  t.deepEqual([...mid.values], [...all.values.subarray(32)]);
  t.is(mid.values[0], 10 - 16);
  t.deepEqual((await r.readRowsFloat32('v', 0, 1)).shape, [4]);
  await t.throwsAsync(r.readRowsFloat32('m', 2, 2), { instanceOf: DataError, message: /rows 2\.\.3 of tensor "m" requested; it has 3 rows/ });
  await r.close();
});
