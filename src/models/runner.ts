/**
 * Running model graphs: batches (right-padded int64 tensors), weight feeds, and a per-example
 * gradient runner returning Map<unit, Float32Array [B × d]>.
 */
import { DataError, MissingArtifactError } from '../errors.ts';
import { createSession, type HostTensor, type Session } from '../runtime/index.ts';
import type { FloatDType, WeightMap } from './context.ts';
import { EMBEDDING_ROWS, type GraphSpec, type PerExampleGraph } from './graphs.ts';
import { IGNORE_INDEX } from './loss.ts';

/** A right-padded batch. labels: [B, T] for causal LM, [B] for classification, absent for pure forward. */
export interface Batch { batch: number; seq: number; inputIds: BigInt64Array; attentionMask: BigInt64Array; labels?: BigInt64Array }

export interface Sample {
  inputIds: number[];
  /** Causal LM: per-token labels (same length; -100 = ignored), e.g. the prompt masked. Default: every token is a target. */
  labels?: number[];
  /** Classification: the class index. */
  label?: number;
}

/** Right-pads samples to the longest (or `seq`) with `padId`, mask 0 and label -100. */
export function padBatch(samples: Sample[], opts: { padId?: number; seq?: number } = {}): Batch {
  if (!samples.length) throw new DataError('padBatch: no samples');
  const T = opts.seq ?? Math.max(...samples.map((s) => s.inputIds.length));
  const B = samples.length, pad = BigInt(opts.padId ?? 0);
  const ids = new BigInt64Array(B * T).fill(pad), mask = new BigInt64Array(B * T);
  const cls = samples.every((s) => s.label !== undefined);
  const labels = cls ? new BigInt64Array(B) : new BigInt64Array(B * T).fill(BigInt(IGNORE_INDEX));
  samples.forEach((s, b) => {
    if (s.inputIds.length > T) throw new DataError(`padBatch: sample ${b} has ${s.inputIds.length} tokens, more than seq ${T}`);
    if (s.labels && s.labels.length !== s.inputIds.length) throw new DataError(`padBatch: sample ${b} has ${s.labels.length} labels for ${s.inputIds.length} tokens`);
    s.inputIds.forEach((t, i) => { ids[b * T + i] = BigInt(t); mask[b * T + i] = 1n; if (!cls) labels[b * T + i] = BigInt(s.labels ? s.labels[i] : t); });
    if (cls) labels[b] = BigInt(s.label!);
  });
  return { batch: B, seq: T, inputIds: ids, attentionMask: mask, labels };
}

/** Feeds for a graph: data inputs from the batch, weights from `weights` (converted to the graph dtype). */
export function feedsFor(spec: GraphSpec, weights: WeightMap, batch: Batch): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = {
    input_ids: { data: batch.inputIds, dims: [batch.batch, batch.seq] },
    attention_mask: { data: batch.attentionMask, dims: [batch.batch, batch.seq] },
  };
  if (spec.dataInputs.includes('labels')) {
    if (!batch.labels) throw new DataError('batch has no labels but the graph needs them');
    f.labels = { data: batch.labels, dims: batch.labels.length === batch.batch ? [batch.batch] : [batch.batch, batch.seq] };
  }
  for (const w of spec.weightInputs) {
    const t = weights.get(w.name);
    if (!t) throw new MissingArtifactError(`weight "${w.name}" [${w.shape}] was not provided (have ${weights.size} tensors, e.g. ${[...weights.keys()].slice(0, 3).join(', ')})`);
    if (t.dims.join() !== w.shape.join()) throw new DataError(`weight "${w.name}" has shape [${t.dims}], the graph expects [${w.shape}]`);
    f[w.name] = { data: convert(t.data, spec.dtype), dims: w.shape };
  }
  return f;
}

const convert = (a: Float32Array | Float64Array, d: FloatDType): Float32Array | Float64Array =>
  d === 'float64' ? (a instanceof Float64Array ? a : Float64Array.from(a)) : a instanceof Float32Array ? a : Float32Array.from(a);

export interface PerExampleResult {
  /** Per-sample losses [B]. */
  losses: Float32Array | Float64Array;
  /** unit → row-major [B × d] (d = product of the unit's shape; EMBEDDING_ROWS: [B × T × D]). */
  grads: Map<string, Float32Array | Float64Array>;
}

/** Holds one ORT session for a per-example gradient graph. */
export class PerExampleGradRunner {
  private constructor(readonly graph: PerExampleGraph, private readonly session: Session) {}

  static async create(args: { graph: PerExampleGraph; device?: string; threads?: number }): Promise<PerExampleGradRunner> {
    const session = await createSession({ model: args.graph.model, device: args.device ?? 'cpu:0', threads: args.threads });
    return new PerExampleGradRunner(args.graph, session);
  }

  async run(args: { weights: WeightMap; batch: Batch }): Promise<PerExampleResult> {
    const out = await this.session.run(feedsFor(this.graph, args.weights, args.batch));
    const grads = new Map<string, Float32Array | Float64Array>();
    for (const [unit, u] of this.graph.units) grads.set(unit, out[u.output].data as Float32Array);
    return { losses: out.loss.data as Float32Array, grads };
  }

  release(): Promise<void> { return this.session.release(); }
}

/**
 * Embedding-row gradients of one sample from the EMBEDDING_ROWS output: Σ over the sample's real
 * positions holding token id → row [D]. (Input-embedding side only; with tied embeddings the
 * output-head contribution is not included.)
 */
export function embeddingRowGrads(args: { grads: Float32Array | Float64Array; batch: Batch; sample: number; hidden: number }): Map<number, Float64Array> {
  const { grads, batch, sample: b, hidden: D } = args, T = batch.seq;
  const rows = new Map<number, Float64Array>();
  for (let t = 0; t < T; t++) {
    if (batch.attentionMask[b * T + t] === 0n) continue;
    const id = Number(batch.inputIds[b * T + t]);
    const r = rows.get(id) ?? new Float64Array(D);
    for (let k = 0; k < D; k++) r[k] += grads[(b * T + t) * D + k];
    rows.set(id, r);
  }
  return rows;
}

