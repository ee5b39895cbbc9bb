/**
 * ggml tensor types and dequantisation to float32, transcribed from ggml's reference
 * `dequantize_row_*` (ggml/src/ggml-quants.c) and block layouts (ggml-common.h).
 * Every float32 operation of the C code is rounded with Math.fround in the same order, so results
 * are bit-identical to the reference (compiled without FMA contraction).
 */
import { DataError } from '../errors.ts';
import { bf16BitsToF32, f16BitsToF32 } from './half.ts';

/** ggml_type ids (ggml.h) and their [elements per block, bytes per block] (ggml-common.h). */
const TYPES: Record<string, [id: number, blck: number, size: number]> = {
  F32: [0, 1, 4], F16: [1, 1, 2], Q4_0: [2, 32, 18], Q4_1: [3, 32, 20], Q5_0: [6, 32, 22], Q5_1: [7, 32, 24],
  Q8_0: [8, 32, 34], Q8_1: [9, 32, 36], Q2_K: [10, 256, 84], Q3_K: [11, 256, 110], Q4_K: [12, 256, 144],
  Q5_K: [13, 256, 176], Q6_K: [14, 256, 210], Q8_K: [15, 256, 292], IQ2_XXS: [16, 256, 66], IQ2_XS: [17, 256, 74],
  IQ3_XXS: [18, 256, 98], IQ1_S: [19, 256, 50], IQ4_NL: [20, 32, 18], IQ3_S: [21, 256, 110], IQ2_S: [22, 256, 82],
  IQ4_XS: [23, 256, 136], I8: [24, 1, 1], I16: [25, 1, 2], I32: [26, 1, 4], I64: [27, 1, 8], F64: [28, 1, 8],
  IQ1_M: [29, 256, 56], BF16: [30, 1, 2], TQ1_0: [34, 256, 54], TQ2_0: [35, 256, 66], MXFP4: [39, 32, 17],
};
export const GgmlType: Readonly<Record<string, number>> = Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [k, v[0]]));
const BY_ID = new Map(Object.entries(TYPES).map(([k, v]) => [v[0], { name: k, blck: v[1], size: v[2] }]));
const QK_K = 256;

/** Types `dequantize` handles. */
export const DEQUANTIZABLE: ReadonlySet<number> = new Set(['F32', 'F16', 'BF16', 'F64', 'I8', 'I16', 'I32', 'I64',
  'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_K'].map((k) => TYPES[k][0]));

export function ggmlTypeName(type: number): string {
  return BY_ID.get(type)?.name ?? `type#${type}`;
}

/** Bytes needed for `n` elements of `type`; throws DataError for unknown types or partial blocks. */
export function ggmlByteSize(type: number, n: number, what = 'tensor'): number {
  const t = BY_ID.get(type);
  if (!t) throw new DataError(`${what}: unknown ggml type ${type}`);
  if (n % t.blck !== 0) throw new DataError(`${what}: ${n} elements is not a multiple of the ${t.name} block size ${t.blck}`);
  return (n / t.blck) * t.size;
}

const fr = Math.fround;

/** K-quant 6-bit scale/min unpacking (get_scale_min_k4). */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

/** Dequantises `n` elements of ggml `type` stored in `src` (little-endian) into a new Float32Array. */
export function dequantize(type: number, src: Uint8Array, n: number, what = 'tensor'): Float32Array {
  if (!DEQUANTIZABLE.has(type)) {
    throw new DataError(`${what}: dequantising ggml type ${ggmlTypeName(type)} is not supported; supported: ${[...DEQUANTIZABLE].map(ggmlTypeName).join(', ')}`);
  }
  const need = ggmlByteSize(type, n, what);
  if (src.byteLength < need) throw new DataError(`${what}: ${src.byteLength} bytes but ${n} ${ggmlTypeName(type)} elements need ${need}`);
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const q = src;
  const y = new Float32Array(n);
  const h = (o: number) => f16BitsToF32(dv.getUint16(o, true));
  switch (type) {
    case GgmlType.F32: for (let i = 0; i < n; i++) y[i] = dv.getFloat32(4 * i, true); return y;
    case GgmlType.F16: for (let i = 0; i < n; i++) y[i] = h(2 * i); return y;
    case GgmlType.BF16: for (let i = 0; i < n; i++) y[i] = bf16BitsToF32(dv.getUint16(2 * i, true)); return y;
    case GgmlType.F64: for (let i = 0; i < n; i++) y[i] = dv.getFloat64(8 * i, true); return y;
    case GgmlType.I8: for (let i = 0; i < n; i++) y[i] = dv.getInt8(i); return y;
    case GgmlType.I16: for (let i = 0; i < n; i++) y[i] = dv.getInt16(2 * i, true); return y;
    case GgmlType.I32: for (let i = 0; i < n; i++) y[i] = dv.getInt32(4 * i, true); return y;
    case GgmlType.I64: for (let i = 0; i < n; i++) y[i] = Number(dv.getBigInt64(8 * i, true)); return y;
  }
  const { blck: qk, size: bs } = BY_ID.get(type)!;
  for (let i = 0; i < n / qk; i++) {
    const b = i * bs;   // block byte offset
    const o = i * qk;   // output offset
    switch (type) {
      case GgmlType.Q4_0: { // { half d; uint8 qs[16] }
        const d = h(b);
        for (let j = 0; j < 16; j++) {
          y[o + j] = fr(((q[b + 2 + j] & 0x0f) - 8) * d);
          y[o + j + 16] = fr(((q[b + 2 + j] >> 4) - 8) * d);
        }
        break;
      }
      case GgmlType.Q4_1: { // { half d; half m; uint8 qs[16] }
        const d = h(b), m = h(b + 2);
        for (let j = 0; j < 16; j++) {
          y[o + j] = fr(fr((q[b + 4 + j] & 0x0f) * d) + m);
          y[o + j + 16] = fr(fr((q[b + 4 + j] >> 4) * d) + m);
        }
        break;
      }
      case GgmlType.Q5_0: { // { half d; uint8 qh[4]; uint8 qs[16] }
        const d = h(b), qh = dv.getUint32(b + 2, true);
        for (let j = 0; j < 16; j++) {
          const xh0 = ((qh >>> j) << 4) & 0x10, xh1 = (qh >>> (j + 12)) & 0x10;
          y[o + j] = fr((((q[b + 6 + j] & 0x0f) | xh0) - 16) * d);
          y[o + j + 16] = fr((((q[b + 6 + j] >> 4) | xh1) - 16) * d);
        }
        break;
      }
      case GgmlType.Q5_1: { // { half d; half m; uint8 qh[4]; uint8 qs[16] }
        const d = h(b), m = h(b + 2), qh = dv.getUint32(b + 4, true);
        for (let j = 0; j < 16; j++) {
          const xh0 = ((qh >>> j) << 4) & 0x10, xh1 = (qh >>> (j + 12)) & 0x10;
          y[o + j] = fr(fr(((q[b + 8 + j] & 0x0f) | xh0) * d) + m);
          y[o + j + 16] = fr(fr(((q[b + 8 + j] >> 4) | xh1) * d) + m);
        }
        break;
      }
      case GgmlType.Q8_0: { // { half d; int8 qs[32] }
        const d = h(b);
        for (let j = 0; j < 32; j++) y[o + j] = fr(dv.getInt8(b + 2 + j) * d);
        break;
      }
      case GgmlType.Q4_K: // { half d; half dmin; uint8 scales[12]; uint8 qs[128] }
      case GgmlType.Q5_K: { // { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128] }
        const five = type === GgmlType.Q5_K;
        const d = h(b), min = h(b + 2), sc = b + 4, qh = b + 16;
        let ql = five ? b + 48 : b + 16;
        let u1 = 1, u2 = 2, p = o;
        for (let j = 0, is = 0; j < QK_K; j += 64, is += 2) {
          const [s1, m1q] = scaleMinK4(is, q, sc);
          const [s2, m2q] = scaleMinK4(is + 1, q, sc);
          const d1 = fr(d * s1), m1 = fr(min * m1q), d2 = fr(d * s2), m2 = fr(min * m2q);
          for (let l = 0; l < 32; l++) y[p++] = fr(fr(d1 * ((q[ql + l] & 0xf) + (five && q[qh + l] & u1 ? 16 : 0))) - m1);
          for (let l = 0; l < 32; l++) y[p++] = fr(fr(d2 * ((q[ql + l] >> 4) + (five && q[qh + l] & u2 ? 16 : 0))) - m2);
          ql += 32; u1 <<= 2; u2 <<= 2;
        }
        break;
      }
      case GgmlType.Q6_K: { // { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d }
        const d = h(b + 208);
        let ql = b, qh = b + 128, sc = b + 192, p = o;
        for (let nn = 0; nn < QK_K; nn += 128) {
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const q1 = ((q[ql + l] & 0xf) | (((q[qh + l] >> 0) & 3) << 4)) - 32;
            const q2 = ((q[ql + l + 32] & 0xf) | (((q[qh + l] >> 2) & 3) << 4)) - 32;
            const q3 = ((q[ql + l] >> 4) | (((q[qh + l] >> 4) & 3) << 4)) - 32;
            const q4 = ((q[ql + l + 32] >> 4) | (((q[qh + l] >> 6) & 3) << 4)) - 32;
            y[p + l] = fr(fr(d * dv.getInt8(sc + is)) * q1);
            y[p + l + 32] = fr(fr(d * dv.getInt8(sc + is + 2)) * q2);
            y[p + l + 64] = fr(fr(d * dv.getInt8(sc + is + 4)) * q3);
            y[p + l + 96] = fr(fr(d * dv.getInt8(sc + is + 6)) * q4);
          }
          p += 128; ql += 64; qh += 32; sc += 8;
        }
        break;
      }
      case GgmlType.Q8_K: { // { float d; int8 qs[256]; int16 bsums[16] }
        const d = dv.getFloat32(b, true);
        for (let j = 0; j < QK_K; j++) y[o + j] = fr(d * dv.getInt8(b + 4 + j));
        break;
      }
    }
  }
  return y;
}
