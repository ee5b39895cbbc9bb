/**
 * The fused, chunked LM-head cross-entropy (loss.ts headCrossEntropy: a Scan over chunks of target
 * positions making each chunk's nll and its row gradients at once) against the plain path (logits,
 * log-softmax, pick; gradients by the autodiff), in float64: per-sample losses, token counts and the
 * gradient w.r.t. the hidden states under per-sample weights, for K = 45 targets (2 chunks of 23, one
 * padded position), a sample with 3 targets (not contiguous) and one with none.
 */
import test from 'ava';
import * as O from '../../src/onnx/index.ts';
import { grad } from '../../src/autodiff/index.ts';
import { causalLmLossAtTargets, HEAD_CHUNK_TARGETS } from '../../src/models/loss.ts';
import { createSession, i64 } from '../../src/runtime/index.ts';
import { uniform } from '../autodiff/_fd.ts';

const [B, T, D, V] = [3, 50, 5, 17];

async function run(fused: boolean, labels: number[]) {
  const g = new O.GraphBuilder({ name: fused ? 'fused' : 'plain' });
  const h = g.input('h', 'float64', ['batch', 'seq', D]);
  const W = g.input('W', 'float64', [V, D]);
  const lab = g.input('labels', 'int64', ['batch', 'seq']);
  const r = g.input('r', 'float64', ['batch']);
  const { perSample, tokens } = causalLmLossAtTargets(h, lab, fused ? { weight: W } : (x) => O.matMul(x, O.transposeLast2(W)));
  const [gh] = grad({ loss: O.reduceSum(O.mul(perSample, r), undefined, false), wrt: [h] });
  g.output(perSample, 'loss');
  g.output(tokens, 'tokens');
  g.output(gh, 'gh');
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });
  try {
    const out = await s.run({
      h: { data: Float64Array.from(uniform(B * T * D, -2, 2, 3)), dims: [B, T, D] },
      W: { data: Float64Array.from(uniform(V * D, -1, 1, 4)), dims: [V, D] },
      labels: i64(labels, [B, T]),
      r: { data: Float64Array.from([0.7, -1.3, 2.1]), dims: [B] },
    });
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data as Float64Array)]));
  } finally { await s.release(); }
}

test('fused chunked head = plain head: losses, token counts and d/dh under per-sample weights', async (t) => {
  const labels: number[] = [];
  for (let b = 0; b < B; b++) for (let i = 0; i < T; i++) {
    const target = b === 0 ? i >= T - 45 : b === 1 ? i >= T - 4 && i !== T - 2 : false; // 45 / 3 / 0 targets
    labels.push(target ? (b * 7 + i * 3) % V : -100);
  }
  t.true(45 > HEAD_CHUNK_TARGETS, 'K spans two chunks');
  const [plain, fused] = [await run(false, labels), await run(true, labels)];
  t.deepEqual(fused.tokens, plain.tokens);
  t.deepEqual(plain.tokens, [45, 3, 0]);
  const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  t.true(maxDiff(fused.loss, plain.loss) < 1e-12, `loss ${fused.loss} vs ${plain.loss}`);
  const scale = Math.max(...plain.gh.map(Math.abs));
  t.true(scale > 0);
  t.true(maxDiff(fused.gh, plain.gh) / scale < 1e-12, `gh max diff ${maxDiff(fused.gh, plain.gh)}`);
});
