import test from 'ava';
import { readFileSync } from 'node:fs';
import { expertsFromShares, numpySum, roundHalfEven, roundWithFixups } from '../../src/allocation/apportion.ts';
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
const fixture = JSON.parse(readFileSync(new URL('../fixtures/science/allocation.json', import.meta.url), 'utf8'));

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
      // The share rule always keeps ≥ 1 per layer; the authors' rule is checked separately below.
      alphaLoraExperts({ alphas: scores.map((x) => 1 + Math.abs(x)), total: T, beta, rounding: 'share' }),
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

test('AlphaLoRA authors\' rounding on random cases: Σ = T and ≥ 1 per layer, or a ConfigError — never a silent 0', (t) => {
  const rng = createRng(43);
  let thrown = 0;
  for (let c = 0; c < 300; c++) {
    const L = 1 + rng.int(48);
    const T = L + rng.int(6 * L + 1);
    const alphas = Array.from({ length: L }, () => 1.5 + 6 * rng.next());
    const beta = 0.5 + 3 * rng.next();
    try {
      const a = alphaLoraExperts({ alphas, total: T, beta });
      t.is(a.experts.reduce((x, y) => x + y, 0), T);
      t.true(a.experts.every((x) => Number.isInteger(x) && x >= 1), `${a.experts}`);
    } catch (e) {
      t.true(e instanceof ConfigError, String(e));
      t.regex((e as Error).message, /fewer|at least one expert/);
      thrown++;
    }
  }
  t.log(`authors' rule refused ${thrown}/300 random cases (a layer would get < 1 expert)`);
});

test('MoLA patterns reproduce the paper at 32 layers and scale to other L', (t) => {
  const groups = (s: number[]) => [0, 8, 16, 24].map((o) => s.slice(o, o + 8));
  t.deepEqual(groups(molaExperts({ pattern: '2-4-6-8', layers: 32 }).experts), [2, 4, 6, 8].map((x) => new Array(8).fill(x)));
  t.deepEqual(molaExperts({ pattern: '5-5-5-5', layers: 32 }).experts, new Array(32).fill(5));
  t.deepEqual(groups(molaExperts({ pattern: '8-6-4-2', layers: 32 }).experts), [8, 6, 4, 2].map((x) => new Array(8).fill(x)));
  t.deepEqual(molaExperts({ pattern: '2-4-6-8', layers: 12, total: 60 }).experts, [2, 2, 2, 4, 4, 4, 6, 6, 6, 8, 8, 8]);
});

test('AlphaLoRA: round(α^β/Σα^β·T) with ±1 fix-ups — authors\' rule (default) and the share rule', (t) => {
  // α = (1, 1, 2), β = 1, T = 10 → shares 2.5, 2.5, 5.
  // Share rule (LayerFlow's, formerly the default): Math.round → 3, 3, 5 = 11 → one off the layer most
  // over its share (layer 0) → 2, 3, 5.
  t.deepEqual(alphaLoraExperts({ alphas: [1, 1, 2], total: 10, beta: 1, rounding: 'share' }).experts, [2, 3, 5]);
  // Authors' rule (now the default, expected value changed for that reason): np.round is half-to-even
  // → 2, 2, 5 = 9 → +1 at argmin(α^β − s) = argmin(−1, −1, −3) = layer 2 → 2, 2, 6.
  t.deepEqual(alphaLoraExperts({ alphas: [1, 1, 2], total: 10, beta: 1 }).experts, [2, 2, 6]);
  t.deepEqual(roundWithFixups([0.2, 0.2, 9.6], 10), [1, 1, 8]);
});

test('AlphaLoRA authors\' rounding reproduces expert_number.py exactly (numpy reference fixture)', (t) => {
  let worst = 0, refused = 0;
  for (const c of fixture.alphalora) {
    if (c.minOne) {
      const a = alphaLoraExperts({ alphas: c.alphas, total: c.total, beta: c.beta, rounding: 'authors' });
      t.deepEqual(a.experts, c.experts, c.label);
      a.shares.forEach((x, l) => { worst = Math.max(worst, Math.abs(x - c.shares[l])); });
      // The share rule is still available and keeps Σ = T, ≥ 1.
      const s = alphaLoraExperts({ alphas: c.alphas, total: c.total, beta: c.beta, rounding: 'share' });
      t.is(s.experts.reduce((x, y) => x + y, 0), c.total);
    } else {
      // Their code would return a layer with 0 experts here; ours refuses with a ConfigError naming the layer.
      const zero = c.experts.findIndex((x: number) => x < 1);
      t.throws(() => alphaLoraExperts({ alphas: c.alphas, total: c.total, beta: c.beta }), { instanceOf: ConfigError, message: new RegExp(`layer ${zero} ${c.experts[zero]} experts.*rounding 'share'`) }, c.label);
      const s = alphaLoraExperts({ alphas: c.alphas, total: c.total, beta: c.beta, rounding: 'share' });
      t.true(s.experts.every((x) => x >= 1));
      refused++;
    }
  }
  t.true(refused >= 2 && refused < fixture.alphalora.length);
  t.log(`max |Δ share| vs numpy: ${worst.toExponential(2)}`);
  t.true(worst < 1e-12);
});

test('numpy helpers: pairwise np.sum and half-to-even np.round', (t) => {
  t.deepEqual([0.5, 1.5, 2.5, 3.5, -1.5, -2.5, 2.4999, 2.5001].map(roundHalfEven), [0, 2, 2, 4, -2, -2, 2, 3]);
  // Values printed by numpy 2.4 (np.sum), which differ from a left-to-right sum in the last bits.
  const h = Array.from({ length: 300 }, (_, i) => 1 / (i + 1));
  t.is(numpySum(h), 6.282663880299504);
  t.is(h.reduce((x, y) => x + y, 0), 6.282663880299502);
  const m = [...new Array(10).fill(0.1), ...Array.from({ length: 37 }, (_, i) => 1e-3 * i)];
  t.is(numpySum(m), 1.666);
  t.is(numpySum([1, 2, 3]), 6);
});

test('bad inputs throw typed errors', (t) => {
  t.throws(() => allocateExperts({ scores: [1, 2, 3], total: 2 }), { instanceOf: ConfigError, message: /T = 2 experts for L = 3 layers/ });
  t.throws(() => allocateExperts({ scores: [1, NaN], total: 4 }), { instanceOf: DataError, message: /layer 1 is NaN/ });
  t.throws(() => allocateExperts({ scores: [], total: 4 }), { instanceOf: DataError, message: /empty/ });
  t.throws(() => allocateExperts({ scores: [1e200, 1], total: 4 }), { instanceOf: DataError, message: /overflows/ });
  t.deepEqual(allocateExperts({ scores: [-2, -2, -2], total: 9 }).experts, [3, 3, 3]);
  t.throws(() => alphaLoraExperts({ alphas: [1, -2], total: 4 }), { instanceOf: ConfigError });
  // T smaller than the number of layers → ConfigError naming T, for every allocator.
  t.throws(() => alphaLoraExperts({ alphas: [2, 3, 4], total: 2 }), { instanceOf: ConfigError, message: /T = 2 experts for L = 3 layers/ });
  t.throws(() => alphaLoraExperts({ alphas: [2, 3, 4], total: 2, rounding: 'share' }), { instanceOf: ConfigError, message: /T = 2/ });
  t.throws(() => molaExperts({ pattern: '2-4-6-8', layers: 8, total: 7 }), { instanceOf: ConfigError, message: /T = 7 experts for L = 8 layers/ });
  t.throws(() => expertsFromShares([1, 1, 1], 2), { instanceOf: ConfigError, message: /T = 2/ });
  t.throws(() => alphaLoraExperts({ alphas: [2, 3], total: 4, rounding: 'nearest' as never }), { instanceOf: ConfigError, message: /rounding/ });
});
