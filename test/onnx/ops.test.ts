/** Forward ops: values against plain-JS references, inferred shapes against onnxruntime's. */
import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import * as O from '../../src/onnx/index.ts';
import { createSession, f64, i64, type HostTensor } from '../../src/runtime/index.ts';

const X = [0.5, -1, 2, 3, -0.25, 1.5]; // [2, 3]
const close = (a: ArrayLike<number | bigint>, b: number[], tol = 1e-9) =>
  a.length === b.length && Array.from(a, Number).every((v, i) => Math.abs(v - b[i]) <= tol * (1 + Math.abs(b[i])));

/** Runs g (outputs named o0, o1, ...) and checks each output's dims equal the inferred shape. */
async function run(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void }, g: O.GraphBuilder, outs: O.Value[], feeds: Record<string, HostTensor>) {
  outs.forEach((v, i) => g.output(v, `o${i}`));
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  const r = await s.run(feeds);
  outs.forEach((v, i) => { if (O.isStatic(v.shape)) t.deepEqual(r[`o${i}`].dims, v.shape, `shape of ${v.name}`); });
  return outs.map((_, i) => Array.from(r[`o${i}`].data as ArrayLike<number | bigint>, Number));
}
function setup() {
  const g = new O.GraphBuilder();
  return { g, x: g.input('x', 'float64', [2, 3]), feeds: { x: f64(X, [2, 3]) } };
}

test('batched matMul with broadcasting and gemm', async (t) => {
  const g = new O.GraphBuilder();
  const a = g.input('a', 'float64', [2, 1, 2, 3]), b = g.input('b', 'float64', [3, 3, 2]);
  const A = Array.from({ length: 12 }, (_, i) => i - 5), B = Array.from({ length: 18 }, (_, i) => (i % 7) - 3);
  const ref: number[] = [];
  for (let p = 0; p < 2; p++) for (let q = 0; q < 3; q++) for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) {
    let s = 0;
    for (let k = 0; k < 3; k++) s += A[p * 6 + i * 3 + k] * B[q * 6 + k * 2 + j];
    ref.push(s);
  }
  const c = g.input('c', 'float64', [2]);
  const a2 = O.reshape(O.slice(a, { starts: [0], ends: [1] }), [2, 3]);
  const [mm, gm] = await run(t, g, [O.matMul(a, b), O.gemm(a2, O.reshape(O.slice(b, { starts: [0], ends: [1] }), [2, 3]), c, { transB: 1, alpha: 2 })],
    { a: f64(A, [2, 1, 2, 3]), b: f64(B, [3, 3, 2]), c: f64([10, 20], [2]) });
  t.deepEqual(mm, ref);
  // 2 * A[0:2,:] @ B0^T + c, with B0 = first 6 values of B viewed as [2, 3]
  const gref = [0, 1].flatMap((i) => [0, 1].map((j) => 2 * [0, 1, 2].reduce((s, k) => s + A[i * 3 + k] * B[j * 3 + k], 0) + [10, 20][j]));
  t.deepEqual(gm, gref);
});

test('elementwise, comparisons, where, cast', async (t) => {
  const { g, x, feeds } = setup();
  const outs = [O.pow(O.sub(O.mul(O.div(x, 2), 3), -1), 2), O.sqrt(O.exp(x)), O.log(O.reciprocal(O.exp(x))), O.tanh(x), O.sigmoid(x),
    O.where(O.greater(x, 1), x, O.neg(x)), O.cast(O.less(x, 0), 'int64'), O.cast(O.equal(x, 2), 'float64'), O.cast(O.mul(x, 2), 'int64')];
  const r = await run(t, g, outs, feeds);
  t.true(close(r[0], X.map((v) => (v / 2 * 3 + 1) ** 2)));
  t.true(close(r[1], X.map((v) => Math.sqrt(Math.exp(v)))));
  t.true(close(r[2], X.map((v) => -v)));
  t.true(close(r[3], X.map(Math.tanh)));
  t.true(close(r[4], X.map((v) => 1 / (1 + Math.exp(-v)))));
  t.deepEqual(r[5], X.map((v) => (v > 1 ? v : -v)));
  t.deepEqual(r[6], X.map((v) => (v < 0 ? 1 : 0)));
  t.deepEqual(r[7], X.map((v) => (v === 2 ? 1 : 0)));
  t.deepEqual(r[8], X.map((v) => Math.trunc(v * 2) + 0)); // + 0: no -0
});

test('erf (float32)', async (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float32', [4]);
  const [r] = await run(t, g, [O.erf(x)], { x: { data: Float32Array.from([-1, 0, 0.5, 2]), dims: [4] } });
  t.true(close(r, [-0.8427007929, 0, 0.5204998778, 0.9953222650], 1e-6)); // erf table values
});

test('reductions, softmax, logSoftmax, topK', async (t) => {
  const { g, x, feeds } = setup();
  const [v, idx] = O.topK(x, 2);
  const r = await run(t, g, [O.reduceSum(x, [1], false), O.reduceMean(x, [0]), O.reduceMax(x), O.softmax(x), O.logSoftmax(x, 0), v, idx], feeds);
  const rows = [X.slice(0, 3), X.slice(3)];
  t.true(close(r[0], rows.map((row) => row.reduce((a, b) => a + b))));
  t.true(close(r[1], [0, 1, 2].map((j) => (X[j] + X[3 + j]) / 2)));
  t.deepEqual(r[2], [3]);
  t.true(close(r[3], rows.flatMap((row) => { const z = row.reduce((a, b) => a + Math.exp(b), 0); return row.map((v) => Math.exp(v) / z); })));
  t.true(close(r[4], X.map((v, i) => v - Math.log(Math.exp(X[i % 3]) + Math.exp(X[3 + (i % 3)])))));
  t.deepEqual(r[5], [2, 0.5, 3, 1.5]);
  t.deepEqual(r[6], [2, 0, 0, 2]);
});

test('gather, gatherElements, gatherND, scatter with add, oneHot', async (t) => {
  const { g, x, feeds } = setup();
  const ids = g.input('ids', 'int64', [3]);
  const out = [
    O.gather(x, g.ints([2, 0]), 1),
    O.gatherElements(x, g.constant([2, 2, 0, 1], 'int64', [2, 2]), 1),
    O.gatherND(x, g.constant([1], 'int64', [1, 1])),
    O.scatterND(O.constantOfShape(g.ints([4, 3]), 0, 'float64'), O.unsqueeze(g.constant([3, 3], 'int64', [2]), [-1]), x, 'add'),
    O.scatterElements(x, g.constant([0, 1], 'int64', [2, 1]), g.constant([9, 8], 'float64', [2, 1]), { axis: 1 }),
    O.oneHot(ids, 4, 'float64'),
  ];
  const r = await run(t, g, out, { ...feeds, ids: i64([3, 0, 3], [3]) });
  t.deepEqual(r[0], [2, 0.5, 1.5, 3]);
  t.deepEqual(r[1], [2, 2, 3, -0.25]);
  t.deepEqual(r[2], [3, -0.25, 1.5]);
  t.deepEqual(r[3], [0, 0, 0, 0, 0, 0, 0, 0, 0, 3.5, -1.25, 3.5]); // rows 0 and 1 of x both added into row 3
  t.deepEqual(r[4], [9, -1, 2, 3, 8, 1.5]);
  t.deepEqual(r[5], [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1]);
});

test('shape ops: reshape, transpose, concat, split, slice, pad, (un)squeeze, expand', async (t) => {
  const { g, x, feeds } = setup();
  const [p, q] = O.split(x, [1, 2], 1);
  const out = [O.reshape(x, [3, -1]), O.transpose(x), O.concat([x, x], 0), p, q, O.slice(x, { starts: [-2], ends: [100], axes: [1] }),
    O.pad(x, [0, 1, 1, 0]), O.squeeze(O.unsqueeze(x, [0, 2]), [0]), O.expand(O.slice(x, { starts: [0], ends: [1] }), [2, 2, 3])];
  const r = await run(t, g, out, feeds);
  t.deepEqual(r[0], X);
  t.deepEqual(r[1], [0.5, 3, -1, -0.25, 2, 1.5]);
  t.deepEqual(r[2], [...X, ...X]);
  t.deepEqual(r[3], [0.5, 3]);
  t.deepEqual(r[4], [-1, 2, -0.25, 1.5]);
  t.deepEqual(r[5], [-1, 2, -0.25, 1.5]);
  t.deepEqual(r[6], [0, 0.5, -1, 2, 0, 3, -0.25, 1.5, 0, 0, 0, 0]);
  t.deepEqual(out[7].shape, [2, 1, 3]);
  t.deepEqual(r[7], X);
  t.deepEqual(r[8], [0.5, -1, 2, 0.5, -1, 2, 0.5, -1, 2, 0.5, -1, 2]);
});

test('symbolic batch: one model serves several batch sizes; Shape/ConstantOfShape', async (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float64', ['batch', 'seq', 4]);
  const y = O.reshape(O.add(x, O.constantOfShape(O.shapeOf(x), 1, 'float64')), [0, -1]);
  t.deepEqual(y.shape.slice(0, 1), ['batch']);
  g.output(y, 'y');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  for (const [b, n] of [[1, 2], [3, 5]]) {
    const r = await s.run({ x: f64(Array(b * n * 4).fill(1), [b, n, 4]) });
    t.deepEqual(r.y.dims, [b, n * 4]);
    t.true(Array.from(r.y.data as Float64Array).every((v) => v === 2));
  }
});

test('build-time errors: shapes, dtypes, names', (t) => {
  const g = new O.GraphBuilder();
  const a = g.input('a', 'float32', [2, 3]), b = g.input('b', 'float32', [4, 3]);
  t.throws(() => O.add(a, b), { instanceOf: DataError, message: /not broadcastable/ });
  t.throws(() => O.matMul(a, b), { instanceOf: DataError, message: /inner dims differ/ });
  t.throws(() => O.add(a, g.input('c', 'float64', [3])), { instanceOf: DataError, message: /dtype mismatch/ });
  t.throws(() => O.reshape(a, [4, 2]), { instanceOf: DataError });
  t.throws(() => O.squeeze(a, [0]), { instanceOf: DataError });
  t.throws(() => O.softmax(a, 2), { instanceOf: DataError, message: /out of range/ });
  t.throws(() => g.input('a', 'float32', [1]), { instanceOf: ConfigError, message: /already used/ });
  t.throws(() => new O.GraphBuilder().toModel(), { instanceOf: DataError, message: /no outputs/ });
  t.throws(() => O.add(a, new O.GraphBuilder().input('z', 'float32', [3])), { instanceOf: ConfigError });
});
