/**
 * Influence throughput benchmark: LayerFlow's ONNX paths (src/influence/full-matrix.ts) against a
 * NumPy baseline (bench/influence_baseline.py) computing the same formulas on the same gradients.
 *
 *   npx tsx bench/influence.ts
 *
 * Environment (defaults in brackets): BENCH_UNITS [4], BENCH_N [1024], BENCH_M [128], BENCH_D [32768],
 * BENCH_REPS [5], BENCH_BLOCK [256] (rows per chunk of the streamed path), BENCH_THREADS [all cores],
 * BENCH_PATHS [full,stream,mean,ts-mean] (which paths to run),
 * DEVICE [cpu:0], PYTHON [/tmp/venv-bench/bin/python if present, else python3].
 * Defaults model LoRA r=8 on q and v of a 4096-hidden model: 4 units (q.A, q.B, v.A, v.B) of
 * d = 8·4096 = 32768 each, n = 1024 training and m = 128 validation samples. See bench/README.md.
 *
 * Throughput = units · n / seconds (training samples scored per second, against all m validation
 * samples for the full matrix, against the mean validation gradient for the mean path); median of
 * BENCH_REPS runs over all units, after one warm-up run on one unit that builds the graphs (timed
 * separately). LayerFlow and NumPy runs alternate (NumPy runs as a server process, see
 * influence_baseline.py --serve), so drift in a shared machine's speed hits both alike; between the
 * two sides the bench pauses BENCH_GAP_MS [300] ms so that the other side's idle BLAS / ORT worker
 * threads (which spin for a while after a call) have stopped and do not steal the 2 cores.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { cosineInfluence } from '../src/influence/cosine.ts';
import { dataInfInfluence } from '../src/influence/datainf.ts';
import { correctionCost, createInfluenceEngine, rowBlockBytesFor } from '../src/influence/full-matrix.ts';
import { lastLevelCacheBytes } from '../src/runtime/index.ts';
import { tracInInfluence } from '../src/influence/tracin.ts';
import type { InfluenceMethod, UnitGradients } from '../src/influence/types.ts';
import { envInt } from './common.ts';
import { GEMM_SHAPES, measureGemmPeak } from './gemm-peak.ts';

const env = envInt;
const UNITS = env('BENCH_UNITS', 4), N = env('BENCH_N', 1024), M = env('BENCH_M', 128), D = env('BENCH_D', 32768);
const GAP_MS = Number(process.env.BENCH_GAP_MS ?? 300);
const REPS = env('BENCH_REPS', 5), BLOCK = env('BENCH_BLOCK', 256), THREADS = env('BENCH_THREADS', availableParallelism());
const DEVICE = process.env.DEVICE ?? 'cpu:0';
const ALL_PATHS = ['full', 'stream', 'mean', 'ts-mean'] as const;
const PATHS = (process.env.BENCH_PATHS ?? ALL_PATHS.join(',')).split(',').map((p) => p.trim());
for (const p of PATHS) {
  if (!(ALL_PATHS as readonly string[]).includes(p)) throw new Error(`BENCH_PATHS: unknown path '${p}'; expected a comma list of ${ALL_PATHS.join(', ')}`);
}
const runs = (p: string): boolean => PATHS.includes(p);
const PYTHON = process.env.PYTHON ?? (existsSync('/tmp/venv-bench/bin/python') ? '/tmp/venv-bench/bin/python' : 'python3');
const METHODS: InfluenceMethod[] = ['tracin', 'cosine', 'datainf'];
const ASSOC = correctionCost('gram', M, N, D) < correctionCost('projection', M, N, D) ? 'gram' : 'projection';

// ---- synthetic gradients: normal entries, per-sample scale log-normal (‖g‖ varies across samples) ----
function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function gradients(unit: string, rows: number, seed: number): UnitGradients {
  const rnd = makeRng(seed);
  const data = new Float32Array(rows * D);
  for (let i = 0; i < rows; i++) {
    const u0 = rnd() || 1e-12, u1 = rnd();
    const scale = 1e-3 * Math.exp(0.5 * Math.sqrt(-2 * Math.log(u0)) * Math.cos(2 * Math.PI * u1));
    for (let p = 0; p < D; p += 2) {
      const a = rnd() || 1e-12, b = rnd();
      const r = scale * Math.sqrt(-2 * Math.log(a));
      data[i * D + p] = r * Math.cos(2 * Math.PI * b);
      if (p + 1 < D) data[i * D + p + 1] = r * Math.sin(2 * Math.PI * b);
    }
  }
  return { unit, layer: 0, n: rows, d: D, data };
}

const unitNames = ['q_proj.lora_A', 'q_proj.lora_B', 'v_proj.lora_A', 'v_proj.lora_B'];
const names = Array.from({ length: UNITS }, (_, i) => unitNames[i] ?? `unit${i}`);
const t0 = performance.now();
const train = names.map((u, i) => gradients(u, N, 1000 + i));
const val = names.map((u, i) => gradients(u, M, 2000 + i));
const genSec = (performance.now() - t0) / 1000;

const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
console.log(`# influence benchmark ${new Date().toISOString().slice(0, 10)}`);
console.log(`machine: ${cpus()[0]?.model ?? '?'}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; onnxruntime-node ${ortVersion}`);
console.log(`sizes: units=${UNITS} n=${N} m=${M} d=${D} (float32), reps=${REPS}, stream block=${BLOCK} rows, DataInf association=${ASSOC}; data generated in ${genSec.toFixed(1)} s`);
const llc = lastLevelCacheBytes();
console.log(`LayerFlow: device ${DEVICE}, ORT intra-op threads ${THREADS}, norm/dot row blocks of ${(rowBlockBytesFor(llc) / 1024).toFixed(0)} KiB (last-level cache ${llc === undefined ? 'unknown' : `${(llc / 2 ** 20).toFixed(0)} MiB`})`);

// ---- NumPy baseline process (same gradients via raw float32 files) ----
interface PyInfo { numpy: string; python: string; blas: string; threads: string; blas_kernel?: string; openblas_env?: Record<string, string> }
const dir = mkdtempSync(join(tmpdir(), 'layerflow-bench-'));
/**
 * The NumPy side's environment: same thread count, and without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE —
 * some machines of this project set them, pinning OpenBLAS to its Haswell kernels even on AVX-512
 * CPUs, which would make the baseline unfairly slow. Only the baseline's command drops them.
 */
function baselineEnv(t: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: t, OMP_NUM_THREADS: t, MKL_NUM_THREADS: t };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}
const pinned = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'].filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]}`);

let info: PyInfo | undefined;
let skipped = '';
let ask: ((cmd: string) => Promise<{ seconds?: number }>) | undefined;
let quit = (): void => {};
const probe = spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' });
if (probe.error || probe.status !== 0) {
  skipped = `${PYTHON} with numpy not available (${probe.error?.message ?? probe.stderr.trim().split('\n').pop()}); create it: python3 -m venv /tmp/venv-bench && /tmp/venv-bench/bin/pip install numpy, or set PYTHON`;
} else {
  names.forEach((u, i) => {
    writeFileSync(join(dir, `train_${u}.f32`), new Uint8Array(train[i].data.buffer, train[i].data.byteOffset, train[i].data.byteLength));
    writeFileSync(join(dir, `val_${u}.f32`), new Uint8Array(val[i].data.buffer, val[i].data.byteOffset, val[i].data.byteLength));
  });
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ units: names, n: N, m: M, d: D, reps: REPS, methods: METHODS, association: ASSOC }));
  const t = String(THREADS);
  const py = spawn(PYTHON, [join(import.meta.dirname, 'influence_baseline.py'), dir, '--serve'], {
    stdio: ['pipe', 'pipe', 'pipe'], env: baselineEnv(t),
  });
  let stderr = '';
  py.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const lines = createInterface({ input: py.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`NumPy baseline exited: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(value as string) as Record<string, unknown>;
  };
  try {
    info = (await next()) as unknown as PyInfo;
    ask = async (cmd) => { py.stdin.write(`${cmd}\n`); return next(); };
    quit = () => { if (!py.stdin.writableEnded) py.stdin.end('quit\n'); };
  } catch (e) {
    skipped = `baseline failed to start: ${(e as Error).message}`;
    py.kill();
  }
}

// ---- runs, LayerFlow and NumPy alternating ----
type Path = (typeof ALL_PATHS)[number];
const ours = new Map<string, number[]>(); // `${path}:${method}` → seconds per rep
const numpy = new Map<string, number[]>(); // `${full|mean}:${method}`
const warm = new Map<string, number>();
const unit0 = new Map<string, Float64Array>();
const engine = createInfluenceEngine({ device: DEVICE, threads: THREADS, precision: 'float32' });
const runOne = async (path: Path, method: InfluenceMethod, u: number): Promise<Float64Array> => {
  const a = { method, train: train[u], validation: val[u] };
  if (path === 'full') return (await engine.influenceMatrix(a)).data;
  if (path === 'stream') return (await engine.influenceMatrix({ ...a, blockRows: BLOCK })).data;
  if (path === 'mean') return (await engine.influenceScores(a)).scores;
  const fn = method === 'tracin' ? tracInInfluence : method === 'cosine' ? cosineInfluence : dataInfInfluence;
  return fn(a).scores;
};
const push = (m: Map<string, number[]>, k: string, x: number) => m.set(k, [...(m.get(k) ?? []), x]);
const warmUp = async (path: Path, method: InfluenceMethod) => {
  const w0 = performance.now();
  unit0.set(`${path}:${method}`, await runOne(path, method, 0));
  warm.set(`${path}:${method}`, (performance.now() - w0) / 1000);
};
const rep = async (path: Path, method: InfluenceMethod) => {
  const s = performance.now();
  for (let u = 0; u < UNITS; u++) await runOne(path, method, u);
  push(ours, `${path}:${method}`, (performance.now() - s) / 1000);
};
const settle = () => new Promise((r) => setTimeout(r, ask ? GAP_MS : 0));
const npRep = async (path: 'full' | 'mean', method: InfluenceMethod) => {
  if (!ask) return;
  await settle();
  push(numpy, `${path}:${method}`, (await ask(`rep ${path} ${method}`)).seconds!);
  await settle();
};
try {
  for (const method of runs('full') || runs('stream') ? METHODS : []) {
    if (runs('full')) await warmUp('full', method);
    if (runs('stream')) await warmUp('stream', method);
    if (ask) await ask(`warm full ${method}`);
    for (let r = 0; r < REPS; r++) {
      if (runs('full')) await rep('full', method);
      await npRep('full', method);
      if (runs('stream')) await rep('stream', method);
    }
  }
  for (const method of runs('mean') || runs('ts-mean') ? METHODS : []) {
    if (runs('mean')) {
      await warmUp('mean', method);
      if (ask) await ask(`warm mean ${method}`);
      for (let r = 0; r < REPS; r++) {
        await rep('mean', method);
        await npRep('mean', method);
      }
    }
    if (runs('ts-mean')) {
      await warmUp('ts-mean', method);
      await rep('ts-mean', method); // the plain-TS path is slow; one run is enough
      if (!runs('mean')) {
        if (ask) await ask(`warm mean ${method}`);
        for (let r = 0; r < REPS; r++) await npRep('mean', method);
      }
    }
  }
  await engine.release();
  // A plain streaming read of 1 GiB (one sgemv) in the same run: the memory roofline of the mean-gradient path.
  const readGbps = ask && runs('mean') ? ((await ask('readbw')) as { gbps?: number }).gbps : undefined;
  quit();
  // ORT's fp32 MatMul peak with the same threads, same run, over the bench's square-ish shapes and the
  // full path's own [m × d]·[d × n]: the full path is those GEMMs, so its time on LayerFlow's side is
  // about their FLOPs at that peak or more (the ceiling printed below; approximate, as a peak over a few shapes is).
  const ortGemm = runs('full') && numpy.size ? await measureGemmPeak({ threads: THREADS, device: DEVICE, shapes: [...GEMM_SHAPES, { m: M, k: D, n: N }] }) : undefined;

  // ---- table ----
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(info
    ? `NumPy ${info.numpy} (Python ${info.python}, BLAS ${info.blas}), ${info.threads} BLAS threads; BLAS kernel in use: ${info.blas_kernel ?? 'unknown'}; ${pinned.length ? `this shell sets ${pinned.join(' ')}, unset for the baseline's command` : 'OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE not set'}${info.openblas_env && Object.keys(info.openblas_env).length ? ` (still seen by Python: ${JSON.stringify(info.openblas_env)})` : ''}`
    : `NumPy baseline skipped: ${skipped}`);
  console.log('');
  console.log('| path | method | LayerFlow (units·samples/s) | ms/unit | NumPy (units·samples/s) | ms/unit | LayerFlow / NumPy | max rel. diff | first call (s) |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  const label: Record<Path, string> = {
    full: 'full [m×n], in memory', stream: `full [m×n], streamed (${BLOCK}-row chunks)`,
    mean: 'mean-gradient, ONNX', 'ts-mean': 'mean-gradient, plain TS (reference)',
  };
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
  for (const path of ALL_PATHS.filter(runs)) {
    for (const method of METHODS) {
      const key = `${path}:${method}`;
      const s = median(ours.get(key)!);
      const npPath = path === 'stream' || path === 'full' ? 'full' : 'mean';
      const b = numpy.has(`${npPath}:${method}`) ? median(numpy.get(`${npPath}:${method}`)!) : undefined;
      let diff = '–';
      if (b !== undefined) {
        const ref = new Float64Array(new Uint8Array(readFileSync(join(dir, `np_${npPath}_${method}.f64`))).buffer);
        const got = unit0.get(key)!;
        let mx = 0, e = 0;
        for (let i = 0; i < ref.length; i++) mx = Math.max(mx, Math.abs(ref[i]));
        for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(got[i] - ref[i]));
        diff = got.length === ref.length ? (e / (mx || 1)).toExponential(1) : 'length differs';
      }
      console.log(`| ${label[path]} | ${method} | ${fmt((UNITS * N) / s)} | ${fmt((1000 * s) / UNITS)} | ${b !== undefined ? fmt((UNITS * N) / b) : 'skipped'} | ${b !== undefined ? fmt((1000 * b) / UNITS) : '–'} | ${b !== undefined ? (b / s).toFixed(2) : '–'} | ${diff} | ${warm.get(key)!.toFixed(2)} |`);
    }
  }
  if (runs('mean')) {
    // Every mean-gradient implementation reads G and V at least once: (n + m)·d values per unit. Both
    // sides' rate over those bytes shows how close each is to the machine's memory bandwidth.
    const bytes = UNITS * (N + M) * D * 4;
    const rate = (sec: number | undefined) => (sec === undefined ? '–' : (bytes / sec / 1e9).toFixed(1));
    console.log('');
    console.log(`mean-gradient, G and V read once = ${(bytes / UNITS / 2 ** 20).toFixed(0)} MiB per unit; that over the median time, in GB/s (LayerFlow / NumPy): ${METHODS.map((m) => {
      const np = numpy.get(`mean:${m}`);
      return `${m} ${rate(median(ours.get(`mean:${m}`)!))} / ${rate(np && median(np))}`;
    }).join(', ')}`);
    if (readGbps !== undefined) {
      console.log(`plain read of 1 GiB (x @ ones, one sgemv), same run: ${readGbps.toFixed(1)} GB/s; LayerFlow's mean-gradient rate as % of it: ${METHODS.map((m) => `${m} ${((100 * bytes) / median(ours.get(`mean:${m}`)!) / 1e9 / readGbps).toFixed(0)} %`).join(', ')}`);
    }
  }
  if (ortGemm) {
    // GEMM FLOPs per unit of the full path: P = V Gᵀ (2mnd) for all three methods, plus DataInf's correction.
    const flops = (m: InfluenceMethod) => 2 * (M * N * D + (m === 'datainf' ? correctionCost(ASSOC, M, N, D) : 0));
    console.log('');
    console.log(`full [m×n] in memory, NumPy's achieved GFLOP/s on its GEMMs and the ceiling of LayerFlow / NumPy on this CPU (≈: every FLOP at ORT MatMul's ${ortGemm.peak.toFixed(1)} GFLOP/s, same run; norms and elementwise work free): ${METHODS.map((m) => {
      const np = numpy.get(`full:${m}`);
      if (!np) return `${m} –`;
      const gf = (UNITS * flops(m)) / median(np) / 1e9;
      return `${m} ${gf.toFixed(1)} GFLOP/s, ceiling ${(ortGemm.peak / gf).toFixed(2)}`;
    }).join('; ')}`);
  }
  console.log('');
  console.log(`Median of ${REPS} runs over all units (plain TS: 1 run). max rel. diff: max |LayerFlow − NumPy| / max |NumPy| on unit 0.`);
  console.log('LayerFlow / NumPy > 1: LayerFlow faster. Streamed rows are compared with NumPy in memory, plain-TS rows with NumPy mean-gradient.');
} finally {
  quit();
  rmSync(dir, { recursive: true, force: true });
}
