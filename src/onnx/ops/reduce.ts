/** Reductions, Softmax / LogSoftmax, TopK. */
import { DataError } from '../../errors.ts';
import { normAxis, numel } from '../shape.ts';
import type { Attrs, Dim, OpDef, Value } from '../types.ts';
import { cast, div, equal, exp, mul, neg, sub } from './math.ts';
import { scatterElements, scatteredIntoZeros } from './indexing.ts';
import { expand, shapeOf, size, unsqueeze, zerosLike } from './shape.ts';

function reducedShape(x: Value, axes: number[] | undefined, keep: boolean, what: string): { shape: Dim[]; axes: number[] } {
  const r = x.shape.length;
  const ax = axes === undefined || axes.length === 0 ? [...Array(r).keys()] : axes.map((a) => normAxis(a, r, what));
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!ax.includes(i)) shape.push(d);
    else if (keep) shape.push(1);
  });
  return { shape, axes: ax };
}
const keepOf = (attrs: Attrs): boolean => attrs.keepdims !== 0;

/** Gradient of a keepdims=false reduction back to keepdims form, then broadcast to x's shape. */
function spread(gy: Value, x: Value, axes: number[], keep: boolean): Value {
  return expand(keep ? gy : unsqueeze(gy, axes), shapeOf(x));
}

// ReduceSum (opset 13): axes is an input.
export const ReduceSum: OpDef = {
  type: 'ReduceSum',
  attrs: { keepdims: 'i' },
  infer: ([x, axes], attrs) => [{ dtype: x!.dtype, shape: reducedShape(x!, axesOf(axes), keepOf(attrs), 'ReduceSum').shape }],
  vjp: ({ grads: [gy], inputs: [x, axes], attrs }) => {
    if (!gy) return [null, null];
    return [spread(gy, x!, reducedShape(x!, axesOf(axes), keepOf(attrs), '').axes, keepOf(attrs)), null];
  },
};
function axesOf(v: Value | null | undefined): number[] | undefined {
  if (!v) return undefined;
  if (!v.known || v.known.some((d) => typeof d !== 'number')) throw new DataError(`ReduceSum: axes ${v.name} must be a constant`);
  return v.known as number[];
}

// ReduceMean / ReduceMax (opset 13..17): axes is an attribute.
export const ReduceMean: OpDef = {
  type: 'ReduceMean',
  attrs: { axes: 'ints', keepdims: 'i' },
  infer: ([x], attrs) => [{ dtype: x!.dtype, shape: reducedShape(x!, attrs.axes as number[] | undefined, keepOf(attrs), 'ReduceMean').shape }],
  vjp: ({ grads: [gy], inputs: [x], outputs: [y], attrs }) => {
    if (!gy) return [null];
    const { axes } = reducedShape(x!, attrs.axes as number[] | undefined, keepOf(attrs), '');
    const n = numel(axes.map((a) => x!.shape[a]));
    const scaled = n !== null ? div(gy, n) : div(gy, div(cast(size(x!), gy.dtype), cast(size(y), gy.dtype)));
    return [spread(scaled, x!, axes, keepOf(attrs))];
  },
};

export const ReduceMax: OpDef = {
  type: 'ReduceMax',
  attrs: { axes: 'ints', keepdims: 'i' },
  infer: ([x], attrs) => [{ dtype: x!.dtype, shape: reducedShape(x!, attrs.axes as number[] | undefined, keepOf(attrs), 'ReduceMax').shape }],
  vjp: ({ grads: [gy], inputs: [x], outputs: [y], attrs }) => {
    if (!gy) return [null];
    const keep = keepOf(attrs);
    const { axes } = reducedShape(x!, attrs.axes as number[] | undefined, keep, '');
    // Ties share the gradient equally.
    const mask = cast(equal(x!, keep ? y : unsqueeze(y, axes)), x!.dtype);
    const count = reduceSum(mask, axes, true);
    return [mul(div(mask, count), keep ? gy : unsqueeze(gy, axes))];
  },
};

export const Softmax: OpDef = {
  type: 'Softmax',
  attrs: { axis: 'i' },
  infer: ([x], attrs) => { normAxis(attrs.axis as number, x!.shape.length, 'Softmax'); return [{ dtype: x!.dtype, shape: x!.shape }]; },
  vjp: ({ grads: [gy], outputs: [y], attrs }) => {
    if (!gy) return [null];
    const gyy = mul(gy, y);
    return [sub(gyy, mul(y, reduceSum(gyy, [attrs.axis as number], true)))];
  },
};

export const LogSoftmax: OpDef = {
  type: 'LogSoftmax',
  attrs: { axis: 'i' },
  infer: ([x], attrs) => { normAxis(attrs.axis as number, x!.shape.length, 'LogSoftmax'); return [{ dtype: x!.dtype, shape: x!.shape }]; },
  vjp: ({ grads: [gy], outputs: [y], attrs }) => {
    if (!gy) return [null];
    const axis = attrs.axis as number;
    // A cross-entropy pick (gy = scatter_add(zeros, i, u) along this axis, from GatherElements):
    // gx = scatter_add(−softmax · Σu, i, u), with no zeros, scatter or difference tensor of y's size.
    const sc = scatteredIntoZeros(gy);
    if (sc && sc.axis === normAxis(axis, y.shape.length, 'LogSoftmax')) {
      return [scatterElements(mul(exp(y), neg(reduceSum(sc.updates, [axis], true))), sc.indices, sc.updates, { axis: sc.axis, reduction: 'add' })];
    }
    return [sub(gy, mul(exp(y), reduceSum(gy, [axis], true)))];
  },
};

// TopK (opset 11): K is a 1-element int64 input; outputs values and int64 indices.
export const TopK: OpDef = {
  type: 'TopK',
  attrs: { axis: 'i', largest: 'i', sorted: 'i' },
  infer: ([x, k], attrs) => {
    const axis = normAxis((attrs.axis as number | undefined) ?? -1, x!.shape.length, 'TopK');
    const shape = [...x!.shape];
    shape[axis] = k!.known?.[0] ?? shape[axis];
    return [{ dtype: x!.dtype, shape }, { dtype: 'int64', shape }];
  },
  vjp: ({ grads: [gv], inputs: [x], outputs: [, idx], attrs }) =>
    [gv ? scatterElements(zerosLike(x!), idx, gv, { axis: (attrs.axis as number | undefined) ?? -1 }) : null, null],
};

export function reduceSum(x: Value, axes?: number[], keepdims = true): Value {
  const inputs = axes && axes.length ? [x, x.graph.ints(axes)] : [x];
  return x.graph.apply(ReduceSum, inputs, keepdims ? {} : { keepdims: 0 })[0];
}
const reduceAttr = (axes: number[] | undefined, keepdims: boolean): Attrs => ({
  ...(axes && axes.length ? { axes } : {}),
  ...(keepdims ? {} : { keepdims: 0 }),
});
export const reduceMean = (x: Value, axes?: number[], keepdims = true): Value => x.graph.apply(ReduceMean, [x], reduceAttr(axes, keepdims))[0];
export const reduceMax = (x: Value, axes?: number[], keepdims = true): Value => x.graph.apply(ReduceMax, [x], reduceAttr(axes, keepdims))[0];
export const softmax = (x: Value, axis = -1): Value => x.graph.apply(Softmax, [x], { axis })[0];
export const logSoftmax = (x: Value, axis = -1): Value => x.graph.apply(LogSoftmax, [x], { axis })[0];
/** Returns [values, indices] of the k largest (or smallest) entries along `axis`. */
export function topK(x: Value, k: number, o: { axis?: number; largest?: boolean; sorted?: boolean } = {}): [Value, Value] {
  const [v, i] = x.graph.apply(TopK, [x, x.graph.ints([k])], {
    axis: o.axis ?? -1, ...(o.largest === false ? { largest: 0 } : {}), ...(o.sorted === false ? { sorted: 0 } : {}),
  });
  return [v, i];
}
