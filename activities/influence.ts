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
 * DataInf's λ_l there is the unprojected one's estimate, scale · Σ_i ‖P g_i‖² / (n · d_original) (one
 * extra pass over the training shards for the norms; the engine then skips its own λ pass), and each
 * unit's projection is recorded in scores.json.
 */
import { z } from 'zod';
import { createInfluenceEngine } from '../src/influence/full-matrix.ts';
import { isProjected, originalD, readDenseSet, readEmbeddingSet, readGradientIndex, readShard, shardChunks, type GradientIndex } from '../src/influence/gradient-store.ts';
import { projectedDamping, type UnitProjection } from '../src/influence/projection.ts';
import { sparseInfluenceMatrix, sparseNormSq } from '../src/influence/sparse-rows.ts';
import type { ArtifactStore } from '../src/store/artifacts.ts';
import { rowNormSq } from '../src/influence/vector.ts';
import { SIGN_CONVENTION, type InfluenceMatrix, type InfluenceMethod } from '../src/influence/types.ts';
import { serializeSafetensors, type TensorInput } from '../src/weights/safetensors.ts';
import type { StageImpl } from '../src/store/stage-context.ts';
import { withProgress } from '../src/runtime/progress.ts';

export const InfluenceSettings = z.strictObject({
  /** How a block's units combine into the block's (layer's) score. */
  combine: z.enum(['mean', 'sum']).default('mean'),
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
  m: number;
  units: Array<{ unit: string; layer: number; kind: string; lambda?: number; tensor: string; projection?: UnitProjection }>;
  layers: Array<{ layer: number; units: string[]; tensor: string }>;
}

export const influence: StageImpl<InfluenceSettings> = async (ctx) => {
  const method = ctx.slice.method as { id: string; influence: InfluenceMethod; dampingScale: number };
  const store = ctx.store;
  const index = await readGradientIndex(store, ctx.inputs.gradients);
  // DataInf on a projected store: λ per unit from the original size (see the header).
  const lambda = method.influence === 'datainf' && isProjected(index) ? await projectedLambdas(store, index, method.dampingScale) : undefined;
  const engine = createInfluenceEngine({ device: ctx.device });
  const matrices: InfluenceMatrix[] = [];
  try {
    const validation = [...(await readDenseSet(store, index, 'influence')).values()];
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
          yield shardChunks(index, sh, await readShard(store, index, sh));
        }
      },
    })));
  } finally {
    await engine.release();
  }
  if (index.embedding) {
    ctx.heartbeat({ phase: 'embedding', stage: ctx.stage });
    const [train, val] = [await readEmbeddingSet(store, index, 'train'), await readEmbeddingSet(store, index, 'influence')];
    const e = index.embedding;
    const weLambda = method.influence === 'datainf' && e.projection ? lambda?.[e.unit] : undefined;
    matrices.push({ ...sparseInfluenceMatrix({ method: method.influence, train, validation: val, dampingScale: method.dampingScale, lambda: weLambda }), kind: 'embedding' });
  }
  const { n, m } = { n: index.sets.train.n, m: index.sets.influence.n };
  const tensors: Record<string, TensorInput> = {};
  const meta: ScoresMeta = { method: method.influence, convention: SIGN_CONVENTION, combine: ctx.settings.combine, n, m, units: [], layers: [] };
  const all = [...index.units, ...(index.embedding ? [index.embedding] : [])];
  const kindOf = new Map(all.map((u) => [u.unit, u.kind]));
  const projectionOf = new Map(all.map((u) => [u.unit, u.projection]));
  for (const mat of matrices) {
    const tensor = `unit.${mat.unit}`;
    tensors[tensor] = { dtype: 'F32', shape: [m, n], values: mat.data };
    const projection = projectionOf.get(mat.unit);
    meta.units.push({ unit: mat.unit, layer: mat.layer, kind: kindOf.get(mat.unit) ?? 'block', lambda: mat.lambda, tensor, ...(projection ? { projection } : {}) });
  }
  const blocks = [...new Set(meta.units.filter((u) => u.kind === 'block').map((u) => u.layer))].sort((a, b) => a - b);
  for (const l of blocks) {
    const us = matrices.filter((x) => kindOf.get(x.unit) === 'block' && x.layer === l);
    const acc = new Float64Array(m * n);
    for (const u of us) for (let i = 0; i < acc.length; i++) acc[i] += u.data[i];
    if (ctx.settings.combine === 'mean') for (let i = 0; i < acc.length; i++) acc[i] /= us.length;
    tensors[`layer.${l}`] = { dtype: 'F32', shape: [m, n], values: acc };
    meta.layers.push({ layer: l, units: us.map((u) => u.unit), tensor: `layer.${l}` });
  }
  return {
    files: { 'scores.json': JSON.stringify(meta, null, 1), 'scores.safetensors': serializeSafetensors(tensors, { convention: SIGN_CONVENTION, method: method.influence }) },
    metrics: { units: matrices.length, n, m },
  };
};

/**
 * DataInf λ of every dense unit of a projected store: scale · Σ_i ‖y_i‖² / (n · d_original) over the
 * training rows as stored (y = P g; a unit stored unprojected gets the usual λ). One pass over the shards.
 */
export async function projectedLambdas(store: ArtifactStore, index: GradientIndex, scale: number): Promise<Record<string, number>> {
  const sums = new Map(index.units.map((u) => [u.unit, 0]));
  const e = index.embedding;
  let weSum = 0;
  for (const sh of index.sets.train.shards) {
    const d = await readShard(store, index, sh);
    for (const c of shardChunks(index, sh, d)) {
      // Exact: the shard's ‖g‖² of the unprojected rows (written since); else the projected rows' (an estimate).
      const exact = d.normSq?.get(c.unit);
      let s = 0;
      if (exact) for (const x of exact) s += x;
      else for (let i = 0; i < c.n; i++) s += rowNormSq(c.data, i, c.d);
      sums.set(c.unit, sums.get(c.unit)! + s);
    }
    if (e?.projection) {
      const exact = d.normSq?.get(e.unit);
      weSum += exact ? exact.reduce((a, x) => a + x, 0) : d.embedding!.reduce((a, g) => a + sparseNormSq(g), 0);
    }
  }
  const n = index.sets.train.n;
  return {
    ...Object.fromEntries(index.units.map((u) => [u.unit, projectedDamping({ sumNormSq: sums.get(u.unit)!, n, originalD: originalD(u), scale, unit: u.unit })])),
    ...(e?.projection ? { [e.unit]: projectedDamping({ sumNormSq: weSum, n, originalD: originalD(e), scale, unit: e.unit }) } : {}),
  };
}
