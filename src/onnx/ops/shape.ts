/** Shape ops: Reshape, Transpose, Concat, Split, Slice, Pad, (Un)Squeeze, Expand, Shape, Size, ConstantOfShape. */
import { DataError } from '../../errors.ts';
import { makeArray } from '../graph.ts';
import { broadcast, isStatic, normAxis, numel, shapeStr, unknownDim } from '../shape.ts';
import type { DType, Dim, OpDef, Value } from '../types.ts';
import { sub, unbroadcast } from './math.ts';

/** Contents of a shape tensor when known statically (constants, Shape(x)), else unknown dims. */
function shapeFromTensor(s: Value, what: string): Dim[] {
  if (s.known) return [...s.known];
  const n = s.shape[0];
  if (s.shape.length !== 1 || typeof n !== 'number') throw new DataError(`${what}: shape tensor ${s.name} must be 1-D with a static length`);
  return Array.from({ length: n }, unknownDim);
}
const shapeArg = (x: Value, s: readonly number[] | Value): Value => (Array.isArray(s) ? x.graph.ints(s as number[]) : (s as Value));

/** Reshape (opset 14). A 0 in the target copies the input's dim unless `allowzero` = 1 (then it is a real 0). */
export const Reshape: OpDef = {
  type: 'Reshape',
  attrs: { allowzero: 'i' },
  infer: ([x, s], attrs) => {
    const what = `Reshape(${x!.name} ${shapeStr(x!.shape)})`;
    const target = shapeFromTensor(s!, what).map((d, i) => (d === 0 && !attrs.allowzero ? x!.shape[i] : d));
    const minus = target.indexOf(-1);
    if (minus >= 0) {
      const total = numel(x!.shape), rest = numel(target.filter((_, i) => i !== minus));
      target[minus] = total !== null && rest !== null ? total / rest : unknownDim();
      if (typeof target[minus] === 'number' && !Number.isInteger(target[minus])) throw new DataError(`${what}: cannot reshape to ${shapeStr(target)}`);
    }
    const a = numel(x!.shape), b = numel(target);
    if (a !== null && b !== null && a !== b) throw new DataError(`${what}: ${a} elements cannot become ${shapeStr(target)}`);
    return [{ dtype: x!.dtype, shape: target, known: x!.known && target.length === 1 ? [...x!.known] : undefined }];
  },
  vjp: ({ grads: [gy], inputs: [x] }) => [gy ? reshape(gy, isStatic(x!.shape) ? [...x!.shape] : shapeOf(x!)) : null, null],
};

export const Transpose: OpDef = {
  type: 'Transpose',
  attrs: { perm: 'ints' },
  infer: ([x], attrs) => {
    const perm = attrs.perm as number[];
    if (perm.length !== x!.shape.length || [...perm].sort().some((p, i) => p !== i)) throw new DataError(`Transpose(${x!.name}): bad perm [${perm}] for rank ${x!.shape.length}`);
    return [{ dtype: x!.dtype, shape: perm.map((p) => x!.shape[p]) }];
  },
  vjp: ({ grads: [gy], attrs }) => {
    const perm = attrs.perm as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [gy ? transpose(gy, inv) : null];
  },
};

export const Concat: OpDef = {
  type: 'Concat',
  attrs: { axis: 'i' },
  infer: (xs, attrs) => {
    const first = xs[0]!, r = first.shape.length, axis = normAxis(attrs.axis as number, r, 'Concat');
    const shape = [...first.shape];
    const sizes = xs.map((x) => x!.shape[axis]);
    shape[axis] = sizes.every((d) => typeof d === 'number') ? (sizes as number[]).reduce((a, b) => a + b, 0) : unknownDim();
    const known = xs.every((x) => x!.known) ? xs.flatMap((x) => x!.known!) : undefined;
    return [{ dtype: first.dtype, shape, known }];
  },
  vjp: ({ grads: [gy], inputs, attrs, needs }) => {
    if (!gy || !needs.some(Boolean)) return inputs.map(() => null);
    const axis = normAxis(attrs.axis as number, gy.shape.length, 'Concat');
    const sizes = inputs.map((x) => x!.shape[axis]);
    const split = sizes.every((d) => typeof d === 'number')
      ? gy.graph.ints(sizes as number[])
      : concat(inputs.map((x) => slice(shapeOf(x!), { starts: [axis], ends: [axis + 1] })), 0);
    const parts = gy.graph.apply(Split, [gy, split], { axis });
    return parts.map((p, i) => (needs[i] ? p : null));
  },
};

// Split (opset 13): sizes are an input; one output per size. Used by Concat's VJP.
export const Split: OpDef = {
  type: 'Split',
  attrs: { axis: 'i' },
  infer: ([x, split], attrs) => {
    const axis = normAxis(attrs.axis as number, x!.shape.length, 'Split');
    return shapeFromTensor(split!, 'Split').map((d) => {
      const shape = [...x!.shape];
      shape[axis] = d;
      return { dtype: x!.dtype, shape };
    });
  },
  vjp: ({ grads, outputs, attrs }) => {
    if (grads.every((gr) => !gr)) return [null, null];
    const parts = grads.map((gr, i) => gr ?? zerosLike(outputs[i]));
    return [concat(parts, attrs.axis as number), null];
  },
};

export interface SliceSpec { starts: number[]; ends: number[]; axes?: number[]; steps?: number[] }
const BIG = 2 ** 62;
function sliceDim(d: Dim, start: number, end: number, step: number): Dim {
  if (typeof d === 'number') {
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + d : v, lo), hi);
    const s = step > 0 ? clamp(start, 0, d) : clamp(start, -1, d - 1);
    const e = step > 0 ? clamp(end, 0, d) : clamp(end, -1, d - 1);
    return Math.max(0, Math.ceil((e - s) / step));
  }
  if (step === 1 && start === 0 && end >= BIG / 2) return d;
  if (step === 1 && start >= 0 && end >= 0 && end < BIG / 2) return Math.max(0, end - start);
  return unknownDim();
}

// Slice (opset 13): starts/ends/axes/steps are int64 inputs (constants here).
export const Slice: OpDef = {
  type: 'Slice',
  infer: ([x, starts, ends, axes, steps]) => {
    const r = x!.shape.length, n = starts!.known!.length;
    const ax = axes ? axes.known!.map((a) => normAxis(a as number, r, 'Slice')) : [...Array(n).keys()];
    const shape = [...x!.shape];
    ax.forEach((a, i) => { shape[a] = sliceDim(shape[a], starts!.known![i] as number, ends!.known![i] as number, (steps?.known![i] as number) ?? 1); });
    // Slicing a known 1-D shape tensor with step 1: JS slice has the same clamping rules.
    const step1 = !steps || steps.known![0] === 1;
    const known = x!.known && r === 1 && step1 ? x!.known.slice(starts!.known![0] as number, ends!.known![0] as number) : undefined;
    return [{ dtype: x!.dtype, shape, known }];
  },
  vjp: ({ grads: [gy], inputs: [x, starts, , axes, steps] }) => {
    if (!gy) return [null, null, null, null, null];
    const r = x!.shape.length, n = starts!.known!.length;
    const ax = axes ? axes.known!.map((a) => normAxis(a as number, r, 'Slice')) : [...Array(n).keys()];
    if (steps && steps.known!.some((s) => s !== 1)) throw new DataError('Slice VJP: only step 1 is supported');
    const begin: number[] = Array(r).fill(0);
    ax.forEach((a, i) => {
      const s = starts!.known![i] as number, d = x!.shape[a];
      if (s >= 0) begin[a] = typeof d === 'number' ? Math.min(s, d) : s;
      else if (typeof d === 'number') begin[a] = Math.max(d + s, 0);
      else throw new DataError(`Slice VJP: negative start ${s} on symbolic dim ${d}`);
    });
    const g = gy.graph;
    const endPad = isStatic(x!.shape) && isStatic(gy.shape)
      ? g.ints(x!.shape.map((d, i) => (d as number) - (gy.shape[i] as number) - begin[i]))
      : sub(sub(shapeOf(x!), shapeOf(gy)), g.ints(begin));
    return [pad(gy, concat([g.ints(begin), endPad], 0)), null, null, null, null];
  },
};

// Pad (opset 13), constant mode: pads = [begin_0.., end_0..].
export const Pad: OpDef = {
  type: 'Pad',
  attrs: { mode: 's' },
  infer: ([x, pads]) => {
    const r = x!.shape.length, p = pads!.known;
    const shape = x!.shape.map((d, i) => {
      const b = p?.[i], e = p?.[i + r];
      return typeof d === 'number' && typeof b === 'number' && typeof e === 'number' ? d + b + e : unknownDim();
    });
    return [{ dtype: x!.dtype, shape }];
  },
  vjp: ({ grads: [gy], inputs: [x, pads] }) => {
    if (!gy) return [null, null, null];
    const r = x!.shape.length, p = pads!.known;
    if (!p || p.some((v) => typeof v !== 'number' || v < 0)) throw new DataError('Pad VJP: pads must be non-negative constants');
    const begin = p.slice(0, r) as number[], end = p.slice(r) as number[];
    return [slice(gy, { starts: begin, ends: end.map((e) => (e === 0 ? BIG : -e)), axes: [...Array(r).keys()] }), null, null];
  },
};

export const Unsqueeze: OpDef = {
  type: 'Unsqueeze',
  infer: ([x, axes]) => {
    const r = x!.shape.length + axes!.known!.length;
    const ax = axes!.known!.map((a) => normAxis(a as number, r, 'Unsqueeze'));
    const shape: Dim[] = [];
    let k = 0;
    for (let i = 0; i < r; i++) shape.push(ax.includes(i) ? 1 : x!.shape[k++]);
    return [{ dtype: x!.dtype, shape, known: x!.known && x!.shape.length === 0 ? [...x!.known] : undefined }];
  },
  vjp: ({ grads: [gy], inputs: [x] }) => [gy ? reshape(gy, isStatic(x!.shape) ? [...x!.shape] : shapeOf(x!)) : null, null],
};

export const Squeeze: OpDef = {
  type: 'Squeeze',
  infer: ([x, axes]) => {
    const ax = axes!.known!.map((a) => normAxis(a as number, x!.shape.length, 'Squeeze'));
    for (const a of ax) {
      if (typeof x!.shape[a] === 'number' && x!.shape[a] !== 1) throw new DataError(`Squeeze(${x!.name}): axis ${a} has size ${x!.shape[a]}, expected 1`);
    }
    return [{ dtype: x!.dtype, shape: x!.shape.filter((_, i) => !ax.includes(i)) }];
  },
  vjp: Unsqueeze.vjp,
};

export const Expand: OpDef = {
  type: 'Expand',
  infer: ([x, s]) => [{ dtype: x!.dtype, shape: broadcast(x!.shape, shapeFromTensor(s!, 'Expand'), `Expand(${x!.name})`) }],
  vjp: ({ grads: [gy], inputs: [x] }) => [gy ? unbroadcast(gy, x!) : null, null],
};

export const ShapeOp: OpDef = {
  type: 'Shape',
  infer: ([x]) => [{ dtype: 'int64', shape: [x!.shape.length], known: x!.shape.map((d) => d) }],
};
export const Size: OpDef = { type: 'Size', infer: () => [{ dtype: 'int64', shape: [] }] };
export const ConstantOfShape: OpDef = {
  type: 'ConstantOfShape',
  attrs: { value: 't' },
  infer: ([s], attrs) => [{ dtype: (attrs.value as { dtype: DType }).dtype, shape: shapeFromTensor(s!, 'ConstantOfShape') }],
};

export const reshape = (x: Value, shape: readonly number[] | Value, o: { allowZero?: boolean } = {}): Value =>
  x.graph.apply(Reshape, [x, shapeArg(x, shape)], o.allowZero ? { allowzero: 1 } : {})[0];
/**
 * Transpose, composed with a Transpose that made `x` (one node from the original, or none when the
 * two cancel — e.g. the VJP of x·Wᵀ transposing Wᵀ back): fewer nodes for ORT to optimise away.
 */
export function transpose(x: Value, perm?: number[]): Value {
  let p = perm ?? [...Array(x.shape.length).keys()].reverse();
  let src = x;
  const prev = x.graph.producer(x);
  if (prev?.def.type === 'Transpose' && prev.inputs[0]) {
    const p1 = prev.attrs.perm as number[];
    p = p.map((i) => p1[i]);
    src = prev.inputs[0];
  }
  if (p.every((v, i) => v === i) && src.shape.length === p.length) return src;
  return x.graph.apply(Transpose, [src], { perm: p })[0];
}
export const concat = (xs: Value[], axis: number): Value => xs[0].graph.apply(Concat, xs, { axis })[0];
/** Split along `axis` into parts of the given static sizes. */
export const split = (x: Value, sizes: number[], axis: number): Value[] => x.graph.apply(Split, [x, x.graph.ints(sizes)], { axis });
export function slice(x: Value, s: SliceSpec): Value {
  const g = x.graph;
  const inputs = [x, g.ints(s.starts), g.ints(s.ends)];
  if (s.axes || s.steps) inputs.push(g.ints(s.axes ?? [...s.starts.keys()]));
  if (s.steps) inputs.push(g.ints(s.steps));
  return g.apply(Slice, inputs)[0];
}
export const pad = (x: Value, pads: readonly number[] | Value): Value => x.graph.apply(Pad, [x, shapeArg(x, pads)])[0];
export const unsqueeze = (x: Value, axes: number[]): Value => x.graph.apply(Unsqueeze, [x, x.graph.ints(axes)])[0];
export const squeeze = (x: Value, axes: number[]): Value => x.graph.apply(Squeeze, [x, x.graph.ints(axes)])[0];
export const expand = (x: Value, shape: readonly number[] | Value): Value => x.graph.apply(Expand, [x, shapeArg(x, shape)])[0];
export const shapeOf = (x: Value): Value => x.graph.apply(ShapeOp, [x])[0];
export const size = (x: Value): Value => x.graph.apply(Size, [x])[0];
/** A tensor filled with `value`, its shape given by the int64 tensor `shape` (e.g. shapeOf(x) or g.ints([..])). */
export const constantOfShape = (shape: Value, value: number, dtype: DType): Value =>
  shape.graph.apply(ConstantOfShape, [shape], { value: { dtype, dims: [1], data: makeArray([value], dtype) } })[0];
export const zerosLike = (x: Value): Value => constantOfShape(shapeOf(x), 0, x.dtype);
