/**
 * Reverse-mode autodiff over the src/onnx IR: `grad({ loss, wrt })` appends the gradient subgraph
 * and returns one gradient Value per `wrt` entry; mark them with `g.output(gw, 'grad_w')`.
 * VJP rules live with each op in src/onnx/ops/*.ts (OpDef.vjp).
 */
export { grad, type GradOptions } from './grad.ts';
