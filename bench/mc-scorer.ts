/**
 * Multiple-choice scoring throughput of the `benchmark` stage (activities/benchmark-choice.ts):
 * LayerFlow's LoglikelihoodScorer + scoreChoiceDocs (ONNX Runtime) against a PyTorch eager scorer
 * (bench/mc_scorer_baseline.py: transformers LlamaForCausalLM from the same GGUF), same model, same
 * documents, same token ids, same batch size and threads.
 *
 *   npx tsx bench/mc-scorer.ts
 *
 * Workload: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32 on both sides) from
 * `<home>/models/` (home = LAYERFLOW_HOME, else the repository's .layerflow), the first BENCH_DOCS
 * documents of BIG-bench `winowhy` (loadBigBenchTask; 2 options each), scored as the stage scores
 * them: delimiter '' (BIG-bench contexts end in "A: "), batchSize 16, maxLength 512, and
 * scoreChoiceDocs called on 8 documents at a time.
 *
 * Environment (defaults in brackets): BENCH_DOCS [64], BENCH_REPEATS [3], BENCH_BATCH [16],
 * BENCH_THREADS [all cores], BENCH_VARIANTS [harness,gathered], DEVICE [cpu:0],
 * PYTHON [/tmp/venv-smol/bin/python or /tmp/venv-lmeval/bin/python if present, else python3]
 * (needs torch, transformers and gguf).
 *
 * Each side runs in its own process, one after the other (this script re-invoked with --worker for
 * LayerFlow, one Python process per PyTorch variant), so they never compete for the cores. The
 * LayerFlow worker loads the model, builds the scorer, encodes every request with scorer.encode
 * (the harness's tokenisation, what scoreChoiceDocs does inside) and writes the token ids to a
 * temporary JSON file that the Python side scores, so tokenizer differences cannot matter. Each
 * process times a warm-up call (the first 8 documents; for ORT it includes the first-run
 * allocations) separately, then BENCH_REPEATS passes over all documents; the figure is the median
 * pass. options/s = options / median pass seconds. The LayerFlow pass includes the tokenisation
 * (the stage's work); its share is printed (encode time). The log-likelihoods of the last pass are
 * compared per option: max |Δ ll| and how many documents' argmax (acc decision) differ.
 *
 * PyTorch variants: `harness` computes the full [B, T, V] logits and their log-softmax as
 * lm-evaluation-harness's HFLM does; `gathered` applies the LM head only at the scored positions,
 * the same work as LayerFlow's graph (buildLoglikelihoodGraph). The ratio is LayerFlow ÷ PyTorch
 * options/s, from this one run.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { loadBigBenchTask, type ChoiceDoc } from '../src/eval/bigbench.ts';
import { choiceRequests, LoglikelihoodScorer, multipleChoiceFromLoglikelihoods, scoreChoiceDocs, type EncodedRequest } from '../src/eval/loglikelihood.ts';
import { defaultModelPath, loadModel } from '../src/models/load.ts';
import { envInt, runChild, lastLines } from './common.ts';

const DOCS = envInt('BENCH_DOCS', 64), REPEATS = envInt('BENCH_REPEATS', 3), BATCH = envInt('BENCH_BATCH', 16);
const THREADS = envInt('BENCH_THREADS', availableParallelism());
const DEVICE = process.env.DEVICE ?? 'cpu:0';
const TASK = 'winowhy', DELIMITER = '', MAX_LENGTH = 512, DOCS_PER_CALL = 8; // activities/benchmark-choice.ts
const HOME = process.env.LAYERFLOW_HOME ?? fileURLToPath(new URL('../.layerflow', import.meta.url));
const MODEL = defaultModelPath(HOME, 'smollm2-135m-instruct');
const PYTHON = process.env.PYTHON ?? (['/tmp/venv-smol/bin/python', '/tmp/venv-lmeval/bin/python'].find((p) => existsSync(p)) ?? 'python3');
const VARIANTS = (process.env.BENCH_VARIANTS ?? 'harness,gathered').split(',').map((s) => s.trim()).filter(Boolean);
for (const v of VARIANTS) if (v !== 'harness' && v !== 'gathered') throw new Error(`BENCH_VARIANTS: unknown variant "${v}"; expected harness, gathered`);

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

/** What each side reports; lls in request order (document-major, then option). */
interface SideResult { times: number[]; warmup_s: number; setup_s: number; max_rss_kib: number; threads: number; lls: number[]; detail: string }

/** Written by the LayerFlow worker, read by the Python baseline. */
interface RequestsFile { requests: EncodedRequest[]; calls: [number, number][]; maxLength: number; docs: string[] }

function firstDocs(): ChoiceDoc[] {
  const docs = loadBigBenchTask(HOME, TASK).docs;
  if (docs.length < DOCS) throw new Error(`BENCH_DOCS=${DOCS}, but ${TASK} has ${docs.length} documents`);
  return docs.slice(0, DOCS);
}

/** Request ranges [start, end) of each scoreChoiceDocs call of the stage (8 documents each). */
function callRanges(docs: ChoiceDoc[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  for (let i = 0; i < docs.length; i += DOCS_PER_CALL) {
    const n = docs.slice(i, i + DOCS_PER_CALL).reduce((a, d) => a + d.options.length, 0);
    out.push([start, start + n]);
    start += n;
  }
  return out;
}

// ---------------------------------------------------------------- LayerFlow worker
async function ortWorker(requestsPath: string): Promise<void> {
  const docs = firstDocs();
  const t0 = performance.now();
  const model = await loadModel({ id: 'smollm2-135m-instruct', path: MODEL });
  const loadS = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const scorer = await LoglikelihoodScorer.create({ config: model.config, weights: model.weights, tokenizer: model.tokenizer, device: DEVICE, threads: THREADS, batchSize: BATCH, maxLength: MAX_LENGTH });
  const sessionS = (performance.now() - t1) / 1000;

  // The token ids scoreChoiceDocs will score, for the Python side (and the encode time alone).
  const reqs = choiceRequests(docs, DELIMITER);
  const encTimes: number[] = [];
  let encoded: EncodedRequest[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    encoded = reqs.map((r) => scorer.encode(r));
    encTimes.push((performance.now() - t) / 1000);
  }
  const file: RequestsFile = { requests: encoded, calls: callRanges(docs), maxLength: scorer.maxLength, docs: docs.map((d) => d.id) };
  writeFileSync(requestsPath, JSON.stringify(file));

  const pass = async (ds: ChoiceDoc[]): Promise<number[][]> => {
    const lls: number[][] = [];
    for (let i = 0; i < ds.length; i += DOCS_PER_CALL) lls.push(...(await scoreChoiceDocs(scorer, ds.slice(i, i + DOCS_PER_CALL), { delimiter: DELIMITER })));
    return lls;
  };
  const w0 = performance.now();
  await pass(docs.slice(0, DOCS_PER_CALL));
  const warm = (performance.now() - w0) / 1000;
  const times: number[] = [];
  let lls: number[][] = [];
  for (let r = 0; r < REPEATS; r++) {
    const t = performance.now();
    lls = await pass(docs);
    times.push((performance.now() - t) / 1000);
  }
  await scorer.release();
  const mc = multipleChoiceFromLoglikelihoods(docs, lls);
  const tokens = encoded.map((e) => Math.min(e.contextIds.length + e.continuationIds.length, MAX_LENGTH + 1) - 1);
  const res: SideResult = {
    times, warmup_s: warm, setup_s: loadS + sessionS, max_rss_kib: process.resourceUsage().maxRSS, threads: THREADS, lls: lls.flat(),
    detail: `model load ${loadS.toFixed(1)} s, graph + session ${sessionS.toFixed(1)} s; encode of all requests ${(median(encTimes) * 1000).toFixed(0)} ms (inside each pass); ` +
      `inputs ${Math.min(...tokens)}–${Math.max(...tokens)} tokens (mean ${(tokens.reduce((a, b) => a + b, 0) / tokens.length).toFixed(1)}), continuations ${Math.min(...encoded.map((e) => e.continuationIds.length))}–${Math.max(...encoded.map((e) => e.continuationIds.length))} tokens; acc ${mc.acc.toFixed(3)}, acc_norm ${mc.accNorm.toFixed(3)}`,
  };
  console.log(`RESULT ${JSON.stringify(res)}`);
}

// ---------------------------------------------------------------- child processes

async function ortSide(requestsPath: string): Promise<SideResult | string> {
  const script = fileURLToPath(import.meta.url);
  const r = await runChild(process.execPath, [...process.execArgv, script, '--worker', requestsPath], {}, 1200);
  const line = r.out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) return `LayerFlow run failed (exit ${r.code}${r.code === null ? ', killed — out of memory or time?' : ''}): ${lastLines(r.err || r.out)}`;
  return JSON.parse(line.slice(7)) as SideResult;
}

async function probePython(): Promise<string> {
  const r = await runChild(PYTHON, ['-c', 'import torch, transformers, gguf; from importlib.metadata import version; print(torch.__version__, transformers.__version__, version("gguf"))'], {}, 120);
  return r.code === 0 ? r.out.trim() : '';
}

async function torchSide(requestsPath: string, variant: string): Promise<SideResult | string> {
  const arg = JSON.stringify({ gguf: MODEL, requests: requestsPath, threads: THREADS, batch: BATCH, repeats: REPEATS, variant });
  const t = String(THREADS);
  const r = await runChild(PYTHON, [fileURLToPath(new URL('./mc_scorer_baseline.py', import.meta.url)), arg], { OMP_NUM_THREADS: t, MKL_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t }, 1200);
  const line = r.out.split('\n').find((l) => l.startsWith('{'));
  if (!line) return `PyTorch ${variant} failed (exit ${r.code}${r.code === null ? ', killed' : ''}): ${lastLines(r.err || r.out)}`;
  const j = JSON.parse(line) as SideResult & { attn: string; interop_threads: number };
  return { ...j, detail: `attention ${j.attn}, interop threads ${j.interop_threads}, GGUF load + dequantise ${j.setup_s.toFixed(1)} s` };
}

// ---------------------------------------------------------------- main
async function main(): Promise<void> {
  const wi = process.argv.indexOf('--worker');
  if (wi >= 0) return ortWorker(process.argv[wi + 1]);

  const docs = firstDocs();
  const options = docs.reduce((a, d) => a + d.options.length, 0);
  const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  let cpuModel = cpus()[0]?.model ?? '?';
  try { cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.+)/)?.[1] ?? cpuModel).trim(); } catch { /* not Linux */ }
  const pyVersions = await probePython();
  const pySkip = pyVersions ? '' : `PyTorch baseline skipped: ${PYTHON} cannot import torch, transformers and gguf (set PYTHON to an interpreter that can)`;

  console.log(`# multiple-choice scoring benchmark ${new Date().toISOString().slice(0, 10)}`);
  console.log(`machine: ${cpuModel}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM; load average ${load()} at start`);
  console.log(`LayerFlow: node ${process.version}, onnxruntime-node ${ortVersion}, device ${DEVICE}, intraOpNumThreads ${THREADS}, interOpNumThreads 1`);
  console.log(pySkip || `PyTorch: ${PYTHON} (torch / transformers / gguf ${pyVersions.replace(/ /g, ' / ')}), torch.set_num_threads(${THREADS}), OMP/MKL threads ${THREADS}`);
  console.log(`workload: ${MODEL.replace(HOME, '<home>')} (float32), BIG-bench ${TASK} first ${docs.length} documents = ${options} options; delimiter ${JSON.stringify(DELIMITER)}, batch ${BATCH}, maxLength ${MAX_LENGTH}, ${DOCS_PER_CALL} documents per scoreChoiceDocs call; warm-up = first call, then ${REPEATS} timed passes (median)\n`);

  const dir = mkdtempSync(join(tmpdir(), 'mc-scorer-'));
  const requestsPath = join(dir, 'requests.json');
  const sides: [string, SideResult | string, string][] = [];
  try {
    let before = load();
    sides.push(['LayerFlow (ORT) scoreChoiceDocs', await ortSide(requestsPath), before]);
    for (const v of VARIANTS) {
      before = load();
      const label = v === 'harness' ? 'PyTorch, full logits (harness)' : 'PyTorch, LM head at scored positions';
      sides.push([label, typeof sides[0][1] === 'string' ? 'not run: the LayerFlow side wrote no requests' : pySkip || (await torchSide(requestsPath, v)), before]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const ours = sides[0][1];
  const oursOps = typeof ours === 'string' ? NaN : options / median(ours.times);
  const rows: string[][] = [];
  for (const [label, r, before] of sides) {
    if (typeof r === 'string') {
      console.log(`${label}: ${r}`);
      rows.push([label, '—', '—', '—', '—', '—', '—', String(THREADS), before]);
      continue;
    }
    const med = median(r.times), ops = options / med;
    let diff = '—';
    if (typeof ours !== 'string' && r !== ours) {
      const d = Math.max(...r.lls.map((x, i) => Math.abs(x - ours.lls[i])));
      let flips = 0, k = 0;
      for (const doc of docs) {
        const a = ours.lls.slice(k, k + doc.options.length), b = r.lls.slice(k, k + doc.options.length);
        if (a.indexOf(Math.max(...a)) !== b.indexOf(Math.max(...b))) flips++;
        k += doc.options.length;
      }
      diff = `${d.toExponential(2)} (${flips} argmax flips)`;
    }
    const ratio = r === ours ? '1.00' : (oursOps / ops).toFixed(2);
    rows.push([label, ops.toFixed(2), med.toFixed(2), ratio, diff, r.warmup_s.toFixed(2), (r.max_rss_kib / 1024).toFixed(0), String(r.threads), before]);
    console.log(`${label}: ${ops.toFixed(2)} options/s (median ${med.toFixed(2)} s per pass of ${options}; ${r.times.map((x) => x.toFixed(2)).join(', ')}), warm-up ${r.warmup_s.toFixed(2)} s, setup ${r.setup_s.toFixed(1)} s, peak RSS ${rows.at(-1)![6]} MiB; LayerFlow/this ${ratio}; max |Δ ll| vs LayerFlow ${diff}; ${r.detail}`);
    console.log(`  lls (first 8): ${r.lls.slice(0, 8).map((x) => x.toFixed(4)).join(', ')}`);
  }
  console.log(`\nload average at end: ${load()}`);
  console.log('\n| implementation | options/s | s/pass (median) | LayerFlow ÷ this | max abs Δ ll vs LayerFlow | warm-up call (s) | peak RSS (MiB) | threads | load avg before (1/5/15 min) |');
  console.log('|---|---:|---:|---:|---|---:|---:|---:|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log('\nLayerFlow ÷ this > 1 means LayerFlow is faster.');
}

await main();
