/**
 * Per-example LoRA gradient throughput (issue 3): LayerFlow's per-example gradient graph
 * (src/models buildPerExampleGradGraph + PerExampleGradRunner, ONNX Runtime) against PyTorch eager
 * (bench/per_example_grads_baseline.py: torch.func vmap(grad) over the LoRA parameters of an HF
 * LlamaForCausalLM + PEFT model, and the naive loop of batch-of-one backward passes).
 *
 *   npx tsx bench/per-example-grads.ts
 *
 * Models (float32, attention mask all ones, every token a target unless BENCH_TARGETS says otherwise):
 *   tiny    the shape of configs/models/tiny-llama: 4 layers, hidden 128, 4 heads / 2 KV, SwiGLU 384,
 *           vocab 512, tied embeddings (853k parameters); random weights
 *   135m    the SmolLM-135M shape: 30 layers, hidden 576, 9 heads / 3 KV, SwiGLU 1536, vocab 49152,
 *           tied embeddings (134.5M parameters); random weights
 *   gemma3  Gemma 3 270M, the real Q4_K_M GGUF (infra/fetch-models.sh; Gemma Terms of Use): 18 layers,
 *           hidden 640, 4 heads / 1 KV of 256, GeGLU 2048, vocab 262,144, tied embeddings. LayerFlow
 *           loads it with loadModel, PyTorch with transformers' from_pretrained(gguf_file=...); both
 *           dequantise to float32. The load (10–20 s per side) is not timed. The two sides get the
 *           same token ids and the same LoRA A/B values, and the PyTorch process compares its
 *           per-example gradients with LayerFlow's (max rel. diff).
 * LoRA r=8, alpha=16 on q_proj and v_proj of every layer; loss = mean token cross-entropy over target
 * tokens with the HF shift; per-example gradients of every LoRA A and B. Both sides apply the LM head
 * at the target positions only (LayerFlow's graph gathers them before the head; the PyTorch side
 * takes the base model's hidden states, indexes the target positions and applies lm_head). With
 * every token a target that is T − 1 positions of T, i.e. [B, T − 1, V] logits on both sides.
 *
 * Environment (defaults in brackets): BENCH_MODELS [tiny,135m; also gemma3], BENCH_BATCH [8],
 * BENCH_SEQ [128], BENCH_TARGETS [= BENCH_SEQ: every token a target; n: only the last n tokens of
 * each sample are labels], BENCH_ITERS_TINY [10], BENCH_ITERS_135M [5], BENCH_ITERS_GEMMA3 [3],
 * BENCH_THREADS [all cores], DEVICE [cpu:0], BENCH_GEMMA3_GGUF [<LAYERFLOW_HOME or .layerflow>/models/
 * gemma3-270m/gemma-3-270m-q4_k_m.gguf], PYTHON [/tmp/venv-hf/bin/python if present, else python3]
 * (needs torch, transformers, peft; gemma3 also gguf).
 *
 * Each side and model runs in its own process (this script re-invoked with --worker for LayerFlow,
 * one Python process per PyTorch variant), one after the other, so the peak RSS reported is that
 * run's alone and the two sides never compete for the cores. Each process builds its model, runs
 * one warm-up batch (timed separately: for ORT it includes the first-run allocations), then the
 * timed batches; the figure is the median batch time. samples/s = batch / median seconds.
 *
 * FLOPs per sample (T tokens, L layers, qd = heads·head_dim), forward + backward of a LoRA-only
 * gradient (frozen base weights get activation gradients but no weight gradients):
 *   4·P_mm·T + 6·P_lora·T + 12·L·T²·qd
 * P_mm = matmul weights (q, k, v, o, gate, up, down of every layer + the D×V LM head; the embedding
 * lookup does no FLOPs), P_lora = Σ r·(in + out) over the adapters. 2 FLOPs per multiply-add; the
 * attention term is QKᵀ and PV over the full T×T (causal masking does not skip work in either
 * implementation): 4·T²·qd per layer forward, twice that backward. Norms, RoPE, SiLU, softmax and
 * the loss are left out (a few per cent). The usual 6·N·T rule would count base weight gradients
 * that neither side computes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as M from '../src/models/index.ts';
import { GgufReader } from '../src/weights/gguf.ts';
import { gemma3ConfigFromGguf, modelConfigFromGemma3, readGgufModelConfig } from '../src/weights/gguf-hf.ts';
import { parseHfConfig, type ModelConfig } from '../src/weights/hf-config.ts';
import { cpuVectorIsa, envInt, runChild, lastLines } from './common.ts';
import { GEMM_SHAPES, measureGemmPeak } from './gemm-peak.ts';

const env = envInt;
const BATCH = env('BENCH_BATCH', 8), SEQ = env('BENCH_SEQ', 128), THREADS = env('BENCH_THREADS', availableParallelism());
const DEVICE = process.env.DEVICE ?? 'cpu:0';
const PYTHON = process.env.PYTHON ?? (existsSync('/tmp/venv-hf/bin/python') ? '/tmp/venv-hf/bin/python' : 'python3');
const TARGETS = Math.min(env('BENCH_TARGETS', SEQ), SEQ);
const LORA: M.LoraSpec = { r: 8, alpha: 16, targets: ['q_proj', 'v_proj'] };
const HOME = resolve(process.env.LAYERFLOW_HOME ?? fileURLToPath(new URL('../.layerflow', import.meta.url)));

/**
 * `hf`: HF config.json fields of a random-weight model, parsed by LayerFlow's parseHfConfig and
 * passed to transformers' LlamaConfig. `gguf`: a real model file both sides load.
 */
const MODELS: Record<string, { hf?: Record<string, unknown>; gguf?: string; iters: number; label: string; timeoutS: number }> = {
  tiny: {
    label: 'tiny Llama (4 layers, hidden 128, vocab 512)',
    iters: env('BENCH_ITERS_TINY', 10), timeoutS: 480,
    hf: { hidden_size: 128, intermediate_size: 384, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, vocab_size: 512, tie_word_embeddings: true, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000 },
  },
  '135m': {
    label: 'SmolLM-135M shape (30 layers, hidden 576, vocab 49152)',
    iters: env('BENCH_ITERS_135M', 5), timeoutS: 480,
    hf: { hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, vocab_size: 49152, tie_word_embeddings: true, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000 },
  },
  gemma3: {
    label: 'Gemma 3 270M (real Q4_K_M GGUF dequantised to float32; 18 layers, hidden 640, vocab 262144)',
    iters: env('BENCH_ITERS_GEMMA3', 3), timeoutS: 1500,
    gguf: process.env.BENCH_GEMMA3_GGUF ?? M.defaultModelPath(HOME, 'gemma3-270m'),
  },
};

/** The model's ModelConfig: from the HF fields, or from the GGUF's metadata (no tensors read). */
async function config(name: string): Promise<ModelConfig> {
  const m = MODELS[name];
  if (!m.gguf) return parseHfConfig({ model_type: 'llama', ...m.hf }, `bench model ${name}`);
  const r = await GgufReader.open(m.gguf);
  try {
    return r.metadata.get('general.architecture') === 'gemma3' ? modelConfigFromGemma3(gemma3ConfigFromGguf(r)) : await readGgufModelConfig(r);
  } finally { await r.close(); }
}

/** Deterministic token ids [B][T] in [0, V) and labels (-100 before the last TARGETS tokens); the same in every process. */
function batchData(vocab: number): { ids: number[][]; labels: number[][] } {
  let s = 7;
  const ids = Array.from({ length: BATCH }, () => Array.from({ length: SEQ }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % vocab; }));
  return { ids, labels: ids.map((row) => row.map((t, i) => (i >= SEQ - TARGETS ? t : M.IGNORE_INDEX))) };
}

/** Float32 little-endian bytes of a typed array (a copy when it is not float32). */
const f32Bytes = (a: Float32Array | Float64Array): Uint8Array => { const f = a instanceof Float32Array ? a : Float32Array.from(a); return new Uint8Array(f.buffer, f.byteOffset, f.byteLength); };

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/** Analytic forward + backward FLOPs of one sample (see the header). */
function flopsPerSample(c: ModelConfig, T: number): { flops: number; pMm: number; pLora: number } {
  const qd = c.numHeads * c.headDim;
  const pMm = M.allModules(c).reduce((a, m) => a + m.inF * m.outF, 0) + c.hiddenSize * c.vocabSize;
  const pLora = M.loraModules(c, LORA).reduce((a, m) => a + LORA.r * (m.inF + m.outF), 0);
  return { flops: 4 * pMm * T + 6 * pLora * T + 12 * c.numLayers * T * T * qd, pMm, pLora };
}

interface SideResult {
  times: number[]; warmup_s: number; setup_s: number; max_rss_kib: number; threads: number; detail: string;
  /** gguf models: peak RSS once the model was loaded (before the graph, session and runs). */
  load_rss_kib?: number;
  /** gguf models (PyTorch side): max over LoRA tensors of max |LayerFlow − PyTorch| / max |PyTorch| over the batch, and max |Δ loss|. */
  max_rel_diff?: number; worst_tensor?: string; max_loss_diff?: number;
}

// ---------------------------------------------------------------- LayerFlow worker (one model)
/**
 * With `exchange` (gguf models) the worker writes there what the PyTorch side needs to compute the
 * same gradients and compare: the LoRA tensors it used and its per-example gradients and losses of
 * the warm-up batch (raw float32 files + meta.json).
 */
async function ortWorker(name: string, exchange?: string): Promise<void> {
  const c = await config(name);
  const spec = MODELS[name];
  // Base weights: the real model (load not timed) or none (random fill below).
  let base: M.WeightMap = new Map(), loadNote = '', loadRss: number | undefined;
  if (spec.gguf) {
    const l0 = performance.now();
    const m = await M.loadModel({ id: name, path: spec.gguf });
    base = m.weights;
    loadRss = process.resourceUsage().maxRSS;
    loadNote = `model load ${((performance.now() - l0) / 1000).toFixed(1)} s (not timed), `;
  }
  const t0 = performance.now();
  const graph = M.buildPerExampleGradGraph({ config: c, lora: LORA });
  const buildS = (performance.now() - t0) / 1000;
  // Random weights (values do not change the work done): a fast fill instead of M.randomWeights,
  // which takes ~17 s for 135M parameters. Norm weights 1, LoRA A and B non-zero like a trained adapter.
  const weights: M.WeightMap = new Map();
  let seed = 12345;
  for (const w of graph.weightInputs) {
    const real = base.get(w.name);
    if (real) { weights.set(w.name, real); continue; }
    const n = w.shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    const scale = /norm/.test(w.name) ? 0 : /lora_B/.test(w.name) ? 0.01 : 0.02;
    if (scale === 0) data.fill(1);
    else for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; data[i] = ((seed >>> 8) / 2 ** 24 * 2 - 1) * scale; }
    weights.set(w.name, { dims: [...w.shape], data });
  }
  const t1 = performance.now();
  const runner = await M.PerExampleGradRunner.create({ graph, device: DEVICE, threads: THREADS });
  const sessionS = (performance.now() - t1) / 1000;
  const data = batchData(c.vocabSize);
  const batch = M.padBatch(data.ids.map((inputIds, b) => ({ inputIds, labels: data.labels[b] })));
  const w0 = performance.now();
  const first = await runner.run({ weights, batch });
  const warm = (performance.now() - w0) / 1000;
  for (const [unit, g] of first.grads) if (!g.every(Number.isFinite)) throw new Error(`non-finite gradient in ${unit}`);
  if (exchange) {
    const files: { name: string; shape: number[]; file: string }[] = [];
    const put = async (name: string, shape: number[], a: Float32Array | Float64Array) => {
      const file = `${files.length}.f32`;
      await writeFile(join(exchange, file), f32Bytes(a));
      files.push({ name, shape, file });
    };
    for (const [unit, u] of graph.units) await put(`lora.${unit}`, u.shape, weights.get(unit)!.data);
    for (const [unit, u] of graph.units) await put(`grad.${unit}`, [BATCH, ...u.shape], first.grads.get(unit)!);
    await writeFile(join(exchange, 'meta.json'), JSON.stringify({ tensors: files, losses: [...first.losses] }));
  }
  const times: number[] = [];
  for (let i = 0; i < MODELS[name].iters; i++) {
    const t = performance.now();
    await runner.run({ weights, batch });
    times.push((performance.now() - t) / 1000);
  }
  const d = [...graph.units.values()].reduce((a, u) => a + u.shape.reduce((x, y) => x * y, 1), 0);
  const res: SideResult = {
    times, warmup_s: warm, setup_s: buildS + sessionS, max_rss_kib: process.resourceUsage().maxRSS, threads: THREADS, load_rss_kib: loadRss,
    detail: `${loadNote}graph build ${buildS.toFixed(1)} s (${(graph.model.length / 1024).toFixed(0)} KiB ONNX), session ${sessionS.toFixed(1)} s; ${graph.units.size} units, ${d} gradient values per sample; loss[0] ${first.losses[0].toFixed(4)}`,
  };
  await runner.release();
  console.log(`RESULT ${JSON.stringify(res)}`);
}

// ---------------------------------------------------------------- child processes

async function ortSide(name: string, exchange?: string): Promise<SideResult | string> {
  const script = fileURLToPath(import.meta.url);
  const r = await runChild(process.execPath, [...process.execArgv, script, '--worker', name, ...(exchange ? ['--exchange', exchange] : [])], {}, MODELS[name].timeoutS);
  const line = r.out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) return `LayerFlow run failed (exit ${r.code}${r.code === null ? ', killed — out of memory or time?' : ''}): ${lastLines(r.err || r.out)}`;
  return JSON.parse(line.slice(7)) as SideResult;
}

/** torch.matmul fp32 GFLOP/s, best of the same shapes, in its own process with the same threads. */
async function torchGemmPeak(): Promise<number> {
  const code = `import json, time, torch
torch.set_num_threads(${THREADS})
best = 0.0
for m, k, n in ${JSON.stringify(GEMM_SHAPES.map((g) => [g.m, g.k, g.n]))}:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(2): a @ b
    ts = []
    for _ in range(10):
        t0 = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t0)
    ts.sort(); best = max(best, 2 * m * k * n / ts[len(ts) // 2] / 1e9)
print(json.dumps(best))`;
  const t = String(THREADS);
  const r = await runChild(PYTHON, ['-c', code], { OMP_NUM_THREADS: t, MKL_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t }, 300);
  const v = Number(r.out.trim().split('\n').pop());
  return r.code === 0 && Number.isFinite(v) ? v : NaN;
}

let pySkip = '';
async function probePython(): Promise<string> {
  const r = await runChild(PYTHON, ['-c', 'import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__, torch.backends.cpu.get_cpu_capability())'], {}, 120);
  if (r.code !== 0) return '';
  return r.out.trim();
}
async function torchSide(name: string, variant: 'vmap' | 'loop', vocab: number, exchange?: string): Promise<SideResult | string> {
  if (pySkip) return pySkip;
  if (MODELS[name].gguf && !exchange) return `PyTorch ${variant} not run: the LayerFlow side did not write the LoRA tensors to compare with`;
  const { ids, labels } = batchData(vocab);
  const arg = JSON.stringify({ config: MODELS[name].hf, gguf: MODELS[name].gguf, exchange, lora: { r: LORA.r, alpha: LORA.alpha, targets: LORA.targets }, batch: BATCH, seq: SEQ, threads: THREADS, iters: MODELS[name].iters, variant, ids, labels });
  const t = String(THREADS);
  const r = await runChild(PYTHON, [fileURLToPath(new URL('./per_example_grads_baseline.py', import.meta.url)), arg], { OMP_NUM_THREADS: t, MKL_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t }, MODELS[name].timeoutS);
  const line = r.out.split('\n').find((l) => l.startsWith('{'));
  if (!line) return `PyTorch ${variant} failed (exit ${r.code}${r.code === null ? ', killed' : ''}): ${lastLines(r.err || r.out)}`;
  const j = JSON.parse(line) as SideResult & { attn: string; lora_params: number; base_params: number; interop_threads: number; load_s?: number; logits_shape: number[] };
  const agree = j.max_rel_diff === undefined ? '' : `; vs LayerFlow: max rel. diff ${j.max_rel_diff.toExponential(1)} (worst ${j.worst_tensor}), max |Δ loss| ${j.max_loss_diff!.toExponential(1)}`;
  return { ...j, detail: `attention ${j.attn}, interop threads ${j.interop_threads}, ${j.load_s === undefined ? '' : `model load ${j.load_s.toFixed(1)} s (not timed), `}setup ${j.setup_s.toFixed(1)} s; ${j.lora_params} LoRA / ${j.base_params} base parameters; head on [${j.logits_shape.join(', ')}] per sample${agree}` };
}

// ---------------------------------------------------------------- main
async function main(): Promise<void> {
  const wi = process.argv.indexOf('--worker');
  if (wi >= 0) { const xi = process.argv.indexOf('--exchange'); return ortWorker(process.argv[wi + 1], xi >= 0 ? process.argv[xi + 1] : undefined); }

  const names = (process.env.BENCH_MODELS ?? 'tiny,135m').split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!MODELS[n]) throw new Error(`BENCH_MODELS: unknown model "${n}"; expected ${Object.keys(MODELS).join(', ')}`);
  const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  const cpuModel = cpus()[0]?.model ?? '?';
  let l3 = '';
  try { l3 = (readFileSync('/proc/cpuinfo', 'utf8').match(/cache size\s*:\s*(.+)/)?.[1] ?? '').trim(); } catch { /* not Linux */ }
  const pyVersions = await probePython();
  if (!pyVersions) pySkip = `PyTorch baseline skipped: ${PYTHON} cannot import torch, transformers and peft (set PYTHON to an interpreter that can, e.g. python3 -m venv /tmp/venv-hf && /tmp/venv-hf/bin/pip install torch transformers peft)`;

  console.log(`# per-example LoRA gradient benchmark ${new Date().toISOString().slice(0, 10)}`);
  console.log(`machine: ${cpuModel}${l3 ? ` (cache ${l3})` : ''}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`);
  console.log(`vector ISA (/proc/cpuinfo flags): ${cpuVectorIsa()}`);
  console.log(`LayerFlow: node ${process.version}, onnxruntime-node ${ortVersion}, device ${DEVICE}, intraOpNumThreads ${THREADS}, interOpNumThreads 1`);
  const [tv, trv, pv, cap] = pyVersions.split(' ');
  console.log(pySkip || `PyTorch: ${PYTHON} (torch ${tv} / transformers ${trv} / peft ${pv}; torch CPU capability ${cap}), torch.set_num_threads(${THREADS}), OMP/MKL threads ${THREADS}`);
  const targets = TARGETS === SEQ ? 'all tokens targets' : `the last ${TARGETS} tokens targets`;
  console.log(`workload: batch ${BATCH}, seq ${SEQ} (${targets}), float32, LoRA r=${LORA.r} alpha=${LORA.alpha} on ${LORA.targets.join(', ')}, loss = mean token CE per sample; both sides apply the LM head at the ${Math.min(TARGETS, SEQ - 1)} target positions only`);
  console.log('FLOPs/sample = 4·P_mm·T + 6·P_lora·T + 12·L·T²·qd (forward + backward, no base weight gradients; see header)');
  // This CPU's fp32 GEMM peak, measured now with the same threads: ORT's MatMul (MLAS) and, when
  // torch is importable, torch.matmul (oneDNN / MKL); the higher is the ceiling the % column uses.
  const ortGemm = await measureGemmPeak({ threads: THREADS, device: DEVICE });
  const torchGemm = pySkip ? NaN : await torchGemmPeak();
  const peak = Math.max(ortGemm.peak, Number.isFinite(torchGemm) ? torchGemm : 0);
  console.log(`fp32 GEMM peak, ${THREADS} threads, best of ${GEMM_SHAPES.map((g) => `[${g.m}×${g.k}]·[${g.k}×${g.n}]`).join(', ')}: ORT MatMul ${ortGemm.peak.toFixed(1)} GFLOP/s (${ortGemm.results.map((r) => r.gflops.toFixed(0)).join(' / ')}), torch.matmul ${Number.isFinite(torchGemm) ? `${torchGemm.toFixed(1)} GFLOP/s` : 'not measured'}; peak used below: ${peak.toFixed(1)} GFLOP/s\n`);

  const rows: string[][] = [];
  for (const name of names) {
    const c = await config(name);
    const { flops, pMm, pLora } = flopsPerSample(c, SEQ);
    console.log(`## ${name} (load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} before): ${MODELS[name].label}; P_mm ${(pMm / 1e6).toFixed(2)}M, P_lora ${(pLora / 1e3).toFixed(1)}k, ${(flops / 1e9).toFixed(2)} GFLOP/sample; ${MODELS[name].iters} timed batches`);
    const sides: [string, SideResult | string][] = [];
    const t0 = performance.now();
    const exchange = MODELS[name].gguf ? await mkdtemp(join(tmpdir(), 'lf-bench-pex-')) : undefined;
    try {
      const ours = await ortSide(name, exchange);
      sides.push(['LayerFlow (ORT)', ours]);
      const ex = typeof ours === 'string' ? undefined : exchange;
      sides.push(['PyTorch torch.func vmap(grad)', await torchSide(name, 'vmap', c.vocabSize, ex)]);
      sides.push(['PyTorch loop of batch-of-one backward', await torchSide(name, 'loop', c.vocabSize, ex)]);
    } finally {
      if (exchange) await rm(exchange, { recursive: true, force: true });
    }
    const ours = sides[0][1];
    const oursSps = typeof ours === 'string' ? NaN : BATCH / median(ours.times);
    for (const [label, r] of sides) {
      if (typeof r === 'string') {
        console.log(`  ${label}: ${r}`);
        rows.push([name, label, '—', '—', '—', '—', '—', '—', '—', '—', r.startsWith('PyTorch baseline skipped') ? 'skipped: torch not importable' : r.slice(0, 80)]);
        continue;
      }
      const med = median(r.times), sps = BATCH / med;
      const ratio = label.startsWith('LayerFlow') ? '1.00' : (oursSps / sps).toFixed(2);
      const rss = `${(r.max_rss_kib / 1024).toFixed(0)}${r.load_rss_kib === undefined ? '' : ` (${(r.load_rss_kib / 1024).toFixed(0)} after load)`}`;
      const diff = label.startsWith('LayerFlow') ? '—' : r.max_rel_diff === undefined ? 'n/a' : r.max_rel_diff.toExponential(1);
      const gf = (sps * flops) / 1e9;
      const row = [name, label, sps.toFixed(2), med.toFixed(3), ratio, `${gf.toFixed(1)} (${((100 * gf) / peak).toFixed(0)} %)`, rss, String(r.threads), r.warmup_s.toFixed(1), diff, `min ${Math.min(...r.times).toFixed(3)} / max ${Math.max(...r.times).toFixed(3)} s`];
      rows.push(row);
      console.log(`  ${label}: ${sps.toFixed(2)} samples/s (median ${med.toFixed(3)} s per batch of ${BATCH}; ${r.times.map((x) => x.toFixed(3)).join(', ')}), ${row[5]} GFLOP/s, peak RSS ${rss} MiB, LayerFlow/this ${ratio}; ${r.detail}`);
    }
    // The ceiling of the ratio on this CPU: LayerFlow's time can be no less than its FLOPs at ORT's own
    // MatMul peak (the same GEMMs, every other kernel free), so LayerFlow ÷ a baseline ≤ that peak over
    // the baseline's achieved GFLOP/s (approximately: the peak is the best of a few shapes, one of them the
  // 135M MLP's). A target above it needs faster GEMMs (or fewer FLOPs), not scheduling.
    const ceilings = sides.slice(1).filter((s): s is [string, SideResult] => typeof s[1] !== 'string')
      .map(([label, r]) => `${label.replace('PyTorch ', '')} ≤ ${(ortGemm.peak / ((BATCH / median(r.times)) * flops / 1e9)).toFixed(2)}`);
    if (ceilings.length) console.log(`  ceiling on this CPU (≈: all of LayerFlow's FLOPs at ORT MatMul's ${ortGemm.peak.toFixed(1)} GFLOP/s, every other kernel free): LayerFlow ÷ ${ceilings.join(', ÷ ')}`);
    console.log(`  (${((performance.now() - t0) / 1000).toFixed(0)} s for this model)\n`);
  }
  console.log('| model | implementation | samples/s | s/batch (median) | LayerFlow ÷ this | GFLOP/s (% of GEMM peak) | peak RSS (MiB) | threads | warm-up batch (s) | max rel. diff vs LayerFlow | spread |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log('\nLayerFlow ÷ this > 1 means LayerFlow is faster. max rel. diff (real-weight models only; random-weight models differ between the sides): max over LoRA tensors of max |LayerFlow − PyTorch| / max |PyTorch| over the batch.');
}

await main();
