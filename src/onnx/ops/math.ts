/** Elementwise ops with numpy broadcasting, comparisons, Where, Cast, Identity. */
import { DataError } from '../../errors.ts';
import { IdentityDef } from '../graph.ts';
import { broadcast, isStatic } from '../shape.ts';
import { DTYPE_CODE, isFloat, type DType, type OpDef, type Value, type VjpContext } from '../types.ts';
import { reduceSum } from './reduce.ts';
import { reshape, shapeOf } from './shape.ts';

export type Operand = Value | number;
/** Numbers become scalar constants of the other operand's dtype. */
export function lift(v: Operand, like: Value): Value {
  return typeof v === 'number' ? like.graph.constant(v, like.dtype) : v;
}
const one = (a: Operand, b: Operand): Value => (typeof a === 'number' ? (b as Value) : a);

/** Sum `gy` over the axes along which `x` was broadcast, giving a tensor of x's shape. */
export function unbroadcast(gy: Value, x: Value): Value {
  const n = gy.shape.length, r = x.shape.length;
  const axes: number[] = [];
  for (let i = 0; i < n; i++) {
    const j = i - (n - r);
    if (j < 0 || (x.shape[j] === 1 && gy.shape[i] !== 1)) axes.push(i);
  }
  if (axes.length === 0) return gy;
  const s = reduceSum(gy, axes, true);
  return n === r ? s : reshape(s, isStatic(x.shape) ? [...x.shape] : shapeOf(x));
}

function binaryDef(type: string, vjp?: (ctx: VjpContext, gy: Value, a: Value, b: Value, y: Value) => (Value | null)[], outDtype?: DType): OpDef {
  return {
    type,
    infer: ([a, b]) => {
      if (type !== 'Pow' && a!.dtype !== b!.dtype) throw new DataError(`${type}: dtype mismatch ${a!.dtype} vs ${b!.dtype} (${a!.name}, ${b!.name})`);
      return [{ dtype: outDtype ?? a!.dtype, shape: broadcast(a!.shape, b!.shape, `${type}(${a!.name}, ${b!.name})`) }];
    },
    vjp: vjp && ((ctx) => (ctx.grads[0] ? vjp(ctx, ctx.grads[0], ctx.inputs[0]!, ctx.inputs[1]!, ctx.outputs[0]) : [null, null])),
  };
}
function unaryDef(type: string, vjp?: (gy: Value, x: Value, y: Value) => Value): OpDef {
  return {
    type,
    infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape }],
    vjp: vjp && (({ grads: [gy], inputs: [x], outputs: [y] }) => [gy ? vjp(gy, x!, y) : null]),
  };
}
const ub = (need: boolean, f: () => Value, x: Value): Value | null => (need ? unbroadcast(f(), x) : null);

export const Add = binaryDef('Add', ({ needs }, gy, a, b) => [ub(needs[0], () => gy, a), ub(needs[1], () => gy, b)]);
export const Sub = binaryDef('Sub', ({ needs }, gy, a, b) => [ub(needs[0], () => gy, a), ub(needs[1], () => neg(gy), b)]);
export const Mul = binaryDef('Mul', ({ needs }, gy, a, b) => [ub(needs[0], () => mul(gy, b), a), ub(needs[1], () => mul(gy, a), b)]);
export const Div = binaryDef('Div', ({ needs }, gy, a, b, y) => [
  ub(needs[0], () => div(gy, b), a),
  ub(needs[1], () => neg(div(mul(gy, y), b)), b),
]);
export const Pow = binaryDef('Pow', ({ needs }, gy, a, b, y) => [
  // d/da a^b = b a^(b-1); d/db a^b = a^b log a (only meaningful for a > 0)
  ub(needs[0], () => mul(gy, mul(cast(b, a.dtype), pow(a, sub(cast(b, a.dtype), 1)))), a),
  ub(needs[1] && isFloat(b.dtype), () => cast(mul(gy, mul(y, log(a))), b.dtype), b),
]);
export const Equal = binaryDef('Equal', undefined, 'bool');
export const Less = binaryDef('Less', undefined, 'bool');
export const Greater = binaryDef('Greater', undefined, 'bool');

export const Neg = unaryDef('Neg', (gy) => neg(gy));
export const Sqrt = unaryDef('Sqrt', (gy, _x, y) => div(mul(gy, 0.5), y));
export const Reciprocal = unaryDef('Reciprocal', (gy, _x, y) => neg(mul(gy, mul(y, y))));
export const Exp = unaryDef('Exp', (gy, _x, y) => mul(gy, y));
export const Log = unaryDef('Log', (gy, x) => div(gy, x));
export const Tanh = unaryDef('Tanh', (gy, _x, y) => mul(gy, sub(1, mul(y, y))));
export const Sigmoid = unaryDef('Sigmoid', (gy, _x, y) => mul(gy, mul(y, sub(1, y))));
export const Erf = unaryDef('Erf', (gy, x) => mul(gy, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI))));

export const Where: OpDef = {
  type: 'Where',
  infer: ([c, a, b]) => {
    if (c!.dtype !== 'bool') throw new DataError(`Where: condition ${c!.name} must be bool, got ${c!.dtype}`);
    if (a!.dtype !== b!.dtype) throw new DataError(`Where: dtype mismatch ${a!.dtype} vs ${b!.dtype}`);
    return [{ dtype: a!.dtype, shape: broadcast(c!.shape, broadcast(a!.shape, b!.shape, 'Where'), 'Where') }];
  },
  vjp: ({ grads: [gy], inputs: [c, a, b], needs }) => {
    if (!gy) return [null, null, null];
    const zero = gy.graph.constant(0, gy.dtype);
    return [null, ub(needs[1], () => where(c!, gy, zero), a!), ub(needs[2], () => where(c!, zero, gy), b!)];
  },
};

export const Cast: OpDef = {
  type: 'Cast',
  attrs: { to: 'i' },
  infer: ([x], attrs) => {
    const to = (Object.keys(DTYPE_CODE) as DType[]).find((d) => DTYPE_CODE[d] === attrs.to);
    if (!to) throw new DataError(`Cast: unsupported target code ${attrs.to}`);
    return [{ dtype: to, shape: x!.shape, known: x!.known ? [...x!.known] : undefined }];
  },
  vjp: ({ grads: [gy], inputs: [x] }) => [gy && isFloat(x!.dtype) && isFloat(gy.dtype) ? cast(gy, x!.dtype) : null],
};

const bin = (def: OpDef) => (a: Operand, b: Operand): Value => {
  const like = one(a, b);
  return like.graph.apply(def, [lift(a, like), lift(b, like)])[0];
};
const un = (def: OpDef) => (x: Value): Value => x.graph.apply(def, [x])[0];

export const add = bin(Add);
export const sub = bin(Sub);
export const mul = bin(Mul);
export const div = bin(Div);
export const pow = bin(Pow);
export const equal = bin(Equal);
export const less = bin(Less);
export const greater = bin(Greater);
export const neg = un(Neg);
export const sqrt = un(Sqrt);
export const reciprocal = un(Reciprocal);
export const exp = un(Exp);
export const log = un(Log);
export const tanh = un(Tanh);
export const sigmoid = un(Sigmoid);
export const erf = un(Erf);
export const identity = un(IdentityDef);
export const where = (c: Value, a: Operand, b: Operand): Value => {
  const like = one(a, b);
  return c.graph.apply(Where, [c, lift(a, like), lift(b, like)])[0];
};
export const cast = (x: Value, to: DType): Value => (x.dtype === to ? x : x.graph.apply(Cast, [x], { to: DTYPE_CODE[to] })[0]);
