import test from 'ava';
import { readFileSync } from 'node:fs';
import { blockAlphas, hillAlpha, matrixAlpha } from '../../src/allocation/alpha-hill.ts';
import { gramEigenvalues, symmetricEigenvalues } from '../../src/allocation/eigen.ts';
import { createRng } from '../../src/data/random.ts';
import { DataError } from '../../src/errors.ts';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/science/alpha.json', import.meta.url), 'utf8'));

/** Random orthogonal n×n matrix (Gram–Schmidt on a Gaussian matrix), row-major. */
function orthogonal(n: number, seed: number): Float64Array {
  const rng = createRng(seed);
  const q = Float64Array.from({ length: n * n }, () => rng.normal());
  for (let i = 0; i < n; i++) {
    for (let pass = 0; pass < 2; pass++) for (let j = 0; j < i; j++) {
      let d = 0;
      for (let k = 0; k < n; k++) d += q[i * n + k] * q[j * n + k];
      for (let k = 0; k < n; k++) q[i * n + k] -= d * q[j * n + k];
    }
    let nr = 0;
    for (let k = 0; k < n; k++) nr += q[i * n + k] ** 2;
    nr = Math.sqrt(nr);
    for (let k = 0; k < n; k++) q[i * n + k] /= nr;
  }
  return q;
}

/** W = U diag(σ) Vᵀ. */
function withSpectrum(sigma: number[], seed: number): Float64Array {
  const n = sigma.length;
  const U = orthogonal(n, seed), V = orthogonal(n, seed + 1);
  const W = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += U[i * n + k] * sigma[k] * V[j * n + k];
    W[i * n + j] = s;
  }
  return W;
}

test('symmetric eigenvalues of Q diag(λ) Qᵀ and of a hand 2×2', (t) => {
  t.deepEqual(Array.from(symmetricEigenvalues([2, 1, 1, 2], 2)).map((x) => Math.round(x * 1e12) / 1e12), [1, 3]);
  const lam = Array.from({ length: 40 }, (_, i) => (i % 7) - 3 + i * 0.37);
  const Q = orthogonal(40, 5);
  const A = new Float64Array(1600);
  for (let i = 0; i < 40; i++) for (let j = 0; j < 40; j++) for (let k = 0; k < 40; k++) A[i * 40 + j] += Q[k * 40 + i] * lam[k] * Q[k * 40 + j];
  const ev = symmetricEigenvalues(A, 40);
  const sorted = lam.slice().sort((a, b) => a - b);
  ev.forEach((x, i) => t.true(Math.abs(x - sorted[i]) < 1e-10, `${x} vs ${sorted[i]}`));
});

test('eigenvalues of WᵀW and α̂ match the numpy reference fixture', (t) => {
  for (const c of fixture.matrices) {
    const ev = gramEigenvalues(c.data, c.rows, c.cols);
    t.is(ev.length, Math.min(c.rows, c.cols));
    ev.forEach((x: number, i: number) => t.true(Math.abs(x - c.eigenvalues[i]) < 1e-9 * Math.max(1, c.eigenvalues[i]), `${c.rows}×${c.cols} eig ${i}`));
    const fit = matrixAlpha({ data: c.data, rows: c.rows, cols: c.cols });
    t.true(Math.abs(fit.alpha - c.alpha) < 1e-8, `${c.rows}×${c.cols}: ${fit.alpha} vs ${c.alpha}`);
    t.true(Math.abs(fit.xmin - c.xmin) < 1e-8);
  }
  for (const s of fixture.spectra) {
    const fit = hillAlpha(s.eigenvalues);
    t.true(Math.abs(fit.alpha - s.alpha) < 1e-12);
    t.true(Math.abs(fit.ksDistance - s.ksDistance) < 1e-12);
  }
});

test('α̂ exact value on a hand-sized geometric spectrum', (t) => {
  // λ = 0.5·2^k, k = 0..5; at x_min = 0.5: Σ ln(λ/x_min) = (0+1+…+5) ln 2 = 15 ln 2, n = 6
  // → α = 1 + 6/(15 ln 2) = 1 + 0.4/ln 2 (x_min = 0.5 has the smallest KS distance; fixture above).
  const fit = hillAlpha([16, 8, 4, 2, 1, 0.5]);
  t.is(fit.xmin, 0.5);
  t.is(fit.tail, 6);
  t.true(Math.abs(fit.alpha - (1 + 0.4 / Math.LN2)) < 1e-14);
});

test('α̂ recovers the exponent of a matrix built with a power-law spectrum', (t) => {
  for (const alpha of [2.5, 4]) {
    const n = 160;
    // Eigenvalues of WᵀW at the quantiles of a Pareto law p(λ) ∝ λ^−α, λ ≥ 1.
    const lam = Array.from({ length: n }, (_, i) => (1 - (i + 0.5) / n) ** (-1 / (alpha - 1)));
    const W = withSpectrum(lam.map(Math.sqrt), 100 + 10 * alpha);
    const fit = matrixAlpha({ data: W, rows: n, cols: n });
    t.log(`α = ${alpha}: α̂ = ${fit.alpha.toFixed(3)}, tail ${fit.tail}`);
    t.true(Math.abs(fit.alpha - alpha) < 0.05 * alpha, `α = ${alpha}: α̂ = ${fit.alpha} (x_min ${fit.xmin}, tail ${fit.tail})`);
  }
});

test('block α̂ is the mean over the block, bad spectra throw', (t) => {
  t.deepEqual(blockAlphas([{ layer: 1, alpha: 3 }, { layer: 0, alpha: 2 }, { layer: 1, alpha: 5 }]), [{ layer: 0, alpha: 2 }, { layer: 1, alpha: 4 }]);
  t.throws(() => hillAlpha([1]), { instanceOf: DataError });
  t.throws(() => hillAlpha([1, NaN, 3]), { instanceOf: DataError, message: /NaN/ });
  t.throws(() => gramEigenvalues([1, 2, 3], 2, 2), { instanceOf: DataError });
});
