/**
 * IEEE binary16 (F16) and bfloat16 (BF16) <-> float32 conversion on raw 16-bit patterns.
 * float32 -> 16-bit rounds to nearest, ties to even (what PyTorch, numpy and ggml do).
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 value -> F16 bit pattern (round to nearest even; overflow -> ±Inf; NaN kept quiet). */
export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m * 2^-24, m = (1.mant) >> (14 - e).
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    const half = 2 ** (shift - 1);
    let m = Math.floor(full / 2 ** shift);
    const rem = full - m * 2 ** shift;
    if (rem > half || (rem === half && (m & 1))) m++;
    return sign | m; // m may reach 0x400, which is exactly the smallest normal
  }
  let r = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++; // a carry into the exponent is correct (up to Inf)
  return r;
}

let f16Table: Float32Array | undefined;
/** F16 bit pattern -> float32 value (exact). */
export function f16BitsToF32(h: number): number {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) {
      const s = i & 0x8000 ? -1 : 1;
      const e = (i >>> 10) & 0x1f;
      const m = i & 0x3ff;
      f16Table[i] = e === 0 ? s * m * 2 ** -24 : e === 0x1f ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  return f16Table[h & 0xffff];
}

/** float32 value -> BF16 bit pattern (round to nearest even; NaN -> quiet NaN). */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** BF16 bit pattern -> float32 value (exact). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}
