/**
 * Per-example LoRA gradient throughput (issue 3): LayerFlow's per-example gradient graph
 * (src/models buildPerExampleGradGraph + PerExampleGradRunner, ONNX Runtime) against PyTorch eager
 * (bench/per_example_grads_baseline.py: torch.func vmap(grad) over the LoRA parameters of an HF
 * LlamaForCausalLM + PEFT model, and the naive loop of batch-of-one backward passes).
 *
 *   npx tsx bench/per-example-grads.ts
 *
 * Models (random weights, float32, every token a target, attention mask all ones):
 *   tiny  the shape of configs/models/tiny-llama: 4 layers, hidden 128, 4 heads / 2 KV, SwiGLU 384,
 *         vocab 512, tied embeddings (853k parameters)
 *   135m  the SmolLM-135M shape: 30 layers, hidden 576, 9 heads / 3 KV, SwiGLU 1536, vocab 49152,
 *         tied embeddings (134.5M parameters)
 * LoRA r=8, alpha=16 on q_proj and v_proj of every layer; loss = mean token cross-entropy over target
 * tokens with the HF shift; per-example gradients of every LoRA A and B.
 *
 * Environment (defaults in brackets): BENCH_MODELS [tiny,135m], BENCH_BATCH [8], BENCH_SEQ [128],
 * BENCH_ITERS_TINY [10], BENCH_ITERS_135M [5], BENCH_THREADS [all cores], DEVICE [cpu:0],
 * PYTHON [/tmp/venv-hf/bin/python if present, else python3] (needs torch, transformers, peft).
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
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as M from '../src/models/index.ts';
import { parseHfConfig, type ModelConfig } from '../src/weights/hf-config.ts';
import { envInt, runChild, lastLines } from './common.ts';

const env = envInt;
const BATCH = env('BENCH_BATCH', 8), SEQ = env('BENCH_SEQ', 128), THREADS = env('BENCH_THREADS', availableParallelism());
const DEVICE = process.env.DEVICE ?? 'cpu:0';
const PYTHON = process.env.PYTHON ?? (existsSync('/tmp/venv-hf/bin/python') ? '/tmp/venv-hf/bin/python' : 'python3');
const LORA: M.LoraSpec = { r: 8, alpha: 16, targets: ['q_proj', 'v_proj'] };

/** HF config.json fields: parsed by LayerFlow's parseHfConfig and passed to transformers' LlamaConfig. */
const MODELS: Record<string, { hf: Record<string, unknown>; iters: number; label: string }> = {
  tiny: {
    label: 'tiny Llama (4 layers, hidden 128, vocab 512)',
    iters: env('BENCH_ITERS_TINY', 10),
    hf: { hidden_size: 128, intermediate_size: 384, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, vocab_size: 512, tie_word_embeddings: true, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000 },
  },
  '135m': {
    label: 'SmolLM-135M shape (30 layers, hidden 576, vocab 49152)',
    iters: env('BENCH_ITERS_135M', 5),
    hf: { hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, vocab_size: 49152, tie_word_embeddings: true, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000 },
  },
};
const config = (name: string): ModelConfig => parseHfConfig({ model_type: 'llama', ...MODELS[name].hf }, `bench model ${name}`);

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/** Analytic forward + backward FLOPs of one sample (see the header). */
function flopsPerSample(c: ModelConfig, T: number): { flops: number; pMm: number; pLora: number } {
  const qd = c.numHeads * c.headDim;
  const pMm = M.allModules(c).reduce((a, m) => a + m.inF * m.outF, 0) + c.hiddenSize * c.vocabSize;
  const pLora = M.loraModules(c, LORA).reduce((a, m) => a + LORA.r * (m.inF + m.outF), 0);
  return { flops: 4 * pMm * T + 6 * pLora * T + 12 * c.numLayers * T * T * qd, pMm, pLora };
}

interface SideResult { times: number[]; warmup_s: number; setup_s: number; max_rss_kib: number; threads: number; detail: string }

// ---------------------------------------------------------------- LayerFlow worker (one model)
async function ortWorker(name: string): Promise<void> {
  const c = config(name);
  const t0 = performance.now();
  const graph = M.buildPerExampleGradGraph({ config: c, lora: LORA });
  const buildS = (performance.now() - t0) / 1000;
  // Random weights (values do not change the work done): a fast fill instead of M.randomWeights,
  // which takes ~17 s for 135M parameters. Norm weights 1, LoRA A and B non-zero like a trained adapter.
  const weights: M.WeightMap = new Map();
  let seed = 12345;
  for (const w of graph.weightInputs) {
    const n = w.shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    const scale = /norm/.test(w.name) ? 0 : /lora_B/.test(w.name) ? 0.01 : 0.02;
    if (scale === 0) data.fill(1);
    else for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; data[i] = ((seed >>> 8) / 2 ** 24 * 2 - 1) * scale; }
    weights.set(w.name, { dims: [...w.shape], data });
  }
  const t1 = performance.now();
  const runner = await M.PerExampleGradRunner.create({ graph, device: DEVICE, threads: THREADS });
  const sessionS = (performance.now() - t1) / 1000;
  let s = 7;
  const samples = Array.from({ length: BATCH }, () => ({ inputIds: Array.from({ length: SEQ }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % c.vocabSize; }) }));
  const batch = M.padBatch(samples);
  const w0 = performance.now();
  const first = await runner.run({ weights, batch });
  const warm = (performance.now() - w0) / 1000;
  for (const [unit, g] of first.grads) if (!g.every(Number.isFinite)) throw new Error(`non-finite gradient in ${unit}`);
  const times: number[] = [];
  for (let i = 0; i < MODELS[name].iters; i++) {
    const t = performance.now();
    await runner.run({ weights, batch });
    times.push((performance.now() - t) / 1000);
  }
  const d = [...graph.units.values()].reduce((a, u) => a + u.shape.reduce((x, y) => x * y, 1), 0);
  const res: SideResult = {
    times, warmup_s: warm, setup_s: buildS + sessionS, max_rss_kib: process.resourceUsage().maxRSS, threads: THREADS,
    detail: `graph build ${buildS.toFixed(1)} s (${(graph.model.length / 1024).toFixed(0)} KiB ONNX), session ${sessionS.toFixed(1)} s; ${graph.units.size} units, ${d} gradient values per sample; loss[0] ${first.losses[0].toFixed(4)}`,
  };
  await runner.release();
  console.log(`RESULT ${JSON.stringify(res)}`);
}

// ---------------------------------------------------------------- child processes

async function ortSide(name: string): Promise<SideResult | string> {
  const script = fileURLToPath(import.meta.url);
  const r = await runChild(process.execPath, [...process.execArgv, script, '--worker', name], {}, 480);
  const line = r.out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) return `LayerFlow run failed (exit ${r.code}${r.code === null ? ', killed — out of memory or time?' : ''}): ${lastLines(r.err || r.out)}`;
  return JSON.parse(line.slice(7)) as SideResult;
}

let pySkip = '';
async function probePython(): Promise<string> {
  const r = await runChild(PYTHON, ['-c', 'import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)'], {}, 120);
  if (r.code !== 0) return '';
  return r.out.trim();
}
async function torchSide(name: string, variant: 'vmap' | 'loop'): Promise<SideResult | string> {
  if (pySkip) return pySkip;
  const arg = JSON.stringify({ config: MODELS[name].hf, lora: { r: LORA.r, alpha: LORA.alpha, targets: LORA.targets }, batch: BATCH, seq: SEQ, threads: THREADS, iters: MODELS[name].iters, variant });
  const t = String(THREADS);
  const r = await runChild(PYTHON, [fileURLToPath(new URL('./per_example_grads_baseline.py', import.meta.url)), arg], { OMP_NUM_THREADS: t, MKL_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t }, 480);
  const line = r.out.split('\n').find((l) => l.startsWith('{'));
  if (!line) return `PyTorch ${variant} failed (exit ${r.code}${r.code === null ? ', killed' : ''}): ${lastLines(r.err || r.out)}`;
  const j = JSON.parse(line) as SideResult & { attn: string; lora_params: number; base_params: number; interop_threads: number };
  return { ...j, detail: `attention ${j.attn}, interop threads ${j.interop_threads}, setup ${j.setup_s.toFixed(1)} s; ${j.lora_params} LoRA / ${j.base_params} base parameters` };
}

// ---------------------------------------------------------------- main
async function main(): Promise<void> {
  const wi = process.argv.indexOf('--worker');
  if (wi >= 0) return ortWorker(process.argv[wi + 1]);

  const names = (process.env.BENCH_MODELS ?? 'tiny,135m').split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!MODELS[n]) throw new Error(`BENCH_MODELS: unknown model "${n}"; expected tiny, 135m`);
  const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  const cpuModel = cpus()[0]?.model ?? '?';
  let l3 = '';
  try { l3 = (readFileSync('/proc/cpuinfo', 'utf8').match(/cache size\s*:\s*(.+)/)?.[1] ?? '').trim(); } catch { /* not Linux */ }
  const pyVersions = await probePython();
  if (!pyVersions) pySkip = `PyTorch baseline skipped: ${PYTHON} cannot import torch, transformers and peft (set PYTHON to an interpreter that can, e.g. python3 -m venv /tmp/venv-hf && /tmp/venv-hf/bin/pip install torch transformers peft)`;

  console.log(`# per-example LoRA gradient benchmark ${new Date().toISOString().slice(0, 10)}`);
  console.log(`machine: ${cpuModel}${l3 ? ` (cache ${l3})` : ''}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`);
  console.log(`LayerFlow: node ${process.version}, onnxruntime-node ${ortVersion}, device ${DEVICE}, intraOpNumThreads ${THREADS}, interOpNumThreads 1`);
  console.log(pySkip || `PyTorch: ${PYTHON} (torch / transformers / peft ${pyVersions.replace(/ /g, ' / ')}), torch.set_num_threads(${THREADS}), OMP/MKL threads ${THREADS}`);
  console.log(`workload: batch ${BATCH}, seq ${SEQ} (all tokens targets), float32, LoRA r=${LORA.r} alpha=${LORA.alpha} on ${LORA.targets.join(', ')}, loss = mean token CE per sample`);
  console.log('FLOPs/sample = 4·P_mm·T + 6·P_lora·T + 12·L·T²·qd (forward + backward, no base weight gradients; see header)\n');

  const rows: string[][] = [];
  for (const name of names) {
    const c = config(name);
    const { flops, pMm, pLora } = flopsPerSample(c, SEQ);
    console.log(`## ${name} (load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} before): ${MODELS[name].label}; P_mm ${(pMm / 1e6).toFixed(2)}M, P_lora ${(pLora / 1e3).toFixed(1)}k, ${(flops / 1e9).toFixed(2)} GFLOP/sample; ${MODELS[name].iters} timed batches`);
    const sides: [string, SideResult | string][] = [];
    const t0 = performance.now();
    sides.push(['LayerFlow (ORT)', await ortSide(name)]);
    sides.push(['PyTorch torch.func vmap(grad)', await torchSide(name, 'vmap')]);
    sides.push(['PyTorch loop of batch-of-one backward', await torchSide(name, 'loop')]);
    const ours = sides[0][1];
    const oursSps = typeof ours === 'string' ? NaN : BATCH / median(ours.times);
    for (const [label, r] of sides) {
      if (typeof r === 'string') {
        console.log(`  ${label}: ${r}`);
        rows.push([name, label, '—', '—', '—', '—', '—', '—', '—', r.startsWith('PyTorch baseline skipped') ? 'skipped: torch not importable' : r.slice(0, 80)]);
        continue;
      }
      const med = median(r.times), sps = BATCH / med;
      const ratio = label.startsWith('LayerFlow') ? '1.00' : (oursSps / sps).toFixed(2);
      const row = [name, label, sps.toFixed(2), med.toFixed(3), ratio, ((sps * flops) / 1e9).toFixed(1), (r.max_rss_kib / 1024).toFixed(0), String(r.threads), r.warmup_s.toFixed(1), `min ${Math.min(...r.times).toFixed(3)} / max ${Math.max(...r.times).toFixed(3)} s`];
      rows.push(row);
      console.log(`  ${label}: ${sps.toFixed(2)} samples/s (median ${med.toFixed(3)} s per batch of ${BATCH}; ${r.times.map((x) => x.toFixed(3)).join(', ')}), ${row[5]} GFLOP/s, peak RSS ${row[6]} MiB, LayerFlow/this ${ratio}; ${r.detail}`);
    }
    console.log(`  (${((performance.now() - t0) / 1000).toFixed(0)} s for this model)\n`);
  }
  console.log('| model | implementation | samples/s | s/batch (median) | LayerFlow ÷ this | GFLOP/s | peak RSS (MiB) | threads | warm-up batch (s) | spread |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log('\nLayerFlow ÷ this > 1 means LayerFlow is faster.');
}

await main();
