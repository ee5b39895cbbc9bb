import test from 'ava';
import { expertsFromShares, roundWithFixups } from '../../src/allocation/apportion.ts';
import { alphaLoraExperts } from '../../src/allocation/alphalora.ts';
import { allocateExperts } from '../../src/allocation/experts.ts';
import { molaExperts } from '../../src/allocation/mola.ts';
import { createRng } from '../../src/data/random.ts';
import { ConfigError, DataError } from '../../src/errors.ts';

/**
 * The paper gives f for the first five of 32 layers (T = 160, β = 3): 1.12, 5.21, 4.55, 5.40,
 * 4.84 → s = 2, 6, 6, 6, 6. The other 27 shares are our construction, chosen so Σ f = T − L = 128
 * and the largest-remainder step is decisive: 26 layers at 4.01 and one at 2.62.
 * Σ floor(f) + L = 125 + ... leaves 3 spare experts, which go to remainders .84, .62, .55 — so
 * 4.55 and 4.84 are rounded up while 5.40 (.40), 5.21 and 1.12 are not.
 */
const paperF = [1.12, 5.21, 4.55, 5.40, 4.84];
const f = [...paperF, ...new Array(26).fill(4.01), 2.62];

test('worked example: the f → s step directly', (t) => {
  t.is(f.length, 32);
  t.true(Math.abs(f.reduce((a, b) => a + b, 0) - 128) < 1e-9);
  const s = expertsFromShares(f, 160);
  t.deepEqual(s.slice(0, 5), [2, 6, 6, 6, 6]);
  t.deepEqual(s.slice(5, 31), new Array(26).fill(5));
  t.is(s[31], 4);
  t.is(s.reduce((a, b) => a + b, 0), 160);
});

test('worked example: the whole path from layer scores (S_l = f_l^(1/β))', (t) => {
  const scores = f.map((x) => x ** (1 / 3));
  const res = allocateExperts({ scores, total: 160, beta: 3 });
  res.shares.forEach((x, l) => t.true(Math.abs(x - f[l]) < 1e-9, `f_${l} = ${x}`));
  t.deepEqual(res.experts.slice(0, 5), [2, 6, 6, 6, 6]);
  t.is(res.total, 160);
  t.is(res.method, 'layerif');
});

test('every allocator: totals equal T and every layer has ≥ 1 expert (random cases)', (t) => {
  const rng = createRng(42);
  for (let c = 0; c < 300; c++) {
    const L = 1 + rng.int(48);
    const T = L + rng.int(6 * L + 1);
    const scores = Array.from({ length: L }, () => (rng.next() < 0.2 ? 0 : rng.normal() * 10 ** rng.int(4)));
    if (scores.every((x) => x === scores[0])) scores[0] += 1;
    const beta = 0.5 + 3 * rng.next();
    const allocs = [
      allocateExperts({ scores, total: T, beta }),
      scores.some((x) => x > 0) ? allocateExperts({ scores, total: T, beta, nonNegative: 'clip' }) : undefined,
      alphaLoraExperts({ alphas: scores.map((x) => 1 + Math.abs(x)), total: T, beta }),
      L >= 4 ? molaExperts({ pattern: (['2-4-6-8', '5-5-5-5', '8-6-4-2'] as const)[rng.int(3)], layers: L, total: T }) : undefined,
    ];
    for (const a of allocs) {
      if (!a) continue;
      t.is(a.experts.length, L);
      t.is(a.experts.reduce((x, y) => x + y, 0), T, `${a.method} L=${L} T=${T}`);
      t.is(a.total, T);
      t.true(a.experts.every((x) => Number.isInteger(x) && x >= 1), `${a.method}: ${a.experts}`);
    }
  }
});

test('MoLA patterns reproduce the paper at 32 layers and scale to other L', (t) => {
  const groups = (s: number[]) => [0, 8, 16, 24].map((o) => s.slice(o, o + 8));
  t.deepEqual(groups(molaExperts({ pattern: '2-4-6-8', layers: 32 }).experts), [2, 4, 6, 8].map((x) => new Array(8).fill(x)));
  t.deepEqual(molaExperts({ pattern: '5-5-5-5', layers: 32 }).experts, new Array(32).fill(5));
  t.deepEqual(groups(molaExperts({ pattern: '8-6-4-2', layers: 32 }).experts), [8, 6, 4, 2].map((x) => new Array(8).fill(x)));
  t.deepEqual(molaExperts({ pattern: '2-4-6-8', layers: 12, total: 60 }).experts, [2, 2, 2, 4, 4, 4, 6, 6, 6, 8, 8, 8]);
});

test('AlphaLoRA: round(α^β/Σα^β·T) with ±1 fix-ups', (t) => {
  // α = (1, 1, 2), β = 1, T = 10 → raw 2.5, 2.5, 5 → round 3, 3, 5 = 11 → one off the most over-allocated (layer 0).
  t.deepEqual(alphaLoraExperts({ alphas: [1, 1, 2], total: 10, beta: 1 }).experts, [2, 3, 5]);
  t.deepEqual(roundWithFixups([0.2, 0.2, 9.6], 10), [1, 1, 8]);
});

test('bad inputs throw typed errors', (t) => {
  t.throws(() => allocateExperts({ scores: [1, 2, 3], total: 2 }), { instanceOf: ConfigError, message: /T = 2 experts for L = 3 layers/ });
  t.throws(() => allocateExperts({ scores: [1, NaN], total: 4 }), { instanceOf: DataError, message: /layer 1 is NaN/ });
  t.throws(() => allocateExperts({ scores: [], total: 4 }), { instanceOf: DataError, message: /empty/ });
  t.throws(() => allocateExperts({ scores: [1e200, 1], total: 4 }), { instanceOf: DataError, message: /overflows/ });
  t.deepEqual(allocateExperts({ scores: [-2, -2, -2], total: 9 }).experts, [3, 3, 3]);
  t.throws(() => alphaLoraExperts({ alphas: [1, -2], total: 4 }), { instanceOf: ConfigError });
  t.throws(() => molaExperts({ pattern: '2-4-6-8', layers: 8, total: 7 }), { instanceOf: ConfigError });
});
