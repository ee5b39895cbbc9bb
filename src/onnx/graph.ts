/** GraphBuilder: owns inputs, initializers, nodes and outputs of one ONNX graph. */
import { ConfigError, DataError } from '../errors.ts';
import { serializeModel, type ModelOptions } from './serialize.ts';
import { dtypeOfArray, type Attrs, type DType, type Dim, type Node, type OpDef, type Shape, type Tensor, type TypedArray, type Value } from './types.ts';

export class GraphBuilder {
  readonly name: string;
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly nodes: Node[] = [];
  readonly initializers = new Map<string, Tensor>();
  private readonly names = new Set<string>();
  private readonly constCache = new Map<string, Value>();
  private readonly producers = new Map<string, Node>();
  private counter = 0;

  /** Prefix of generated value names; give a subgraph (a Scan body) its own so its names cannot clash with the outer graph's. */
  private readonly prefix: string;

  constructor(opts: { name?: string; prefix?: string } = {}) {
    this.name = opts.name ?? 'graph';
    this.prefix = opts.prefix ?? '';
  }

  /** A fresh value name based on `prefix`. */
  uniqueName(prefix: string): string {
    let n = `${this.prefix}${prefix}_${this.counter++}`;
    while (this.names.has(n)) n = `${this.prefix}${prefix}_${this.counter++}`;
    return n;
  }
  private claim(name: string): string {
    if (this.names.has(name)) throw new ConfigError(`graph ${this.name}: value name '${name}' is already used`);
    this.names.add(name);
    return name;
  }
  private value(name: string, dtype: DType, shape: Shape, known?: readonly Dim[]): Value {
    return { name, dtype, shape: [...shape], graph: this, ...(known ? { known: [...known] } : {}) };
  }

  /** A graph input fed at run time; dims may be numbers or symbolic names ('batch'). */
  input(name: string, dtype: DType, shape: Shape): Value {
    const v = this.value(this.claim(name), dtype, shape);
    this.inputs.push(v);
    return v;
  }

  /**
   * A value of an enclosing graph used inside this subgraph (ONNX outer-scope reference, e.g. a Scan
   * body reading a weight of the main graph without copying it in as a state). Not declared as an input.
   */
  outer(v: Value): Value {
    if (v.graph === this) throw new ConfigError(`graph ${this.name}: outer(${v.name}) is a value of this graph`);
    this.claim(v.name);
    return this.value(v.name, v.dtype, v.shape, v.known);
  }

  /** A named constant tensor stored in the model (weights). dtype defaults from the array type. */
  initializer(name: string, data: TypedArray, dims: number[], dtype: DType = dtypeOfArray(data)): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new DataError(`initializer ${name}: ${data.length} elements for dims [${dims}] (expected ${n})`);
    this.initializers.set(this.claim(name), { dtype, dims: [...dims], data });
    return this.value(name, dtype, dims, dtype === 'int64' && dims.length <= 1 ? Array.from(data as BigInt64Array, Number) : undefined);
  }

  /** An anonymous constant; numbers become a tensor of `dtype` with `dims` (default scalar). Scalars are shared. */
  constant(values: number | readonly number[], dtype: DType, dims?: number[]): Value {
    const arr = typeof values === 'number' ? [values] : [...values];
    const d = dims ?? (typeof values === 'number' ? [] : [arr.length]);
    const key = arr.length <= 16 ? `${dtype}|${d}|${arr}` : '';
    const hit = key ? this.constCache.get(key) : undefined;
    if (hit) return hit;
    const v = this.initializer(this.uniqueName('const'), makeArray(arr, dtype), d, dtype);
    if (key) this.constCache.set(key, v);
    return v;
  }
  /** A 1-D int64 constant (shapes, axes, indices). */
  ints(values: readonly number[]): Value { return this.constant(values, 'int64', [values.length]); }

  /** Contents of a constant initializer, if `v` is one. */
  constantValue(v: Value): Tensor | undefined { return this.initializers.get(v.name); }

  /** Mark `v` as a graph output, renamed through an Identity node when `name` is given. */
  output(v: Value, name?: string): Value {
    let out = v;
    if (name !== undefined && name !== v.name) {
      out = this.apply(IdentityDef, [v], {}, [name])[0];
    }
    this.outputs.push(out);
    return out;
  }

  /** Append a node of op `def`; infers output dtypes/shapes. Used by the op builders. */
  apply(def: OpDef, inputs: (Value | null)[], attrs: Attrs = {}, names?: string[]): Value[] {
    for (const v of inputs) {
      if (v && v.graph !== this) throw new ConfigError(`${def.type}: input ${v.name} belongs to another graph`);
    }
    const infos = def.infer(inputs, attrs, this);
    const outputs = infos.map((o, i) =>
      this.value(this.claim(names?.[i] ?? this.uniqueName(def.type.toLowerCase())), o.dtype, o.shape, o.known));
    const node: Node = { def, inputs, outputs, attrs };
    this.nodes.push(node);
    for (const o of outputs) this.producers.set(o.name, node);
    return outputs;
  }

  /** The node that outputs `v` (undefined for inputs, initializers and outer values). */
  producer(v: Value): Node | undefined { return this.producers.get(v.name); }

  /** Serialise to ONNX ModelProto bytes (opset 17, IR version 8). */
  toModel(opts: ModelOptions = {}): Uint8Array {
    return serializeModel(this, opts);
  }
}

/** Identity lives here (not in ops/) so `output()` can rename without an import cycle. */
export const IdentityDef: OpDef = {
  type: 'Identity',
  infer: ([x]) => [{ dtype: x!.dtype, shape: x!.shape, known: x!.known ? [...x!.known] : undefined }],
  vjp: ({ grads: [gy] }) => [gy],
};

export function makeArray(values: readonly number[], dtype: DType): TypedArray {
  switch (dtype) {
    case 'float32': return Float32Array.from(values);
    case 'float64': return Float64Array.from(values);
    case 'int64': return BigInt64Array.from(values, (x) => BigInt(x));
    case 'int32': return Int32Array.from(values);
    case 'int8': return Int8Array.from(values);
    case 'uint8': case 'bool': return Uint8Array.from(values);
    case 'float16': throw new DataError('constant: float16 constants are not supported; cast from float32');
  }
}

