/**
 * Pruning a whole model (SCIENCE.md §3b) with per-block sparsities: every linear module of block l
 * pruned to φ_l by magnitude (|W|, one threshold per matrix) or Wanda (|W_ij|·‖X_j‖₂, per output
 * row) — and the calibration activation norms ‖X_j‖₂ of every module's input over real text.
 */
import { ConfigError, DataError } from '../errors.ts';
import * as M from '../models/index.ts';
import { createSession } from '../runtime/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import { magnitudePrune } from './magnitude.ts';
import { wandaPrune, wandaScores } from './wanda.ts';
import type { WeightMatrix } from './types.ts';

export type PruneCriterion = 'magnitude' | 'wanda';

/** Prunable parameters per block (d_l): the sizes of its linear modules' weights. */
export function blockSizes(config: ModelConfig): number[] {
  return Array.from({ length: config.numLayers }, (_, l) => M.blockModules(config, l).reduce((a, m) => a + m.inF * m.outF, 0));
}

/** A module's weight as a [out × in] matrix (GPT-2 Conv1D stores [in × out]: refused, Llama family only). */
function matrixOf(weights: M.WeightMap, m: M.LinearModule): WeightMatrix {
  if (m.layout !== 'linear') throw new ConfigError(`pruning: module ${m.name} is a Conv1D (GPT-2); expected a Llama-family model`);
  const w = weights.get(`${m.name}.weight`);
  if (!w) throw new DataError(`pruning: weight ${m.name}.weight is missing`);
  return { name: m.name, rows: m.outF, cols: m.inF, data: w.data };
}

/**
 * ‖X_j‖₂ of every linear module's input over the calibration samples' real tokens (Wanda): one
 * forward graph with `act_sumsq.<module>` outputs, summed over batches; module name → [in].
 */
export async function calibrationNorms(a: { config: ModelConfig; weights: M.WeightMap; samples: M.Sample[]; batchSize: number; device: string; threads?: number; onBatch?(): void }): Promise<Map<string, Float64Array>> {
  if (!a.samples.length) throw new DataError('calibration: no samples');
  const graph = M.buildForwardGraph({ config: a.config, activationNorms: true });
  const session = await createSession({ model: graph.model, device: a.device, threads: a.threads });
  const sums = new Map<string, Float64Array>();
  try {
    for (let i = 0; i < a.samples.length; i += a.batchSize) {
      const batch = M.padBatch(a.samples.slice(i, i + a.batchSize).map((s) => ({ inputIds: s.inputIds })));
      const names = graph.outputNames.filter((n) => n.startsWith('act_sumsq.'));
      const out = await session.run(M.feedsFor(graph, a.weights, batch), names);
      for (const n of names) {
        const v = out[n].data as Float32Array;
        const acc = sums.get(n) ?? new Float64Array(v.length);
        for (let j = 0; j < v.length; j++) acc[j] += v[j];
        sums.set(n, acc);
      }
      a.onBatch?.();
    }
  } finally {
    await session.release();
  }
  return new Map([...sums].map(([n, s]) => [n.slice('act_sumsq.'.length), s.map(Math.sqrt)]));
}

/** OWL's layer outlier ratio LOD_l over the block's Wanda scores (fraction above M × mean). */
export function blockOutlierRatios(config: ModelConfig, weights: M.WeightMap, norms: Map<string, Float64Array>, M_ = 5): number[] {
  return Array.from({ length: config.numLayers }, (_, l) => {
    let sum = 0, count = 0;
    const scores = M.blockModules(config, l).map((m) => wandaScores(matrixOf(weights, m), norms.get(m.name)!));
    for (const s of scores) for (const x of s) { sum += x; count++; }
    const thr = (M_ * sum) / count;
    let out = 0;
    for (const s of scores) for (const x of s) if (x > thr) out++;
    return out / count;
  });
}

export interface PrunedModel {
  /** Every weight of the model, linear modules pruned. */
  weights: M.WeightMap;
  /** Realised sparsity per block (pruned / d_l) and per module. */
  realised: number[];
  modules: Array<{ name: string; layer: number; sparsity: number }>;
}

/** Prune every block's linear modules to its ratio. */
export interface PruneArgs { config: ModelConfig; weights: M.WeightMap; ratios: number[]; criterion: PruneCriterion; norms?: Map<string, Float64Array> }

/**
 * A pruning pass block by block: each linear module of block l pruned to φ_l. Yields the number of
 * blocks done after each one (a caller may await between blocks), returns the pruned model.
 */
export function* pruneSteps(a: PruneArgs): Generator<number, PrunedModel> {
  if (a.ratios.length !== a.config.numLayers) throw new DataError(`pruneModel: ${a.ratios.length} ratios for ${a.config.numLayers} blocks`);
  if (a.criterion === 'wanda' && !a.norms) throw new ConfigError('pruneModel: Wanda needs calibration activation norms');
  const weights: M.WeightMap = new Map(a.weights);
  const realised: number[] = [];
  const modules: PrunedModel['modules'] = [];
  for (let l = 0; l < a.config.numLayers; l++) {
    let zero = 0, size = 0;
    for (const m of M.blockModules(a.config, l)) {
      const w = matrixOf(a.weights, m);
      const r = a.criterion === 'magnitude' ? magnitudePrune({ weight: w, sparsity: a.ratios[l] }) : wandaPrune({ weight: w, inputNorms: a.norms!.get(m.name)!, sparsity: a.ratios[l] });
      weights.set(`${m.name}.weight`, { dims: [m.outF, m.inF], data: r.pruned });
      zero += r.sparsity * w.data.length;
      size += w.data.length;
      modules.push({ name: m.name, layer: l, sparsity: r.sparsity });
    }
    realised.push(zero / size);
    yield l + 1;
  }
  return { weights, realised, modules };
}

export function pruneModel(a: PruneArgs): PrunedModel {
  const steps = pruneSteps(a);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Measured sparsity per block of a model's weights: the fraction of exact zeros in its linear modules. */
export function measuredBlockSparsity(config: ModelConfig, weights: M.WeightMap): number[] {
  return Array.from({ length: config.numLayers }, (_, l) => {
    let zero = 0, size = 0;
    for (const m of M.blockModules(config, l)) {
      const w = weights.get(`${m.name}.weight`)!;
      for (const x of w.data) if (x === 0) zero++;
      size += w.data.length;
    }
    return zero / size;
  });
}
