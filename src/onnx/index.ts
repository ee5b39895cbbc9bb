/**
 * LayerFlow ONNX graph IR: build graphs in TypeScript, serialise to ONNX (opset 17, IR 8).
 *
 *   const g = new GraphBuilder({ name: 'mlp' });
 *   const x = g.input('x', 'float32', ['batch', 16]);            // dims: numbers or symbols
 *   const w = g.initializer('w', new Float32Array(16 * 8), [16, 8]); // weights baked in
 *   const y = softmax(add(matMul(x, w), g.constant(0.5, 'float32')));
 *   g.output(y, 'probs');  const bytes = g.toModel();              // -> createSession (src/runtime)
 *
 * - A `Value` is { name, dtype, shape, graph }; every builder (add, matMul, reshape, ...) is a free
 *   function taking Values (numbers are lifted to scalar constants) and returning Values with
 *   inferred dtype and shape (numpy broadcasting; mismatches throw DataError at build time).
 * - Each op is an `OpDef` record in ops/*.ts holding its shape inference AND its VJP; the reverse-mode
 *   pass `grad({ loss, wrt })` in src/autodiff appends the gradient subgraph to the same graph.
 * - Differentiate w.r.t. graph inputs, initializers or intermediate Values. Per-example gradients:
 *   expand a parameter to a batch copy, e.g. `aB = expand(loraA, [B, r, in])` (or feed it as an input
 *   [B, r, in]), use it in a batched matMul (x [B, T, in] @ transposeLast2(aB) [B, in, r]), take
 *   `grad({ loss: sum of per-example losses, wrt: [aB] })` -> [B, r, in], one gradient per example.
 * - Symbolic dims are trusted to match at run time and are never assumed to be 1, so a gradient is
 *   summed over an axis only where the operand's dim is literally 1 (or missing). Give dims that may
 *   broadcast a literal 1. Unknown dims ('?n') appear after data-dependent reshapes.
 * - Weights bigger than ~2 GiB in total must be graph inputs (protobuf limit); feed them at run time.
 * - Scan (ops/control.ts) takes a body GraphBuilder (own `prefix`); the body reads outer values through
 *   `body.outer(v)`. Reshape takes `{ allowZero }` for targets with real 0 dims.
 * - MatMul needs rank >= 2 operands; Reduce* take axes as number[]; Slice/Reshape/Unsqueeze take
 *   constant number[] (Reshape/Expand also accept an int64 shape Value such as shapeOf(x)).
 */
export { GraphBuilder, IdentityDef } from './graph.ts';
export { serializeModel, OPSET, IR_VERSION, type ModelOptions } from './serialize.ts';
export { broadcast, isStatic, numel } from './shape.ts';
export * from './types.ts';
export * from './ops/math.ts';
export * from './ops/linalg.ts';
export * from './ops/reduce.ts';
export * from './ops/shape.ts';
export * from './ops/indexing.ts';
export * from './ops/control.ts';
