/** GraphBuilder → ONNX ModelProto bytes. Field numbers follow onnx/onnx.proto. */
import { DataError } from '../errors.ts';
import type { GraphBuilder } from './graph.ts';
import { ProtoWriter } from './proto.ts';
import { isUnknown } from './shape.ts';
import { DTYPE_CODE, type AttrKind, type AttrValue, type Node, type Tensor, type Value } from './types.ts';

export const OPSET = 17;
export const IR_VERSION = 8;
const MAX_PROTO_BYTES = 2 ** 31 - 1;

export interface ModelOptions { producerVersion?: string; docString?: string }

// AttributeProto.AttributeType codes.
const ATTR_TYPE: Record<AttrKind, number> = { f: 1, i: 2, s: 3, t: 4, g: 5, floats: 6, ints: 7 };

function tensorProto(t: Tensor, name?: string): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.dims) w.int(1, d);
  w.int(2, DTYPE_CODE[t.dtype]);
  if (name !== undefined) w.string(8, name);
  // raw_data is little-endian; typed arrays use host order, which is little-endian on every
  // platform onnxruntime-node ships for.
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return w;
}

/** A subgraph attribute value (a GraphBuilder; checked structurally to keep graph.ts ↔ serialize.ts free of a value cycle). */
function isGraph(v: AttrValue): v is GraphBuilder {
  return typeof v === 'object' && !Array.isArray(v) && 'nodes' in v && 'toModel' in v;
}

function attribute(name: string, kind: AttrKind, v: AttrValue, op: string): ProtoWriter {
  const w = new ProtoWriter().string(1, name).int(20, ATTR_TYPE[kind]);
  const bad = (): never => { throw new DataError(`${op}: attribute ${name} must be ${kind}, got ${JSON.stringify(v)}`); };
  switch (kind) {
    case 'i': if (typeof v !== 'number' || !Number.isInteger(v)) bad(); w.int(3, v as number); break;
    case 'f': if (typeof v !== 'number') bad(); w.float32(2, v as number); break;
    case 's': if (typeof v !== 'string') bad(); w.string(4, v as string); break;
    case 't': if (typeof v !== 'object' || Array.isArray(v) || isGraph(v)) bad(); w.message(5, tensorProto(v as Tensor)); break;
    case 'g': if (!isGraph(v)) bad(); w.message(6, graphProto(v as GraphBuilder)); break;
    case 'ints': if (!Array.isArray(v)) bad(); for (const x of v as number[]) w.int(8, x); break;
    case 'floats': if (!Array.isArray(v)) bad(); for (const x of v as number[]) w.float32(7, x); break;
  }
  return w;
}

function nodeProto(n: Node, index: number, scope: string): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i ? i.name : '');
  for (const o of n.outputs) w.string(2, o.name);
  w.string(3, `${scope}/${n.def.type}_${index}`);
  w.string(4, n.def.type);
  for (const [k, v] of Object.entries(n.attrs)) {
    if (v === undefined) continue;
    const kind = n.def.attrs?.[k];
    if (!kind) throw new DataError(`${n.def.type}: unknown attribute '${k}'`);
    w.message(5, attribute(k, kind, v, n.def.type));
  }
  return w;
}

function valueInfo(v: Value): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(1, d);
    else if (!isUnknown(d)) dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, DTYPE_CODE[v.dtype]).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, v.name).message(2, type);
}

/** GraphProto of a graph or subgraph (node names are prefixed with the graph's name, so they are unique across scopes). */
function graphProto(g: GraphBuilder): ProtoWriter {
  if (g.outputs.length === 0) throw new DataError(`graph ${g.name}: no outputs; call g.output(value)`);
  const graph = new ProtoWriter();
  g.nodes.forEach((n, i) => graph.message(1, nodeProto(n, i, g.name)));
  graph.string(2, g.name);
  for (const [name, t] of g.initializers) graph.message(5, tensorProto(t, name));
  for (const v of g.inputs) graph.message(11, valueInfo(v));
  for (const v of g.outputs) graph.message(12, valueInfo(v));
  // value_info for every intermediate value: ONNX shape inference alone loses dims after shape-computed
  // ops (Reshape / Expand / ConstantOfShape fed by Shape→Concat), and ORT's allocation planner then
  // scans its whole free list for every output whose dims it cannot match — quadratic in graph size
  // (12 s of a 13 s session start for SmolLM2's per-example gradient graph, ~10k nodes). With the
  // builder's shapes ('batch', 'seq', numbers) it reuses buffers and plans in well under a second.
  const io = new Set([...g.inputs, ...g.outputs].map((v) => v.name));
  for (const n of g.nodes) {
    for (const o of n.outputs) if (!io.has(o.name) && !g.initializers.has(o.name)) graph.message(13, valueInfo(o));
  }
  return graph;
}

export function serializeModel(g: GraphBuilder, opts: ModelOptions = {}): Uint8Array {
  const graph = graphProto(g);

  const model = new ProtoWriter().int(1, IR_VERSION).string(2, 'layerflow');
  if (opts.producerVersion) model.string(3, opts.producerVersion);
  if (opts.docString) model.string(6, opts.docString);
  model.message(7, graph);
  model.message(8, new ProtoWriter().string(1, '').int(2, OPSET));
  if (model.length > MAX_PROTO_BYTES) {
    throw new DataError(`graph ${g.name}: model is ${model.length} bytes, over protobuf's 2 GiB limit; feed large weights as graph inputs instead of initializers`);
  }
  return model.finish();
}
