/**
 * Language-model training on top of src/models:
 *  - buildFullTrainGraph: a causal-LM training graph whose gradients cover EVERY weight (embeddings,
 *    norms, all linear modules), for pretraining. src/models' buildTrainGraph only trains adapters
 *    (LoRA / MoE) and a classification head, so this small adapter builds the same model through
 *    ModelContext + transformer + lmHead + causalLmLoss and differentiates w.r.t. all parameters.
 *  - lmObjective: a TrainObjective<Sample> over such a graph (or buildTrainGraph's): trainable
 *    tensors are fed from the trainer's params, frozen weights from a WeightMap.
 *  - chunkTokens: fixed-length training windows from token streams.
 */
import { grad } from '../autodiff/index.ts';
import { ConfigError, DataError } from '../errors.ts';
import * as M from '../models/index.ts';
import * as O from '../onnx/index.ts';
import { GraphBuilder } from '../onnx/index.ts';
import { createSession, type HostTensor } from '../runtime/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import type { ParamMap, ShapeMap } from './checkpoint.ts';
import { OnnxObjective } from './objective.ts';

/** What lmObjective needs from a training graph (buildTrainGraph's TrainGraph fits). */
export interface LmTrainGraph {
  model: Uint8Array;
  /** Every weight input of the graph (trainable and frozen). */
  weightInputs: { name: string; shape: number[] }[];
  dataInputs: string[];
  /** Tensors with a `grad.<name>` output. */
  trainable: { name: string; shape: number[] }[];
  dtype: M.FloatDType;
}

/**
 * Full-weight causal-LM training graph: outputs `loss` (mean over target tokens of the batch,
 * as HF Trainer) and `grad.<name>` for every weight, in graph order.
 */
export function buildFullTrainGraph({ config, dtype = 'float32' }: { config: ModelConfig; dtype?: M.FloatDType }): LmTrainGraph {
  const g = new GraphBuilder({ name: `${config.modelType}_full_train` });
  const ctx = new M.ModelContext(g, { config, dtype });
  const t = M.transformer(ctx);
  const logits = M.lmHead(ctx, t.hidden);
  const labels = g.input('labels', 'int64', ['batch', 'seq']);
  const { perSample, tokens } = M.causalLmLoss(logits, labels);
  const loss = O.div(O.reduceSum(O.mul(perSample, tokens), undefined, false), O.reduceSum(tokens, undefined, false));
  g.output(loss, 'loss');
  const params = [...ctx.params.values()];
  grad({ loss, wrt: params }).forEach((gv, i) => g.output(gv, `grad.${params[i].name}`));
  const weightInputs = params.map((p) => ({ name: p.name, shape: p.shape as number[] }));
  return { model: g.toModel(), weightInputs, dataInputs: ['input_ids', 'attention_mask', 'labels'], trainable: weightInputs, dtype };
}

/** Target tokens of a batch under the HF shift (labels[:, 1:] that are not -100). */
export function targetTokens(batch: M.Batch): number {
  const T = batch.seq;
  let n = 0;
  for (let b = 0; b < batch.batch; b++) for (let t = 1; t < T; t++) if (batch.labels![b * T + t] !== BigInt(M.IGNORE_INDEX)) n++;
  return n;
}

export interface LmObjectiveOptions {
  graph: LmTrainGraph;
  /** Weights that are graph inputs but not trained (the base model under LoRA). */
  frozen?: M.WeightMap;
  device?: string;
  threads?: number;
  padId?: number;
  /** 'tokens' for a token-mean loss (buildFullTrainGraph, buildTrainGraph reduction 'token-mean'), 'examples' for a sample-mean loss. */
  weighting: 'tokens' | 'examples';
}

/** TrainObjective<Sample> over an LM training graph on one device. */
export async function lmObjective(o: LmObjectiveOptions): Promise<OnnxObjective<M.Sample>> {
  const trainableNames = new Set(o.graph.trainable.map((t) => t.name));
  const frozenFeeds: Record<string, HostTensor> = {};
  for (const w of o.graph.weightInputs) {
    if (trainableNames.has(w.name)) continue;
    const t = o.frozen?.get(w.name);
    if (!t) throw new ConfigError(`lmObjective: frozen weight "${w.name}" [${w.shape}] was not provided`);
    if (t.dims.join() !== w.shape.join()) throw new DataError(`lmObjective: frozen weight "${w.name}" has shape [${t.dims}], the graph expects [${w.shape}]`);
    frozenFeeds[w.name] = { data: o.graph.dtype === 'float64' ? Float64Array.from(t.data) : Float32Array.from(t.data), dims: w.shape };
  }
  const session = await createSession({ model: o.graph.model, device: o.device ?? 'cpu:0', threads: o.threads });
  const batchOf = (ex: M.Sample[]) => M.padBatch(ex, { padId: o.padId ?? 0 });
  return new OnnxObjective<M.Sample>({
    session,
    trainable: new Map(o.graph.trainable.map((t) => [t.name, t.shape])),
    float64: o.graph.dtype === 'float64',
    feeds: (ex) => {
      const b = batchOf(ex);
      return {
        ...frozenFeeds,
        input_ids: { data: b.inputIds, dims: [b.batch, b.seq] },
        attention_mask: { data: b.attentionMask, dims: [b.batch, b.seq] },
        labels: { data: b.labels!, dims: b.labels!.length === b.batch ? [b.batch] : [b.batch, b.seq] },
      };
    },
    weight: o.weighting === 'tokens' ? (ex) => targetTokens(batchOf(ex)) : undefined,
  });
}

/** WeightMap entries → trainer params + shapes (float32 copies). */
export function weightsToParams(w: M.WeightMap, names?: Iterable<string>): { params: ParamMap; shapes: ShapeMap } {
  const params: ParamMap = new Map(), shapes: ShapeMap = new Map();
  for (const name of names ?? w.keys()) {
    const t = w.get(name);
    if (!t) throw new ConfigError(`weightsToParams: no weight "${name}"`);
    params.set(name, Float32Array.from(t.data));
    shapes.set(name, [...t.dims]);
  }
  return { params, shapes };
}

/** Trainer params + shapes → WeightMap (e.g. for writing safetensors or feeding a forward graph). */
export function paramsToWeights(params: ParamMap, shapes: ShapeMap, into: M.WeightMap = new Map()): M.WeightMap {
  for (const [k, v] of params) into.set(k, { dims: shapes.get(k) ?? [v.length], data: v });
  return into;
}

/**
 * Non-overlapping windows of `length` tokens from each stream (a trailing remainder shorter than
 * `minLength`, default length, is dropped). Every token is a target.
 */
export function chunkTokens(streams: number[][], length: number, minLength = length): M.Sample[] {
  if (!Number.isInteger(length) || length < 2) throw new ConfigError(`chunkTokens: length is ${length}; expected an integer >= 2`);
  const out: M.Sample[] = [];
  for (const s of streams) {
    for (let i = 0; i < s.length; i += length) {
      const w = s.slice(i, i + length);
      if (w.length >= Math.max(2, minLength)) out.push({ inputIds: w });
    }
  }
  return out;
}
