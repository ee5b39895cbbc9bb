/** Whole-graph gradient checks: MLP + cross-entropy, a Llama-style block, MoE routing, per-example LoRA. */
import test from 'ava';
import { grad } from '../../src/autodiff/index.ts';
import * as O from '../../src/onnx/index.ts';
import { createSession, f64, i64 } from '../../src/runtime/index.ts';
import { fdCheck, param, uniform } from './_fd.ts';

// float64 is the tight check; float32 (the training dtype) confirms every kernel exists, with h = 1e-2.
for (const dt of ['float64', 'float32'] as const) {
  test(`MLP (gemm, tanh-GELU) with cross-entropy loss (${dt})`, async (t) => {
    const g = new O.GraphBuilder();
    const x = param(g, 'x', [4, 5], dt), w1 = param(g, 'w1', [5, 6], dt), b1 = param(g, 'b1', [6], dt), w2 = param(g, 'w2', [6, 3], dt), b2 = param(g, 'b2', [3], dt);
    const labels = g.input('labels', 'int64', [4]);
    const h = O.gemm(x.value, w1.value, b1.value);
    const inner = O.mul(O.add(h, O.mul(O.pow(h, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    const gelu = O.mul(O.mul(h, 0.5), O.add(O.tanh(inner), 1));
    const logits = O.add(O.matMul(gelu, w2.value), b2.value);
    const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(labels, [-1]), 1);
    const loss = O.neg(O.reduceMean(picked, undefined, false));
    await fdCheck(t, { g, y: loss, params: [x, w1, b1, w2, b2], feeds: { labels: i64([0, 2, 1, 2], [4]) } });
  });

  test(`Llama-style block: RMSNorm, 2-head causal attention, residual, SwiGLU (${dt})`, async (t) => {
    const g = new O.GraphBuilder();
    const [B, T, D, H] = [2, 4, 8, 2], dh = D / H;
    const x = param(g, 'x', [B, T, D], dt), gamma = param(g, 'gamma', [D], dt, 0.5, 1.5);
    const [wq, wk, wv, wo] = ['wq', 'wk', 'wv', 'wo'].map((n) => param(g, n, [D, D], dt, -0.5, 0.5));
    const w1 = param(g, 'w1', [D, 6], dt, -0.5, 0.5), w3 = param(g, 'w3', [D, 6], dt, -0.5, 0.5), w2 = param(g, 'w2', [6, D], dt, -0.5, 0.5);
    const rms = O.mul(O.div(x.value, O.sqrt(O.add(O.reduceMean(O.mul(x.value, x.value), [-1]), 1e-5))), gamma.value);
    const heads = (w: O.Value) => O.transpose(O.reshape(O.matMul(rms, w), [B, T, H, dh]), [0, 2, 1, 3]);
    const mask = g.constant(Array.from({ length: T * T }, (_, k) => (k % T > Math.floor(k / T) ? -1e4 : 0)), dt, [T, T]);
    const scores = O.add(O.div(O.matMul(heads(wq.value), O.transposeLast2(heads(wk.value))), Math.sqrt(dh)), mask);
    const ctx = O.matMul(O.softmax(scores, -1), heads(wv.value));
    const attn = O.add(O.matMul(O.reshape(O.transpose(ctx, [0, 2, 1, 3]), [B, T, D]), wo.value), x.value);
    const a = O.matMul(attn, w1.value);
    const y = O.add(O.matMul(O.mul(O.mul(a, O.sigmoid(a)), O.matMul(attn, w3.value)), w2.value), attn);
    await fdCheck(t, { g, y, params: [x, gamma, wq, wk, wv, wo, w1, w3, w2] });
  });

  test(`MoE routing: top-2 of 3 experts, softmax gates, gatherElements of expert outputs (${dt})`, async (t) => {
    const g = new O.GraphBuilder();
    const [T, D, E, K, F] = [5, 4, 3, 2, 3];
    const x = param(g, 'x', [T, D], dt), wr = param(g, 'wr', [D, E], dt, -2, 2), we = param(g, 'we', [E, D, F], dt);
    const [top, idx] = O.topK(O.matMul(x.value, wr.value), K);
    const gates = O.softmax(top, -1);
    const all = O.transpose(O.matMul(O.unsqueeze(x.value, [0]), we.value), [1, 0, 2]); // [T, E, F]
    const chosen = O.gatherElements(all, O.expand(O.unsqueeze(idx, [-1]), [T, K, F]), 1); // [T, K, F]
    const y = O.reduceSum(O.mul(chosen, O.unsqueeze(gates, [-1])), [1], false);
    await fdCheck(t, { g, y, params: [x, wr, we] });
  });
}

test('per-example LoRA gradients from a batch-expanded copy of A', async (t) => {
  const [B, T, IN, OUT, R] = [3, 2, 4, 5, 2];
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float64', [B, T, IN]);
  const A = g.input('A', 'float64', [R, IN]);
  const W = g.initializer('W', Float64Array.from(uniform(IN * OUT, -1, 1, 3)), [IN, OUT]);
  const Bm = g.initializer('Bm', Float64Array.from(uniform(OUT * R, -1, 1, 4)), [OUT, R]);
  const aB = O.expand(A, [B, R, IN]); // one copy of A per example
  const h = O.matMul(x, O.transposeLast2(aB)); // [B, T, R], batched
  const out = O.add(O.matMul(x, W), O.matMul(h, O.transpose(Bm)));
  const Rw = g.constant(uniform(B * T * OUT, -1, 1, 5), 'float64', [B, T, OUT]);
  const perEx = O.reduceSum(O.mul(out, Rw), [1, 2], false); // [B]
  const loss = O.reduceSum(perEx, [0], false);
  const [gPer, gA] = grad({ loss, wrt: [aB, A] });
  t.deepEqual(gPer.shape, [B, R, IN]);
  g.output(perEx, 'perEx'); g.output(gPer, 'gPer'); g.output(gA, 'gA');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  const xs = uniform(B * T * IN, -1, 1, 6), a0 = uniform(R * IN, -1, 1, 8);
  const runA = (a: number[]) => s.run({ x: f64(xs, [B, T, IN]), A: f64(a, [R, IN]) });
  const base = await runA(a0);
  const gp = base.gPer.data as Float64Array, ga = base.gA.data as Float64Array;
  const h0 = 1e-6;
  for (let i = 0; i < R * IN; i++) {
    const up = [...a0], dn = [...a0];
    up[i] += h0; dn[i] -= h0;
    const [p, m] = [(await runA(up)).perEx.data as Float64Array, (await runA(dn)).perEx.data as Float64Array];
    let sum = 0;
    for (let b = 0; b < B; b++) {
      const num = (p[b] - m[b]) / (2 * h0); // d loss_b / d A[i]: example b alone
      t.true(Math.abs(gp[b * R * IN + i] - num) < 1e-7 * (1 + Math.abs(num)), `example ${b}, A[${i}]: ${gp[b * R * IN + i]} vs ${num}`);
      sum += gp[b * R * IN + i];
    }
    t.true(Math.abs(sum - ga[i]) < 1e-10 * (1 + Math.abs(ga[i])), 'per-example gradients sum to the batch gradient');
  }
  // Examples differ, so the per-example gradients must too (guards against a broadcast copy).
  t.true(Math.abs(gp[0] - gp[R * IN]) > 1e-6);
});

test('grad validates its arguments', (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float64', [2]);
  const ids = g.input('ids', 'int64', [2]);
  t.throws(() => grad({ loss: O.mul(x, x), wrt: [x] }), { message: /pass a scalar or give a seed/ });
  t.throws(() => grad({ loss: O.reduceSum(x), wrt: [ids] }), { message: /dtype int64/ });
  // A value that does not reach the loss gets a zero gradient.
  const [gz] = grad({ loss: O.reduceSum(O.mul(x, 2)), wrt: [g.input('unused', 'float64', [3])] });
  t.deepEqual(gz.shape, [3]);
});

test('seeded VJP of a non-scalar output, w.r.t. an intermediate value', async (t) => {
  const g = new O.GraphBuilder();
  const x = g.input('x', 'float64', [3]);
  const seed = g.input('seed', 'float64', [3]);
  const u = O.mul(x, x); // intermediate
  const y = O.mul(O.exp(u), 2); // y = 2 exp(x^2)
  const [gu, gx] = grad({ loss: y, seed, wrt: [u, x] });
  g.output(gu, 'gu'); g.output(gx, 'gx');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  const xs = [0.3, -0.7, 1.1], ss = [1, -2, 0.5];
  const r = await s.run({ x: f64(xs, [3]), seed: f64(ss, [3]) });
  // by hand: dy/du = 2 exp(u); dy/dx = 4 x exp(x^2)
  xs.forEach((v, i) => {
    t.true(Math.abs((r.gu.data[i] as number) - ss[i] * 2 * Math.exp(v * v)) < 1e-12);
    t.true(Math.abs((r.gx.data[i] as number) - ss[i] * 4 * v * Math.exp(v * v)) < 1e-12);
  });
});
