/**
 * The compressed gradient store (issue 13): how much a seeded random projection per unit
 * (src/influence/projection.ts) shrinks the gradient store, and how well per-layer DataInf and
 * TracIn scores computed from it keep the ranking of the scores from the full store — on
 * SmolLM2-135M-Instruct (the fetched Q4_1 GGUF) and real data, through the pipeline's own stages.
 *
 *   npx tsx bench/gradient-projection.ts
 *
 * Per task, in a temporary LayerFlow home (models and BIG-bench data linked from .layerflow/), stages
 * run in process on fake contexts (no Temporal, no MLflow):
 *   data → finetune → gradients (full store) → gradients with `projection: { factor: F0, seed: 1 },
 *   dtype: T0` (the stage end to end, to time it against the full one), then for every dtype T, factor
 * F and seed s the full store compressed shard by shard with the same projector (GradientProjector,
 * ONNX) and encoder — identical to what the stage writes, which the bench checks at (F0, T0, 1) — and
 * the `influence` stage (datainf, tracin) on the full store and on each compressed one.
 *
 * Printed per (F, T, s): store bytes (all shards) and the ratio to the full store; the projection's time
 * over all shards; Spearman's ρ between full and projected scores of each block (layer) — the
 * block's [m × n] matrix averaged over the influence samples (LayerIF's per-layer scores I_l(k),
 * what layer_scores reads), min and median over the 30 blocks — and of every matrix entry (NDR reads
 * the [m × n] matrix), min / median; ρ of the layer quality S_l (+VE) across blocks; and where the
 * store has them the WE and CL units' ρ.
 *
 * Tasks:
 *   winowhy  configs/layerif-moe-winowhy.yaml: BIG-bench winowhy as an answer-token LM, LoRA r = 4 on
 *            q, v (120 units: A 4×576, q.B 576×4, v.B 192×4), 64 train × 16 influence, ≤ 128 tokens,
 *            2 epochs; no WE, no head.
 *   winowhy-all7  the same with LoRA r = 8 on all seven projections (420 units, ~10 MB per sample unprojected).
 *   spam     configs/quickstart.yaml: SpamAssassin, 20% noisy labels, LoRA classifier (r = 4 on q, v +
 *            head), 64 × 16, 48 tokens, 3 epochs; WE (sparse rows) and CL too.
 * Environment: BENCH_MATRICES [sjlt: the random matrix, projection.matrix; sjlt and/or rademacher], BENCH_STAGE_MATRIX [sjlt], BENCH_CALIBRATION [0,16,influence: 0 = plain random projection, N or influence = projection.calibration], BENCH_NORMS [exact; estimate = λ from the projected rows], BENCH_FACTORS [8,10,16], BENCH_DTYPES [BF16] (F32 and/or BF16), BENCH_SEEDS [1,2,3],
 * BENCH_STAGE_FACTOR [10], BENCH_STAGE_DTYPE [BF16], BENCH_STAGE_CALIBRATION [0: none; N or influence], BENCH_TASKS [winowhy,spam], BENCH_THREADS
 * [all cores], LAYERFLOW_HOME [.layerflow], BENCH_HOME [a fresh temporary folder, removed after; a
 * folder given here is kept, and stages already in it are reused (marked "cached": not timings)].
 */
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { ArtifactStore, refOf, type ArtifactRef } from '../src/store/artifacts.ts';
import type { StageContext, StageImpl, StageResult } from '../src/store/stage-context.ts';
import { data, DataSettings } from '../activities/data.ts';
import { finetune, FinetuneSettings } from '../activities/finetune.ts';
import { gradients, GradientSettings } from '../activities/gradients.ts';
import { influence, InfluenceSettings, type ScoresMeta } from '../activities/influence.ts';
import { encodeShard, makeBasisFile, readDenseSet, readGradientIndex, readShard, GRADIENT_STORE_FORMAT_COMPRESSED, type BasisEntry, type GradientDtype, type GradientIndex, type GradientUnit, type ShardEntry } from '../src/influence/gradient-store.ts';
import { ProjectionSettings, unitProjection } from '../src/influence/projection.ts';
import { GradientProjector } from '../src/influence/projection-engine.ts';
import { scoreVariant } from '../src/influence/layer-scores.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../src/weights/safetensors.ts';
import { envInt } from './common.ts';
import { rowNormSq } from '../src/influence/vector.ts';
import { sparseNormSq } from '../src/influence/sparse-rows.ts';
import { canonicalJson, sha256 } from '../src/store/hash.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC_HOME = process.env.LAYERFLOW_HOME ?? join(ROOT, '.layerflow');
const list = (name: string, dflt: string) => (process.env[name] ?? dflt).split(',').map((s) => s.trim()).filter(Boolean);
const FACTORS = list('BENCH_FACTORS', '8,10,16').map(Number);
const SEEDS = list('BENCH_SEEDS', '1,2,3').map(Number);
const STAGE_FACTOR = envInt('BENCH_STAGE_FACTOR', 10);
const DTYPES = list('BENCH_DTYPES', 'BF16') as GradientDtype[];
const STAGE_DTYPE = (process.env.BENCH_STAGE_DTYPE ?? 'BF16') as GradientDtype;
/** The timed stage run's projection.calibration (0: none). */
const STAGE_CALIBRATION: number | 'influence' = process.env.BENCH_STAGE_CALIBRATION === 'influence' ? 'influence' : Number(process.env.BENCH_STAGE_CALIBRATION ?? 0);
for (const d of [...DTYPES, STAGE_DTYPE]) if (d !== 'F32' && d !== 'BF16') throw new Error(`BENCH_DTYPES / BENCH_STAGE_DTYPE: "${d}"; expected F32 or BF16`);
const THREADS = envInt('BENCH_THREADS', availableParallelism());
/** Calibration sizes to compare (0 = a plain random projection; N = projection.calibration N, calibration-basis.ts). */
const CALIBRATIONS = list('BENCH_CALIBRATION', '0,16,influence').map((x) => (x === 'influence' ? x : Number(x)));
for (const c of CALIBRATIONS) if (c !== 'influence' && !(Number.isInteger(c) && c >= 0)) throw new Error(`BENCH_CALIBRATION: "${c}"; expected 0, a sample count or influence`);
/** exact (default, what the gradients stage writes): DataInf λ from the rows' exact ‖g‖²; estimate: from the projected rows (stores written before). */
const EXACT_NORMS = (process.env.BENCH_NORMS ?? 'exact') !== 'estimate';
const METHODS = ['datainf', 'tracin'] as const;
type Matrix = 'rademacher' | 'sjlt';
const MATRICES = list('BENCH_MATRICES', 'sjlt') as Matrix[];
const STAGE_MATRIX = (process.env.BENCH_STAGE_MATRIX ?? 'sjlt') as Matrix;
for (const x of [...MATRICES, STAGE_MATRIX]) if (x !== 'rademacher' && x !== 'sjlt') throw new Error(`BENCH_MATRICES / BENCH_STAGE_MATRIX: "${x}"; expected rademacher or sjlt`);
const matrixSetting = (x: Matrix) => ({ matrix: x });

interface TaskSpec { label: string; task: Record<string, unknown>; data: unknown; finetune: unknown; gradients: Record<string, unknown> }
const TASKS: Record<string, TaskSpec> = {
  winowhy: {
    label: 'BIG-bench winowhy, answer-token LM (LayerIF, configs/layerif-moe-winowhy.yaml sizes)',
    task: { id: 'winowhy', source: 'bigbench', name: 'winowhy' },
    data: { trainSize: 64, influenceSize: 16, evaluationSize: 16 },
    finetune: { epochs: 2, batchSize: 16, microBatchSize: 8, maxLength: 128 },
    gradients: { shardSize: 16, batchSize: 8, embedding: false },
  },
  'winowhy-all7': {
    label: 'BIG-bench winowhy, answer-token LM, LoRA r 8 on all seven projections (the issue\'s ~10 MB-per-sample store)',
    task: { id: 'winowhy', source: 'bigbench', name: 'winowhy' },
    data: { trainSize: 64, influenceSize: 16, evaluationSize: 16 },
    finetune: { epochs: 2, batchSize: 16, microBatchSize: 8, maxLength: 128, rank: 8, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
    gradients: { shardSize: 16, batchSize: 8, embedding: false },
  },
  spam: {
    label: 'SpamAssassin, LoRA classifier, 20% noisy labels (NDR, configs/quickstart.yaml sizes)',
    task: { id: 'spam-assassin', source: 'spam-assassin' },
    data: { noise: 0.2, trainSize: 64, influenceSize: 16, evaluationSize: 32 },
    finetune: { epochs: 3, batchSize: 16, microBatchSize: 8, lr: 0.002, rank: 4, alpha: 4, targets: ['q_proj', 'v_proj'], maxLength: 48 },
    gradients: { shardSize: 16, batchSize: 8 },
  },
};

// ---- stages on a fake context (keyed by what they read, so a kept BENCH_HOME reuses them) ----
async function runStage<S>(store: ArtifactStore, home: string, stage: string, impl: StageImpl<S>, settings: S, slice: Record<string, unknown>, inputs: Record<string, ArtifactRef>): Promise<{ ref: ArtifactRef; result: StageResult; seconds: number; cached: boolean }> {
  const key = sha256(canonicalJson({ bench: 'gradient-projection/1', stage, settings, slice, inputs: Object.fromEntries(Object.entries(inputs).map(([k, r]) => [k, r.key])) }));
  const hit = await store.lookup(key);
  if (hit.status === 'hit') {
    const { bench_seconds: seconds = NaN, ...metrics } = hit.manifest.metrics ?? {};
    return { ref: refOf(hit.manifest), result: { files: {}, metrics }, seconds, cached: true };
  }
  const ctx: StageContext<S> = { sweep: 'bench', cellId: 'c', stage, key, inputs, store, home, device: 'cpu:0', threads: THREADS, attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, settings, slice };
  const t0 = performance.now();
  const result = await impl(ctx);
  const seconds = (performance.now() - t0) / 1000;
  const m = await store.commit({ key, parts: { stage, version: 1, slice: {}, upstream: {} }, kind: stage, files: result.files, metrics: { ...result.metrics, bench_seconds: seconds } });
  return { ref: refOf(m), result, seconds, cached: false };
}
const took = (r: { seconds: number; cached: boolean }) => `${r.seconds.toFixed(1)} s${r.cached ? ' (cached)' : ''}`;

// ---- the full store compressed shard by shard (what the stage does per shard, on stored gradients) ----
async function compress(store: ArtifactStore, full: GradientIndex, settings: ProjectionSettings, dtype: GradientDtype, key: string): Promise<{ ref: ArtifactRef; index: GradientIndex; seconds: number }> {
  const projector = await GradientProjector.create({ device: 'cpu:0', threads: THREADS });
  const set = settings.calibration === 'influence' ? 'influence' as const : 'train' as const;
  const N = settings.calibration === undefined ? 0 : settings.calibration === 'influence' ? full.sets.influence.n : settings.calibration;
  // Calibrated: the basis of each unit from the first N rows of the calibration set, as the stage makes it.
  let basis: Map<string, Float32Array> | undefined, basisEntry: BasisEntry | undefined;
  let units: GradientUnit[] = full.units.map((u) => { const p = unitProjection(u.unit, u.d, settings, N ? 'calibrated' : 'rademacher'); return p ? { ...u, d: p.to, projection: p } : u; });
  if (N) {
    const rows = await readDenseSet(store, full, set);
    const made = await makeBasisFile(units, (u) => Float32Array.from(rows.get(u.unit)!.data.subarray(0, N * u.projection!.from)), N, dtype, (G, r, d, k) => projector.calibrationBasis(G, r, d, k));
    units = made.units;
    basis = made.bases;
    const index = full.sets.train.shards.length + full.sets.influence.shards.length;
    basisEntry = { ...(await store.commitShard(key, index, made.bytes, { set: 'basis', from: set, rows: N })), index, samples: N, set };
  }
  const e = full.embedding;
  const weP = e && settings.embedding ? unitProjection(e.unit, e.D, settings, 'rademacher-rows') : undefined;
  const emb = e && weP ? { ...e, D: weP.to, d: e.vocab * weP.to, projection: weP } : e;
  const shards: ShardEntry[] = [];
  try {
    for (const sh of [...full.sets.train.shards, ...full.sets.influence.shards]) {
      const s = await readShard(store, full, sh);
      // As the stage does (unless BENCH_NORMS=estimate): each row's exact ‖g‖² kept beside its projection.
      const normSq = new Map<string, Float64Array>();
      for (const u of units) {
        const g = s.dense.get(u.unit)!;
        if (EXACT_NORMS) normSq.set(u.unit, Float64Array.from({ length: s.rows }, (_, r) => rowNormSq(g, r, u.projection?.from ?? u.d)));
        if (!u.projection) continue;
        s.dense.set(u.unit, u.projection.kind === 'calibrated'
          ? await projector.projectCalibrated(u.unit, u.projection, basis!.get(u.unit)!, g, s.rows)
          : await projector.project({ unit: u.unit, ...u.projection }, g, s.rows));
      }
      if (EXACT_NORMS && weP && s.embedding) normSq.set(e!.unit, Float64Array.from(s.embedding, (x) => sparseNormSq(x)));
      if (normSq.size) s.normSq = normSq;
      if (weP && s.embedding) {
        const total = s.embedding.reduce((a, x) => a + x.rows.length, 0);
        const X = new Float32Array(total * weP.from);
        let o = 0;
        for (const x of s.embedding) { X.set(x.values, o * weP.from); o += x.rows.length; }
        const Y = await projector.project({ unit: e!.unit, ...weP }, X, total);
        o = 0;
        for (const x of s.embedding) { x.values = Y.slice(o * weP.to, (o + x.rows.length) * weP.to); o += x.rows.length; }
      }
      const f = await store.commitShard(key, sh.index, encodeShard(s, units, emb?.D, dtype));
      shards.push({ ...f, index: sh.index, set: sh.set, rowOffset: sh.rowOffset, rows: sh.rows });
    }
  } finally {
    await projector.release();
  }
  const index: GradientIndex = {
    ...full, format: GRADIENT_STORE_FORMAT_COMPRESSED, dtype, units, embedding: emb, projection: settings, ...(basisEntry ? { basis: basisEntry } : {}),
    sets: { train: { n: full.sets.train.n, shards: shards.filter((x) => x.set === 'train') }, influence: { n: full.sets.influence.n, shards: shards.filter((x) => x.set === 'influence') } },
  };
  const m = await store.commit({ key, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: { 'index.json': JSON.stringify(index) } });
  return { ref: refOf(m), index, seconds: projector.seconds }; // the projector's seconds include the basis (its GEMMs)
}

// ---- the influence stage with validation each (the [m × n] matrix) against mean (one row) ----
/**
 * BENCH_MEAN_VALIDATION=1 (or `only`: this and nothing after it): the influence stage on the full store,
 * timed (never from the cache) with `validation: each` and `mean`, alternating, best of BENCH_MEAN_REPS
 * [2]; the layer scores (+VE) of both and the largest difference of the per-sample layer scores.
 */
async function meanValidation(store: ArtifactStore, home: string, grads: ArtifactRef, slice: Record<string, unknown>): Promise<void> {
  const reps = envInt('BENCH_MEAN_REPS', 2);
  console.log(`\ninfluence stage on the full store, validation each ([m × n]) vs mean ([1 × n]), best of ${reps} alternating runs:`);
  console.log('| method | each (s) | mean (s) | each ÷ mean | max |Δ| of the per-sample layer scores / max |score| | ρ of S_l (+VE), each vs mean |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const method of ['datainf', 'tracin', 'cosine'] as const) {
    const sl = { ...slice, method: { id: method, influence: method, dampingScale: 0.1 } };
    const best = { each: Infinity, mean: Infinity };
    const layers: Record<'each' | 'mean', Map<number, Float64Array>> = { each: new Map(), mean: new Map() };
    for (let r = 0; r < reps; r++) {
      for (const v of ['each', 'mean'] as const) {
        const settings = InfluenceSettings.parse(v === 'mean' ? { validation: 'mean' } : {});
        const ctx: StageContext<InfluenceSettings> = { sweep: 'bench', cellId: 'c', stage: 'influence', key: `mean-validation-${v}`, inputs: { gradients: grads }, store, home, device: 'cpu:0', threads: THREADS, attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, settings, slice: sl };
        const t0 = performance.now();
        const res = await influence(ctx);
        best[v] = Math.min(best[v], (performance.now() - t0) / 1000);
        const meta = JSON.parse(res.files['scores.json'] as string) as ScoresMeta;
        const { tensors } = parseSafetensorsBytes(res.files['scores.safetensors'] as Uint8Array, 'scores');
        const rows = meta.validation === 'mean' ? 1 : meta.m;
        for (const l of meta.layers) layers[v].set(l.layer, meanRows(rawToFloat32(tensors.get(l.tensor)!, l.tensor), rows, meta.n));
      }
    }
    let off = 0, top = 0;
    const sE: number[] = [], sM: number[] = [];
    for (const [l, e] of layers.each) {
      const mm = layers.mean.get(l)!;
      e.forEach((x, k) => { off = Math.max(off, Math.abs(mm[k] - x)); top = Math.max(top, Math.abs(x)); });
      sE.push(scoreVariant(e, '+VE'));
      sM.push(scoreVariant(mm, '+VE'));
    }
    console.log(`| ${method} | ${best.each.toFixed(2)} | ${best.mean.toFixed(2)} | ${(best.each / best.mean).toFixed(2)}× | ${(off / top).toExponential(1)} | ${spearman(sE, sM).toFixed(4)} |`);
  }
}

// ---- DataInf with λ from the index's Σ‖g‖² (2 passes over the shards) against without (3) ----
/**
 * BENCH_INDEX_LAMBDA=1 (or `only`): the full store's index with trainNormSqSum (computed here from the
 * shards' kept norms, as the gradients stage now writes it; stores cached from before lack it) and
 * without, the DataInf influence stage timed on both (alternating, best of BENCH_MEAN_REPS [2]).
 */
async function indexLambda(store: ArtifactStore, home: string, ix: GradientIndex, slice: Record<string, unknown>): Promise<void> {
  const reps = envInt('BENCH_MEAN_REPS', 2);
  const units = [...ix.units.map((u) => u.unit), ...(ix.embedding ? [ix.embedding.unit] : [])];
  const sums: Record<string, number> = Object.fromEntries(units.map((u) => [u, 0]));
  for (const sh of ix.sets.train.shards) {
    const d = await readShard(store, ix, sh);
    for (const u of ix.units) sums[u.unit] += d.normSq?.get(u.unit)?.reduce((a, x) => a + x, 0) ?? rowNormSqAll(d.dense.get(u.unit)!);
    if (ix.embedding) sums[ix.embedding.unit] += d.embedding!.reduce((a, x) => a + sparseNormSq(x), 0);
  }
  const { trainNormSqSum: _drop, ...without } = ix;
  const refs: Record<'with' | 'without', ArtifactRef> = {
    with: refOf(await store.commit({ key: `bench-index-lambda-with-${Date.now()}`, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: { 'index.json': JSON.stringify({ ...ix, trainNormSqSum: sums }) } })),
    without: refOf(await store.commit({ key: `bench-index-lambda-without-${Date.now()}`, parts: { stage: 'gradients', version: 1, slice: {}, upstream: {} }, kind: 'gradients', files: { 'index.json': JSON.stringify(without) } })),
  };
  const sl = { ...slice, method: { id: 'datainf', influence: 'datainf', dampingScale: 0.1 } };
  const best = { with: Infinity, without: Infinity };
  const out: Record<string, Map<string, Float32Array>> = {};
  for (let r = 0; r < reps; r++) {
    for (const v of ['without', 'with'] as const) {
      const ctx: StageContext<InfluenceSettings> = { sweep: 'bench', cellId: 'c', stage: 'influence', key: `index-lambda-${v}`, inputs: { gradients: refs[v] }, store, home, device: 'cpu:0', threads: THREADS, attempt: 1, heartbeat: () => undefined, signal: new AbortController().signal, settings: InfluenceSettings.parse({}), slice: sl };
      const t0 = performance.now();
      const res = await influence(ctx);
      best[v] = Math.min(best[v], (performance.now() - t0) / 1000);
      const { tensors } = parseSafetensorsBytes(res.files['scores.safetensors'] as Uint8Array, 'scores');
      out[v] = new Map([...tensors].map(([name, x]) => [name, rawToFloat32(x, name)]));
    }
  }
  let off = 0;
  for (const [name, x] of out.without) {
    const y = out.with.get(name)!, scale = Math.max(1e-30, ...x.map(Math.abs));
    x.forEach((v, q) => { off = Math.max(off, Math.abs(y[q] - v) / scale); });
  }
  console.log(`\nDataInf influence stage on the full store (${mib(bytesOf(ix))}${ix.dtype !== 'F32' || ix.units.some((u) => u.projection) ? '' : ', F32'}), best of ${reps}: λ from the shards / the engine's norm pass (3 passes) ${best.without.toFixed(2)} s; λ from the index's Σ‖g‖² (2 passes) ${best.with.toFixed(2)} s; ${(best.without / best.with).toFixed(2)}×; max |Δ| / max |score| over every tensor ${off.toExponential(1)}`);
}
const rowNormSqAll = (g: Float32Array) => g.reduce((a, x) => a + x * x, 0);

// ---- statistics ----
function ranks(x: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const r = new Float64Array(x.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && x[idx[j + 1]] === x[idx[i]]) j++;
    for (let q = i; q <= j; q++) r[idx[q]] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}
/** Spearman's ρ: Pearson correlation of the (tie-averaged) ranks. */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const [ra, rb] = [ranks(a), ranks(b)];
  const n = ra.length, ma = (n - 1) / 2;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) { sab += (ra[i] - ma) * (rb[i] - ma); saa += (ra[i] - ma) ** 2; sbb += (rb[i] - ma) ** 2; }
  return sab / Math.sqrt(saa * sbb);
}
const median = (xs: number[]) => { const s = [...xs].sort((p, q) => p - q); const h = s.length >> 1; return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2; };

interface Scores { layers: Map<number, Float32Array>; units: Map<string, { kind: string; data: Float32Array; lambda?: number }>; m: number; n: number }
async function readScores(store: ArtifactStore, ref: ArtifactRef): Promise<Scores> {
  const meta = await store.readJson<ScoresMeta>(ref, 'scores.json');
  const { tensors } = parseSafetensorsBytes(await store.read(ref, 'scores.safetensors'), 'scores');
  return {
    m: meta.m, n: meta.n,
    layers: new Map(meta.layers.map((l) => [l.layer, rawToFloat32(tensors.get(l.tensor)!, l.tensor)])),
    units: new Map(meta.units.map((u) => [u.unit, { kind: u.kind, data: rawToFloat32(tensors.get(u.tensor)!, u.tensor), lambda: u.lambda }])),
  };
}
/** Mean over the m influence samples of an [m × n] matrix: one score per training sample. */
function meanRows(x: Float32Array, m: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let j = 0; j < m; j++) for (let k = 0; k < n; k++) out[k] += x[j * n + k] / m;
  return out;
}

interface Compare { perLayer: number[]; heldOut: number[]; entries: number[]; quality: number; extra: string[] }
/** `skip`: the calibration samples (the first training rows), left out of `heldOut`. */
function compare(full: Scores, proj: Scores, skip: number): Compare {
  const perLayer: number[] = [], heldOut: number[] = [], entries: number[] = [], sFull: number[] = [], sProj: number[] = [];
  for (const [l, f] of full.layers) {
    const p = proj.layers.get(l)!;
    const [mf, mp] = [meanRows(f, full.m, full.n), meanRows(p, full.m, full.n)];
    perLayer.push(spearman(mf, mp));
    heldOut.push(spearman(mf.subarray(skip), mp.subarray(skip)));
    entries.push(spearman(f, p));
    sFull.push(scoreVariant(mf, '+VE'));
    sProj.push(scoreVariant(mp, '+VE'));
  }
  const extra: string[] = [];
  const dev = [...full.units].filter(([, f]) => f.lambda !== undefined).map(([u, f]) => Math.abs(proj.units.get(u)!.lambda! / f.lambda! - 1));
  if (dev.length) extra.push(`λ vs full: median ${(100 * median(dev)).toFixed(1)} %, max ${(100 * Math.max(...dev)).toFixed(1)} %`);
  for (const [unit, f] of full.units) {
    if (f.kind === 'block') continue;
    const p = proj.units.get(unit)!.data;
    extra.push(`${f.kind === 'embedding' ? 'WE' : 'CL'} ${spearman(meanRows(f.data, full.m, full.n), meanRows(p, full.m, full.n)).toFixed(3)} / ${spearman(f.data, p).toFixed(3)}`);
  }
  return { perLayer, heldOut, entries, quality: spearman(sFull, sProj), extra };
}

/** Shard bytes (the values per sample); the basis file of a calibrated store is counted apart. */
const bytesOf = (ix: GradientIndex) => [...ix.sets.train.shards, ...ix.sets.influence.shards].reduce((a, s) => a + s.size, 0);
const basisBytes = (ix: GradientIndex) => ix.basis?.size ?? 0;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

async function benchTask(name: string, spec: TaskSpec): Promise<void> {
  const keep = process.env.BENCH_HOME;
  const home = keep ? join(keep, name) : await mkdtemp(join(tmpdir(), 'lf-bench-proj-'));
  try {
    await mkdir(home, { recursive: true });
    for (const d of ['models', 'data']) if (existsSync(join(SRC_HOME, d)) && !existsSync(join(home, d))) await symlink(join(SRC_HOME, d), join(home, d));
    const store = new ArtifactStore(join(home, 'store'));
    const slice = { task: spec.task, seed: 1, model: { id: 'smollm2-135m', source: 'smollm2-135m-instruct' } };
    console.log(`## ${name}: ${spec.label} (load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} before)`);
    const ds = await runStage(store, home, 'data', data, DataSettings.parse(spec.data), slice, {});
    const ft = await runStage(store, home, 'finetune', finetune, FinetuneSettings.parse(spec.finetune), slice, { data: ds.ref });
    const inputs = { data: ds.ref, finetune: ft.ref };
    const full = await runStage(store, home, 'gradients', gradients, GradientSettings.parse(spec.gradients), slice, inputs);
    const fullIndex = await readGradientIndex(store, full.ref);
    const stageSettings = GradientSettings.parse({ ...spec.gradients, projection: { factor: STAGE_FACTOR, seed: 1, ...(STAGE_CALIBRATION ? { calibration: STAGE_CALIBRATION } : {}), ...matrixSetting(STAGE_MATRIX) }, ...(STAGE_DTYPE !== 'F32' ? { dtype: STAGE_DTYPE } : {}) });
    const staged = await runStage(store, home, 'gradients', gradients, stageSettings, slice, inputs);
    const stagedIndex = await readGradientIndex(store, staged.ref);
    const n = fullIndex.sets.train.n, m = fullIndex.sets.influence.n;
    const dense = fullIndex.units.reduce((a, u) => a + u.d, 0);
    console.log(`finetune ${took(ft)} (best influence loss ${(ft.result.metrics!.best_influence_loss as number).toFixed(4)}); ${n} train × ${m} influence samples; ${fullIndex.units.length} dense units (${dense} values per sample)${fullIndex.embedding ? ` + WE rows of ${fullIndex.embedding.D}` : ''}`);
    console.log(`gradients stage, full store: ${took(full)} (${((n + m) / full.seconds).toFixed(2)} samples/s), ${mib(bytesOf(fullIndex))}`);
    console.log(`gradients stage, projection { factor: ${STAGE_FACTOR}, seed: 1${STAGE_CALIBRATION ? `, calibration: ${STAGE_CALIBRATION}` : ''}, matrix: ${STAGE_MATRIX} }${STAGE_DTYPE !== 'F32' ? `, dtype ${STAGE_DTYPE}` : ''}: ${took(staged)}, of which projection ${(staged.result.metrics!.projection_seconds as number).toFixed(2)} s (${(100 * (staged.result.metrics!.projection_seconds as number) / staged.seconds).toFixed(1)} %), ${mib(bytesOf(stagedIndex))}`);

    const fullScores = new Map<string, Scores>();
    for (const method of METHODS) {
      const r = await runStage(store, home, 'influence', influence, InfluenceSettings.parse({}), { method: { id: method, influence: method, dampingScale: 0.1 } }, { gradients: full.ref });
      fullScores.set(method, await readScores(store, r.ref));
    }
    if (process.env.BENCH_MEAN_VALIDATION) await meanValidation(store, home, full.ref, slice);
    if (process.env.BENCH_INDEX_LAMBDA) await indexLambda(store, home, fullIndex, slice);
    console.log('');
    if (process.env.BENCH_MEAN_VALIDATION === 'only' || process.env.BENCH_INDEX_LAMBDA === 'only') return;
    const perSample = bytesOf(fullIndex) / (n + m);
    console.log(`full store ${mib(bytesOf(fullIndex))} = ${(perSample / 1024).toFixed(1)} KiB per sample; "ratio" = shard bytes, full / compressed; "with basis" adds a calibrated store's basis file, here (${n + m} samples) and at 3000 samples (the issue's size)`);
    console.log(`ρ per layer "held out" leaves the calibration samples (the first N training rows, whose scores a calibrated store keeps almost exactly) out of the ranking`);
    console.log('');
    console.log(`| matrix | calibration N | factor | dtype | seed | stored values / sample (dense) | store | ratio | basis | ratio with basis: here / 3000 samples | projection (s) | DataInf ρ per layer min / median | DataInf ρ per layer held out min / median | DataInf ρ entries min / median | DataInf ρ of S_l | TracIn ρ per layer min / median | TracIn ρ per layer held out min / median | TracIn ρ entries min / median | TracIn ρ of S_l | DataInf: λ deviation; WE, CL ρ (mean / entries) |`);
    console.log('|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    let checkedStage = false;
    for (const matrix of MATRICES) for (const calibration of CALIBRATIONS) for (const dtype of DTYPES) for (const factor of FACTORS) {
      for (const seed of SEEDS) {
        const settings = ProjectionSettings.parse({ factor, seed, ...(calibration ? { calibration } : {}), ...matrixSetting(matrix) });
        const c = await compress(store, fullIndex, settings, dtype, `bench-compressed-${matrix}-${calibration}-${factor}-${dtype}-${seed}-${Date.now()}`);
        if (factor === STAGE_FACTOR && seed === 1 && dtype === STAGE_DTYPE && calibration === STAGE_CALIBRATION && matrix === STAGE_MATRIX) {
          // The offline compression is what the stage writes: same values (to float32 matmul rounding).
          let maxRel = 0;
          for (const [a, b] of [[c.index, stagedIndex]] as const) {
            for (const [i, sh] of [...a.sets.train.shards, ...a.sets.influence.shards].entries()) {
              const [x, y] = [await readShard(store, a, sh), await readShard(store, b, [...b.sets.train.shards, ...b.sets.influence.shards][i])];
              for (const u of a.units) {
                const [p, q] = [x.dense.get(u.unit)!, y.dense.get(u.unit)!];
                let num = 0, den = 0;
                for (let t = 0; t < p.length; t++) { num = Math.max(num, Math.abs(p[t] - q[t])); den = Math.max(den, Math.abs(q[t])); }
                maxRel = Math.max(maxRel, num / (den || 1));
              }
            }
          }
          checkedStage = true;
          console.log(`(stage-written store at factor ${factor}, ${dtype}, seed 1${calibration ? `, calibration ${calibration}` : ''} vs this compression of the full store: max |Δ| / max |value| per unit ${maxRel.toExponential(1)})`);
        }
        const b = basisBytes(c.index), cs = bytesOf(c.index), at3000 = (x: number) => (3000 * x) / (n + m);
        const cols: string[] = [matrix, String(calibration || '–'), String(factor), dtype, String(seed), String(c.index.units.reduce((a, u) => a + u.d, 0)), mib(cs), `${(bytesOf(fullIndex) / cs).toFixed(1)}×`, b ? mib(b) : '–',
          b ? `${(bytesOf(fullIndex) / (cs + b)).toFixed(1)}× / ${(at3000(bytesOf(fullIndex)) / (at3000(cs) + b)).toFixed(1)}×` : '–', c.seconds.toFixed(2)];
        let extra: string[] = [];
        for (const method of METHODS) {
          const r = await runStage(store, home, 'influence', influence, InfluenceSettings.parse({}), { method: { id: method, influence: method, dampingScale: 0.1 } }, { gradients: c.ref });
          const cmp = compare(fullScores.get(method)!, await readScores(store, r.ref), calibration === 'influence' ? 0 : calibration);
          const summary = (xs: number[]) => `${Math.min(...xs).toFixed(3)} / ${median(xs).toFixed(3)} (${xs.filter((x) => x >= 0.95).length}/${xs.length} ≥ 0.95)`;
          cols.push(summary(cmp.perLayer), summary(cmp.heldOut), `${Math.min(...cmp.entries).toFixed(3)} / ${median(cmp.entries).toFixed(3)}`, cmp.quality.toFixed(3));
          if (process.env.BENCH_DETAIL) console.log(`  ${method} ρ per layer: ${cmp.perLayer.map((x) => x.toFixed(3)).join(' ')}`);
          if (method === 'datainf') extra = cmp.extra;
        }
        cols.push(extra.join('; ') || '–');
        console.log(`| ${cols.join(' | ')} |`);
      }
    }
    if (!checkedStage) console.log(`(BENCH_FACTORS / BENCH_DTYPES / BENCH_CALIBRATION / BENCH_MATRICES have no ${STAGE_FACTOR} / ${STAGE_DTYPE} / ${STAGE_CALIBRATION} / ${STAGE_MATRIX}: the stage-written store was not compared)`);
    console.log('');
  } finally {
    if (!keep) await rm(home, { recursive: true, force: true });
  }
}

const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
console.log(`# gradient projection benchmark ${new Date().toISOString().slice(0, 10)}`);
console.log(`machine: ${cpus()[0]?.model ?? '?'}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; onnxruntime-node ${ortVersion}; threads ${THREADS}`);
console.log(`projection: Rademacher ±1/√k per unit (layerflow.rademacher/1) or sparse signs, one ±1 per column in k balanced buckets (layerflow.sjlt/1), k = ⌈d / factor⌉, or calibrated (N given: the span of the first N training gradients kept exactly, up to ⌊k/2⌋ directions, the residual projected); WE rows ⌈D / factor⌉; values stored as F32 or BF16; DataInf λ from the original d and ${EXACT_NORMS ? "each row's exact ‖g‖² (kept in the shard)" : "the projected rows' ‖Pg‖² (an estimate)"}; ρ = Spearman, full (F32, unprojected) vs compressed store\n`);
for (const name of list('BENCH_TASKS', 'winowhy,spam')) {
  if (!TASKS[name]) throw new Error(`BENCH_TASKS: unknown task "${name}"; expected ${Object.keys(TASKS).join(', ')}`);
  await benchTask(name, TASKS[name]);
}
