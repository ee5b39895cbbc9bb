/** Scan with a subgraph body and outer-scope references; Reshape allowzero. Values against plain JS. */
import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import * as O from '../../src/onnx/index.ts';
import { createSession, f64, i64 } from '../../src/runtime/index.ts';

test('Scan walks row blocks: per-block (B ⊙ B)·1 and B·u (u read from the outer graph), and a carried running sum', async (t) => {
  const nb = 3, b = 2, d = 4;
  const S = Array.from({ length: nb * b * d }, (_, i) => ((i * 7) % 11) - 5);
  const u = [1, -2, 0.5, 3];
  const g = new O.GraphBuilder({ name: 'main' });
  const S3 = g.input('S3', 'float64', ['nb', b, d]);
  const U = g.input('u', 'float64', [d, 1]);
  const acc0 = g.input('acc0', 'float64', [1, d]);
  const body = new O.GraphBuilder({ name: 'body', prefix: 'body_' });
  const accIn = body.input('body_acc', 'float64', [1, d]);
  const B = body.input('body_B', 'float64', [b, d]);
  body.output(O.add(accIn, O.reduceSum(B, [0], true)), 'body_acc_out');
  body.output(O.reduceSum(O.mul(B, B), [1], true), 'body_norm');
  body.output(O.matMul(B, body.outer(U)), 'body_dot');
  const [acc, norms, dots] = O.scan(body, [acc0], [S3]);
  t.deepEqual(norms.shape, ['nb', b, 1]);
  t.deepEqual(acc.shape, [1, d]);
  g.output(acc, 'acc');
  g.output(norms, 'norms');
  g.output(dots, 'dots');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  const r = await s.run({ S3: f64(S, [nb, b, d]), u: f64(u, [d, 1]), acc0: f64([10, 0, 0, 0], [1, d]) });
  const row = (i: number) => S.slice(i * d, (i + 1) * d);
  t.deepEqual(r.norms.dims, [nb, b, 1]);
  t.deepEqual(Array.from(r.norms.data as Float64Array), [...Array(nb * b).keys()].map((i) => row(i).reduce((a, x) => a + x * x, 0)));
  t.deepEqual(Array.from(r.dots.data as Float64Array), [...Array(nb * b).keys()].map((i) => row(i).reduce((a, x, j) => a + x * u[j], 0)));
  const colSum = [0, 1, 2, 3].map((j) => [...Array(nb * b).keys()].reduce((a, i) => a + S[i * d + j], 0) + (j === 0 ? 10 : 0));
  t.deepEqual(Array.from(r.acc.data as Float64Array), colSum);
  await s.release();
});

test('Scan and outer(): typed errors at build time', (t) => {
  const g = new O.GraphBuilder({ name: 'main' });
  const x = g.input('x', 'float64', [3, 2]);
  const body = new O.GraphBuilder({ name: 'body', prefix: 'b_' });
  body.output(body.input('b_x', 'float64', [2]), 'b_y');
  t.throws(() => O.scan(body, [x], [x]), { instanceOf: DataError, message: /body has 1 inputs; expected 2/ });
  t.throws(() => O.scan(body, [], []), { instanceOf: DataError, message: /needs at least one scan input/ });
  t.throws(() => g.outer(x), { instanceOf: ConfigError, message: /is a value of this graph/ });
  // A body using an outer value without outer() is rejected like any cross-graph use.
  const bad = new O.GraphBuilder({ name: 'bad', prefix: 'c_' });
  t.throws(() => O.add(bad.input('c_x', 'float64', [2]), x), { instanceOf: ConfigError, message: /belongs to another graph/ });
});

test('Reshape: 0 copies the input dim by default; allowZero makes it a real 0', async (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float64', ['k', 4]);
  const shape = g.input('shape', 'int64', [2]);
  const a = O.reshape(x, shape, { allowZero: true });
  const c = O.reshape(x, [0, 2, 2]);
  t.deepEqual(c.shape, ['k', 2, 2]);
  g.output(a, 'a');
  g.output(c, 'c');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  const empty = await s.run({ x: f64([], [0, 4]), shape: i64([4, 0], [2]) });
  t.deepEqual(empty.a.dims, [4, 0]);
  t.deepEqual(empty.c.dims, [0, 2, 2]);
  const one = await s.run({ x: f64([1, 2, 3, 4], [1, 4]), shape: i64([4, 1], [2]) });
  t.deepEqual(one.a.dims, [4, 1]);
  await s.release();
});
