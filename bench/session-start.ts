/**
 * What a pipeline stage pays before its first useful batch (issue 13, target 2): building the
 * per-example LoRA gradient graph of SmolLM2-135M (the real GGUF weights), creating its ONNX Runtime
 * session, and the first batch against the median of the next ones — for each way of creating the
 * session measured side by side in one run:
 *
 *   all        graphOptimizationLevel 'all' (ORT's default and LayerFlow's before this bench)
 *   cached     'all' once, the optimised model saved to disk (optimizedModelFilePath), then the saved
 *              model loaded with optimisations off — what a stage's second start costs
 *   extended / basic / disabled   lower optimisation levels (their batch time shows what the
 *              optimisations buy)
 *
 *   npx tsx bench/session-start.ts
 *
 * BENCH_BATCH [8], BENCH_SEQ [128], BENCH_RUNS [5 timed batches after the first], BENCH_THREADS [all
 * cores], BENCH_MODES [all,cached,extended,basic,disabled].
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, cpus, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import * as M from '../src/models/index.ts';
import { defaultModelPath } from '../src/models/load.ts';
import { envInt } from './common.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HOME = process.env.LAYERFLOW_HOME ?? join(ROOT, '.layerflow');
const B = envInt('BENCH_BATCH', 8), T = envInt('BENCH_SEQ', 128), RUNS = envInt('BENCH_RUNS', 5);
const THREADS = envInt('BENCH_THREADS', availableParallelism());
const MODES = (process.env.BENCH_MODES ?? 'all,cached,extended,basic,disabled').split(',');
const LORA = { r: 8, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const secs = (t0: number) => (performance.now() - t0) / 1000;

console.log(`# session start-up: SmolLM2-135M per-example LoRA gradients (r 8, all 7 projections), batch ${B} × seq ${T}, ${THREADS} threads`);
console.log(`# ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}`);
const model = await M.loadModel({ id: 'smollm2-135m', path: defaultModelPath(HOME, 'smollm2-135m-instruct') });
let t0 = performance.now();
const graph = M.buildPerExampleGradGraph({ config: model.config, lora: LORA });
console.log(`graph build ${secs(t0).toFixed(2)} s: ${(graph.model.length / 1024).toFixed(0)} KiB ONNX`);

// Weights: the real base model, LoRA A / B small non-zero (a trained adapter's scale).
const weights: M.WeightMap = new Map();
let seed = 7;
for (const w of graph.weightInputs) {
  const real = model.weights.get(w.name);
  if (real) { weights.set(w.name, real); continue; }
  const n = w.shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; data[i] = ((seed >>> 8) / 2 ** 24 * 2 - 1) * 0.01; }
  weights.set(w.name, { dims: [...w.shape], data });
}
const samples = Array.from({ length: B }, (_, b) => {
  const ids = Array.from({ length: T }, (_, t) => (b * 7919 + t * 104729) % model.config.vocabSize);
  return { inputIds: ids, labels: ids };
});
const batch = M.padBatch(samples);
const feeds = M.feedsFor(graph, weights, batch);
const toOrt = (f: typeof feeds) => Object.fromEntries(Object.entries(f).map(([k, v]) => [k, new ort.Tensor(v.data as Float32Array, v.dims)]));
const ortFeeds = toOrt(feeds);

const dir = await mkdtemp(join(tmpdir(), 'lf-session-'));
try {
  const level = (m: string) => (m === 'cached' ? 'all' : m) as 'all' | 'extended' | 'basic' | 'disabled';
  for (const mode of MODES) {
    const base: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], intraOpNumThreads: THREADS, interOpNumThreads: 1, graphOptimizationLevel: level(mode) };
    let createS: number, note = '';
    let s: ort.InferenceSession;
    if (mode === 'cached') {
      const file = join(dir, 'optimized.onnx');
      t0 = performance.now();
      const first = await ort.InferenceSession.create(graph.model, { ...base, optimizedModelFilePath: file });
      const saveS = secs(t0);
      await first.release();
      t0 = performance.now();
      s = await ort.InferenceSession.create(file, { ...base, graphOptimizationLevel: 'disabled' });
      createS = secs(t0);
      note = ` (first create + save ${saveS.toFixed(2)} s)`;
    } else {
      t0 = performance.now();
      s = await ort.InferenceSession.create(graph.model, base);
      createS = secs(t0);
    }
    t0 = performance.now();
    const first = await s.run(ortFeeds);
    const firstS = secs(t0);
    const times: number[] = [];
    let out = first;
    for (let i = 0; i < RUNS; i++) {
      t0 = performance.now();
      out = await s.run(ortFeeds);
      times.push(secs(t0));
    }
    const med = median(times);
    const loss = (out.loss.data as Float32Array)[0];
    console.log(`${mode.padEnd(9)} session ${createS.toFixed(2)} s${note}; first batch ${firstS.toFixed(2)} s, median ${med.toFixed(2)} s `
      + `(first / median ${(firstS / med).toFixed(2)}; runs ${times.map((x) => x.toFixed(2)).join(' ')}); loss[0] ${loss.toFixed(5)}`);
    await s.release();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
