/**
 * Control flow: Scan (opset 16). The body is a GraphBuilder built separately (give it its own
 * `prefix`); it reads values of the enclosing graph through `body.outer(v)`, the rest comes in as a
 * state or a scan input.
 * Not differentiable here (no VJP): it is used for blocked evaluation, not inside training graphs.
 */
import { DataError } from '../../errors.ts';
import type { GraphBuilder } from '../graph.ts';
import type { OpDef, Value } from '../types.ts';

export const Scan: OpDef = {
  type: 'Scan',
  attrs: { body: 'g', num_scan_inputs: 'i' },
  infer: (inputs, attrs) => {
    const body = attrs.body as GraphBuilder;
    const k = attrs.num_scan_inputs as number;
    const states = inputs.length - k;
    if (body.inputs.length !== inputs.length) throw new DataError(`Scan: body has ${body.inputs.length} inputs; expected ${inputs.length} (states + scan inputs)`);
    if (body.outputs.length < states) throw new DataError(`Scan: body has ${body.outputs.length} outputs; expected at least the ${states} states`);
    const len = inputs[states]!.shape[0];
    return body.outputs.map((o, i) => (i < states
      ? { dtype: o.dtype, shape: inputs[i]!.shape }
      : { dtype: o.dtype, shape: [len, ...o.shape] }));
  },
};

/**
 * Scan `body` over axis 0 of each of `scans`, carrying `states`. Returns the final states, then each
 * per-iteration body output stacked along a new axis 0.
 */
export function scan(body: GraphBuilder, states: readonly Value[], scans: readonly Value[]): Value[] {
  if (scans.length === 0) throw new DataError('scan: needs at least one scan input');
  const g = scans[0].graph;
  return g.apply(Scan, [...states, ...scans], { body, num_scan_inputs: scans.length });
}
