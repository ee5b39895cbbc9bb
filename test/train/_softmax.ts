/** A tiny softmax-regression objective built with src/onnx + src/autodiff, for the trainer tests. */
import { grad } from '../../src/autodiff/index.ts';
import * as O from '../../src/onnx/index.ts';
import { createRng } from '../../src/data/random.ts';
import { OnnxObjective } from '../../src/train/objective.ts';

export interface Point { x: number[]; y: number }
export const D = 3, C = 4;

export function softmaxRegressionModel(): Uint8Array {
  const g = new O.GraphBuilder({ name: 'softmax_regression' });
  const x = g.input('x', 'float32', ['batch', D]);
  const y = g.input('y', 'int64', ['batch']);
  const W = g.input('W', 'float32', [D, C]);
  const b = g.input('b', 'float32', [C]);
  const logits = O.add(O.matMul(x, W), b);
  const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(y, [-1]), 1);
  const loss = O.neg(O.reduceMean(picked, undefined, false));
  g.output(loss, 'loss');
  const [gW, gb] = grad({ loss, wrt: [W, b] });
  g.output(gW, 'grad.W');
  g.output(gb, 'grad.b');
  return g.toModel();
}

export async function softmaxObjective(): Promise<OnnxObjective<Point>> {
  return OnnxObjective.create<Point>({
    model: softmaxRegressionModel(), threads: 1,
    trainable: new Map([['W', [D, C]], ['b', [C]]]),
    feeds: (ex) => ({
      x: { data: Float32Array.from(ex.flatMap((e) => e.x)), dims: [ex.length, D] },
      y: { data: BigInt64Array.from(ex.map((e) => BigInt(e.y))), dims: [ex.length] },
    }),
  });
}

/** Points around C fixed class centres (unit-variance noise drawn from `seed`). */
export function points(n: number, seed: number): Point[] {
  const c = createRng(1000);
  const centres = Array.from({ length: C }, () => Array.from({ length: D }, () => 1.5 * c.normal()));
  const rng = createRng(seed);
  return Array.from({ length: n }, (_, i) => ({ y: i % C, x: centres[i % C].map((c) => c + rng.normal()) }));
}

export const initParams = () => new Map([['W', new Float32Array(D * C)], ['b', new Float32Array(C)]]);
export const shapes = new Map([['W', [D, C]], ['b', [C]]]);
