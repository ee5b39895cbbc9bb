/** MatMul (numpy semantics, batched broadcasting) and Gemm. */
import { DataError } from '../../errors.ts';
import { broadcast, shapeStr } from '../shape.ts';
import type { Dim, OpDef, Value } from '../types.ts';
import { mul, unbroadcast } from './math.ts';
import { reshape, transpose } from './shape.ts';

function checkInner(k1: Dim, k2: Dim, what: string): void {
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) throw new DataError(`${what}: inner dims differ (${k1} vs ${k2})`);
}

/** Swap the last two axes. */
export function transposeLast2(x: Value): Value {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return transpose(x, perm);
}

export const MatMul: OpDef = {
  type: 'MatMul',
  infer: ([a, b]) => {
    const A = a!.shape, B = b!.shape, what = `MatMul(${a!.name} ${shapeStr(A)}, ${b!.name} ${shapeStr(B)})`;
    if (A.length < 2 || B.length < 2) throw new DataError(`${what}: both operands must have rank >= 2 (use unsqueeze for vectors)`);
    if (a!.dtype !== b!.dtype) throw new DataError(`${what}: dtype mismatch ${a!.dtype} vs ${b!.dtype}`);
    checkInner(A[A.length - 1], B[B.length - 2], what);
    const batch = broadcast(A.slice(0, -2), B.slice(0, -2), what);
    return [{ dtype: a!.dtype, shape: [...batch, A[A.length - 2], B[B.length - 1]] }];
  },
  vjp: ({ grads: [gy], inputs: [a, b], needs }) => {
    if (!gy) return [null, null];
    const ga = needs[0] ? unbroadcast(matMul(gy, transposeLast2(b!)), a!) : null;
    let gb: Value | null = null;
    if (needs[1]) {
      const k = a!.shape[a!.shape.length - 1], n = b!.shape[1];
      if (b!.shape.length === 2 && a!.shape.length > 2 && typeof k === 'number' && typeof n === 'number') {
        // Shared weight: fold all batch dims into rows, one [k, rows] x [rows, n] product.
        gb = gemm(reshape(a!, [-1, k]), reshape(gy, [-1, n]), null, { transA: 1 });
      } else {
        gb = unbroadcast(matMul(transposeLast2(a!), gy), b!);
      }
    }
    return [ga, gb];
  },
};

export interface GemmOptions { alpha?: number; beta?: number; transA?: 0 | 1; transB?: 0 | 1 }

export const Gemm: OpDef = {
  type: 'Gemm',
  attrs: { alpha: 'f', beta: 'f', transA: 'i', transB: 'i' },
  infer: ([a, b, c], attrs) => {
    const what = `Gemm(${a!.name}, ${b!.name})`;
    if (a!.shape.length !== 2 || b!.shape.length !== 2) throw new DataError(`${what}: A and B must be 2-D`);
    const [m, ka] = attrs.transA ? [a!.shape[1], a!.shape[0]] : [a!.shape[0], a!.shape[1]];
    const [kb, n] = attrs.transB ? [b!.shape[1], b!.shape[0]] : [b!.shape[0], b!.shape[1]];
    checkInner(ka, kb, what);
    const shape = [m, n];
    if (c) {
      const s = broadcast(c.shape, shape, what);
      if (s.length !== 2 || s[0] !== m || s[1] !== n) throw new DataError(`${what}: C ${shapeStr(c.shape)} must broadcast to [${m}, ${n}]`);
    }
    return [{ dtype: a!.dtype, shape }];
  },
  vjp: ({ grads: [gy], inputs: [a, b, c], attrs, needs }) => {
    if (!gy) return [null, null, null];
    const alpha = (attrs.alpha as number | undefined) ?? 1, beta = (attrs.beta as number | undefined) ?? 1;
    const tA = (attrs.transA as 0 | 1 | undefined) ?? 0, tB = (attrs.transB as 0 | 1 | undefined) ?? 0;
    const flip = (t: 0 | 1): 0 | 1 => (t ? 0 : 1);
    // Y = alpha op(A) op(B) + beta C
    const ga = !needs[0] ? null
      : tA === 0 ? gemm(gy, b!, null, { alpha, transB: flip(tB) }) // gy op(B)^T
      : gemm(b!, gy, null, { alpha, transA: tB, transB: 1 }); // (gy op(B)^T)^T
    const gb = !needs[1] ? null
      : tB === 0 ? gemm(a!, gy, null, { alpha, transA: flip(tA) }) // op(A)^T gy
      : gemm(gy, a!, null, { alpha, transA: 1, transB: tA }); // (op(A)^T gy)^T
    const gc = c && needs[2] ? unbroadcast(beta === 1 ? gy : mul(gy, beta), c) : null;
    return [ga, gb, gc];
  },
};

export const matMul = (a: Value, b: Value): Value => a.graph.apply(MatMul, [a, b])[0];
export function gemm(a: Value, b: Value, c: Value | null = null, o: GemmOptions = {}): Value {
  const attrs: Record<string, number> = {};
  if (o.alpha !== undefined && o.alpha !== 1) attrs.alpha = o.alpha;
  if (o.beta !== undefined && o.beta !== 1) attrs.beta = o.beta;
  if (o.transA) attrs.transA = 1;
  if (o.transB) attrs.transB = 1;
  return a.graph.apply(Gemm, c ? [a, b, c] : [a, b], attrs)[0];
}
