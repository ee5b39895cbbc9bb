/**
 * The statistical check shared by the random-projection tests: for fixed correlated x, y (heavy-ish
 * tails) and `samples` independent projections S (one per seed), the mean of (Sx)·(Sy) must be within
 * 4 standard errors of x·y and the mean of ‖Sx‖² of ‖x‖², and both sample variances within
 * `varianceTolerance` of q·(‖x‖²‖y‖² + (x·y)² − 2 Σ x_j² y_j²) and q·(2‖x‖⁴ − 2 Σ x_j⁴), q the
 * probability that two coordinates collide (1/k for the dense matrix). A biased, mis-scaled or
 * mis-bucketed projection fails.
 */
import type { ExecutionContext } from 'ava';
import { createRng } from '../../src/data/random.ts';
import { dot } from '../../src/influence/vector.ts';

export function checkSketchMoments(t: ExecutionContext, a: { d: number; rngSeed: number; samples: number; q: number; varianceTolerance: number; project: (seed: number, v: Float64Array) => ArrayLike<number>; name: string }): void {
  const { d, samples: S, q, varianceTolerance: tol, name } = a;
  const r = createRng(a.rngSeed);
  const x = Float64Array.from({ length: d }, () => r.normal() * (1 + r.next()));
  const y = Float64Array.from(x, (v) => 0.6 * v + r.normal());
  const xy = dot(x, y), xx = dot(x, x), yy = dot(y, y);
  let x2y2 = 0, x4 = 0;
  for (let i = 0; i < d; i++) { x2y2 += x[i] * x[i] * y[i] * y[i]; x4 += x[i] ** 4; }
  const varXY = q * (xx * yy + xy * xy - 2 * x2y2), varXX = q * (2 * xx * xx - 2 * x4);
  const ips: number[] = [], norms: number[] = [];
  for (let seed = 0; seed < S; seed++) {
    const [px, py] = [a.project(seed, x), a.project(seed, y)];
    ips.push(dot(px, py));
    norms.push(dot(px, px));
  }
  const mean = (v: number[]) => v.reduce((s, w) => s + w, 0) / v.length;
  const variance = (v: number[]) => { const mu = mean(v); return v.reduce((s, w) => s + (w - mu) ** 2, 0) / (v.length - 1); };
  t.true(Math.abs(mean(ips) - xy) < 4 * Math.sqrt(varXY / S), `E[(${name}x)·(${name}y)] ${mean(ips)} vs x·y ${xy} (se ${Math.sqrt(varXY / S)})`);
  t.true(Math.abs(mean(norms) - xx) < 4 * Math.sqrt(varXX / S), `E‖${name}x‖² ${mean(norms)} vs ‖x‖² ${xx}`);
  t.true(Math.abs(variance(ips) / varXY - 1) < tol, `Var (${name}x)·(${name}y): ${variance(ips)} vs ${varXY}`);
  t.true(Math.abs(variance(norms) / varXX - 1) < tol, `Var ‖${name}x‖²: ${variance(norms)} vs ${varXX}`);
}
