/**
 * Central finite-difference check of the autodiff pass. The loss is L = sum(y * R) with R a fixed
 * random tensor, so dL/dx is a generic VJP of y. Numeric derivatives come from running the forward
 * graph alone in onnxruntime at x ± h, independent of any VJP code.
 */
import type { ExecutionContext } from 'ava';
import { grad } from '../../src/autodiff/index.ts';
import { GraphBuilder, mul, numel, reduceSum, type Value } from '../../src/onnx/index.ts';
import { createSession, type HostTensor } from '../../src/runtime/index.ts';

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
/** n uniform numbers in [lo, hi). */
export function uniform(n: number, lo = -1, hi = 1, seed = 1): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** A differentiated graph input; `dims` is required when its declared shape is symbolic. */
export interface Param { value: Value; data: number[]; dims?: number[] }
export interface FdOptions {
  g: GraphBuilder;
  y: Value;
  params: Param[];
  /** Shape of the random weights R when y's shape is symbolic (R broadcasts against y). */
  yShape?: number[];
  /** Non-differentiated feeds (indices, masks). */
  feeds?: Record<string, HostTensor>;
  h?: number;
  rtol?: number;
  atol?: number;
  seed?: number;
}

const arr = (dtype: string, values: number[]) => (dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values));

/** Returns the worst |analytic - numeric| / (atol + rtol |numeric|) (passes when <= 1). */
export async function fdCheck(t: ExecutionContext, o: FdOptions): Promise<number> {
  const { g, y } = o;
  const f64 = y.dtype === 'float64';
  const h = o.h ?? (f64 ? 1e-6 : 1e-2);
  const rtol = o.rtol ?? (f64 ? 1e-6 : 2e-2);
  const atol = o.atol ?? (f64 ? 1e-8 : 2e-3);
  const rShape = o.yShape ?? (y.shape as number[]);
  const n = numel(rShape);
  if (n === null) throw new Error('fdCheck: y has a symbolic shape; pass yShape');
  const R = g.constant(uniform(n, -1, 1, o.seed ?? 7), y.dtype, rShape);
  const loss = reduceSum(mul(y, R), undefined, false);
  g.output(loss, 'loss');
  const grads = grad({ loss, wrt: o.params.map((p) => p.value) });
  grads.forEach((gv, i) => g.output(gv, `grad_${i}`));
  const s = await createSession({ model: g.toModel(), device: 'cpu:0', threads: 1 });

  const feeds = (over?: { k: number; i: number; d: number }): Record<string, HostTensor> => {
    const f: Record<string, HostTensor> = { ...(o.feeds ?? {}) };
    o.params.forEach((p, k) => {
      const data = arr(p.value.dtype, p.data);
      if (over && over.k === k) data[over.i] += over.d;
      f[p.value.name] = { data, dims: p.dims ?? (p.value.shape as number[]) };
    });
    return f;
  };
  const out = await s.run(feeds());
  let worst = 0;
  const failures: string[] = [];
  for (let k = 0; k < o.params.length; k++) {
    const ga = out[`grad_${k}`];
    t.deepEqual(ga.dims, o.params[k].dims ?? o.params[k].value.shape, `gradient shape of ${o.params[k].value.name}`);
    for (let i = 0; i < o.params[k].data.length; i++) {
      const lp = (await s.run(feeds({ k, i, d: h }), ['loss'])).loss.data[0] as number;
      const lm = (await s.run(feeds({ k, i, d: -h }), ['loss'])).loss.data[0] as number;
      const num = (lp - lm) / (2 * h);
      const ana = ga.data[i] as number;
      const err = Math.abs(ana - num) / (atol + rtol * Math.abs(num));
      worst = Math.max(worst, err);
      if (!(err <= 1) && failures.length < 5) failures.push(`${o.params[k].value.name}[${i}]: analytic ${ana} vs numeric ${num}`);
    }
  }
  t.true(failures.length === 0, failures.join('\n'));
  await s.release();
  return worst;
}

/** Shorthand: a graph input with random data. */
export function param(g: GraphBuilder, name: string, shape: number[], dtype: 'float32' | 'float64' = 'float64', lo = -1, hi = 1): Param {
  const n = shape.reduce((a, b) => a * b, 1);
  const seed = [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 17);
  return { value: g.input(name, dtype, shape), data: uniform(n, lo, hi, seed) };
}
