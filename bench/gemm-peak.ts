/**
 * This CPU's measured float32 GEMM peak through ONNX Runtime (MLAS), the ceiling a gradient pass
 * made of MatMuls can reach on it (issue 13, target 3: achieved GFLOP/s ≥ 60 % of it).
 *
 *   npx tsx bench/gemm-peak.ts            # prints one line per shape and the peak
 *
 * Each shape [M × K] · [K × N] runs as one MatMul session with the bench's thread count; GFLOP/s =
 * 2·M·K·N / median seconds over BENCH_GEMM_REPS runs (after two warm-ups). The peak is the best
 * shape. The shapes are square-ish and large enough to be compute-bound, plus the 135M model's
 * MLP shape at B·T = 1024 tokens.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as O from '../src/onnx/index.ts';
import { createSession } from '../src/runtime/index.ts';
import { envInt } from './common.ts';

export interface GemmShape { m: number; k: number; n: number }
export interface GemmResult extends GemmShape { gflops: number; medianS: number }

export const GEMM_SHAPES: GemmShape[] = [
  { m: 1024, k: 2048, n: 2048 },
  { m: 2048, k: 1024, n: 2048 },
  { m: 1024, k: 576, n: 1536 },
];

/** GFLOP/s of each shape and the best of them, on `device` with `threads` intra-op threads. */
export async function measureGemmPeak(opts: { threads: number; device?: string; reps?: number; shapes?: GemmShape[] }): Promise<{ peak: number; results: GemmResult[] }> {
  const reps = opts.reps ?? 10;
  const results: GemmResult[] = [];
  for (const { m, k, n } of opts.shapes ?? GEMM_SHAPES) {
    const g = new O.GraphBuilder({ name: 'gemm' });
    g.output(O.matMul(g.input('a', 'float32', [m, k]), g.input('b', 'float32', [k, n])), 'c');
    const s = await createSession({ model: g.toModel(), device: opts.device ?? 'cpu:0', threads: opts.threads });
    try {
      const fill = (len: number) => Float32Array.from({ length: len }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
      const feeds = { a: { data: fill(m * k), dims: [m, k] }, b: { data: fill(k * n), dims: [k, n] } };
      for (let i = 0; i < 2; i++) await s.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        await s.run(feeds);
        times.push((performance.now() - t0) / 1000);
      }
      times.sort((a, b) => a - b);
      const med = times[times.length >> 1];
      results.push({ m, k, n, medianS: med, gflops: (2 * m * k * n) / med / 1e9 });
    } finally {
      await s.release();
    }
  }
  return { peak: Math.max(...results.map((r) => r.gflops)), results };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const threads = envInt('BENCH_THREADS', availableParallelism());
  const { peak, results } = await measureGemmPeak({ threads, device: process.env.DEVICE, reps: envInt('BENCH_GEMM_REPS', 10) });
  for (const r of results) console.log(`[${r.m} × ${r.k}] · [${r.k} × ${r.n}]: ${r.gflops.toFixed(1)} GFLOP/s (median ${(r.medianS * 1e3).toFixed(1)} ms)`);
  console.log(`fp32 GEMM peak (ORT MatMul, ${threads} threads): ${peak.toFixed(1)} GFLOP/s`);
}
