/**
 * `influence` (SCIENCE.md §2, §4): for the cell's method (TracIn, cosine, DataInf), the full
 * [m_val × n_train] score matrix of every unit — streamed over the gradient shards through the ONNX
 * influence engine on the cell's device; the word embedding (sparse rows) exactly on the host — and
 * per block the combination of its units (mean or sum). Sign convention, method, λ per unit and the
 * combination rule are in scores.json; the tensors in scores.safetensors (`unit.<name>`,
 * `layer.<index>`, F32 [m × n], entry (j, k) = influence of training sample k on influence sample j).
 *
 * A compressed (projected) gradient store (src/influence/projection.ts, index format /2) is read the
 * same way: the methods only take inner products, which the projection preserves in expectation.
 * DataInf's λ_l there is the unprojected one's, scale · Σ_i ‖g_i‖² / (n · d_original), from the exact
 * norms the gradients stage keeps (from the index's per-unit sums when it has them, else one extra
 * pass over the training shards; the engine then skips its own λ pass), and each unit's projection is
 * recorded in scores.json. With the index's sums an unprojected F32 store's λ is known up front too,
 * and DataInf takes 2 passes over the shards instead of 3. Decoded training shards are kept between
 * passes while they fit a memory budget (ShardCache; LAYERFLOW_SHARD_CACHE_MB, default a quarter of
 * the host's memory): within it each shard is read, verified and decoded once.
 *
 * `validation: mean` (LayerIF, SCIENCE.md §2 "Cost"): one score per training sample against the
 * influence set as a whole — I(k) = (1/m) Σ_j I(v_j, g_k), the mean of the matrix's rows, which is what
 * layer_scores reads — computed as one validation row per unit instead of m: TracIn and DataInf are
 * linear in v, so the row is v̄ = (1/m) Σ_j v_j; cosine is not, and its row is ṽ = (1/m) Σ_j v_j/‖v_j‖
 * (cos(ṽ, g_k)·‖ṽ‖ = the mean of the cosines). Same passes over the shards, 1/m of the products;
 * tensors [1 × n], `validation: 'mean'` in scores.json. NDR needs the matrix (absent or `each`).
 */
import { z } from 'zod';
import { createInfluenceEngine } from '../src/influence/full-matrix.ts';
import { isProjected, originalD, readDenseSet, readEmbeddingSet, readGradientIndex, shardCacheBudget, ShardCache, shardChunks, type GradientIndex } from '../src/influence/gradient-store.ts';
import { projectedDamping, type UnitProjection } from '../src/influence/projection.ts';
import { sparseInfluenceMatrix, sparseNormSq } from '../src/influence/sparse-rows.ts';
import type { ArtifactStore } from '../src/store/artifacts.ts';
import { addScaledRow, rowNormSq } from '../src/influence/vector.ts';
import { SIGN_CONVENTION, type InfluenceMatrix, type InfluenceMethod, type UnitGradients } from '../src/influence/types.ts';
import { serializeSafetensors, type TensorInput } from '../src/weights/safetensors.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { withProgress } from '../src/runtime/progress.ts';

export const InfluenceSettings = z.strictObject({
  /** How a block's units combine into the block's (layer's) score. */
  combine: z.enum(['mean', 'sum']).default('mean'),
  /**
   * `each` (absent): the [m × n] matrix, one row per influence sample (NDR reads it). `mean`: one row,
   * the mean over the influence samples (LayerIF's per-layer scores), at 1/m of the products.
   */
  validation: z.enum(['each', 'mean'], { error: 'expected each (the [m × n] matrix, NDR) or mean (one score per training sample, LayerIF)' }).optional(),
});
export type InfluenceSettings = z.output<typeof InfluenceSettings>;

/** A `methods[]` entry of the NDR pipeline. */
export const MethodEntry = z.object({
  influence: z.enum(['tracin', 'cosine', 'datainf']),
  /** DataInf damping λ_l = dampingScale · mean squared gradient entry (SCIENCE.md §2). */
  dampingScale: z.number().positive().default(0.1),
});

export interface ScoresMeta {
  method: InfluenceMethod;
  convention: typeof SIGN_CONVENTION;
  combine: 'mean' | 'sum';
  n: number;
  /** Influence samples. */
  m: number;
  /** `mean`: every tensor is [1 × n], the mean over the m influence samples; absent: [m × n]. */
  validation?: 'mean';
  units: Array<{ unit: string; layer: number; kind: string; lambda?: number; tensor: string; projection?: UnitProjection }>;
  layers: Array<{ layer: number; units: string[]; tensor: string }>;
}

export const influence: StageImpl<InfluenceSettings> = async (ctx) => {
  const method = ctx.slice.method as { id: string; influence: InfluenceMethod; dampingScale: number };
  const store = ctx.store;
  const index = await readGradientIndex(store, ctx.inputs.gradients);
  // DataInf: λ per unit from the index's Σ‖g‖² when the store has them (no pass over the shards, and
  // the engine then needs 2 passes instead of 3); else on a projected store from a pass over the
  // shards (original size, see the header); else the engine's own.
  // Training shards are decoded once and kept for the later passes while they fit the budget.
  const shards = new ShardCache(store, index, shardCacheBudget());
  const lambda = method.influence !== 'datainf' ? undefined
    : indexLambdas(index, method.dampingScale) ?? (isProjected(index) ? await projectedLambdas(store, index, method.dampingScale, shards) : undefined);
  const mean = ctx.settings.validation === 'mean';
  const engine = createInfluenceEngine({ device: ctx.device });
  const matrices: InfluenceMatrix[] = [];
  /** cosine with `validation: mean`: each unit's ‖ṽ‖, the factor from cos(ṽ, g) to the mean of the cosines. */
  const cosineScale = new Map<string, number>();
  try {
    const influenceSet = [...(await readDenseSet(store, index, 'influence')).values()];
    const validation = mean ? influenceSet.map((v) => meanValidationRow(v, method.influence, cosineScale)) : influenceSet;
    const trainShards = index.sets.train.shards;
    ctx.heartbeat(withProgress(ctx, 0, trainShards.length, 'shard', { phase: 'dense' }));
    matrices.push(...(await engine.influenceMatrixStream({
      method: method.influence,
      dampingScale: method.dampingScale,
      ...(lambda ? { lambda } : {}),
      validation,
      train: async function* () {
        for (const [k, sh] of trainShards.entries()) {
          ctx.signal.throwIfAborted();
          ctx.heartbeat(withProgress(ctx, k, trainShards.length, 'shard', { phase: 'dense', shard: sh.index }));
          yield shardChunks(index, sh, await shards.read(sh));
        }
      },
    })));
  } finally {
    await engine.release();
  }
  for (const mat of matrices) {
    const c = cosineScale.get(mat.unit);
    if (c !== undefined) for (let i = 0; i < mat.data.length; i++) mat.data[i] *= c;
  }
  if (index.embedding) {
    ctx.heartbeat({ phase: 'embedding', stage: ctx.stage });
    const [train, val] = [await readEmbeddingSet(store, index, 'train'), await readEmbeddingSet(store, index, 'influence')];
    const e = index.embedding;
    const weLambda = method.influence === 'datainf' && e.projection ? lambda?.[e.unit] : undefined;
    // Sparse rows: the matrix is cheap; `mean` averages its rows (exact for every method).
    const we = sparseInfluenceMatrix({ method: method.influence, train, validation: val, dampingScale: method.dampingScale, lambda: weLambda });
    matrices.push({ ...(mean ? meanOfRows(we) : we), kind: 'embedding' });
  }
  const { n, m } = { n: index.sets.train.n, m: index.sets.influence.n };
  const rows = mean ? 1 : m;
  const tensors: Record<string, TensorInput> = {};
  const meta: ScoresMeta = { method: method.influence, convention: SIGN_CONVENTION, combine: ctx.settings.combine, n, m, ...(mean ? { validation: 'mean' as const } : {}), units: [], layers: [] };
  const all = [...index.units, ...(index.embedding ? [index.embedding] : [])];
  const kindOf = new Map(all.map((u) => [u.unit, u.kind]));
  const projectionOf = new Map(all.map((u) => [u.unit, u.projection]));
  for (const mat of matrices) {
    const tensor = `unit.${mat.unit}`;
    tensors[tensor] = { dtype: 'F32', shape: [rows, n], values: mat.data };
    const projection = projectionOf.get(mat.unit);
    meta.units.push({ unit: mat.unit, layer: mat.layer, kind: kindOf.get(mat.unit) ?? 'block', lambda: mat.lambda, tensor, ...(projection ? { projection } : {}) });
  }
  const blocks = [...new Set(meta.units.filter((u) => u.kind === 'block').map((u) => u.layer))].sort((a, b) => a - b);
  for (const l of blocks) {
    const us = matrices.filter((x) => kindOf.get(x.unit) === 'block' && x.layer === l);
    const acc = new Float64Array(rows * n);
    for (const u of us) for (let i = 0; i < acc.length; i++) acc[i] += u.data[i];
    if (ctx.settings.combine === 'mean') for (let i = 0; i < acc.length; i++) acc[i] /= us.length;
    tensors[`layer.${l}`] = { dtype: 'F32', shape: [rows, n], values: acc };
    meta.layers.push({ layer: l, units: us.map((u) => u.unit), tensor: `layer.${l}` });
  }
  return {
    files: { 'scores.json': JSON.stringify(meta, null, 1), 'scores.safetensors': serializeSafetensors(tensors, { convention: SIGN_CONVENTION, method: method.influence }) },
    metrics: { units: matrices.length, n, m, shard_reads: shards.reads, shard_cache_hits: shards.hits },
  };
};

/**
 * One unit's influence set as the single validation row of `validation: mean`, float64: v̄ = (1/m) Σ_j v_j
 * (TracIn, DataInf: linear in v), or for cosine ṽ = (1/m) Σ_j v_j / ‖v_j‖ (rows of norm 0 add nothing,
 * as their cosines are 0), its norm recorded in `cosineScale`.
 */
export function meanValidationRow(v: UnitGradients, method: InfluenceMethod, cosineScale: Map<string, number>): UnitGradients {
  const row = new Float64Array(v.d);
  for (let j = 0; j < v.n; j++) {
    let w = 1 / v.n;
    if (method === 'cosine') {
      const nn = rowNormSq(v.data, j, v.d);
      if (nn === 0) continue;
      w /= Math.sqrt(nn);
    }
    addScaledRow(row, v.data, j, v.d, w);
  }
  if (method === 'cosine') cosineScale.set(v.unit, Math.sqrt(rowNormSq(row, 0, v.d)));
  const { normSq: _n, ...ref } = v;
  return { ...ref, n: 1, data: row };
}

/** The [1 × n] mean of an [m × n] matrix's rows. */
export function meanOfRows(x: InfluenceMatrix): InfluenceMatrix {
  const data = new Float64Array(x.n);
  for (let j = 0; j < x.m; j++) for (let k = 0; k < x.n; k++) data[k] += x.data[j * x.n + k] / x.m;
  return { ...x, m: 1, data };
}

/**
 * DataInf λ of every unit (dense, and WE when projected) from the index's training Σ‖g‖² of the exact
 * gradients (gradients stage since session 9): the values projectedLambdas computes from the shards'
 * kept norms, and on an unprojected F32 store the engine's own (its row norms are those kept norms).
 * Undefined for stores without the sums, and for unprojected BF16 stores (the engine's λ there comes
 * from the stored, rounded rows; kept as it was).
 */
export function indexLambdas(index: GradientIndex, scale: number): Record<string, number> | undefined {
  const sums = index.trainNormSqSum;
  if (!sums || !(isProjected(index) || index.dtype === 'F32')) return undefined;
  if (!lambdaUnits(index).every((u) => typeof sums[u.unit] === 'number')) return undefined;
  return lambdasFromSums(index, sums, scale);
}

/** The units DataInf gets a λ for from the store: every dense unit, and the WE unit when it is projected. */
const lambdaUnits = (index: GradientIndex) => [...index.units, ...(index.embedding?.projection ? [index.embedding] : [])];

/** λ per unit (lambdaUnits) from its training Σ‖g‖²: scale · Σ / (n · d_original). */
function lambdasFromSums(index: GradientIndex, sums: Record<string, number>, scale: number): Record<string, number> {
  const n = index.sets.train.n;
  return Object.fromEntries(lambdaUnits(index).map((u) => [u.unit, projectedDamping({ sumNormSq: sums[u.unit], n, originalD: originalD(u), scale, unit: u.unit })]));
}

/**
 * DataInf λ of every dense unit of a projected store: scale · Σ_i ‖y_i‖² / (n · d_original) over the
 * training rows as stored (y = P g; a unit stored unprojected gets the usual λ). One pass over the shards.
 */
export async function projectedLambdas(store: ArtifactStore, index: GradientIndex, scale: number, shards = new ShardCache(store, index, 0)): Promise<Record<string, number>> {
  const sums: Record<string, number> = Object.fromEntries(lambdaUnits(index).map((u) => [u.unit, 0]));
  const e = index.embedding;
  for (const sh of index.sets.train.shards) {
    const d = await shards.read(sh);
    for (const c of shardChunks(index, sh, d)) {
      // Exact: the shard's ‖g‖² of the unprojected rows (written since); else the projected rows' (an estimate).
      const exact = d.normSq?.get(c.unit);
      let s = 0;
      if (exact) for (const x of exact) s += x;
      else for (let i = 0; i < c.n; i++) s += rowNormSq(c.data, i, c.d);
      sums[c.unit] += s;
    }
    if (e?.projection) {
      const exact = d.normSq?.get(e.unit);
      sums[e.unit] += exact ? exact.reduce((a, x) => a + x, 0) : d.embedding!.reduce((a, g) => a + sparseNormSq(g), 0);
    }
  }
  return lambdasFromSums(index, sums, scale);
}
