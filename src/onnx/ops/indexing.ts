/** Gather / scatter family and one-hot encoding. */
import { DataError } from '../../errors.ts';
import { normAxis, shapeStr } from '../shape.ts';
import { cast, equal } from './math.ts';
import type { OpDef, Value } from '../types.ts';
import { constantOfShape, shapeOf, transpose, unsqueeze, zerosLike } from './shape.ts';

const checkIdx = (v: Value, what: string): void => {
  if (v.dtype !== 'int64' && v.dtype !== 'int32') throw new DataError(`${what}: indices ${v.name} must be int64 or int32, got ${v.dtype}`);
};

// Gather (opset 13): out = data[:axis] + indices.shape + data[axis+1:]
export const Gather: OpDef = {
  type: 'Gather',
  attrs: { axis: 'i' },
  infer: ([d, i], attrs) => {
    checkIdx(i!, 'Gather');
    const axis = normAxis((attrs.axis as number | undefined) ?? 0, d!.shape.length, 'Gather');
    const shape = [...d!.shape.slice(0, axis), ...i!.shape, ...d!.shape.slice(axis + 1)];
    // Gathering from a known shape tensor with constant indices stays known.
    const idx = i!.graph.constantValue(i!);
    const known = d!.known && idx && i!.shape.length <= 1
      ? Array.from(idx.data as BigInt64Array, (k) => d!.known![Number(k) < 0 ? Number(k) + d!.known!.length : Number(k)])
      : undefined;
    return [{ dtype: d!.dtype, shape, known }];
  },
  vjp: ({ grads: [gy], inputs: [d, i], attrs, needs }) => {
    if (!gy || !needs[0]) return [null, null];
    const r = d!.shape.length, q = i!.shape.length;
    const axis = normAxis((attrs.axis as number | undefined) ?? 0, r, 'Gather');
    const idx = unsqueeze(i!, [-1]);
    if (axis === 0) return [scatterND(zerosLike(d!), idx, gy, 'add'), null];
    // Move the gathered axis to the front, scatter rows, move it back.
    const permD = [axis, ...[...Array(r).keys()].filter((a) => a !== axis)];
    const permG = [...Array(q).keys()].map((k) => axis + k);
    for (let a = 0; a < axis; a++) permG.push(a);
    for (let a = axis + q; a < gy.shape.length; a++) permG.push(a);
    const zeros = constantOfShape(gather(shapeOf(d!), d!.graph.ints(permD), 0), 0, d!.dtype);
    const scattered = scatterND(zeros, idx, transpose(gy, permG), 'add');
    return [transpose(scattered, permD.map((_, k) => permD.indexOf(k))), null];
  },
};

export const GatherElements: OpDef = {
  type: 'GatherElements',
  attrs: { axis: 'i' },
  infer: ([d, i], attrs) => {
    checkIdx(i!, 'GatherElements');
    if (d!.shape.length !== i!.shape.length) throw new DataError(`GatherElements: data ${shapeStr(d!.shape)} and indices ${shapeStr(i!.shape)} must have equal rank`);
    normAxis((attrs.axis as number | undefined) ?? 0, d!.shape.length, 'GatherElements');
    return [{ dtype: d!.dtype, shape: i!.shape }];
  },
  vjp: ({ grads: [gy], inputs: [d, i], attrs, needs }) =>
    [gy && needs[0] ? scatterElements(zerosLike(d!), i!, gy, { axis: (attrs.axis as number | undefined) ?? 0, reduction: 'add' }) : null, null],
};

// GatherND (batch_dims = 0): out = indices.shape[:-1] + data.shape[k:]
export const GatherND: OpDef = {
  type: 'GatherND',
  infer: ([d, i]) => {
    checkIdx(i!, 'GatherND');
    const k = i!.shape[i!.shape.length - 1];
    if (typeof k !== 'number') throw new DataError('GatherND: last dim of indices must be static');
    return [{ dtype: d!.dtype, shape: [...i!.shape.slice(0, -1), ...d!.shape.slice(k)] }];
  },
  vjp: ({ grads: [gy], inputs: [d, i], needs }) => [gy && needs[0] ? scatterND(zerosLike(d!), i!, gy, 'add') : null, null],
};

export type Reduction = 'none' | 'add';

export const ScatterElements: OpDef = {
  type: 'ScatterElements',
  attrs: { axis: 'i', reduction: 's' },
  infer: ([d, i, u]) => {
    checkIdx(i!, 'ScatterElements');
    if (d!.dtype !== u!.dtype) throw new DataError(`ScatterElements: updates dtype ${u!.dtype} differs from data ${d!.dtype}`);
    return [{ dtype: d!.dtype, shape: d!.shape }];
  },
  vjp: ({ grads: [gy], inputs: [, i, u], attrs, needs }) => {
    if (!gy) return [null, null, null];
    const axis = (attrs.axis as number | undefined) ?? 0;
    const overwrite = (attrs.reduction ?? 'none') === 'none';
    const gd = !needs[0] ? null : overwrite ? scatterElements(gy, i!, zerosLike(u!), { axis }) : gy;
    const gu = needs[2] ? gatherElements(gy, i!, axis) : null;
    return [gd, null, gu];
  },
};

export const ScatterND: OpDef = {
  type: 'ScatterND',
  attrs: { reduction: 's' },
  infer: ([d, i, u]) => {
    checkIdx(i!, 'ScatterND');
    if (d!.dtype !== u!.dtype) throw new DataError(`ScatterND: updates dtype ${u!.dtype} differs from data ${d!.dtype}`);
    return [{ dtype: d!.dtype, shape: d!.shape }];
  },
  vjp: ({ grads: [gy], inputs: [, i, u], attrs, needs }) => {
    if (!gy) return [null, null, null];
    const overwrite = (attrs.reduction ?? 'none') === 'none';
    const gd = !needs[0] ? null : overwrite ? scatterND(gy, i!, zerosLike(u!)) : gy;
    return [gd, null, needs[2] ? gatherND(gy, i!) : null];
  },
};

/**
 * If `v` is `ScatterElements(zeros, indices, updates, reduction='add')` — what a GatherElements VJP
 * makes — its parts, so a consumer can add the updates into another tensor instead (no zeros tensor).
 */
export function scatteredIntoZeros(v: Value): { indices: Value; updates: Value; axis: number } | null {
  const n = v.graph.producer(v);
  if (!n || n.def.type !== 'ScatterElements' || n.attrs.reduction !== 'add') return null;
  const [zeros, indices, updates] = n.inputs;
  const z = zeros ? v.graph.producer(zeros) : undefined;
  const fill = z?.def.type === 'ConstantOfShape' ? (z.attrs.value as { data: ArrayLike<number | bigint> } | undefined) : undefined;
  if (!fill || Number(fill.data[0]) !== 0) return null;
  return { indices: indices!, updates: updates!, axis: normAxis((n.attrs.axis as number | undefined) ?? 0, v.shape.length, 'ScatterElements') };
}

export const gather = (d: Value, i: Value, axis = 0): Value => d.graph.apply(Gather, [d, i], { axis })[0];
export const gatherElements = (d: Value, i: Value, axis = 0): Value => d.graph.apply(GatherElements, [d, i], { axis })[0];
export const gatherND = (d: Value, i: Value): Value => d.graph.apply(GatherND, [d, i])[0];
export function scatterElements(d: Value, i: Value, u: Value, o: { axis?: number; reduction?: Reduction } = {}): Value {
  return d.graph.apply(ScatterElements, [d, i, u], { axis: o.axis ?? 0, ...(o.reduction && o.reduction !== 'none' ? { reduction: o.reduction } : {}) })[0];
}
export const scatterND = (d: Value, i: Value, u: Value, reduction: Reduction = 'none'): Value =>
  d.graph.apply(ScatterND, [d, i, u], reduction === 'none' ? {} : { reduction })[0];
/**
 * One-hot encoding along a new last axis: out[..., c] = (i[...] == c), as `dtype`.
 * Built from Equal + Cast rather than ONNX OneHot, whose ORT CPU kernels lack float64.
 */
export function oneHot(i: Value, depth: number, dtype: 'float32' | 'float64' | 'int64' = 'float32'): Value {
  checkIdx(i, 'oneHot');
  const classes = i.graph.constant([...Array(depth).keys()], i.dtype, [depth]);
  return cast(equal(unsqueeze(i, [-1]), classes), dtype);
}
