/** AdamW and the cosine-with-warmup schedule against hand-derived values. */
import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import { adamwStep } from '../../src/train/adamw.ts';
import { cosineWithWarmup, warmupStepsOf } from '../../src/train/schedule.ts';
import { createRng } from '../../src/data/random.ts';

const close = (t: { true(c: boolean, m?: string): void }, a: number, b: number, tol: number, what: string) =>
  t.true(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('AdamW: one and two steps by hand (decoupled decay, bias correction)', (t) => {
  // θ = [1, −2, 3], lr 0.1, β1 0.9, β2 0.999, ε 1e-8, wd 0.01.
  const hp = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const z = () => new Float32Array(3);
  const s1 = adamwStep({ ...hp, param: Float32Array.from([1, -2, 3]), grad: [0.5, 0, -4], m: z(), v: z(), t: 1 });
  // Step 1: m = 0.1 g, v = 0.001 g²; m̂ = g, v̂ = g² → update = lr · g / (|g| + ε) = ±0.1 (g ≠ 0).
  // θ0: 1 · (1 − 0.001) − 0.1 · 0.5/(0.5 + 1e-8) = 0.999 − 0.099999998 = 0.899000002
  // θ1: g = 0 → only the decay: −2 · 0.999 = −1.998
  // θ2: 3 · 0.999 + 0.1 · 4/(4 + 1e-8) = 2.997 + 0.09999999975 = 3.09699999975
  close(t, s1.param[0], 0.899000002, 1e-7, 'θ0');
  close(t, s1.param[1], -1.998, 1e-7, 'θ1');
  close(t, s1.param[2], 3.097, 2e-7, 'θ2');
  close(t, s1.m[0], 0.05, 1e-9, 'm0'); close(t, s1.m[2], -0.4, 1e-8, 'm2');
  close(t, s1.v[0], 0.00025, 3e-11, 'v0'); close(t, s1.v[2], 0.016, 1e-9, 'v2');
  t.is(s1.m[1], 0); t.is(s1.v[1], 0);

  // Step 2 for θ0 with g = −0.25:
  //   decay: 0.899000002 · 0.999 = 0.898101002
  //   m = 0.9 · 0.05 + 0.1 · (−0.25) = 0.02;   v = 0.999 · 0.00025 + 0.001 · 0.0625 = 0.00031225
  //   m̂ = 0.02 / (1 − 0.81) = 0.10526316;   v̂ = 0.00031225 / (1 − 0.998001) = 0.15620310;  √v̂ = 0.39522538
  //   update = 0.1 · 0.10526316 / 0.39522538 = 0.02663371 → θ0 = 0.87146729
  const s2 = adamwStep({ ...hp, param: s1.param, grad: [-0.25, 0, 0], m: s1.m, v: s1.v, t: 2 });
  close(t, s2.m[0], 0.02, 1e-8, 'm0 step 2');
  close(t, s2.v[0], 0.00031225, 1e-10, 'v0 step 2');
  close(t, s2.param[0], 0.87146729, 2e-7, 'θ0 step 2');
  // θ2 with g = 0: m = −0.36, v = 0.015984; m̂ = −0.36/0.19 = −1.8947368; v̂ = 0.015984/0.001999 = 7.9959980, √ = 2.8277196
  //   decay 3.097 · 0.999 = 3.093903; update = 0.1 · (−1.8947368)/2.8277196 = −0.0670057 → θ2 = 3.1609087
  close(t, s2.param[2], 3.1609087, 3e-7, 'θ2 step 2');
  // Inputs are not modified (pure).
  t.deepEqual([...s1.m], [0.05000000074505806, 0, -0.4000000059604645]);
});

test('AdamW: no decay with weightDecay 0; bad arguments', (t) => {
  const s = adamwStep({ lr: 0.01, weightDecay: 0, param: Float32Array.from([2]), grad: [0], m: new Float32Array(1), v: new Float32Array(1), t: 1 });
  t.is(s.param[0], 2);
  const base = { lr: 0.01, param: new Float32Array(2), grad: [0, 0], m: new Float32Array(2), v: new Float32Array(2), t: 1 };
  t.throws(() => adamwStep({ ...base, grad: [0] }), { instanceOf: DataError, message: /2 elements/ });
  t.throws(() => adamwStep({ ...base, t: 0 }), { instanceOf: ConfigError });
  t.throws(() => adamwStep({ ...base, beta2: 1 }), { instanceOf: ConfigError });
});

test('cosine schedule with linear warmup at key steps', (t) => {
  const s = { peakLr: 1, totalSteps: 100, warmupRatio: 0.1 };
  t.is(warmupStepsOf(s), 10);
  t.is(warmupStepsOf({ peakLr: 1, totalSteps: 15 }), 2, 'default ratio 0.1, ceil(1.5) = 2');
  t.is(cosineWithWarmup(s, 0), 0);
  t.is(cosineWithWarmup(s, 5), 0.5);
  t.is(cosineWithWarmup(s, 10), 1);
  close(t, cosineWithWarmup(s, 40), 0.75, 1e-12, 'p = 1/3: ½(1 + cos π/3)');
  close(t, cosineWithWarmup(s, 55), 0.5, 1e-12, 'midpoint');
  close(t, cosineWithWarmup(s, 70), 0.25, 1e-12, 'p = 2/3');
  close(t, cosineWithWarmup(s, 100), 0, 1e-12, 'end');
  t.is(cosineWithWarmup(s, 150), 0, 'past the end stays at the floor');
  close(t, cosineWithWarmup({ ...s, peakLr: 2e-3, minLr: 2e-4 }, 55), 2e-4 + 0.5 * 1.8e-3, 1e-15, 'floor');
  close(t, cosineWithWarmup({ peakLr: 1, totalSteps: 10, warmupRatio: 0 }, 0), 1, 0, 'no warmup starts at peak');
  t.throws(() => cosineWithWarmup({ peakLr: 1, totalSteps: 0 }, 0), { instanceOf: ConfigError });
  t.throws(() => cosineWithWarmup({ peakLr: 1, totalSteps: 10, minLr: 2 }, 0), { instanceOf: ConfigError });
});

test('the RNG continues from a saved state', (t) => {
  const a = createRng(42), ref = createRng(42);
  const xs = [a.next(), a.next()];
  t.deepEqual(xs, [ref.next(), ref.next()]);
  const b = createRng(a.state);
  t.deepEqual([a.next(), a.next()], [b.next(), b.next()]);
  t.deepEqual(createRng(1).permutation(10).sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});
