/**
 * Reverse-mode differentiation as a pass over the IR. Walks the nodes between `wrt` and `loss`
 * backwards, calls each op's VJP (defined next to its forward builder in src/onnx/ops) and
 * appends the gradient subgraph, in standard ONNX ops, to the same graph.
 */
import { ConfigError, DataError } from '../errors.ts';
import { add, constantOfShape, isFloat, numel, scatterElements, scatteredIntoZeros, shapeOf, type Node, type Value } from '../onnx/index.ts';

export interface GradOptions {
  /** The value to differentiate. Scalar (one element) unless `seed` is given. */
  loss: Value;
  /** Cotangent of `loss` (same shape); default 1. Makes the result a vector-Jacobian product. */
  seed?: Value;
  /** Graph inputs, initializers or intermediate values; all must be floating point. */
  wrt: Value[];
}

/** Returns d loss / d w for each w in `wrt` (same dtype and shape as w; zeros when w does not reach loss). */
export function grad({ loss, seed, wrt }: GradOptions): Value[] {
  const g = loss.graph;
  for (const w of wrt) {
    if (w.graph !== g) throw new ConfigError(`grad: ${w.name} belongs to another graph than ${loss.name}`);
    if (!isFloat(w.dtype)) throw new ConfigError(`grad: cannot differentiate w.r.t. ${w.name} of dtype ${w.dtype}`);
  }
  if (!isFloat(loss.dtype)) throw new ConfigError(`grad: loss ${loss.name} has dtype ${loss.dtype}, expected floating point`);
  let s = seed;
  if (!s) {
    if (numel(loss.shape) !== 1) throw new DataError(`grad: loss ${loss.name} has shape [${loss.shape}]; pass a scalar or give a seed`);
    s = g.constant(1, loss.dtype, loss.shape.map(() => 1));
  } else if (s.dtype !== loss.dtype) {
    throw new DataError(`grad: seed dtype ${s.dtype} differs from loss dtype ${loss.dtype}`);
  }

  const nodes = [...g.nodes]; // snapshot: the pass appends to g.nodes
  // Forward sweep: values that depend on some wrt value.
  const reach = new Set(wrt.map((w) => w.name));
  const active = nodes.map((n) => {
    const on = n.inputs.some((i) => i && reach.has(i.name));
    if (on) for (const o of n.outputs) reach.add(o.name);
    return on;
  });
  // Backward sweep: values the loss depends on.
  const needed = new Set([loss.name]);
  for (let k = nodes.length - 1; k >= 0; k--) {
    if (active[k] && nodes[k].outputs.some((o) => needed.has(o.name))) {
      for (const i of nodes[k].inputs) if (i) needed.add(i.name);
    }
  }

  const adj = new Map<string, Value>([[loss.name, s]]);
  const start = g.nodes.length;
  const accumulate = (v: Value, gv: Value): void => {
    checkShape(v, gv);
    const prev = adj.get(v.name);
    adj.set(v.name, prev ? scatterInto(prev, gv) ?? scatterInto(gv, prev) ?? add(prev, gv) : gv);
  };
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    if (!active[k]) continue;
    const grads = n.outputs.map((o) => adj.get(o.name) ?? null);
    if (grads.every((x) => !x)) continue;
    const needs = n.inputs.map((i) => !!i && isFloat(i.dtype) && reach.has(i.name) && needed.has(i.name));
    if (!needs.some(Boolean)) continue;
    if (!n.def.vjp) throw new DataError(`grad: op ${n.def.type} (output ${n.outputs[0].name}) is not differentiable but lies between the loss and ${wrt.map((w) => w.name).join(', ')}`);
    const gin = n.def.vjp({ g, inputs: n.inputs, outputs: n.outputs, grads, attrs: n.attrs, needs });
    n.inputs.forEach((i, j) => {
      if (i && needs[j] && gin[j]) accumulate(i, gin[j]!);
    });
  }
  const out = wrt.map((w) => adj.get(w.name) ?? constantOfShape(shapeOf(w), 0, w.dtype));
  pruneSince(g.nodes, start, out);
  return out;
}

/**
 * `dense + scatter_add(zeros, i, u)` as `scatter_add(dense, i, u)`: the VJP of a gather (a loss
 * picking target entries, an embedding lookup) scatters into a zero tensor of its input's shape;
 * when that input also gets a dense gradient, adding the two would keep three full-size tensors
 * alive (the zeros, the scatter and the sum). The unused zeros and scatter are pruned at the end.
 */
function scatterInto(dense: Value, sparse: Value): Value | null {
  const sc = scatteredIntoZeros(sparse);
  return sc ? scatterElements(dense, sc.indices, sc.updates, { axis: sc.axis, reduction: 'add' }) : null;
}

/** Removes the nodes appended since `start` whose outputs nothing reads (the gradients `keep` are read). */
function pruneSince(nodes: Node[], start: number, keep: Value[]): void {
  const read = new Set(keep.map((v) => v.name));
  const live: boolean[] = [];
  for (let j = nodes.length - 1; j >= start; j--) {
    const n = nodes[j];
    live[j] = n.outputs.some((o) => read.has(o.name)) || Object.values(n.attrs).some((a) => typeof a === 'object' && a !== null && 'nodes' in a);
    if (live[j]) for (const i of n.inputs) if (i) read.add(i.name);
  }
  let w = start;
  for (let j = start; j < nodes.length; j++) if (live[j]) nodes[w++] = nodes[j];
  nodes.length = w;
}

/** Catches VJP shape bugs at build time wherever both shapes are static. */
function checkShape(v: Value, gv: Value): void {
  const bad = gv.dtype !== v.dtype || gv.shape.length !== v.shape.length ||
    v.shape.some((d, i) => typeof d === 'number' && typeof gv.shape[i] === 'number' && d !== gv.shape[i]);
  if (bad) throw new DataError(`grad: gradient for ${v.name} has ${gv.dtype} [${gv.shape}], expected ${v.dtype} [${v.shape}]`);
}
