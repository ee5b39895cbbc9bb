/** Core IR types: dtypes, shapes, values, nodes, op definitions. */
import type { GraphBuilder } from './graph.ts';

export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';
/** A dimension: a number, a named symbol ('batch'), or an unknown ('?<n>', made by inference). */
export type Dim = number | string;
export type Shape = readonly Dim[];
export type TypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int8Array | Uint8Array | Uint16Array;

/** Constant tensor data (initializers, attribute tensors). */
export interface Tensor { dtype: DType; dims: number[]; data: TypedArray }

/** A tensor-valued edge of the graph. `known` holds the contents of small int64 shape tensors when known. */
export interface Value {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly graph: GraphBuilder;
  readonly known?: readonly Dim[];
}

export type AttrKind = 'i' | 'f' | 's' | 'ints' | 'floats' | 't' | 'g';
/** A GraphBuilder is a subgraph attribute ('g', e.g. Scan's body). */
export type AttrValue = number | string | number[] | Tensor | GraphBuilder;
export type Attrs = Record<string, AttrValue>;

export interface Node {
  readonly def: OpDef;
  readonly inputs: readonly (Value | null)[];
  readonly outputs: readonly Value[];
  readonly attrs: Attrs;
}

export interface VjpContext {
  g: GraphBuilder;
  inputs: readonly (Value | null)[];
  outputs: readonly Value[];
  /** Gradient of the loss w.r.t. each output (null: that output does not reach the loss). */
  grads: readonly (Value | null)[];
  attrs: Attrs;
  /** needs[i]: the caller wants the gradient w.r.t. inputs[i]; return null elsewhere. */
  needs: readonly boolean[];
}

/**
 * One ONNX operator: shape/dtype inference for its forward builder, its attribute kinds
 * (for serialisation) and its vector-Jacobian product, written in the same record.
 */
export interface OpDef {
  readonly type: string;
  readonly attrs?: Readonly<Record<string, AttrKind>>;
  infer(inputs: readonly (Value | null)[], attrs: Attrs, g: GraphBuilder): { dtype: DType; shape: Shape; known?: Dim[] }[];
  /** Absent: not differentiable (integer / boolean results, indices). */
  vjp?(ctx: VjpContext): (Value | null)[];
}

/** ONNX TensorProto.DataType codes. */
export const DTYPE_CODE: Record<DType, number> = {
  float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11,
};
export const BYTES_PER: Record<DType, number> = {
  float32: 4, uint8: 1, int8: 1, int32: 4, int64: 8, bool: 1, float16: 2, float64: 8,
};
export const isFloat = (d: DType): boolean => d === 'float32' || d === 'float64' || d === 'float16';

export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint16Array) return 'float16';
  return 'uint8';
}
