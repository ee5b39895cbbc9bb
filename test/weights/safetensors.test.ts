import test, { type ExecutionContext } from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataError } from '../../src/errors.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../src/weights/half.ts';
import { SafetensorsReader, float32ToRaw, rawToFloat32, readSafetensors, serializeSafetensors, writeSafetensors } from '../../src/weights/safetensors.ts';

const PY_FIXTURE = new URL('../fixtures/weights/py-written.safetensors', import.meta.url).pathname;
const tmp = async (t: ExecutionContext) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-st-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};
const u16 = (bytes: Uint8Array) => Array.from({ length: bytes.length / 2 }, (_, i) => bytes[2 * i] | (bytes[2 * i + 1] << 8));

// Hand-computed bit patterns (IEEE 754 binary16 / bfloat16, round to nearest, ties to even).
const F16_CASES: [number, number][] = [
  [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff],
  [65520, 0x7c00],              // halfway 65504..65536: mantissa 0x3ff is odd -> rounds up to Inf
  [1 + 2 ** -11, 0x3c00],       // tie between 1 (even) and 1+2^-10 -> 1
  [1 + 3 * 2 ** -11, 0x3c02],   // tie between 0x3c01 (odd) and 0x3c02 -> 0x3c02
  [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie -> up
  [Math.fround(0.1), 0x2e66], [Math.fround(1 / 3), 0x3555],
  [2 ** -14, 0x0400], [2 ** -24, 0x0001],
  [2 ** -25, 0x0000],           // tie between 0 and the smallest subnormal -> 0 (even)
  [3 * 2 ** -25, 0x0002],       // tie between 1 and 2 subnormal steps -> 2
  [-0, 0x8000], [-Infinity, 0xfc00], [NaN, 0x7e00],
];
const BF16_CASES: [number, number][] = [
  [1, 0x3f80], [-3, 0xc040],
  [1 + 2 ** -8, 0x3f80],        // tie -> even
  [1 + 3 * 2 ** -8, 0x3f82],    // tie, 0x3f81 odd -> up
  [1 + 2 ** -8 + 2 ** -20, 0x3f81],
  [Math.fround(0.1), 0x3dcd],   // 0x3dcccccd: low half 0xcccd > 0x8000 -> up
  [3.4028234663852886e38, 0x7f80], // FLT_MAX rounds to Inf
  [NaN, 0x7fc0],
];

test('F16 rounding matches hand-computed bit patterns, and decodes exactly', (t) => {
  for (const [v, bits] of F16_CASES) t.is(f32ToF16Bits(v), bits, `f16(${v})`);
  t.is(f16BitsToF32(0x3555), 0.333251953125);
  t.is(f16BitsToF32(0x0001), 2 ** -24);
  t.is(f16BitsToF32(0xfbff), -65504);
  t.true(Number.isNaN(f16BitsToF32(0x7e00)));
  // every finite F16 survives decode -> encode
  const bad: number[] = [];
  for (let h = 0; h < 0x10000; h++) if ((h & 0x7c00) !== 0x7c00 && f32ToF16Bits(f16BitsToF32(h)) !== h) bad.push(h);
  t.deepEqual(bad, []);
});

test('BF16 rounding matches hand-computed bit patterns, and decodes exactly', (t) => {
  for (const [v, bits] of BF16_CASES) t.is(f32ToBf16Bits(v), bits, `bf16(${v})`);
  t.is(bf16BitsToF32(0x3dcd), 0.10009765625);
  t.is(bf16BitsToF32(0xc040), -3);
});

test('round trip of every float/int dtype through a file, with __metadata__', async (t) => {
  const dir = await tmp(t);
  const p = join(dir, 'm.safetensors');
  const f16v = F16_CASES.map(([v]) => v);
  const bf16v = BF16_CASES.map(([v]) => v);
  await writeSafetensors(p, {
    'a.f32': { dtype: 'F32', shape: [2, 3], values: [1.5, -2.25, 3, 0.1, 1e-8, -0] },
    'a.f16': { dtype: 'F16', shape: [f16v.length], values: f16v },
    'a.bf16': { dtype: 'BF16', shape: [bf16v.length], values: bf16v },
    'a.f64': { dtype: 'F64', shape: [1], values: new Float64Array([1 / 3]) },
    'a.i64': { dtype: 'I64', shape: [1, 2], values: [-5, 2 ** 40] },
    'a.i32': { dtype: 'I32', shape: [2], values: [-7, 9] },
    'a.u8': { dtype: 'U8', shape: [2], values: [0, 255] },
    'a.empty': { dtype: 'F32', shape: [0, 3], values: [] },
  }, { format: 'pt', who: 'layerflow' });
  t.deepEqual(await readdir(dir), ['m.safetensors'], 'no temp files left behind');
  const bytes = await readFile(p);
  t.is(Number(bytes.readBigUInt64LE(0)) % 8, 0, 'header padded to 8 bytes');
  const { tensors, metadata } = await readSafetensors(p);
  t.deepEqual(metadata, { format: 'pt', who: 'layerflow' });
  t.deepEqual(u16(tensors.get('a.f16')!.data), F16_CASES.map(([, b]) => b));
  t.deepEqual(u16(tensors.get('a.bf16')!.data), BF16_CASES.map(([, b]) => b));
  const f = (n: string) => [...rawToFloat32(tensors.get(n)!)];
  t.deepEqual(f('a.f32'), [1.5, -2.25, 3, 0.1, 1e-8, -0].map(Math.fround));
  t.deepEqual(f('a.f16').map((x) => f32ToF16Bits(x)), F16_CASES.map(([, b]) => b));
  t.deepEqual(f('a.bf16').slice(0, 6), [1, -3, 1, 1 + 2 ** -6, 1 + 2 ** -7, 0.10009765625]);
  t.deepEqual(f('a.f64'), [Math.fround(1 / 3)]);
  t.deepEqual(f('a.i64'), [-5, 2 ** 40]);
  t.deepEqual(f('a.i32'), [-7, 9]);
  t.deepEqual(f('a.u8'), [0, 255]);
  t.deepEqual(tensors.get('a.empty')!.shape, [0, 3]);
  // lazy reader agrees
  const r = await SafetensorsReader.open(p);
  t.deepEqual((await r.readFloat32('a.f32')).shape, [2, 3]);
  await t.throwsAsync(r.readRaw('nope'), { instanceOf: DataError, message: /no tensor named "nope"/ });
  await r.close();
});

test('reads a file written by the reference Python safetensors package', async (t) => {
  const { tensors, metadata } = await readSafetensors(PY_FIXTURE);
  t.deepEqual(metadata, { format: 'np', note: 'written by safetensors.numpy' });
  const f = (n: string) => [...rawToFloat32(tensors.get(n)!)];
  t.deepEqual(tensors.get('f32')!.shape, [2, 3]);
  t.deepEqual(f('f32'), [1.5, -2.25, 3, 0.1, 1e-8, -0].map(Math.fround));
  t.deepEqual(f('f16'), [1, -2, 65504, 0.333251953125]);
  t.deepEqual(f('f64'), [Math.fround(1 / 3)]);
  t.deepEqual(f('i64'), [-5, 7]);
  t.deepEqual(f('u8'), [0, 255]);
  t.deepEqual(tensors.get('empty')!.shape, [0, 3]);
});

// ---- header validation ----------------------------------------------------------------------------

function fileWith(header: unknown, dataBytes: number, rawHeader?: string): Uint8Array {
  const h = Buffer.from(rawHeader ?? JSON.stringify(header), 'utf8');
  const out = Buffer.alloc(8 + h.length + dataBytes);
  out.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(out, 8);
  return out;
}
async function expectBad(t: import('ava').ExecutionContext, bytes: Uint8Array, re: RegExp) {
  const p = join(await tmp(t), 'bad.safetensors');
  await writeFile(p, bytes);
  const err = await t.throwsAsync(readSafetensors(p), { instanceOf: DataError });
  t.regex(err!.message, new RegExp(`^${p}: `));
  t.regex(err!.message, re);
}

test('header validation: overlap, truncation, unknown dtype, holes, bad JSON, size mismatch', async (t) => {
  const T = (dtype: string, shape: number[], off: [number, number]) => ({ dtype, shape, data_offsets: off });
  await expectBad(t, fileWith({ a: T('F32', [2], [0, 8]), b: T('F32', [2], [4, 12]) }, 12), /tensor "b" overlaps "a"/);
  await expectBad(t, fileWith({ a: T('F32', [4], [0, 16]) }, 10), /truncated file: tensors need 16 data bytes but only 10/);
  await expectBad(t, fileWith({ a: T('F17', [1], [0, 2]) }, 2), /tensor "a": unknown dtype "F17"/);
  await expectBad(t, fileWith({ a: T('F32', [1], [4, 8]) }, 8), /hole in the byte buffer before tensor "a"/);
  await expectBad(t, fileWith({ a: T('F32', [1], [0, 4]) }, 8), /4 trailing bytes/);
  await expectBad(t, fileWith({ a: T('F32', [3], [0, 8]) }, 8), /span 8 bytes but F32\[3\] needs 12/);
  await expectBad(t, fileWith(null, 0, '{"a": '), /header is not valid JSON/);
  await expectBad(t, fileWith({ __metadata__: { n: 1 } }, 0), /__metadata__.n is number; expected a string/);
  await expectBad(t, new Uint8Array(5), /truncated file: 5 bytes/);
  const huge = Buffer.alloc(16); huge.writeBigUInt64LE(1n << 40n, 0);
  await expectBad(t, huge, /header length \d+ exceeds/);
  const short = Buffer.alloc(16); short.writeBigUInt64LE(100n, 0);
  await expectBad(t, short, /truncated file: header length 100 but only 8 bytes follow/);
});

test('writer rejects bad input and leaves an existing file untouched', async (t) => {
  const dir = await tmp(t);
  const p = join(dir, 'keep.safetensors');
  await writeSafetensors(p, { x: { dtype: 'F32', shape: [1], values: [1] } });
  const before = await readFile(p);
  await t.throwsAsync(writeSafetensors(p, { x: { dtype: 'F32', shape: [2], values: [1] } }), { instanceOf: DataError, message: /1 values for shape \[2\]/ });
  await t.throwsAsync(writeSafetensors(p, { x: { dtype: 'I32', shape: [1], values: [0.5] } }), { instanceOf: DataError, message: /I32 needs an integer/ });
  t.deepEqual(await readFile(p), before);
  t.deepEqual(await readdir(dir), ['keep.safetensors']);
  t.throws(() => serializeSafetensors({ x: { dtype: 'F32', shape: [1], data: new Uint8Array(3) } }), { instanceOf: DataError, message: /3 bytes but F32\[1\] needs 4/ });
  t.throws(() => float32ToRaw({ dtype: 'U8', shape: [1], values: [256] }), { instanceOf: DataError });
});

test('rawToFloat32 fast paths (F32 copy, BF16 shift) equal a per-value DataView decode at every byte offset, and return an owned copy', (t) => {
  const bits = [0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, 0x7fc00001, 0x00000001, 0x807fffff, 0x7f7fffff, 0x12345678, 0xdeadbeef];
  for (const dtype of ['F32', 'BF16'] as const) {
    const size = dtype === 'F32' ? 4 : 2;
    for (let offset = 0; offset < 4; offset++) {
      const backing = new Uint8Array(offset + bits.length * size + 3);
      const dv = new DataView(backing.buffer);
      bits.forEach((b, i) => (size === 4 ? dv.setUint32(offset + 4 * i, b, true) : dv.setUint16(offset + 2 * i, b >>> 16, true)));
      const data = backing.subarray(offset, offset + bits.length * size);
      const got = rawToFloat32({ dtype, shape: [bits.length], data }, 't');
      const want = bits.map((b, i) => (size === 4 ? dv.getFloat32(offset + 4 * i, true) : bf16BitsToF32(dv.getUint16(offset + 2 * i, true))));
      const gotBits = new Uint32Array(got.buffer), wantBits = new Uint32Array(Float32Array.from(want).buffer);
      t.deepEqual([...gotBits], [...wantBits], `${dtype} at offset ${offset}: the same bits (NaN payloads, −0, subnormals included)`);
      t.not(got.buffer, backing.buffer, 'an owned copy');
      backing.fill(0);
      t.deepEqual([...new Uint32Array(got.buffer)], [...wantBits], 'unchanged when the source changes');
    }
  }
  // A Node Buffer (what readFile gives) is a view into a larger pool: the result holds this tensor only.
  const pool = Buffer.alloc(64, 0x3f);
  const view = pool.subarray(12, 20);
  const f = rawToFloat32({ dtype: 'F32', shape: [2], data: view }, 't');
  t.is(f.length, 2);
  t.is(f.buffer.byteLength, 8);
  t.is(f[0], new DataView(pool.buffer, pool.byteOffset + 12).getFloat32(0, true));
});
