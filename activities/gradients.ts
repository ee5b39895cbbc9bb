/**
 * `gradients` (SCIENCE.md §1): per-example gradients of every influence unit under the fine-tuned
 * checkpoint, for the training set (noisy labels: what the model was trained on) and the influence
 * set — LoRA A/B per block, the classification head (CL) and the word-embedding rows of the tokens
 * in each sample (WE, sparse). Written as safetensors shards, each committed as it finishes; the
 * heartbeat carries the cursor and a retry continues after the last committed shard (DESIGN.md
 * contract 4), reusing a committed shard only once its blob verifies byte for byte (resumeShard): a
 * missing, truncated or corrupt shard is recomputed. The manifest lists every shard, so a shard
 * lost after the commit makes the next lookup miss and the stage recompute just that shard.
 * The key holds no influence method: one gradient store serves every method.
 *
 * With `projection` (src/influence/projection.ts) every dense unit's per-sample gradient, and each
 * word-embedding token row, is stored randomly projected (seeded Rademacher JL, per unit), computed
 * from the full gradients of each shard through ONNX (projection-engine.ts) before the shard is
 * written: a compressed store (index format /2, the projection recorded per unit) that the influence
 * stage reads like any other. `dtype: BF16` stores the values as bfloat16 (half the bytes). Both
 * settings are part of the key (absent: the key is what it was before).
 *
 * With `projection.calibration: N` (src/influence/calibration-basis.ts) each dense unit keeps the
 * coordinates of its gradient in the span of the first N training samples' gradients (with
 * 'influence': of all influence samples' gradients, whose shards then come first) exactly and
 * randomly projects only the rest: the first shards wait in memory until N rows exist, the
 * basis is committed (like a shard, numbered after the last one, in the store's dtype), then they and
 * every later shard are projected with exactly the stored basis. A retry reuses a basis that
 * verifies; without one it recomputes every shard, since those committed were projected with it.
 */
import { z } from 'zod';
import * as M from '../src/models/index.ts';
import { sparseFromRowMap, sparseNormSq } from '../src/influence/sparse-rows.ts';
import { decodeBasis, encodeShard, trainNormSqSums, makeBasisFile, resumeShard, withBasisRanks, GRADIENT_STORE_FORMAT, GRADIENT_STORE_FORMAT_COMPRESSED, type BasisEntry, type GradientIndex, type GradientSet, type GradientUnit, type ShardEntry } from '../src/influence/gradient-store.ts';
import { ProjectionSettings, unitProjection } from '../src/influence/projection.ts';
import { rowNormSq } from '../src/influence/vector.ts';
import { GradientProjector } from '../src/influence/projection-engine.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { withProgress } from '../src/runtime/progress.ts';
import { stageMicroBatch } from '../src/runtime/oom.ts';
import { encodeFor, modelOf, readAdapter, type ClassifierRecord, type TaskDataset } from './shared.ts';
import { ConfigError } from '../src/errors.ts';
import { paramsToWeights } from '../src/train/lm.ts';
import { DataError } from '../src/errors.ts';

export const GradientSettings = z.strictObject({
  /** Samples per shard (one commit each). */
  shardSize: z.number().int().min(1).default(32),
  /** Samples per batched gradient pass. */
  batchSize: z.number().int().min(1).default(8),
  /** Also the word-embedding unit (WE) and the classification head (CL). */
  embedding: z.boolean().default(true),
  head: z.boolean().default(true),
  /**
   * Store every unit randomly projected: `{ dim: k }` (values per unit) or `{ factor: f }` (k = ⌈d/f⌉),
   * `seed`, `embedding` (project the WE rows too, default true). Absent: the full gradients.
   */
  projection: ProjectionSettings.optional(),
  /** Float type of the stored gradient values: BF16 halves the store (8-bit mantissa). Absent: F32. */
  dtype: z.enum(['F32', 'BF16']).optional(),
});
export type GradientSettings = z.output<typeof GradientSettings>;

export const EMBEDDING_UNIT = 'model.embed_tokens.weight';

export const gradients: StageImpl<GradientSettings> = async (ctx) => {
  const s = ctx.settings;
  const ds = await ctx.store.readJson<TaskDataset>(ctx.inputs.data, 'dataset.json');
  const rec = await ctx.store.readJson<ClassifierRecord>(ctx.inputs.finetune, 'classifier.json');
  const model = await modelOf(ctx);
  const { config } = model;
  const { params, shapes } = await readAdapter(ctx.store, ctx.inputs.finetune);
  const weights = paramsToWeights(params, shapes, new Map(model.weights));

  const lora = rec.spec.lora;
  if (!lora) throw new ConfigError('gradients: the fine-tuned adapter has no LoRA tensors (the influence units)');
  const numLabels = rec.spec.numLabels;
  const head = s.head && numLabels !== undefined; // an answer-token LM has no classification head
  const units: GradientUnit[] = M.loraUnits(config, lora).map((u) => ({ unit: u.key, layer: u.layer, kind: 'block' as const, d: u.shape[0] * u.shape[1], shape: u.shape }));
  if (head) units.push({ unit: 'score.weight', layer: config.numLayers, kind: 'classifier', d: numLabels! * config.hiddenSize, shape: [numLabels!, config.hiddenSize] });
  const embedding = s.embedding ? { unit: EMBEDDING_UNIT, layer: -1, kind: 'embedding' as const, d: config.vocabSize * config.hiddenSize, shape: [config.vocabSize, config.hiddenSize], D: config.hiddenSize, vocab: config.vocabSize } : null;
  // What the shards store: each unit as computed, or projected (its record says how). A calibrated
  // store's records get their basis ranks once the basis exists (from the first training shards).
  const pr = s.projection;
  // Calibrated: the basis comes from the first `calibration` rows of `calibrationSet`, whose shards are computed first.
  const calibrationSet: GradientSet = pr?.calibration === 'influence' ? 'influence' : 'train';
  const calibration = pr?.calibration === undefined ? 0 : pr.calibration === 'influence' ? ds.influence.length : Math.min(pr.calibration, ds.train.length);
  let stored: GradientUnit[] = units.map((u) => {
    const projection = pr ? unitProjection(u.unit, u.d, pr, calibration ? 'calibrated' : 'rademacher') : undefined;
    return projection ? { ...u, d: projection.to, projection } : u;
  });
  const weProjection = pr && embedding && pr.embedding ? unitProjection(embedding.unit, embedding.D, pr, 'rademacher-rows') : undefined;
  const storedEmbedding = embedding && weProjection ? { ...embedding, D: weProjection.to, d: embedding.vocab * weProjection.to, projection: weProjection } : embedding;

  // Shard plan: train shards first, then influence shards (influence first when they calibrate the
  // projection); numbering is global and deterministic.
  const plan: Array<{ set: GradientSet; rowOffset: number; rows: M.Sample[] }> = [];
  const sets = [['train', ds.train], ['influence', ds.influence]] as const;
  for (const [set, list] of calibrationSet === 'influence' ? [sets[1], sets[0]] : sets) {
    const samples = (list as Parameters<typeof encodeFor>[2][]).map((e) => encodeFor(model.tokenizer, rec, e));
    for (let o = 0; o < samples.length; o += s.shardSize) plan.push({ set, rowOffset: o, rows: samples.slice(o, o + s.shardSize) });
  }
  // Progress in samples over the whole plan: samplesBefore[i] = rows of the shards before shard i.
  const samplesBefore = [0];
  for (const p of plan) samplesBefore.push(samplesBefore[samplesBefore.length - 1] + p.rows.length);
  const totalSamples = samplesBefore[plan.length];

  // A calibrated store's basis is committed like a shard, numbered after the last gradient shard,
  // before any shard projected with it. A retry reuses it when it verifies; without it, shards
  // committed earlier were projected with a basis that is gone, so they are all recomputed.
  const basisIndex = plan.length;
  let basis: Map<string, Float32Array> | undefined;
  let basisEntry: BasisEntry | undefined;
  let trustShards = true;
  if (calibration) {
    const b = await ctx.store.shardStatus(ctx.key, basisIndex);
    if (b.status === 'ok' && b.file.meta?.set === 'basis' && b.file.meta.rows === calibration && b.file.meta.from === calibrationSet) {
      const ranks = new Map(Object.entries((b.file.meta.ranks ?? {}) as Record<string, number>));
      stored = withBasisRanks(stored, ranks);
      basis = decodeBasis(await ctx.store.readBlob(b.file, 'gradient basis'), stored, 'gradient basis');
      basisEntry = { ...b.file, index: basisIndex, samples: calibration, set: calibrationSet };
    } else {
      trustShards = false;
    }
  }

  let runner: M.PerExampleGradRunner | undefined;
  let projector: GradientProjector | undefined;
  const shards: ShardEntry[] = [];
  let computed = 0, reused = 0, rejected = 0;
  interface Computed { i: number; dense: Map<string, Float32Array>; normSq: Map<string, Float64Array>; losses: Float32Array; we: ReturnType<typeof sparseFromRowMap>[] }
  const pending: Computed[] = []; // shards computed before the basis exists (calibration)
  let calibrationRows = 0;

  /** Project (when asked) and commit one computed shard. */
  const commit = async ({ i, dense, normSq, losses, we }: Computed): Promise<void> => {
    const p = plan[i];
    if (pr) {
      projector ??= await GradientProjector.create({ device: ctx.device, threads: ctx.threads });
      for (const u of stored) {
        if (!u.projection) continue;
        const g = dense.get(u.unit)!;
        dense.set(u.unit, u.projection.kind === 'calibrated'
          ? await projector.projectCalibrated(u.unit, u.projection, basis!.get(u.unit)!, g, p.rows.length)
          : await projector.project({ unit: u.unit, ...u.projection }, g, p.rows.length));
      }
      if (weProjection) {
        normSq.set(EMBEDDING_UNIT, Float64Array.from(we, (x) => sparseNormSq(x)));
        await projectRows(projector, { unit: EMBEDDING_UNIT, ...weProjection }, we);
      }
    }
    // The record also carries each unit's Σ‖g‖² over the shard's rows: DataInf's λ from the index alone.
    const normSqSum = Object.fromEntries([...normSq].map(([u, x]) => [u, x.reduce((a, v) => a + v, 0)]));
    if (embedding && !normSq.has(EMBEDDING_UNIT)) normSqSum[EMBEDDING_UNIT] = we.reduce((a, x) => a + sparseNormSq(x), 0);
    const file = await ctx.store.commitShard(ctx.key, i, encodeShard({ rows: p.rows.length, losses, dense, embedding: embedding ? we : undefined, ...(normSq.size ? { normSq } : {}) }, stored, storedEmbedding?.D, s.dtype), { set: p.set, rows: p.rows.length, normSqSum });
    shards.push({ ...file, index: i, set: p.set, rowOffset: p.rowOffset, rows: p.rows.length });
    computed++;
    ctx.heartbeat(withProgress(ctx, samplesBefore[i + 1], totalSamples, 'sample', { key: ctx.key, done: i + 1 }));
  };

  /** The basis from the first `calibration` rows of the pending shards (the calibration set's); committed, then those shards. */
  const makeBasis = async (): Promise<void> => {
    const firstRows = (u: GradientUnit): Float32Array => {
      const from = u.projection!.from, G = new Float32Array(calibration * from);
      let o = 0;
      for (const c of pending) {
        const take = Math.min(plan[c.i].rows.length, calibration - o);
        G.set(c.dense.get(u.unit)!.subarray(0, take * from), o * from);
        if ((o += take) === calibration) break;
      }
      return G;
    };
    projector ??= await GradientProjector.create({ device: ctx.device, threads: ctx.threads });
    const engine = projector;
    const made = await makeBasisFile(stored, firstRows, calibration, s.dtype ?? 'F32', (G, rows, d, r) => engine.calibrationBasis(G, rows, d, r));
    stored = made.units;
    basis = made.bases;
    const { bytes, ranks } = made;
    const file = await ctx.store.commitShard(ctx.key, basisIndex, bytes, { set: 'basis', from: calibrationSet, rows: calibration, ranks: Object.fromEntries(ranks) });
    basisEntry = { ...file, index: basisIndex, samples: calibration, set: calibrationSet };
    for (const c of pending.splice(0)) await commit(c);
  };

  try {
    for (let i = 0; i < plan.length; i++) {
      ctx.signal.throwIfAborted();
      const p = plan[i];
      // A committed shard is reused only once it verifies byte for byte; a missing, torn or
      // corrupt one is recomputed here (and rewritten under its hash), never trusted.
      const decision = trustShards ? await resumeShard(ctx.store, ctx.key, i, { set: p.set, rows: p.rows.length }) : { compute: 'new' as const };
      if ('reuse' in decision) {
        shards.push({ ...decision.reuse, index: i, set: p.set, rowOffset: p.rowOffset, rows: p.rows.length });
        reused++;
        continue;
      }
      if (decision.compute === 'rejected') rejected++;
      runner ??= await M.PerExampleGradRunner.create({
        graph: M.buildPerExampleGradGraph({ config, lora, numLabels, units: { lora: true, head, embeddingRows: s.embedding } }),
        device: ctx.device,
      });
      const dense = new Map<string, Float32Array>(units.map((u) => [u.unit, new Float32Array(p.rows.length * u.d)]));
      const losses = new Float32Array(p.rows.length);
      const we: ReturnType<typeof sparseFromRowMap>[] = [];
      // Per-example gradients do not depend on the batch: after an out-of-memory failure the retry
      // runs smaller batches (ctx.microBatchScale), with the same shards.
      const micro = stageMicroBatch(ctx, s.batchSize);
      for (let b = 0; b < p.rows.length; b += micro) {
        ctx.signal.throwIfAborted();
        const chunk = p.rows.slice(b, b + micro);
        const batch = M.padBatch(chunk, { padId: rec.padId });
        const r = await runner.run({ weights, batch });
        losses.set(r.losses, b);
        for (const u of units) dense.get(u.unit)!.set(r.grads.get(u.unit)!, b * u.d);
        if (embedding) {
          const g = r.grads.get(M.EMBEDDING_ROWS)!;
          for (let k = 0; k < chunk.length; k++) we.push(sparseFromRowMap(M.embeddingRowGrads({ grads: g, batch, sample: k, hidden: config.hiddenSize }), config.hiddenSize));
        }
        ctx.heartbeat(withProgress(ctx, samplesBefore[i] + b + chunk.length, totalSamples, 'sample', { key: ctx.key, done: i, rows: b + chunk.length }));
      }
      // Every shard keeps each row's exact ‖g‖² per unit: DataInf's λ on a projected store is the
      // unprojected one, and on an unprojected F32 store the influence engine skips its norm pass. A
      // row's norm is finite exactly when all its values are (float32 squares cannot overflow float64
      // sums), so the one pass also checks them; only a failing unit is scanned, to name the sample.
      const normSq = new Map<string, Float64Array>();
      for (const u of units) {
        const g = dense.get(u.unit)!;
        const n2 = Float64Array.from({ length: p.rows.length }, (_, r) => rowNormSq(g, r, u.d));
        if (!n2.every(Number.isFinite)) {
          for (let k = 0; k < g.length; k++) if (!Number.isFinite(g[k])) throw new DataError(`gradients: unit ${u.unit}, ${p.set} sample ${p.rowOffset + Math.floor(k / u.d)} has a non-finite gradient`);
        }
        normSq.set(u.unit, n2);
      }
      const c: Computed = { i, dense, normSq, losses, we };
      if (calibration && !basis) {
        // The calibration samples are the first rows of the plan: hold their shards until the basis exists.
        pending.push(c);
        calibrationRows += p.set === calibrationSet ? p.rows.length : 0;
        if (calibrationRows >= calibration) await makeBasis();
        continue;
      }
      await commit(c);
    }
    if (pending.length) throw new DataError(`gradients: ${pending.length} shard(s) computed but the calibration basis was never made (calibration ${calibration} ${calibrationSet} rows, ${calibrationRows} computed)`);
  } finally {
    await runner?.release();
    await projector?.release();
  }
  const index: GradientIndex = {
    format: pr || (s.dtype ?? 'F32') !== 'F32' ? GRADIENT_STORE_FORMAT_COMPRESSED : GRADIENT_STORE_FORMAT, dtype: s.dtype ?? 'F32', shardSize: s.shardSize, units: stored, embedding: storedEmbedding,
    ...(pr ? { projection: pr } : {}),
    ...(basisEntry ? { basis: basisEntry } : {}),
    ...withTrainNormSqSum(shards, [...units.map((u) => u.unit), ...(embedding ? [EMBEDDING_UNIT] : [])]),
    sets: {
      train: { n: ds.train.length, shards: shards.filter((x) => x.set === 'train').map(withoutSums) },
      influence: { n: ds.influence.length, shards: shards.filter((x) => x.set === 'influence').map(withoutSums) },
    },
    loss: numLabels !== undefined
      ? 'per-sample cross-entropy of the classifier (noisy label for train, true label for influence) under the fine-tuned checkpoint'
      : 'per-sample mean cross-entropy of the gold answer tokens after the context, under the fine-tuned checkpoint',
  };
  return {
    files: { 'index.json': JSON.stringify(index) },
    metrics: {
      shards: plan.length, shards_computed: computed, shards_reused: reused, shards_rejected: rejected, units: units.length + (embedding ? 1 : 0), samples: ds.train.length + ds.influence.length,
      ...(pr ? { dense_values_stored: stored.reduce((a, u) => a + u.d, 0), dense_values_original: units.reduce((a, u) => a + u.d, 0), projection_seconds: projector?.seconds ?? 0 } : {}),
      ...(basisEntry ? { basis_bytes: basisEntry.size, basis_directions: stored.reduce((a, u) => a + (u.projection?.rank ?? 0), 0) } : {}),
    },
  };
};

/** The index's trainNormSqSum from the training shards' records (absent when a reused record predates it). */
function withTrainNormSqSum(shards: ShardEntry[], units: string[]): { trainNormSqSum?: Record<string, number> } {
  const sums = trainNormSqSums(shards.filter((x) => x.set === 'train'), units);
  return sums ? { trainNormSqSum: sums } : {};
}

/** A shard's index entry without its record's per-unit sums (they are in trainNormSqSum; the index stays small). */
function withoutSums(x: ShardEntry): ShardEntry {
  if (!x.meta || !('normSqSum' in x.meta)) return x;
  const { normSqSum: _s, ...meta } = x.meta;
  return { ...x, meta };
}

/** Project every token row of a shard's sparse WE gradients in one run (rows keep their token ids). */
async function projectRows(projector: GradientProjector, spec: { unit: string; seed: number; from: number; to: number }, samples: Array<{ rows: Int32Array; values: Float32Array | Float64Array }>): Promise<void> {
  const total = samples.reduce((a, e) => a + e.rows.length, 0);
  const X = new Float32Array(total * spec.from);
  let o = 0;
  for (const e of samples) { X.set(e.values, o * spec.from); o += e.rows.length; }
  const Y = await projector.project(spec, X, total);
  o = 0;
  for (const e of samples) { e.values = Y.slice(o * spec.to, (o + e.rows.length) * spec.to); o += e.rows.length; }
}
