import test from 'ava';
import { readFileSync } from 'node:fs';
import { LEGACY_HILL_OPTIONS, blockAlphas, hillAlpha, matrixAlpha, type HillOptions } from '../../src/allocation/alpha-hill.ts';
import { gramEigenvalues, symmetricEigenvalues } from '../../src/allocation/eigen.ts';
import { createRng } from '../../src/data/random.ts';
import { ConfigError, DataError } from '../../src/errors.ts';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/science/alpha.json', import.meta.url), 'utf8'));

/**
 * Fixture variants (test/fixtures/scripts/science_alpha.py, a numpy re-implementation of the
 * authors' net_esd_estimator / fix_finger) → our options. `xmin_peak` with filter_zeros=False is
 * the authors' default path and ours; `scan_filter` is LayerFlow's behaviour before the alignment.
 */
const VARIANTS: Record<string, HillOptions | undefined> = {
  xmin_peak: undefined,
  xmin_peak_filter: { filterZeros: true },
  xmin_mid: { fixFingers: 'xmin_mid' },
  scan: { fixFingers: 'scan' },
  scan_filter: LEGACY_HILL_OPTIONS,
};

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

test('eigenvalues of WᵀW match numpy, α̂ matches the authors\' esd code (all fix_fingers / filter_zeros variants)', (t) => {
  t.deepEqual(Object.keys(fixture.variants).sort(), Object.keys(VARIANTS).sort());
  let worst = 0;
  for (const c of fixture.matrices) {
    const ev = gramEigenvalues(c.data, c.rows, c.cols);
    t.is(ev.length, Math.min(c.rows, c.cols));
    ev.forEach((x: number, i: number) => t.true(Math.abs(x - c.eigenvalues[i]) < 1e-9 * Math.max(1, c.eigenvalues[i]), `${c.label} eig ${i}`));
    for (const [name, options] of Object.entries(VARIANTS)) {
      const fit = matrixAlpha({ data: c.data, rows: c.rows, cols: c.cols }, options);
      const ref = c.fits[name];
      worst = Math.max(worst, Math.abs(fit.alpha - ref.alpha) / ref.alpha);
      t.true(Math.abs(fit.alpha - ref.alpha) < 1e-9 * ref.alpha, `${c.label} ${name}: ${fit.alpha} vs ${ref.alpha}`);
      t.is(fit.tail, ref.tail, `${c.label} ${name}: tail`);
      t.true(Math.abs(fit.xmin - ref.xmin) <= 1e-9 * ref.xmin, `${c.label} ${name}: x_min ${fit.xmin} vs ${ref.xmin}`);
    }
  }
  // Same fits straight from the eigenvalues (matrices' and the synthetic spectra's).
  for (const s of [...fixture.matrices, ...fixture.spectra]) {
    for (const [name, options] of Object.entries(VARIANTS)) {
      const fit = hillAlpha(s.eigenvalues, options);
      const ref = s.fits[name];
      worst = Math.max(worst, Math.abs(fit.alpha - ref.alpha) / ref.alpha);
      t.true(Math.abs(fit.alpha - ref.alpha) < 1e-12 * ref.alpha, `${s.label} ${name}: ${fit.alpha} vs ${ref.alpha}`);
      t.true(Math.abs(fit.ksDistance - ref.ksDistance) < 1e-12, `${s.label} ${name}: D`);
      t.is(fit.xmin, ref.xmin, `${s.label} ${name}: x_min`);
      t.is(fit.tail, ref.tail, `${s.label} ${name}: tail`);
    }
  }
  t.log(`max relative |Δα̂| vs the reference: ${worst.toExponential(2)}`);
});

test('defaults are the authors\' path (xmin_peak, no zero filter); the old behaviour is LEGACY_HILL_OPTIONS', (t) => {
  for (const s of fixture.spectra) {
    t.deepEqual(hillAlpha(s.eigenvalues), hillAlpha(s.eigenvalues, { fixFingers: 'xmin_peak', filterZeros: false }));
    t.true(Math.abs(hillAlpha(s.eigenvalues, LEGACY_HILL_OPTIONS).alpha - s.fits.scan_filter.alpha) < 1e-12 * s.fits.scan_filter.alpha);
  }
  // The fixture has spectra where the choices disagree, so the option matters.
  t.true(fixture.matrices.some((c: { fits: Record<string, { alpha: number }> }) => Math.abs(c.fits.xmin_peak.alpha - c.fits.scan_filter.alpha) > 0.1));
});

test('xmin_peak reproduces the authors\' log10 quirk: candidates below log10(0.95·xmin2) are skipped', (t) => {
  // The authors' lower bound is log10(0.95·xmin2) (a log10 value compared with λ), so it only
  // skips anything when xmin2 > 1/0.95. The reference records the first and last candidate it scanned.
  let skipped = 0;
  for (const s of [...fixture.matrices, ...fixture.spectra]) {
    const ref = s.fits.xmin_peak;
    const ev = Float64Array.from(s.eigenvalues).sort();
    const lower = Math.log10(0.95 * ref.xmin2);
    const [first, last] = ref.candidates;
    if (first > 0) {
      skipped++;
      t.true(ev[first - 1] < lower && ev[first] >= lower, `${s.label}: skip boundary`);
    }
    t.true(last === ev.length - 2 || ev[last + 1] > 1.5 * ref.xmin2, `${s.label}: upper bound`);
    const fit = hillAlpha(s.eigenvalues);
    t.true(fit.xmin >= ev[first] && fit.xmin <= ev[last], `${s.label}: x_min inside the scanned window`);
  }
  t.true(skipped >= 3, `the log10 skip is exercised in ${skipped} fixture cases`);
});

test('α̂ exact value on a hand-sized geometric spectrum', (t) => {
  // λ = 0.5·2^k, k = 0..5; at x_min = 0.5: Σ ln(λ/x_min) = (0+1+…+5) ln 2 = 15 ln 2, n = 6
  // → α = 1 + 6/(15 ln 2) = 1 + 0.4/ln 2. Legacy scan: x_min = 0.5 has the smallest KS distance;
  // xmin_peak: every histogram bin holds ≤ 1 value, the peak is the first bin, xmin2 = 0.5, and the
  // window [log10(0.475), 0.75] holds only λ = 0.5 — same fit either way.
  for (const options of [undefined, LEGACY_HILL_OPTIONS]) {
    const fit = hillAlpha([16, 8, 4, 2, 1, 0.5], options);
    t.is(fit.xmin, 0.5);
    t.is(fit.tail, 6);
    t.true(Math.abs(fit.alpha - (1 + 0.4 / Math.LN2)) < 1e-14);
  }
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
  // The authors' xmin_peak takes log10 of every eigenvalue (their code fails on a zero one): a clear error instead.
  t.throws(() => hillAlpha([0, 1, 2, 4, 8]), { instanceOf: DataError, message: /filterZeros: true/ });
  t.notThrows(() => hillAlpha([0, 1, 2, 4, 8], { filterZeros: true }));
  t.notThrows(() => hillAlpha([0, 1, 2, 4, 8], { fixFingers: 'xmin_mid' }));
  t.throws(() => hillAlpha([1, 2, 3], { fixFingers: 'peak' as never }), { instanceOf: ConfigError, message: /fixFingers/ });
  t.throws(() => hillAlpha([1, 2, 3], { bins: 0 }), { instanceOf: ConfigError, message: /bins/ });
});
